# virtio-net, the network device (spec 5.1): one receiveq and one transmitq,
# plus the controlq when the device has one.
#
#     net = virtio.find('net')
#     net.mac, net.mtu, net.link_up
#     net.on_event = lambda net, what: ...   # 'link': link_up changed (5.1.4.2)
#     net.send(frame)                  # an Ethernet frame without FCS
#     frame = net.recv(timeout_ms=100) # bytes, or None
#     net.counters()                   # rx_packets, rx_errors, rx_dropped, tx_...
#     net.set_promiscuous(True); net.set_mac_filter([mac]); net.set_mac(mac)
#
# Every packet travels behind a struct virtio_net_hdr (5.1.6): 10 bytes on
# the legacy interface, 12 (with num_buffers) under VERSION_1 or MRG_RXBUF.
# We negotiate no offloads, so a transmitted header is all zeros and a
# received one only tells how many buffers a packet spans.
#
# The receiveq is kept full of preallocated buffers (5.1.6.3): a buffer goes
# back to the device once its packet is copied out, in batches, when recv
# has waited a few polls in vain or RX_REFILL_BATCH buffers wait. Transmit
# buffers are preallocated too and reclaimed then, or when none is free.
#
# Like virtio.blk, the driver drives its two rings itself, split (2.7) or
# packed (2.8, when RING_PACKED is negotiated): each buffer owns fixed
# descriptors written once at set-up, so giving a buffer to the device is
# one post (and, to transmit, one length), and a completion is one pop
# checked against the buffers in flight; the ring's steps run as viper on
# the target. The controlq, rarely used, is a general-path queue
# (virtio.net.control). The feature bits and the configuration layout are
# in virtio.net.consts. This object is the `link` drivers/inet expects:
# mac, mtu, send, recv.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

try:
    from array import array
except ImportError:
    array = None

from virtio import features, wait
from virtio.buffers import byte_length
from virtio.device import VirtioDevice
from virtio.net.consts import (CONFIG_MAC, CONFIG_MTU, CONFIG_STATUS, DEFAULT_MTU,
                               FEATURE_DEPENDENCIES, FEATURE_NAMES, MAX_MTU, MIN_MTU,
                               SUPPORTED_FEATURES, VIRTIO_NET_F_CTRL_MAC_ADDR,
                               VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MAC,
                               VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS,
                               VIRTIO_NET_S_LINK_UP)
from virtio.net.control import CTRL_BUFFER, CTRL_TIMEOUT_MS, NetControl
from virtio.errors import DeviceError
from virtio.virtqueue import (RING_IN_FLIGHT, RING_LEN, VIRTQ_DESC_F_NEXT,
                              VIRTQ_DESC_F_WRITE)

VIRTIO_ID_NET = const(1)

# Virtqueues (5.1.2).
RECEIVEQ = const(0)
TRANSMITQ = const(1)
CONTROLQ = const(2)

# struct virtio_net_hdr (5.1.6).
HDR_LEN = const(12)             # VERSION_1 or MRG_RXBUF: with num_buffers
HDR_LEN_LEGACY = const(10)      # legacy without MRG_RXBUF
HDR_NUM_BUFFERS = const(10)


ETH_HLEN = const(14)            # destination, source, EtherType
VLAN_HLEN = const(4)            # room for an 802.1Q tag, so such frames are seen and counted
ETH_ALEN = const(6)
RX_BUFFERS = const(256)         # at most; never more than the receiveq holds
RX_REFILL_BATCH = const(16)     # used receive buffers held back at most before a refill
TX_BUFFERS = const(64)
MRG_BUFFER = const(2048)        # receive buffer size cap when packets may span buffers
TX_TIMEOUT_MS = const(1000)

# The driver's own numbers for each of its two rings, in an array('I'): Q_WORDS
# words, then a stack of buffer numbers (receive: used, waiting for the next
# refill; transmit: free). The ring itself (which buffers the device has,
# indices, used lengths) is the ring module's state (virtio.split.ring or
# virtio.packed.ring), reached through its steps.
Q_N = const(0)              # buffers
Q_HDR = const(1)            # virtio_net_hdr bytes
Q_PER = const(2)            # descriptors per buffer: 1, or 2 (header apart, legacy framing)
Q_NSTACK = const(3)         # entries on the stack
Q_CUT = const(4)            # 1 while a receive / reclaim runs: still 1 after, it was cut short
Q_WORDS = const(5)



class Counters:
    """What the driver counted (net.counters() as a dict, and each an
    attribute of the device). A plain object of its own: the counters change
    per frame, and storing an attribute of an instance whose class has
    properties (the device) costs MicroPython a look through the class
    hierarchy first."""

    def __init__(self):
        self.rx_packets = 0     # frames handed to recv()'s caller
        self.rx_bytes = 0
        self.rx_errors = 0      # completions the device got wrong (lengths, num_buffers)
        self.rx_dropped = 0     # well-formed completions we discarded (runt, over the MTU)
        self.tx_packets = 0
        self.tx_bytes = 0
        self.tx_errors = 0      # transmit completions the device got wrong


COUNTERS = ('rx_packets', 'rx_bytes', 'rx_errors', 'rx_dropped', 'tx_packets', 'tx_bytes',
            'tx_errors')


def mac_ntoa(mac):
    return ':'.join(['%02x' % b for b in mac])


def local_mac(seed):
    """A locally administered unicast MAC (IEEE 802 "9.2": bit 1 of the
    first octet set, bit 0 clear) made from an integer seed."""
    out = [0x02]
    for _ in range(5):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        out.append((seed >> 16) & 0xFF)
    return bytes(out)


class NetDevice(NetControl, VirtioDevice):
    KIND = 'net'
    DEVICE_TYPE = VIRTIO_ID_NET
    NAME = 'virtio-net'
    SUPPORTED_FEATURES = SUPPORTED_FEATURES
    # INTx, not MSI-X: QEMU 7.2 under TCG crashes (SIGSEGV) when the guest sets up
    # MSI-X vectors on a vhost-user-net device (-netdev vhost-user); the guest
    # cannot tell it from virtio-net-pci, and INTx works with both.
    USE_MSIX = False
    FEATURE_DEPENDENCIES = FEATURE_DEPENDENCIES
    FEATURE_NAMES = FEATURE_NAMES
    # Waits, in ms; set one on a device to change it there. (Class defaults
    # rather than per-device attributes: see Counters on why a device keeps
    # few of its own.)
    tx_timeout_ms = TX_TIMEOUT_MS       # for a free transmit buffer
    ctrl_timeout_ms = CTRL_TIMEOUT_MS   # for the device's answer on the controlq

    def __init__(self, transport, wanted=None, rx_buffers=RX_BUFFERS, tx_buffers=TX_BUFFERS):
        VirtioDevice.__init__(self, transport, wanted)
        self.rx_buffers = rx_buffers
        self.tx_buffers = tx_buffers
        self.mac = None
        self.mtu = DEFAULT_MTU
        self.controlq = None
        self.promiscuous = True     # devices start so (QEMU does); see _start()
        self.filter_error = None    # why the device could not filter for us, if so
        self._held = None           # a received frame whose recv() was cut short
        self._counts = Counters()

    rx_packets = property(lambda self: self._counts.rx_packets)
    rx_bytes = property(lambda self: self._counts.rx_bytes)
    rx_errors = property(lambda self: self._counts.rx_errors)
    rx_dropped = property(lambda self: self._counts.rx_dropped)
    tx_packets = property(lambda self: self._counts.tx_packets)
    tx_bytes = property(lambda self: self._counts.tx_bytes)
    tx_errors = property(lambda self: self._counts.tx_errors)

    def reset_counters(self):
        self._counts = Counters()

    def counters(self):
        c = self._counts
        return dict((name, getattr(c, name)) for name in COUNTERS)

    def __str__(self):
        s = VirtioDevice.__str__(self)
        if self.mac is None:
            return s
        return '%s mac %s mtu %d link %s' % (s, mac_ntoa(self.mac), self.mtu,
                                            'up' if self.link_up else 'down')

    # -- negotiation and set-up (5.1.5) ----------------------------------------------
    def setup(self):
        v1 = self.has(features.VERSION_1)
        self.mergeable = self.has(VIRTIO_NET_F_MRG_RXBUF)
        self.hdr_len = HDR_LEN if v1 or self.mergeable else HDR_LEN_LEGACY
        # Legacy framing (5.1.6.6 "Legacy Interface: Framing Requirements"):
        # without ANY_LAYOUT the header has a descriptor of its own.
        self.split_header = not (v1 or self.has(features.ANY_LAYOUT))
        self._read_identity()
        self.max_frame = ETH_HLEN + self.mtu
        # Both rings are driven with prebuilt buffers (no indirect tables).
        self.receiveq = self.setup_queue(RECEIVEQ, None, 0)
        self.receiveq.name = '%s %s: queue receiveq' % (self.address, self.NAME)
        self.transmitq = self.setup_queue(TRANSMITQ, None, 0)
        self.transmitq.name = '%s %s: queue transmitq' % (self.address, self.NAME)
        if self.has(VIRTIO_NET_F_CTRL_VQ):
            self.controlq = self.setup_queue(CONTROLQ)
            self._ctrl = self.hw.dma_alloc(CTRL_BUFFER + 1, 16)
            self._ctrl_ack = self._ctrl + CTRL_BUFFER
            self._ctrl_busy = False
        self._setup_receive()
        self._setup_transmit()

    def _read_identity(self):
        t = self.transport
        if self.has(VIRTIO_NET_F_MAC):
            self.mac = self.read_config(
                lambda: bytes([t.config_read8(CONFIG_MAC + i) for i in range(ETH_ALEN)]))
        else:
            self.mac = local_mac(self.hw.ticks_us() ^ hash(self.address))
        if self.has(VIRTIO_NET_F_MTU):
            self.mtu = self.check_config('mtu', t.config_read16(CONFIG_MTU), MIN_MTU, MAX_MTU)
        self._link_seen = self.link_up

    def _setup_receive(self):
        """Preallocate the receive buffers, header and frame back to back,
        each with its descriptors (2.7.5), and make them all available
        (5.1.6.3). Legacy framing: the header in a descriptor of its own."""
        vq = self.receiveq
        hl = self.hdr_len
        room = hl + self.max_frame + VLAN_HLEN
        if self.mergeable and room > MRG_BUFFER:
            room = MRG_BUFFER       # a large packet spans several buffers
        self.rx_size = self._rx_room = room
        self._rx_base, q, self._rx_ring = self._prebuild(vq, self.rx_buffers, room, room,
                                                         VIRTQ_DESC_F_WRITE)
        self._rxq = q
        self._rx_notifier = vq.notifier
        n = q[Q_N]
        self._rx_post = array('I', bytes(4 * 3 * n))    # (slot, -, -) triples for post
        for i in range(n):
            q[Q_WORDS + i] = i
        q[Q_NSTACK] = n
        self._refill_ring(q)
        self._steps.publish(self.hw, self._rx_ring)     # published now; notified after DRIVER_OK

    def _prebuild(self, vq, wanted, room, length, flags):
        """At most `wanted` buffers of `room` bytes in DMA memory, each with
        its descriptors written once: one of `length` bytes, or (legacy
        framing, 5.1.6.6) the header's and then the rest chained. flags:
        VIRTQ_DESC_F_WRITE for the receiveq, 0 for the transmitq. The ring
        is handed over (its steps kept). Returns (their base address, the
        driver's array for the ring, the ring's state)."""
        hl = self.hdr_len
        per = 2 if self.split_header else 1
        n = min(wanted, vq.size // per)
        base = self.hw.dma_alloc(n * room, 16)
        steps = vq.take_over('the %s driver' % self.NAME, n, per, False)
        self._steps = steps
        # One buffer's (addr, len, flags) words repeated, then the addresses
        # (no array per buffer: 320 of them cost ~1M instructions at boot).
        if per == 2:
            one = [0, hl, flags | VIRTQ_DESC_F_NEXT, 0, length - hl, flags]
        else:
            one = [0, length, flags]
        t = array('I', bytes(array('I', one)) * n)     # (bytes repeat: no long list)
        for i in range(n):
            a = base + i * room
            o = 3 * i * per
            t[o] = a
            if per == 2:
                t[o + 3] = a + hl
        steps.build(self.hw, vq.st, t)
        q = array('I', bytes(4 * (Q_WORDS + n)))
        q[Q_PER] = per
        q[Q_N] = n
        q[Q_HDR] = hl
        return base, q, vq.st

    def _setup_transmit(self):
        """Preallocate the transmit buffers and their descriptors. A
        transmitted header is all zeros (no offloads, num_buffers 0: 5.1.6.2),
        so it is written once; a send writes the frame and its length."""
        vq = self.transmitq
        hl = self.hdr_len
        room = self._tx_room = hl + self.max_frame
        self._tx_base, q, self._tx_ring = self._prebuild(vq, self.tx_buffers, room, hl, 0)
        self._txq = q
        self._tx_notifier = vq.notifier
        self._tx_post = array('I', [0, 0, 0])            # (slot, addr, length) for post
        n = q[Q_N]
        for i in range(n):
            q[Q_WORDS + n - 1 - i] = i          # the free stack, buffer 0 on top
        q[Q_NSTACK] = n

    def init(self):
        VirtioDevice.init(self)
        try:
            self._start()
        except Exception:
            self._fail()
            raise
        return self

    def _start(self):
        # Buffer notifications only after DRIVER_OK (3.1.1).
        self._kick(self._rx_ring, self._rx_notifier)
        # Devices start promiscuous; when the device filters on our address
        # (its MAC, or one we set) let it drop what is not for us. Best
        # effort: a device that refuses stays promiscuous, which still works.
        if not self.has(VIRTIO_NET_F_CTRL_RX):
            return
        try:
            if not self.has(VIRTIO_NET_F_MAC):
                if not self.has(VIRTIO_NET_F_CTRL_MAC_ADDR):
                    return
                self.set_mac(self.mac)
            self.set_promiscuous(False)
        except DeviceError as e:
            self.filter_error = str(e)

    # -- link state (5.1.4) ----------------------------------------------------------
    @property
    def link_up(self):
        """VIRTIO_NET_S_LINK_UP from the config status; without STATUS the
        link is assumed up (5.1.4.2)."""
        if not self.has(VIRTIO_NET_F_STATUS):
            return True
        return bool(self.transport.config_read16(CONFIG_STATUS) & VIRTIO_NET_S_LINK_UP)

    def config_changed(self):
        # The device changes status and notifies (5.1.4.2): QEMU's set_link.
        up = self.link_up
        if up != self._link_seen:
            self._link_seen = up
            return 'link'

    # -- transmit (5.1.6.2) ----------------------------------------------------------
    def send(self, frame):
        """Queue one Ethernet frame (destination MAC first, no FCS) for
        transmission. The frame is copied before send returns. Raises
        ValueError beyond the MTU, VirtioTimeout when the device keeps every
        transmit buffer for tx_timeout_ms."""
        n = byte_length(frame, '%s %s: send', self.address, self.NAME)   # (no text built)
        if n > self.max_frame:
            raise ValueError('frame of %d bytes exceeds the %d-byte limit (MTU %d + %d-byte '
                             'Ethernet header)' % (n, self.max_frame, self.mtu, ETH_HLEN))
        if n < ETH_HLEN:
            raise ValueError('frame of %d bytes is shorter than an Ethernet header' % n)
        q = self._txq
        if not q[Q_NSTACK] and not self.reclaim():
            self._wait_transmit()
        i = q[Q_WORDS + q[Q_NSTACK] - 1]    # the free buffer on top of the stack
        a = self._tx_base + i * self._tx_room
        hl = q[Q_HDR]
        self.hw.write(a + hl, frame)
        # Its length into its last descriptor: with legacy framing the header
        # has a descriptor of its own (5.1.6.6), else one descriptor holds both.
        if q[Q_PER] == 2:
            j, addr, length = 1, a + hl, n
        else:
            j, addr, length = 0, a, hl + n
        one = self._tx_post
        one[0], one[1], one[2] = i, addr, length
        self._steps.post(self.hw, self._tx_ring, one, 1, q[Q_PER], j, 0)
        q[Q_NSTACK] -= 1                # off the stack once posted: no jump in between
        self._kick(self._tx_ring, self._tx_notifier)
        self._counts.tx_packets += 1
        self._counts.tx_bytes += n

    def reclaim(self):
        """Take back the transmit buffers the device has used (their used
        length means nothing, 5.1.6.1: legacy devices put the buffer length
        there). -> how many. DeviceError if the device names a buffer that
        is not with it: the ring is then unusable."""
        try:
            return self._tx_reclaim(self._txq)
        except DeviceError:
            self._counts.tx_errors += 1
            raise

    def _wait_transmit(self):
        wait.until(self.hw, self.reclaim, self.tx_timeout_ms, self.check, self._tx_late,
                   self.transmitq.sleeper)

    def _tx_late(self, timeout_ms):
        return ('%s %s: all %d transmit buffers still with the device after %d ms'
                % (self.address, self.NAME, self._txq[Q_N], timeout_ms))

    @property
    def tx_in_flight(self):
        """Transmit buffers with the device (not reclaimed yet)."""
        return self._tx_ring[RING_IN_FLIGHT]

    # -- receive (5.1.6.4) -------------------------------------------------------------
    def recv(self, timeout_ms=0):
        """The next received frame as a new bytes object (Ethernet header
        first, no FCS), or None when none arrives within timeout_ms."""
        frame = self._held
        if frame is not None:
            self._held = None
            return frame
        frame = self._receive()
        if frame is not None or timeout_ms <= 0:
            return frame
        self.housekeeping()             # nothing in sight: a good moment
        return wait.until(self.hw, self._receive, timeout_ms, self._idle, None,
                          self.receiveq.sleeper)

    def _idle(self):
        # Between batches of looks while recv() waits: the health check,
        # and the housekeeping a long wait needs.
        self.check()
        self.housekeeping()

    def _take_rx(self):
        """The next receive completion: buffer number (its used length in
        the ring's RING_LEN word), or -1. Counts and re-raises a ring the device broke."""
        try:
            return self._steps.pop(self.hw, self._rx_ring, self.receiveq.name)
        except DeviceError:
            self._counts.rx_errors += 1
            raise

    def _receive(self):
        """One frame from the receiveq, or None. Completions the device got
        wrong are counted and their buffers recycled; a used id that names no
        buffer in flight leaves the ring unusable and raises DeviceError. A
        receive cut short (a Ctrl-C between taking a used buffer and putting
        it back) leaves Q_CUT set: the next one finds the buffers it left out
        (_recover). (One function, not two: it runs for every poll.)"""
        q = self._rxq
        ring = self._rx_ring
        if q[Q_CUT]:
            self._recover(q, ring)
        q[Q_CUT] = 1
        hl = self.hdr_len
        pop = self._steps.pop
        while True:
            try:                        # _take_rx inlined
                i = pop(self.hw, ring, self.receiveq.name)
            except DeviceError:
                self._counts.rx_errors += 1
                raise
            if i < 0:
                q[Q_CUT] = 0
                return None
            length = ring[RING_LEN]
            a = self._rx_base + i * self._rx_room
            if length < hl or length > self._rx_room:
                self._counts.rx_errors += 1     # no header, or beyond the buffer
                self._recycle(i)
                continue
            if self.mergeable:
                nbuf = self.hw.read16(a + HDR_NUM_BUFFERS)
                if nbuf != 1:
                    frame = self._receive_merged(i, length, nbuf)
                    if frame is None:
                        continue
                    q[Q_CUT] = 0
                    return frame
            n = length - hl
            if n < ETH_HLEN or n > self.max_frame:
                self._counts.rx_dropped += 1
                self._recycle(i)
                continue
            frame = self.hw.read(a + hl, n)
            q[Q_WORDS + q[Q_NSTACK]] = i    # _recycle(i) inlined: once per frame
            q[Q_NSTACK] += 1
            self._counts.rx_packets += 1
            self._counts.rx_bytes += n
            if q[Q_NSTACK] >= RX_REFILL_BATCH:
                try:
                    self.refill()
                except BaseException:
                    self._held = frame      # a Ctrl-C in the refill: recv returns it next
                    raise
            q[Q_CUT] = 0
            return frame

    def _recover(self, q, ring):
        """After a call cut short: every buffer neither with the device (the
        ring's books) nor on the stack goes back on the stack."""
        words = self._steps.RING_WORDS
        stacked = [q[Q_WORDS + k] for k in range(q[Q_NSTACK])]
        for i in range(q[Q_N]):
            if not ring[words + i] and i not in stacked:
                q[Q_WORDS + q[Q_NSTACK]] = i
                q[Q_NSTACK] += 1

    def _receive_merged(self, first, length, nbuf):
        """A packet spread over nbuf buffers (MRG_RXBUF, 5.1.6.4): the first
        holds the header; the device publishes all of them together."""
        hw = self.hw
        q = self._rxq
        room = self._rx_room
        hl = self.hdr_len
        parts = [hw.read(self._rx_base + first * room + hl, length - hl)]
        self._recycle(first)
        total = length - hl
        bad = nbuf == 0 or nbuf > q[Q_N]
        got = 1
        while not bad and got < nbuf:
            i = self._take_rx()
            if i < 0:
                bad = True      # fewer buffers published than num_buffers says
                break
            n = self._rx_ring[RING_LEN]
            if n > room:
                self._recycle(i)
                bad = True
                break
            if total + n <= self.max_frame:
                parts.append(hw.read(self._rx_base + i * room, n))
            total += n
            self._recycle(i)
            got += 1
        if bad:
            self._counts.rx_errors += 1
            return None
        if total < ETH_HLEN or total > self.max_frame:
            self._counts.rx_dropped += 1
            return None
        self._counts.rx_packets += 1
        self._counts.rx_bytes += total
        return b''.join(parts)

    def _recycle(self, i):
        """Receive buffer i is free again: it goes back to the device with
        the next refill."""
        q = self._rxq
        q[Q_WORDS + q[Q_NSTACK]] = i
        q[Q_NSTACK] += 1
        if q[Q_NSTACK] >= RX_REFILL_BATCH:
            self.refill()

    def refill(self):
        """Make every free receive buffer available to the device again
        (5.1.6.3: keep the receiveq full), with one notification at most."""
        if self._rxq[Q_NSTACK]:
            self._refill_ring(self._rxq)
            self._kick(self._rx_ring, self._rx_notifier)

    def housekeeping(self):
        """What recv does while it waits in vain: refill the receiveq, and
        reclaim transmit buffers once half of them are with the device."""
        if self._rxq[Q_NSTACK]:
            self.refill()
        if self._tx_ring[RING_IN_FLIGHT] * 2 > self._txq[Q_N]:
            self.reclaim()

    @property
    def rx_posted(self):
        """Receive buffers with the device; the others wait for a refill."""
        return self._rx_ring[RING_IN_FLIGHT]

    @property
    def rx_count(self):
        """How many receive buffers there are."""
        return self._rxq[Q_N]

    @property
    def tx_count(self):
        """How many transmit buffers there are."""
        return self._txq[Q_N]

    # -- the rings: buffers through the ring's steps (virtio.split.ring, virtio.packed.ring) --
    def _kick(self, ring, notifier):
        """Publish what was posted on a ring and notify the device if it
        wants to hear (the ring's kick step: 2.7.10, 2.8.10)."""
        self._steps.kick(self.hw, ring, notifier)

    def _refill_ring(self, q):
        """Post every buffer on the receive stack (not yet published)."""
        n = q[Q_NSTACK]
        reqs = self._rx_post
        for k in range(n):
            reqs[3 * k] = q[Q_WORDS + k]
        self._steps.post(self.hw, self._rx_ring, reqs, n, q[Q_PER], -1, 0)
        q[Q_NSTACK] = 0

    def _tx_reclaim(self, q):
        """Every used transmit buffer back on the free stack; how many. A
        reclaim cut short is mended by the next (see _receive)."""
        pop, hw, ring, name = self._steps.pop, self.hw, self._tx_ring, self.transmitq.name
        if q[Q_CUT]:
            self._recover(q, ring)
        q[Q_CUT] = 1
        n = 0
        while True:
            i = pop(hw, ring, name)
            if i < 0:
                q[Q_CUT] = 0
                return n
            q[Q_WORDS + q[Q_NSTACK]] = i
            q[Q_NSTACK] += 1
            n += 1


DRIVER = NetDevice
