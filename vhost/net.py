"""virtio-net in Python (VirtIO 1.2, 5.1): the other end of the guest's network cable
is a tiny host written here, at 10.0.2.2, that answers ARP and ping, so
`inet.Stack(...).ping('10.0.2.2')` in the guest gets its replies from this process.
QEMU: `-chardev socket,id=n0,path=SOCK -netdev vhost-user,id=net0,chardev=n0
-device virtio-net-pci,netdev=net0` (QEMU keeps the MAC, status and control queue).

What rng and blk do not show: the device *keeps* buffers. The driver fills the
receiveq (queue 0) with empty buffers ahead of time; a buffer goes back only when a
frame arrives for it, which may be much later, so handle() returns False and the
device completes it when it has something to say (5.1.6.3-5.1.6.4). Frames on the
transmitq (queue 1) are completed at once. Every packet travels behind a 12-byte
struct virtio_net_hdr (VERSION_1: with num_buffers, 5.1.6).
"""

import collections
import struct

from vhost.device import Device

VIRTIO_ID_NET = 1
RECEIVEQ, TRANSMITQ = 0, 1
QUEUE_SIZE = 256
HDR = struct.Struct('<BBHHHHH')            # flags, gso_type, hdr_len, gso_size,
HDR_LEN = HDR.size                         # csum_start, csum_offset, num_buffers
PENDING_MAX = 64                           # frames waiting for receive buffers

ETH = struct.Struct('!6s6sH')
ETHERTYPE_IPV4, ETHERTYPE_ARP = 0x0800, 0x0806
ARP = struct.Struct('!HHBBH6s4s6s4s')
IPV4 = struct.Struct('!BBHHHBBH4s4s')
PROTO_ICMP = 1
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
HOST_MAC = bytes.fromhex('525400aabb02')
HOST_IP = bytes([10, 0, 2, 2])


def checksum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Host:
    """The machine at the other end: ARP for HOST_IP, ICMP echo. Returns reply frames."""

    def __init__(self, mac=HOST_MAC, ip=HOST_IP):
        self.mac, self.ip = mac, ip
        self.seen = collections.Counter()

    def input(self, frame):
        if len(frame) < ETH.size:
            return []
        dst, src, etype = ETH.unpack_from(frame)
        if etype == ETHERTYPE_ARP:
            return self._arp(frame, src)
        if etype == ETHERTYPE_IPV4 and dst == self.mac:
            return self._ipv4(frame, src)
        self.seen['ignored'] += 1
        return []

    def _arp(self, frame, src):
        if len(frame) < ETH.size + ARP.size:
            return []
        htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = ARP.unpack_from(frame, ETH.size)
        if op != 1 or tpa != self.ip:
            return []
        self.seen['arp'] += 1
        reply = ARP.pack(htype, ptype, hlen, plen, 2, self.mac, self.ip, sha, spa)
        return [ETH.pack(src, self.mac, ETHERTYPE_ARP) + reply]

    def _ipv4(self, frame, src):
        ip = frame[ETH.size:]
        if len(ip) < IPV4.size or ip[0] >> 4 != 4:
            return []
        ihl = (ip[0] & 15) * 4
        total = struct.unpack_from('!H', ip, 2)[0]
        proto, sip, dip = ip[9], ip[12:16], ip[16:20]
        icmp = bytearray(ip[ihl:total])
        if proto != PROTO_ICMP or dip != self.ip or len(icmp) < 8 \
                or icmp[0] != ICMP_ECHO_REQUEST:
            return []
        self.seen['ping'] += 1
        icmp[0] = ICMP_ECHO_REPLY
        struct.pack_into('!H', icmp, 2, 0)
        struct.pack_into('!H', icmp, 2, checksum(bytes(icmp)))
        hdr = bytearray(IPV4.pack(0x45, 0, 20 + len(icmp), 0, 0, 64, PROTO_ICMP, 0,
                                  self.ip, sip))
        struct.pack_into('!H', hdr, 10, checksum(bytes(hdr)))
        return [ETH.pack(src, self.mac, ETHERTYPE_IPV4) + bytes(hdr) + bytes(icmp)]


class NetDevice(Device):
    NAME = 'virtio-net'
    DEVICE_ID = VIRTIO_ID_NET
    QUEUES = (QUEUE_SIZE, QUEUE_SIZE)
    FEATURES = 0            # no offloads; MAC, STATUS, CTRL_VQ are QEMU's own

    def __init__(self, **kw):
        Device.__init__(self, **kw)
        self.host = Host()
        self.rx_buffers = collections.deque()     # receive buffers the device holds
        self.pending = collections.deque()        # frames waiting for a buffer
        self.dropped = 0

    def handle(self, queue, req):
        if queue == TRANSMITQ:
            data = req.data()
            for reply in self.host.input(data[HDR_LEN:]):
                self.receive(reply)
            return True
        self.rx_buffers.append(req)               # an empty buffer: keep it
        self._deliver()
        return False

    def receive(self, frame):
        """A frame for the guest: into the next receive buffer, or wait for one."""
        if len(self.pending) >= PENDING_MAX:
            self.dropped += 1
            return
        self.pending.append(frame)
        self._deliver()

    def _deliver(self):
        while self.pending and self.rx_buffers:
            req = self.rx_buffers.popleft()
            frame = self.pending.popleft()
            if req.writable_size < HDR_LEN + len(frame):
                self.dropped += 1                 # no MRG_RXBUF: one buffer per frame
                req.write(HDR.pack(0, 0, 0, 0, 0, 0, 1))
            else:
                req.write(HDR.pack(0, 0, 0, 0, 0, 0, 1) + frame)
            self.complete(RECEIVEQ, req)

    def stopped(self, queue):
        if queue == RECEIVEQ:
            self.rx_buffers.clear()
            self.pending.clear()
