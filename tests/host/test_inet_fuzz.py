"""Malformed input, generated with hypothesis: random bytes, truncated frames, bit flips,
wrong checksums, bogus length fields. The stack must never raise, must count every frame
exactly once (used or dropped for a reason), and must never deliver altered data or answer
a damaged request."""

import dpkt
from hypothesis import given, settings, strategies as st

import inet
from inet.checksum import checksum
from tests.host.test_inet_sim import (GUEST_IP, GUEST_MAC, GW_IP, GW_MAC, FakeClock,
                                      FakeLink, Gateway, ref_checksum)

IP_ETH = dpkt.ethernet.ETH_TYPE_IP


class Rig:
    """A configured stack on a link with no peer: what it sends stays in link.sent."""

    def __init__(self):
        self.clock = FakeClock()
        self.link = FakeLink(self.clock)
        self.stack = inet.Stack(self.link, self.clock, "10.0.2.15", "255.255.255.0", "10.0.2.2")
        self.stack.arp.add(GW_IP, GW_MAC)
        self.sock = self.stack.socket(7)

    def feed(self, frame):
        self.stack.input(frame)             # must not raise, whatever the frame
        st = self.stack.stats
        assert st["rx_frames"] == st["rx_arp"] + st["rx_icmp"] + st["rx_udp"] + st["rx_tcp"] + \
            self.stack.dropped()

    def delivered(self):
        return [(bytes(e[0]), e[1], e[2]) for e in self.sock._queue]


def eth(payload, ethertype=IP_ETH, dst=GUEST_MAC):
    return bytes(dpkt.ethernet.Ethernet(dst=dst, src=GW_MAC, type=ethertype, data=payload))


def udp_frame(data, sport=4000, dport=7):
    ip = dpkt.ip.IP(src=GW_IP, dst=GUEST_IP, p=17, ttl=64,
                    data=Gateway._udp_packet(sport, dport, data))
    return eth(ip)


def ping_frame(data):
    echo = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=1, seq=2, data=data))
    return eth(dpkt.ip.IP(src=GW_IP, dst=GUEST_IP, p=1, ttl=64, data=echo))


def arp_frame():
    a = dpkt.arp.ARP(op=1, sha=GW_MAC, spa=GW_IP, tha=b"\x00" * 6, tpa=GUEST_IP)
    return eth(a, dpkt.ethernet.ETH_TYPE_ARP, b"\xff" * 6)


payloads = st.binary(max_size=1472)
small_payloads = st.binary(max_size=200)
good_frames = st.one_of(
    st.builds(udp_frame, small_payloads),
    st.builds(udp_frame, small_payloads, st.integers(1, 65535), st.integers(1, 65535)),
    st.builds(ping_frame, small_payloads),
    st.just(arp_frame()),
)


def test_the_good_frames_are_used():
    # The baseline the damage below is measured against.
    r = Rig()
    for f in (udp_frame(b"hi"), ping_frame(b"abc"), arp_frame()):
        r.feed(f)
    assert r.delivered() == [(b"hi", GW_IP, 4000)]
    assert len(r.link.sent) == 2 and r.stack.dropped() == 0


@given(st.binary(max_size=1600))
def test_random_bytes_never_raise(frame):
    r = Rig()
    r.feed(frame)
    r.stack.poll(0)


@given(st.lists(st.binary(max_size=1600), max_size=20))
def test_random_frames_through_the_link_never_raise(frames):
    r = Rig()
    for f in frames:
        r.link.deliver(f)
    while r.stack.poll(0):
        pass
    st_ = r.stack.stats
    assert st_["rx_frames"] == len(frames)
    assert st_["rx_frames"] == st_["rx_arp"] + st_["rx_icmp"] + st_["rx_udp"] + r.stack.dropped()


@given(st.one_of(st.builds(udp_frame, payloads), st.builds(ping_frame, payloads)), st.data())
def test_truncated_ip_frames_are_dropped(frame, data):
    # Cut anywhere before the datagram ends (padding excluded): never used.
    total = 14 + int.from_bytes(frame[16:18], "big")
    cut = data.draw(st.integers(0, total - 1))
    r = Rig()
    r.feed(frame[:cut])
    assert r.delivered() == [] and r.link.sent == []
    assert r.stack.drops["truncated"] == 1


@given(st.binary(max_size=41))
def test_truncated_arp_is_dropped(junk):
    r = Rig()
    r.feed(arp_frame()[:14] + junk[:27])
    assert r.link.sent == [] and r.stack.drops["truncated"] == 1


@given(good_frames, st.data())
def test_a_flipped_bit_is_never_delivered_or_answered(frame, data):
    bit = data.draw(st.integers(0, len(frame) * 8 - 1))
    bad = bytearray(frame)
    bad[bit // 8] ^= 0x80 >> (bit % 8)
    bad = bytes(bad)
    good_rig, r = Rig(), Rig()
    good_rig.feed(frame)
    r.feed(bad)
    if 6 <= bit // 8 < 12 or bit // 8 >= 14 + 8 and frame[12:14] == b"\x08\x06":
        return      # the Ethernet source MAC, or ARP's sender MAC onward: still a valid frame
    # Everything else is covered by the destination check or a checksum. What may still
    # arrive: a datagram whose checksum field became 0 ("none"), data intact, or whose
    # length became shorter and happens to check; then what arrives is what the frame says.
    if r.delivered():
        (got, src, sport), = r.delivered()
        assert bad[40:42] == b"\x00\x00" or udp_verifies(bad)
        assert got == bad[42:34 + int.from_bytes(bad[38:40], "big")]
        return
    assert r.link.sent == []
    assert r.stack.dropped() == 1


def udp_verifies(frame):
    """Reference check of the UDP checksum of an undamaged-IP-header frame."""
    ulen = int.from_bytes(frame[38:40], "big")
    return ref_checksum(frame[26:34] + b"\x00\x11" + frame[38:40] + frame[34:34 + ulen]) == 0


@given(st.builds(udp_frame, payloads), st.integers(0, 0xFFFF))
def test_a_wrong_udp_checksum_is_dropped(frame, csum):
    bad = frame[:40] + csum.to_bytes(2, "big") + frame[42:]
    r = Rig()
    r.feed(bad)
    if csum == 0 or udp_verifies(bad):
        assert r.delivered()        # "no checksum", or the right one (+0 and -0 both check)
    else:
        assert not r.delivered() and r.stack.drops["bad_checksum"] == 1


@given(st.one_of(st.builds(udp_frame, small_payloads), st.builds(ping_frame, small_payloads)),
       st.integers(0, 0xFFFF))
def test_a_wrong_ip_header_checksum_is_dropped(frame, csum):
    if csum == int.from_bytes(frame[24:26], "big"):
        return
    r = Rig()
    r.feed(frame[:24] + csum.to_bytes(2, "big") + frame[26:])
    assert r.stack.drops["bad_checksum"] == 1 and not r.delivered() and r.link.sent == []


def with_ip_field(frame, off, value, size=2):
    """Set an IPv4 header field and make the header checksum right again, so what is
    tested is the length logic, not the checksum."""
    b = bytearray(frame)
    b[14 + off:14 + off + size] = value.to_bytes(size, "big")
    hl = (b[14] & 15) * 4
    b[24:26] = b"\x00\x00"
    if len(b) >= 14 + hl:
        b[24:26] = checksum(b, 14, 14 + hl).to_bytes(2, "big")
    return bytes(b)


@given(st.builds(udp_frame, small_payloads), st.integers(0, 0xFFFF))
def test_bogus_ip_total_length(frame, total):
    real = int.from_bytes(frame[16:18], "big")
    r = Rig()
    r.feed(with_ip_field(frame, 2, total))
    if total == real:
        assert r.delivered()
        return
    assert not r.delivered()
    if total < 20:
        assert r.stack.drops["bad_length"] == 1
    elif total > 1500:
        assert r.stack.drops["oversized"] == 1
    elif total > len(frame) - 14:
        assert r.stack.drops["truncated"] == 1
    else:       # a shorter datagram: the UDP header or its length no longer fits
        assert r.stack.drops["truncated"] + r.stack.drops["bad_length"] == 1


@given(st.builds(udp_frame, small_payloads), st.integers(0, 15))
def test_bogus_ihl(frame, ihl):
    r = Rig()
    r.feed(with_ip_field(frame, 0, 0x40 | ihl, 1))
    if ihl == 5:
        assert r.delivered()
    elif ihl < 5:
        assert r.stack.drops["bad_ihl"] == 1
    # ihl > 5: the UDP header is read from the wrong place; whatever happens is counted


@given(st.builds(udp_frame, small_payloads), st.integers(0, 0xFFFF))
def test_bogus_udp_length(frame, ulen):
    real = int.from_bytes(frame[38:40], "big")
    b = bytearray(frame)
    b[38:40] = ulen.to_bytes(2, "big")
    r = Rig()
    r.feed(bytes(b))
    if ulen < 8 or ulen > real:
        assert r.stack.drops["bad_length"] == 1 and not r.delivered()
    elif udp_verifies(bytes(b)):
        assert r.delivered()[0][0] == frame[42:34 + ulen]
    else:
        assert r.stack.drops["bad_checksum"] == 1 and not r.delivered()


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 299), st.integers(0, 255)), min_size=1, max_size=4))
def test_dhcp_client_survives_damaged_replies(edits):
    """Replies with bytes changed (checksums right, so DHCP's own parser is what is tested):
    the client either gets a lease or times out with OSError, nothing else."""
    clock = FakeClock()
    link = FakeLink(clock)
    gw = Gateway(link)

    def mangle(d):
        d = bytearray(d)
        for i, v in edits:
            if i < len(d):
                d[i] = v
        return bytes(d)

    gw.dhcp_mangle = mangle
    s = inet.Stack(link, clock)
    try:
        lease = s.dhcp(timeout_ms=20000)
        assert len(lease.ip) == 4 and s.ip == lease.ip
    except OSError as e:
        assert e.errno == 110
    st_ = s.stats
    assert st_["rx_frames"] == st_["rx_arp"] + st_["rx_icmp"] + st_["rx_udp"] + s.dropped()
