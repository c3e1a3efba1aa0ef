"""A simulated network for the inet stack's host tests, and tests of the simulation itself.

FakeClock: MicroPython-style wrap-around ticks that move only when the link waits, so a
  test that "waits" seconds takes microseconds, and RTTs are exact.
FakeLink: what the virtio-net driver gives the stack (.mac, .mtu, send, recv(timeout_ms)).
  Frames the stack sends go to a peer; frames the peer sends arrive after a delay.
Gateway: the peer, behaving like QEMU's user network (slirp) at 10.0.2.2: it answers ARP
  for 10.0.2.2 and 10.0.2.3, pings, DHCP (10.0.2.15, router 10.0.2.2, DNS 10.0.2.3, 24 h),
  runs a UDP echo server on 10.0.2.2:7, and can send datagrams to the guest the way a
  hostfwd does. It is built on dpkt, an independent packet library, and checks every
  checksum of every frame the stack sends with its own reference sum.

Other test_inet_*.py modules import these helpers from here.
"""

import dpkt
import pytest

TICKS_PERIOD = 1 << 30          # MicroPython's ticks wrap at 2**30

GUEST_MAC = bytes.fromhex("525400123456")     # QEMU's default virtio-net MAC
GW_MAC = bytes.fromhex("52550a000202")        # slirp's MAC for its virtual hosts
BROADCAST_MAC = b"\xff" * 6
NET = bytes([10, 0, 2, 0])
GW_IP = bytes([10, 0, 2, 2])
DNS_IP = bytes([10, 0, 2, 3])
GUEST_IP = bytes([10, 0, 2, 15])
MASK = bytes([255, 255, 255, 0])
LEASE_S = 86400


class FakeClock:
    """ticks_ms/ticks_us/ticks_diff with MicroPython's semantics. Starts 5 s before the
    millisecond counter wraps, so every test also crosses a wrap-around."""

    def __init__(self, start_us=(TICKS_PERIOD - 5000) * 1000):
        self.us = start_us

    def ticks_us(self):
        return self.us % TICKS_PERIOD

    def ticks_ms(self):
        return (self.us // 1000) % TICKS_PERIOD

    @staticmethod
    def ticks_diff(new, old):
        d = (new - old) & (TICKS_PERIOD - 1)
        return d - TICKS_PERIOD if d >= TICKS_PERIOD // 2 else d

    def advance_ms(self, ms):
        self.us += ms * 1000


class MsClock:
    """A clock without ticks_us (like a minimal `time` module)."""

    def __init__(self, clock):
        self._c = clock
        self.ticks_ms = clock.ticks_ms
        self.ticks_diff = clock.ticks_diff


class FakeLink:
    def __init__(self, clock, mac=GUEST_MAC, mtu=1500):
        self.clock = clock
        self.mac = mac
        self.mtu = mtu
        self.peer = None
        self.sent = []          # every frame the stack sent, as bytes
        self._rx = []           # [(deliver at us, order, frame)], sorted
        self._order = 0

    def send(self, frame):
        frame = bytes(frame)    # the stack reuses its buffer: copy, as a driver must
        assert len(frame) <= 14 + self.mtu, "stack sent an oversized frame"
        self.sent.append(frame)
        if self.peer is not None:
            self.peer.receive(frame)

    def deliver(self, frame, delay_us=0):
        """Queue a frame for the stack, arriving delay_us from now."""
        self._order += 1
        self._rx.append((self.clock.us + delay_us, self._order, bytes(frame)))
        self._rx.sort()

    def pending(self):
        return len(self._rx)

    def recv(self, timeout_ms=0):
        now = self.clock.us
        if self._rx and self._rx[0][0] <= now:
            return self._rx.pop(0)[2]
        if timeout_ms <= 0:
            return None
        deadline = now + timeout_ms * 1000
        if self._rx and self._rx[0][0] <= deadline:
            self.clock.us = self._rx[0][0]
            return self._rx.pop(0)[2]
        self.clock.us = deadline
        return None


def ref_checksum(data):
    """Reference Internet checksum: word by word, the obvious way (RFC 1071)."""
    if len(data) % 2:
        data = data + b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_pseudo(src, dst, length):
    return src + dst + bytes([0, 17]) + length.to_bytes(2, "big")


class Gateway:
    """A slirp-like peer. `errors` collects every defect found in the stack's frames."""

    def __init__(self, link, latency_us=400):
        self.link = link
        link.peer = self
        self.latency_us = latency_us
        self.errors = []
        self.frames = []            # dpkt.ethernet.Ethernet of each frame received
        self.drop = {}              # kind -> how many of the next such frames to ignore
        self.guest_mac = None       # learnt from ARP, as slirp does
        self.udp_in = []            # (sport, dport, data) datagrams the guest sent to us
        self.dhcp_nak_next = False
        self.dhcp_unicast = False   # send OFFER/ACK to the offered address, not broadcast
        self.dhcp_mangle = None     # function(bytes) -> bytes applied to DHCP replies
        self.dhcp_log = []          # DHCP message types received
        self.ping_corrupt = False   # answer pings with altered data
        self._ident = 0

    # -- helpers --
    def _drop(self, kind):
        n = self.drop.get(kind, 0)
        if n:
            self.drop[kind] = n - 1
            return True
        return False

    def _send(self, dst_mac, ethertype, payload, delay_us=None):
        eth = dpkt.ethernet.Ethernet(dst=dst_mac, src=GW_MAC, type=ethertype, data=payload)
        self.link.deliver(bytes(eth), self.latency_us if delay_us is None else delay_us)

    def _send_ip(self, dst_mac, src, dst, proto, payload, delay_us=None):
        self._ident += 1
        ip = dpkt.ip.IP(src=src, dst=dst, p=proto, ttl=64, id=self._ident, data=payload)
        self._send(dst_mac, dpkt.ethernet.ETH_TYPE_IP, ip, delay_us)

    def _check_frame(self, frame, eth):
        """Independent checks of a frame the stack sent."""
        if len(frame) < 60:
            self.errors.append("runt frame of %d bytes" % len(frame))
        if eth.src != GUEST_MAC:
            self.errors.append("source MAC %s" % eth.src.hex())
        if eth.type != dpkt.ethernet.ETH_TYPE_IP:
            return
        raw = frame[14:]
        hl = (raw[0] & 15) * 4
        if raw[0] >> 4 != 4 or hl != 20:
            self.errors.append("IP version/IHL byte %02x" % raw[0])
        if ref_checksum(raw[:hl]) != 0:
            self.errors.append("bad IP header checksum")
        total = int.from_bytes(raw[2:4], "big")
        body = raw[hl:total]
        if raw[9] == 1 and ref_checksum(body) != 0:
            self.errors.append("bad ICMP checksum")
        if raw[9] == 17:
            ulen = int.from_bytes(body[4:6], "big")
            if ulen != len(body):
                self.errors.append("UDP length %d in a %d-byte payload" % (ulen, len(body)))
            if body[6:8] == b"\x00\x00":
                self.errors.append("UDP sent without checksum")
            elif ref_checksum(udp_pseudo(raw[12:16], raw[16:20], ulen) + body) != 0:
                self.errors.append("bad UDP checksum")

    # -- the stack sends a frame --
    def receive(self, frame):
        eth = dpkt.ethernet.Ethernet(frame)
        self.frames.append(eth)
        self._check_frame(frame, eth)
        if eth.type == dpkt.ethernet.ETH_TYPE_ARP:
            self._arp(eth.data)
        elif eth.type == dpkt.ethernet.ETH_TYPE_IP:
            ip = eth.data
            if ip.p == dpkt.ip.IP_PROTO_ICMP:
                self._icmp(eth, ip)
            elif ip.p == dpkt.ip.IP_PROTO_UDP:
                self._udp(eth, ip)

    def _arp(self, a):
        if a.op == dpkt.arp.ARP_OP_REPLY and a.tpa == GW_IP:
            self.guest_mac = a.sha
            return
        if a.op != dpkt.arp.ARP_OP_REQUEST or a.tpa not in (GW_IP, DNS_IP):
            return
        if self._drop("arp"):
            return
        self.guest_mac = a.sha
        reply = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=GW_MAC, spa=a.tpa, tha=a.sha,
                             tpa=a.spa)
        self._send(a.sha, dpkt.ethernet.ETH_TYPE_ARP, reply)

    def _icmp(self, eth, ip):
        msg = ip.data
        if msg.type != dpkt.icmp.ICMP_ECHO or ip.dst not in (GW_IP, DNS_IP):
            return
        if self._drop("ping"):
            return
        data = msg.data.data
        if self.ping_corrupt:
            data = bytes([data[0] ^ 1]) + data[1:] if data else b"x"
        echo = dpkt.icmp.ICMP.Echo(id=msg.data.id, seq=msg.data.seq, data=data)
        reply = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHOREPLY, code=0, data=echo)
        self._send_ip(eth.src, ip.dst, ip.src, dpkt.ip.IP_PROTO_ICMP, reply)

    def _udp(self, eth, ip):
        u = ip.data
        if u.dport == 67:
            return self._dhcp(eth, dpkt.dhcp.DHCP(u.data))
        self.udp_in.append((u.sport, u.dport, u.data))
        if ip.dst == GW_IP and u.dport == 7 and not self._drop("udp"):
            self._send_ip(eth.src, GW_IP, ip.src, dpkt.ip.IP_PROTO_UDP,
                          self._udp_packet(7, u.sport, u.data))

    @staticmethod
    def _udp_packet(sport, dport, data):
        u = dpkt.udp.UDP(sport=sport, dport=dport, data=data)
        u.ulen = len(u)
        return u

    def _dhcp(self, eth, d):
        opts = dict(d.opts)
        t = opts.get(dpkt.dhcp.DHCP_OPT_MSGTYPE, b"\x00")[0]
        self.dhcp_log.append(t)
        if self._drop("dhcp"):
            return
        if t == dpkt.dhcp.DHCPDISCOVER:
            reply_type = dpkt.dhcp.DHCPOFFER
        elif t == dpkt.dhcp.DHCPREQUEST:
            ok = opts.get(dpkt.dhcp.DHCP_OPT_REQ_IP) == GUEST_IP and not self.dhcp_nak_next
            self.dhcp_nak_next = False
            reply_type = dpkt.dhcp.DHCPACK if ok else dpkt.dhcp.DHCPNAK
        else:
            return
        if reply_type == dpkt.dhcp.DHCPNAK:
            ropts = [(dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([reply_type]))]
            yiaddr = 0
        else:
            ropts = [(dpkt.dhcp.DHCP_OPT_MSGTYPE, bytes([reply_type])),
                     (dpkt.dhcp.DHCP_OPT_SERVER_ID, GW_IP),
                     (dpkt.dhcp.DHCP_OPT_NETMASK, MASK),
                     (dpkt.dhcp.DHCP_OPT_ROUTER, GW_IP),
                     (dpkt.dhcp.DHCP_OPT_DNS_SVRS, DNS_IP),
                     (dpkt.dhcp.DHCP_OPT_LEASE_SEC, LEASE_S.to_bytes(4, "big"))]
            yiaddr = int.from_bytes(GUEST_IP, "big")
        reply = dpkt.dhcp.DHCP(op=dpkt.dhcp.DHCP_OP_REPLY, xid=d.xid, chaddr=d.chaddr,
                               yiaddr=yiaddr, siaddr=int.from_bytes(GW_IP, "big"),
                               opts=ropts)
        data = bytes(reply)
        if self.dhcp_mangle is not None:
            data = self.dhcp_mangle(data)
        if self.dhcp_unicast and yiaddr:
            dst, dst_mac = GUEST_IP, d.chaddr[:6]
        else:
            dst, dst_mac = b"\xff" * 4, BROADCAST_MAC
        self._send_ip(dst_mac, GW_IP, dst, dpkt.ip.IP_PROTO_UDP,
                      self._udp_packet(67, 68, data))

    # -- the gateway starts something --
    def arp_request(self, ip=GUEST_IP):
        req = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=GW_MAC, spa=GW_IP,
                           tha=b"\x00" * 6, tpa=ip)
        self._send(BROADCAST_MAC, dpkt.ethernet.ETH_TYPE_ARP, req)

    def udp_to_guest(self, data, sport=40000, dport=7, delay_us=None, src=GW_IP):
        """A datagram to the guest, as hostfwd delivers one (from the gateway's address)."""
        self._send_ip(self.guest_mac or GUEST_MAC, src, GUEST_IP, dpkt.ip.IP_PROTO_UDP,
                      self._udp_packet(sport, dport, data), delay_us)

    def ping_guest(self, seq=1, data=b"abcdefgh" * 7, ident=0x1234, delay_us=None):
        echo = dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=data)
        req = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO, code=0, data=echo)
        self._send_ip(self.guest_mac or GUEST_MAC, GW_IP, GUEST_IP, dpkt.ip.IP_PROTO_ICMP, req,
                      delay_us)

    def sent_of(self, ethertype, proto=None):
        """Frames the stack sent of one type (and IP protocol)."""
        out = []
        for e in self.frames:
            if e.type == ethertype and (proto is None or e.data.p == proto):
                out.append(e)
        return out


def make_net(latency_us=400, mtu=1500, clock=None):
    """(clock, link, gateway) wired together."""
    clock = clock or FakeClock()
    link = FakeLink(clock, mtu=mtu)
    gw = Gateway(link, latency_us)
    return clock, link, gw


# ---- the simulation's own tests --------------------------------------------------------

def test_fake_clock_wraps_like_micropython():
    c = FakeClock()
    t0 = c.ticks_ms()
    c.advance_ms(10000)                 # across the 2**30 wrap
    t1 = c.ticks_ms()
    assert t1 < t0
    assert c.ticks_diff(t1, t0) == 10000
    assert c.ticks_diff(t0, t1) == -10000


def test_link_delivers_after_delay_and_times_out():
    c, link, gw = make_net()
    link.deliver(b"x" * 60, delay_us=2500)
    assert link.recv(0) is None
    assert link.recv(1) is None         # 1 ms is not enough
    assert link.recv(5) == b"x" * 60
    start = c.us
    assert link.recv(7) is None
    assert c.us - start == 7000


def test_gateway_answers_arp_built_by_dpkt():
    c, link, gw = make_net()
    req = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=GUEST_MAC, spa=GUEST_IP,
                       tha=b"\x00" * 6, tpa=GW_IP)
    frame = bytes(dpkt.ethernet.Ethernet(dst=BROADCAST_MAC, src=GUEST_MAC,
                                         type=dpkt.ethernet.ETH_TYPE_ARP, data=req))
    link.send(frame + bytes(60 - len(frame)))
    reply = dpkt.ethernet.Ethernet(link.recv(10))
    assert reply.data.op == dpkt.arp.ARP_OP_REPLY
    assert reply.data.sha == GW_MAC and reply.data.spa == GW_IP
    assert gw.errors == []


def test_reference_checksum_catches_a_bad_frame():
    # The checker must be able to fail: a UDP datagram with a wrong checksum is reported.
    c, link, gw = make_net()
    u = dpkt.udp.UDP(sport=5, dport=9, data=b"hello", sum=0x1234)
    u.ulen = len(u)
    ip = dpkt.ip.IP(src=GUEST_IP, dst=GW_IP, p=17, data=u)
    link.send(bytes(dpkt.ethernet.Ethernet(dst=GW_MAC, src=GUEST_MAC,
                                           type=dpkt.ethernet.ETH_TYPE_IP, data=ip)))
    assert "bad UDP checksum" in gw.errors
    assert "runt frame of 47 bytes" in gw.errors


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"\xff\xff", bytes(range(256)) * 3])
def test_reference_checksum_matches_rfc1071_property(data):
    # Appending the checksum makes the whole sum check to zero.
    c = ref_checksum(data)
    padded = data + (b"\x00" if len(data) % 2 else b"")
    assert ref_checksum(padded + c.to_bytes(2, "big")) == 0
