# virtio-net's control virtqueue (spec 5.1.6.5): commands the driver sends
# the device (receive filtering: promiscuous, all-multicast, the MAC filter
# table; the MAC address), one at a time, each acknowledged with
# VIRTIO_NET_OK or VIRTIO_NET_ERR. A mixin of virtio.net.NetDevice, which sets
# up the queue (CTRL_VQ) and its buffer.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.errors import DeviceError, VirtioError, VirtioTimeout

# struct virtio_net_ctrl (5.1.6.5): class, command, data, ack.
VIRTIO_NET_CTRL_RX = const(0)
VIRTIO_NET_CTRL_RX_PROMISC = const(0)
VIRTIO_NET_CTRL_RX_ALLMULTI = const(1)
VIRTIO_NET_CTRL_MAC = const(1)
VIRTIO_NET_CTRL_MAC_TABLE_SET = const(0)
VIRTIO_NET_CTRL_MAC_ADDR_SET = const(1)
VIRTIO_NET_OK = const(0)
VIRTIO_NET_ERR = const(1)
CTRL_NAMES = {(0, 0): 'RX_PROMISC', (0, 1): 'RX_ALLMULTI', (1, 0): 'MAC_TABLE_SET',
              (1, 1): 'MAC_ADDR_SET'}
CTRL_BUFFER = const(256)        # class, command and data of one command
CTRL_MAX_MACS = const(20)       # per MAC_TABLE_SET: two tables must fit CTRL_BUFFER
CTRL_TIMEOUT_MS = const(1000)


def _net():
    from virtio import net
    return net


class NetControl:
    """The control commands of NetDevice (a mixin: it uses the device's hw,
    controlq, _ctrl, _ctrl_ack, _ctrl_busy, ctrl_timeout_ms, split_header)."""

    def set_promiscuous(self, on):
        """VIRTIO_NET_CTRL_RX_PROMISC: receive every frame, or only those for
        our address, broadcasts and the MAC filter table (needs CTRL_RX)."""
        self._need(_net().VIRTIO_NET_F_CTRL_RX, 'promiscuous mode')
        self._command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, (b'\x01' if on else b'\x00',))
        self.promiscuous = bool(on)

    def set_allmulti(self, on):
        """VIRTIO_NET_CTRL_RX_ALLMULTI: receive every multicast frame (needs CTRL_RX)."""
        self._need(_net().VIRTIO_NET_F_CTRL_RX, 'all-multicast mode')
        self._command(VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, (b'\x01' if on else b'\x00',))

    def set_mac_filter(self, unicast=(), multicast=()):
        """VIRTIO_NET_CTRL_MAC_TABLE_SET: the extra addresses to receive for,
        two tables of 6-byte MACs (needs CTRL_RX). Replaces the last table."""
        self._need(_net().VIRTIO_NET_F_CTRL_RX, 'a MAC filter')
        if len(unicast) + len(multicast) > CTRL_MAX_MACS:
            raise ValueError('%d MAC addresses: at most %d fit one command'
                             % (len(unicast) + len(multicast), CTRL_MAX_MACS))
        tables = []
        for name, macs, group in (('unicast', unicast, 0), ('multicast', multicast, 1)):
            t = bytearray(len(macs).to_bytes(4, 'little'))
            for m in macs:
                m = bytes(m)
                if len(m) != _net().ETH_ALEN or (m[0] & 1) != group:
                    raise ValueError('%s table: %r is not a %s MAC address'
                                     % (name, m, name))
                t.extend(m)
            tables.append(bytes(t))
        self._command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tables)

    def set_mac(self, mac):
        """VIRTIO_NET_CTRL_MAC_ADDR_SET: the address the device filters on
        (needs CTRL_MAC_ADDR). Our frames use self.mac as their source."""
        self._need(_net().VIRTIO_NET_F_CTRL_MAC_ADDR, 'setting the MAC address')
        mac = bytes(mac)
        if len(mac) != _net().ETH_ALEN or mac[0] & 1:
            raise ValueError('%r is not a unicast MAC address' % (mac,))
        self._command(VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, (mac,))
        self.mac = mac

    def _used_token(self, q, timeout_ms=0):
        """The token of the next completion on the controlq, whose used
        length means nothing (5.1.6.1): None if none (within timeout_ms)."""
        try:
            if timeout_ms:
                return q.wait(timeout_ms)[0]
            r = q.pop()
        except DeviceError as e:
            if e.token is None:
                raise           # a used id that is not ours: the ring is unusable
            return e.token
        return None if r is None else r[0]

    def _need(self, bit, what):
        if not self.has(bit):
            raise VirtioError('%s %s: %s needs feature %s, not negotiated (features %s)'
                              % (self.address, self.NAME, what, self.FEATURE_NAMES[bit],
                                 self.feature_names() or '-'))

    def _command(self, cls, cmd, parts):
        """Send one command and check its ack (5.1.6.5). `parts` are the
        command-specific data pieces (one descriptor each under legacy
        framing). Raises DeviceError if the device answers VIRTIO_NET_ERR."""
        name = CTRL_NAMES.get((cls, cmd), '%d/%d' % (cls, cmd))
        timeout_ms = self.ctrl_timeout_ms
        hw = self.hw
        q = self.controlq
        if self._ctrl_busy:
            # The last command timed out: its buffer is ours again only once used.
            if self._used_token(q) is None:
                raise VirtioError('%s %s: the controlq still holds an unanswered command'
                                  % (self.address, self.NAME))
            self._ctrl_busy = False
        a = self._ctrl
        hw.write(a, bytes([cls, cmd]))
        readable = [(a, 2)]
        at = a + 2
        for p in parts:
            hw.write(at, p)
            readable.append((at, len(p)))
            at += len(p)
        if not self.split_header:
            readable = [(a, at - a)]
        hw.write8(self._ctrl_ack, 0xFF)     # a device that writes nothing is caught
        q.add(readable, ((self._ctrl_ack, 1),), 'ctrl')
        self._ctrl_busy = True
        q.kick()
        try:
            self._used_token(q, timeout_ms)
        except VirtioTimeout:
            raise VirtioTimeout('%s %s: no answer to control command %s within %d ms'
                                % (self.address, self.NAME, name, timeout_ms))
        self._ctrl_busy = False
        ack = hw.read8(self._ctrl_ack)
        if ack != VIRTIO_NET_OK:
            raise DeviceError('%s %s: control command %s refused (ack %d%s)'
                              % (self.address, self.NAME, name, ack,
                                 ', VIRTIO_NET_ERR' if ack == VIRTIO_NET_ERR else ''))
