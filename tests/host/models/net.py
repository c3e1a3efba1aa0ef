"""virtio-net (spec 5.1) as QEMU 7.2 presents it with user networking: queues
rx 256, tx 256, ctrl 64; features MAC, MRG_RXBUF, STATUS, CTRL_VQ, CTRL_RX,
CTRL_VLAN, CTRL_RX_EXTRA, GUEST_ANNOUNCE, CTRL_MAC_ADDR, CTRL_GUEST_OFFLOADS
(the facts file); MAC 52:54:00:12:34:56, link up; promiscuous after reset
with an empty MAC table, as QEMU.

Behind the device sits a peer: any object with receive(frame), called with
every frame the driver transmits (header stripped). The peer (or a test)
hands frames to the driver with deliver(frame): the device puts each in the
next receive buffer(s), or keeps it in `backlog` until buffers arrive. So
the model is also a link for tests/host/test_inet_sim.Gateway.

The device checks what a driver gives it: header length and contents,
legacy framing without ANY_LAYOUT (5.1.6.6), control commands. Spec
violations go to `errors` (and set DEVICE_NEEDS_RESET, as QEMU would).

Net misbehaviours (`misbehave=`, besides the generic ones of virtio.py):
  'rx_short'        a receive completion shorter than the header
  'rx_oversized'    a receive used length beyond the buffer
  'bad_num_buffers' num_buffers counts two buffers more than the packet uses
  'rx_bad_id'       a receive completion names a descriptor not in flight
  'tx_used_len'     transmit completions carry the buffer length (old legacy devices)
  'ctrl_err'        every control command is answered VIRTIO_NET_ERR
  'ctrl_silent'     control commands are taken and never answered
"""

import struct

from tests.host.models.rings import PackedRing
from tests.host.models.virtio import F_ANY_LAYOUT, F_VERSION_1, VirtioPciModel

# Feature bits (5.1.3).
F_CTRL_GUEST_OFFLOADS = 1 << 2
F_MTU = 1 << 3
F_MAC = 1 << 5
F_MRG_RXBUF = 1 << 15
F_STATUS = 1 << 16
F_CTRL_VQ = 1 << 17
F_CTRL_RX = 1 << 18
F_CTRL_VLAN = 1 << 19
F_CTRL_RX_EXTRA = 1 << 20
F_GUEST_ANNOUNCE = 1 << 21
F_CTRL_MAC_ADDR = 1 << 23
QEMU_FEATURES = (F_MAC | F_MRG_RXBUF | F_STATUS | F_CTRL_VQ | F_CTRL_RX | F_CTRL_VLAN
                 | F_CTRL_RX_EXTRA | F_GUEST_ANNOUNCE | F_CTRL_MAC_ADDR | F_CTRL_GUEST_OFFLOADS)
CTRL_FEATURES = (F_CTRL_VQ | F_CTRL_RX | F_CTRL_VLAN | F_CTRL_RX_EXTRA | F_GUEST_ANNOUNCE
                 | F_CTRL_MAC_ADDR | F_CTRL_GUEST_OFFLOADS)

DEFAULT_MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
BROADCAST = b'\xff' * 6
VIRTIO_NET_S_LINK_UP = 1
RX, TX, CTRL = 0, 1, 2
VIRTIO_NET_CTRL_RX = 0
VIRTIO_NET_CTRL_MAC = 1
VIRTIO_NET_OK, VIRTIO_NET_ERR = 0, 1


def net_config(mac, status, mtu):
    # struct virtio_net_config: mac, status, max_virtqueue_pairs, mtu (5.1.4).
    return bytearray(mac) + struct.pack('<HHH', status, 1, mtu or 0)


class Reflector:
    """The simplest peer: every frame comes straight back, its addresses swapped."""

    def __init__(self):
        self.link = None

    def receive(self, frame):
        self.link.deliver(frame[6:12] + frame[0:6] + frame[12:])


class NetModel(VirtioPciModel):
    DEVICE_TYPE = 1
    NAME = 'virtio-net'

    def __init__(self, mode='transitional', features=QEMU_FEATURES, mac=DEFAULT_MAC,
                 mtu=None, link_up=True, peer=None, any_layout=True, chunk=None,
                 rx_on_tick=False, **kw):
        """mtu: offer VIRTIO_NET_F_MTU with this value. any_layout: offer
        ANY_LAYOUT on the legacy interface. chunk: with MRG_RXBUF, put at most
        this many bytes in one receive buffer (spreads packets over buffers).
        rx_on_tick: delivered frames wait for the next machine tick (the
        driver looking at its clock) instead of landing at once."""
        if mtu is not None:
            features |= F_MTU
        kw.setdefault('queue_sizes', (256, 256, 64) if features & F_CTRL_VQ else (256, 256))
        self.mac = bytes(mac)
        self.chunk = chunk
        self.rx_on_tick = rx_on_tick
        self.backlog = []           # frames waiting for receive buffers
        self.received = []          # frames put in receive buffers, in order
        self.sent = []              # frames the driver transmitted, in order
        self.filtered = []          # frames the receive filter dropped
        self.commands = []          # (class, command, data) of every control command
        self.peer = None
        VirtioPciModel.__init__(self, mode=mode, features=features,
                                config=net_config(mac, VIRTIO_NET_S_LINK_UP if link_up else 0,
                                                  mtu), **kw)
        self.offer_any_layout = any_layout
        if peer is not None:
            self.attach_peer(peer)

    def legacy_read(self, off, size):
        v = VirtioPciModel.legacy_read(self, off, size)
        if off == 0 and not self.offer_any_layout:
            v &= ~F_ANY_LAYOUT      # the generic model offers it on every legacy word
        return v

    def attach_peer(self, peer):
        self.peer = peer
        peer.link = self

    def _state_reset(self):
        VirtioPciModel._state_reset(self)
        # Receive filter state after reset (QEMU: promiscuous, tables empty).
        self.promisc = True
        self.allmulti = False
        self.uni_table = []
        self.multi_table = []
        self.filter_mac = getattr(self, 'mac', DEFAULT_MAC)

    # -- what the driver negotiated ------------------------------------------------
    def hdr_len(self):
        if self.negotiated(F_VERSION_1) or self.negotiated(F_MRG_RXBUF):
            return 12
        return 10

    def any_layout(self):
        return self.negotiated(F_VERSION_1) or self.negotiated(F_ANY_LAYOUT)

    def set_link(self, up):
        """The cable: link status changes, with a config change notification."""
        status = self.device_config_read(6, 2)
        self.set_config(6, struct.pack('<H', (status & ~1) | (1 if up else 0)))

    # -- frames to the driver ------------------------------------------------------------
    def deliver(self, frame, delay_us=0):
        """The network sends the driver a frame (delay_us: ignored, it is here
        so test_inet_sim.Gateway can drive the model as its link)."""
        self.backlog.append(bytes(frame))
        if not self.rx_on_tick:
            self._flush_backlog()

    def tick(self):
        VirtioPciModel.tick(self)
        if self.backlog:
            self._flush_backlog()

    def accepts(self, frame):
        """The receive filter (5.1.6.5.1-2), as QEMU's: promiscuous takes all;
        broadcast always; multicast with ALLMULTI or in the table; unicast
        for our address or in the table."""
        dst = frame[:6]
        if self.promisc or dst == BROADCAST:
            return True
        if dst[0] & 1:
            return self.allmulti or dst in self.multi_table
        return dst == self.filter_mac or dst in self.uni_table

    def _flush_backlog(self):
        q = self.queues[RX]
        if q.ring is None or not self.status & 4 or self.status & 0x40:
            return          # no DRIVER_OK yet, or broken
        while self.backlog:
            frame = self.backlog[0]
            if not self.accepts(frame):
                self.filtered.append(self.backlog.pop(0))
                continue
            if not self._receive_one(q, frame):
                return      # out of buffers: wait for the driver to add some
            self.backlog.pop(0)
            self.received.append(frame)

    def _receive_one(self, q, frame):
        """Put one frame in receive buffers; False when there are too few."""
        hl = self.hdr_len()
        data = frame
        reqs = []
        try:
            req = q.ring.pop(q.index)
            if req is None:
                return False
            reqs.append(req)
            if not self._check_rx_layout(req, hl):
                return True
            size = req.writable_size
            if self.chunk is not None:
                size = min(size, hl + self.chunk)
            first = data[:size - hl]
            rest = data[size - hl:]
            parts = [first]
            if rest and not self.negotiated(F_MRG_RXBUF):
                self.errors.append('rx: a %d-byte frame does not fit a %d-byte buffer'
                                   % (len(frame), req.writable_size))
                self.status |= 0x40
                return True
            while rest:
                more = q.ring.pop(q.index)
                if more is None:
                    # QEMU would wait; the model keeps it simple: the packet is lost.
                    self.errors.append('rx: out of buffers in the middle of a packet')
                    return True
                reqs.append(more)
                size = more.writable_size if self.chunk is None else min(more.writable_size,
                                                                          self.chunk)
                parts.append(rest[:size])
                rest = rest[size:]
        except Exception as e:
            self._error('queue 0: %s' % e)
            return True
        nbuf = len(reqs)
        if self.misbehave == 'bad_num_buffers':
            nbuf += 2
        hdr = bytes(10)
        if hl == 12:
            hdr += struct.pack('<H', nbuf)
        for k, (req, part) in enumerate(zip(reqs, parts)):
            if k == 0:
                req.write(hdr + part)
            else:
                req.write(part)
            self._complete_rx(q, req)
        return True

    def _check_rx_layout(self, req, hl):
        if req.readable:
            self._error('rx: a receive buffer has device-readable parts')
            return False
        if not self.any_layout() and req.writable[0][1] != hl:
            self._error('rx: without ANY_LAYOUT the %d-byte header needs its own descriptor '
                        '(first is %d bytes)' % (hl, req.writable[0][1]))
            return False
        if req.writable_size < hl:
            self._error('rx: a %d-byte buffer cannot hold the header' % req.writable_size)
            return False
        return True

    def _complete_rx(self, q, req):
        mis = self.misbehave
        if mis == 'rx_short':
            req.written = 4
        elif mis == 'rx_oversized':
            req.written = req.writable_size + 100
        elif mis == 'rx_bad_id':
            req.id = q.size + 3
        self._complete(q, req)

    # -- queue processing -----------------------------------------------------------------
    def process(self, q):
        if q.index == RX:
            self._flush_backlog()
            return
        if q.index == CTRL and self.misbehave == 'ctrl_silent':
            while q.ring.pop(q.index) is not None:
                pass
            return
        VirtioPciModel.process(self, q)

    def _complete(self, q, req):
        VirtioPciModel._complete(self, q, req)      # handle() does nothing on RX
        if q.index == TX and self.misbehave == 'tx_used_len':
            # Rewrite the used length just published with the buffer's size.
            ring = q.ring
            if not isinstance(ring, PackedRing):
                slot = ring.used + 4 + 8 * ((ring.used_idx - 1) % ring.size)
                self.dma.write(slot + 4, struct.pack('<I', req.readable_size))

    def handle(self, queue, req):
        if queue == TX:
            self._transmit(req)
        elif queue == CTRL:
            self._control(req)

    def _transmit(self, req):
        hl = self.hdr_len()
        if req.writable:
            self.errors.append('tx: a transmit buffer has device-writable parts')
        if not self.any_layout() and (not req.readable or req.readable[0][1] != hl):
            self.errors.append('tx: without ANY_LAYOUT the %d-byte header needs its own '
                               'descriptor' % hl)
            return
        data = req.data()
        if len(data) < hl:
            self.errors.append('tx: %d bytes cannot hold the %d-byte header' % (len(data), hl))
            return
        hdr = data[:hl]
        if hdr != bytes(hl):
            # No offloads negotiated: flags 0, GSO_NONE, num_buffers 0 (5.1.6.2).
            self.errors.append('tx: header %s is not all zeros' % hdr.hex())
        frame = data[hl:]
        self.sent.append(frame)
        if self.peer is not None:
            self.peer.receive(frame)

    def _control(self, req):
        data = req.data()
        if len(data) < 2 or req.writable_size < 1:
            self.errors.append('ctrl: command without class/command or ack byte')
            return
        if not self.any_layout() and req.readable[0][1] != 2:
            self.errors.append('ctrl: without ANY_LAYOUT class and command need their own '
                               'descriptor')
        cls, cmd = data[0], data[1]
        body = data[2:]
        self.commands.append((cls, cmd, body))
        if self.misbehave == 'ctrl_err':
            ack = VIRTIO_NET_ERR            # refused, nothing changed
        else:
            ack = self._command(cls, cmd, body)
        req.write(bytes([ack]), offset=req.writable_size - 1)

    def _command(self, cls, cmd, body):
        if cls == VIRTIO_NET_CTRL_RX and cmd in (0, 1):
            if not self.negotiated(F_CTRL_RX) or len(body) != 1:
                return VIRTIO_NET_ERR
            if cmd == 0:
                self.promisc = bool(body[0])
            else:
                self.allmulti = bool(body[0])
            return VIRTIO_NET_OK
        if cls == VIRTIO_NET_CTRL_MAC and cmd == 0:
            tables = []
            off = 0
            for _ in range(2):
                if off + 4 > len(body):
                    return VIRTIO_NET_ERR
                n = struct.unpack_from('<I', body, off)[0]
                off += 4
                if off + 6 * n > len(body):
                    return VIRTIO_NET_ERR
                tables.append([bytes(body[off + 6 * i:off + 6 * i + 6]) for i in range(n)])
                off += 6 * n
            if off != len(body):
                return VIRTIO_NET_ERR
            self.uni_table, self.multi_table = tables
            return VIRTIO_NET_OK
        if cls == VIRTIO_NET_CTRL_MAC and cmd == 1:
            if not self.negotiated(F_CTRL_MAC_ADDR) or len(body) != 6:
                return VIRTIO_NET_ERR
            self.filter_mac = bytes(body)
            self.cfg[0:6] = body
            return VIRTIO_NET_OK
        return VIRTIO_NET_ERR
