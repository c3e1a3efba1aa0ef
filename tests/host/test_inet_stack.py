"""The inet stack against a simulated slirp-like gateway: DHCP, ARP, ping, UDP, MTU,
counters. Time is simulated (FakeClock), so waits and timeouts cost nothing."""

import dpkt
import pytest

import inet
from inet import arp
from tests.host.test_inet_sim import (DNS_IP, GUEST_IP, GUEST_MAC, GW_IP, GW_MAC, LEASE_S,
                                      FakeClock, MsClock, FakeLink, Gateway, make_net)

IP_ETH = dpkt.ethernet.ETH_TYPE_IP
ARP_ETH = dpkt.ethernet.ETH_TYPE_ARP


def accounted(stack):
    """Every received frame was either used or dropped for a reason, exactly once."""
    st = stack.stats
    return st["rx_frames"] == st["rx_arp"] + st["rx_icmp"] + st["rx_udp"] + st["rx_tcp"] + stack.dropped()


def configured(latency_us=400, mtu=1500):
    clock, link, gw = make_net(latency_us, mtu)
    s = inet.Stack(link, clock, "10.0.2.15", "255.255.255.0", "10.0.2.2", ["10.0.2.3"])
    return clock, link, gw, s


# ---- DHCP -------------------------------------------------------------------------------

def test_dhcp_leases_the_slirp_address():
    clock, link, gw = make_net()
    s = inet.Stack(link, clock)
    assert s.ip is None and str(s) == "inet 52:54:00:12:34:56 unconfigured"
    lease = s.dhcp()
    assert (s.ip, s.mask, s.gateway, s.dns) == (GUEST_IP, b"\xff\xff\xff\x00", GW_IP, [DNS_IP])
    assert lease.lease_s == LEASE_S and lease.server == GW_IP
    assert str(lease) == "10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 lease 86400 s from 10.0.2.2"
    assert str(s) == "inet 52:54:00:12:34:56 10.0.2.15/24 gw 10.0.2.2 dns 10.0.2.3"
    assert gw.dhcp_log == [dpkt.dhcp.DHCPDISCOVER, dpkt.dhcp.DHCPREQUEST]
    assert gw.errors == []
    # The client's messages, read by dpkt: broadcast from 0.0.0.0:68, one transaction id,
    # our MAC in chaddr, the REQUEST naming the offered address and the server.
    msgs = gw.sent_of(IP_ETH, dpkt.ip.IP_PROTO_UDP)
    assert len(msgs) == 2
    for e in msgs:
        assert e.dst == b"\xff" * 6
        assert e.data.src == b"\x00" * 4 and e.data.dst == b"\xff" * 4
        assert (e.data.data.sport, e.data.data.dport) == (68, 67)
    d1, d2 = [dpkt.dhcp.DHCP(e.data.data.data) for e in msgs]
    assert d1.xid == d2.xid
    assert d1.chaddr[:6] == GUEST_MAC and d1.flags & 0x8000
    opts = dict(d2.opts)
    assert opts[dpkt.dhcp.DHCP_OPT_REQ_IP] == GUEST_IP
    assert opts[dpkt.dhcp.DHCP_OPT_SERVER_ID] == GW_IP
    assert accounted(s)
    # The port the client used is free again.
    s.socket(68).close()


def test_dhcp_accepts_replies_unicast_to_the_offered_address():
    clock, link, gw = make_net()
    gw.dhcp_unicast = True
    s = inet.Stack(link, clock)
    assert s.dhcp().ip == GUEST_IP


def test_dhcp_retransmits_with_backoff_when_messages_are_lost():
    clock, link, gw = make_net()
    gw.drop["dhcp"] = 2                         # the first DISCOVER and its retry vanish
    s = inet.Stack(link, clock)
    t0 = clock.ticks_ms()
    s.dhcp(timeout_ms=60000)
    assert s.ip == GUEST_IP
    assert gw.dhcp_log == [1, 1, 1, 3]
    # RFC 2131 4.1: 4 s, then 8 s, before the third DISCOVER.
    assert 12000 <= clock.ticks_diff(clock.ticks_ms(), t0) < 12100


def test_dhcp_restarts_after_a_nak():
    clock, link, gw = make_net()
    gw.dhcp_nak_next = True
    s = inet.Stack(link, clock)
    t0 = clock.ticks_ms()
    s.dhcp()
    assert s.ip == GUEST_IP
    assert gw.dhcp_log == [1, 3, 1, 3]
    # It paused before starting over, rather than hammering a server that refuses.
    assert clock.ticks_diff(clock.ticks_ms(), t0) >= 2000


def test_dhcp_times_out_with_a_clear_error():
    clock, link, gw = make_net()
    gw.drop["dhcp"] = 100
    s = inet.Stack(link, clock)
    with pytest.raises(OSError) as e:
        s.dhcp(timeout_ms=10000)
    assert e.value.errno == 110
    assert "DHCP: no OFFER within 10000 ms (2 messages sent)" in str(e.value)
    assert s.ip is None
    s.socket(68).close()                        # released even on failure
    # A configured stack whose DHCP fails keeps its configuration.
    s.configure("10.0.2.99", "255.255.255.0", "10.0.2.2")
    with pytest.raises(OSError):
        s.dhcp(timeout_ms=1000)
    assert str(s) == "inet 52:54:00:12:34:56 10.0.2.99/24 gw 10.0.2.2"


def test_dhcp_ignores_malformed_and_foreign_replies():
    clock, link, gw = make_net()
    # An option list that runs past the end: the client must ignore it and time out.
    gw.dhcp_mangle = lambda d: d[:-1] + b"\x33\x04\x00"
    s = inet.Stack(link, clock)
    with pytest.raises(OSError):
        s.dhcp(timeout_ms=5000)
    # Someone else's transaction id: ignored too.
    gw.dhcp_mangle = lambda d: d[:4] + bytes([d[4] ^ 0xFF]) + d[5:]
    with pytest.raises(OSError):
        s.dhcp(timeout_ms=5000)
    assert accounted(s)


# ---- ARP --------------------------------------------------------------------------------

def test_arp_resolves_once_then_uses_the_cache():
    clock, link, gw, s = configured()
    assert s.resolve("10.0.2.2") == GW_MAC
    assert s.resolve(GW_IP) == GW_MAC
    reqs = gw.sent_of(ARP_ETH)
    assert len(reqs) == 1
    a = reqs[0].data
    assert reqs[0].dst == b"\xff" * 6
    assert (a.op, a.sha, a.spa, a.tpa) == (1, GUEST_MAC, GUEST_IP, GW_IP)
    assert len(s.arp) == 1


def test_arp_entry_expires_after_its_ttl():
    clock, link, gw, s = configured()
    s.resolve(GW_IP)
    clock.advance_ms(arp.TTL_MS - 10)
    s.resolve(GW_IP)
    assert len(gw.sent_of(ARP_ETH)) == 1
    clock.advance_ms(20)
    assert s.arp.lookup(GW_IP) is None          # expired
    assert s.resolve(GW_IP) == GW_MAC
    assert len(gw.sent_of(ARP_ETH)) == 2


def test_arp_retries_when_the_request_is_lost():
    clock, link, gw, s = configured()
    gw.drop["arp"] = 2
    t0 = clock.ticks_ms()
    assert s.resolve(GW_IP) == GW_MAC
    assert len(gw.sent_of(ARP_ETH)) == 3
    assert clock.ticks_diff(clock.ticks_ms(), t0) == 2 * arp.RETRY_MS


def test_arp_gives_up_with_a_clear_error():
    clock, link, gw, s = configured()
    with pytest.raises(OSError) as e:
        s.resolve("10.0.2.77")
    assert e.value.errno == 110
    assert str(e.value).endswith("ARP: no reply from 10.0.2.77 after 4 requests")
    assert len(gw.sent_of(ARP_ETH)) == arp.RETRIES


def test_stack_answers_arp_requests_for_its_address_and_learns_the_asker():
    clock, link, gw, s = configured()
    gw.arp_request(GUEST_IP)
    gw.arp_request(bytes([10, 0, 2, 99]))       # someone else's: no answer
    s.poll(10)
    replies = gw.sent_of(ARP_ETH)
    assert len(replies) == 1
    a = replies[0].data
    assert replies[0].dst == GW_MAC
    assert (a.op, a.sha, a.spa, a.tha, a.tpa) == (2, GUEST_MAC, GUEST_IP, GW_MAC, GW_IP)
    assert s.arp.lookup(GW_IP) == GW_MAC        # RFC 826: the requester is added
    assert gw.guest_mac == GUEST_MAC
    assert s.stats["rx_arp"] == 2 and s.stats["tx_arp"] == 1 and accounted(s)


def test_arp_cache_is_bounded():
    clock, link, gw, s = configured()
    for i in range(40):
        ip = bytes([10, 0, 2, 100 + i])
        s.input(bytes(dpkt.ethernet.Ethernet(
            dst=b"\xff" * 6, src=GW_MAC, type=ARP_ETH,
            data=dpkt.arp.ARP(op=1, sha=bytes([2, 0, 0, 0, 0, i]), spa=ip,
                              tha=b"\x00" * 6, tpa=GUEST_IP))))
        clock.advance_ms(1)
    assert len(s.arp) == arp.CACHE_SIZE
    assert s.arp.lookup(bytes([10, 0, 2, 139])) == bytes([2, 0, 0, 0, 0, 39])  # newest kept
    assert s.arp.lookup(bytes([10, 0, 2, 100])) is None                        # oldest gone


# ---- ICMP -------------------------------------------------------------------------------

def test_ping_measures_the_round_trip_in_microseconds():
    clock, link, gw, s = configured(latency_us=730)
    rtts = s.ping("10.0.2.2", count=3)
    assert rtts == [730, 730, 730]
    pings = gw.sent_of(IP_ETH, dpkt.ip.IP_PROTO_ICMP)
    assert [p.data.data.data.seq for p in pings] == [1, 2, 3]
    assert len(pings[0].data.data.data.data) == 56
    assert gw.errors == [] and accounted(s)


def test_ping_without_ticks_us_has_millisecond_resolution():
    clock, link, gw = make_net(latency_us=2000)
    s = inet.Stack(link, MsClock(clock), "10.0.2.15", gateway="10.0.2.2")
    assert s.ping(GW_IP, count=1) == [2000]


def test_ping_reports_a_lost_reply_as_none_and_ignores_it_later():
    clock, link, gw, s = configured()
    s.resolve(GW_IP)
    gw.latency_us = 1500 * 1000                 # the first reply comes after the timeout
    first = s.ping(GW_IP, count=1, timeout_ms=1000)
    gw.latency_us = 400
    second = s.ping(GW_IP, count=1, timeout_ms=1000)
    assert first == [None] and second == [400]
    s.poll(1000)
    assert s.drops["unexpected_reply"] == 1     # the late one
    assert accounted(s)


def test_ping_rejects_a_reply_with_altered_data():
    clock, link, gw, s = configured()
    gw.ping_corrupt = True
    assert s.ping(GW_IP, count=1, timeout_ms=50) == [None]
    assert s.drops["unexpected_reply"] == 1


def test_ping_to_another_network_goes_through_the_gateway():
    clock, link, gw, s = configured()
    # The gateway answers only for its own addresses; the frame must go to its MAC.
    s.ping("192.0.2.1", count=1, timeout_ms=10)
    e = gw.sent_of(IP_ETH, dpkt.ip.IP_PROTO_ICMP)[0]
    assert e.dst == GW_MAC and e.data.dst == bytes([192, 0, 2, 1])


def test_stack_answers_pings():
    clock, link, gw, s = configured()
    gw.ping_guest(seq=7, data=b"0123456789" * 10 + b"x")    # odd length too
    gw.ping_guest(seq=8, data=b"")
    assert s.poll(10) == 2
    replies = gw.sent_of(IP_ETH, dpkt.ip.IP_PROTO_ICMP)
    assert len(replies) == 2
    r = replies[0]
    assert r.dst == GW_MAC and r.data.src == GUEST_IP and r.data.dst == GW_IP
    assert r.data.data.type == 0
    assert (r.data.data.data.id, r.data.data.data.seq) == (0x1234, 7)
    assert r.data.data.data.data == b"0123456789" * 10 + b"x"
    assert replies[1].data.data.data.data == b""
    assert gw.errors == []                      # checksums right (incrementally updated)
    assert s.stats["rx_icmp"] == 2 and s.stats["tx_icmp"] == 2 and accounted(s)


def test_broadcast_pings_are_not_answered():
    clock, link, gw, s = configured()
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b"hi"))
    for dst in (b"\xff" * 4, bytes([10, 0, 2, 255])):
        ip = dpkt.ip.IP(src=GW_IP, dst=dst, p=1, data=echo)
        s.input(bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=GW_MAC, type=IP_ETH, data=ip)))
    assert gw.frames == [] and s.drops["not_for_us"] == 2


# ---- UDP --------------------------------------------------------------------------------

def test_udp_sendto_and_recvfrom_through_the_gateway_echo():
    clock, link, gw, s = configured()
    u = s.socket(5000)
    for size in (0, 1, 17, 1472):
        data = bytes((i * 7 + size) & 0xFF for i in range(size))
        u.sendto(data, ("10.0.2.2", 7))
        got = u.recvfrom(100)
        assert got == (data, ("10.0.2.2", 7))
    assert u.recvfrom(50) is None               # nothing more
    assert gw.udp_in[0] == (5000, 7, b"")
    assert gw.errors == [] and accounted(s)


def test_udp_socket_on_port_zero_gets_an_ephemeral_port():
    clock, link, gw, s = configured()
    a, b = s.socket(), s.socket()
    assert 49152 <= a.port < b.port
    a.sendto(b"ping", (GW_IP, 7))
    assert a.recv(10) == b"ping"
    assert gw.udp_in[-1][0] == a.port


def test_udp_port_already_bound_is_refused():
    clock, link, gw, s = configured()
    s.socket(7)
    with pytest.raises(OSError) as e:
        s.socket(7)
    assert e.value.errno == 98 and "UDP port 7 is already bound" in str(e.value)
    with pytest.raises(ValueError):
        s.socket(70000)


def test_udp_echo_service_answers_a_host_client():
    clock, link, gw, s = configured()
    sizes = [0, 1, 2, 3, 64, 511, 1000, 1471, 1472]
    sent = []
    for i, n in enumerate(sizes):
        data = bytes((i + j) & 0xFF for j in range(n))
        sent.append(data)
        gw.udp_to_guest(data, sport=40000 + i, delay_us=100 * i)
    assert inet.udp_echo(s, 7, count=len(sizes)) == len(sizes)
    replies = gw.sent_of(IP_ETH, dpkt.ip.IP_PROTO_UDP)
    assert [(e.data.data.sport, e.data.data.dport, e.data.data.data) for e in replies] == \
        [(7, 40000 + i, d) for i, d in enumerate(sent)]
    for e in replies:
        assert e.dst == GW_MAC and e.data.dst == GW_IP
    assert gw.errors == []                      # the reused checksums are right
    s.socket(7).close()                         # the service released its port


def test_udp_echo_recomputes_the_checksum_when_it_cannot_reuse_it():
    clock, link, gw, s = configured()
    # A datagram without a checksum: the reply's is computed.
    u = dpkt.udp.UDP(sport=1234, dport=7, data=b"no checksum", sum=0)
    u.ulen = len(u)
    raw = bytearray(bytes(dpkt.ip.IP(src=GW_IP, dst=GUEST_IP, p=17, data=u)))
    raw[26:28] = b"\x00\x00"
    link.deliver(bytes(dpkt.ethernet.Ethernet(dst=GUEST_MAC, src=GW_MAC, type=IP_ETH)) + raw)
    assert inet.udp_echo(s, 7, count=1) == 1
    assert [e.data.data.data for e in gw.sent_of(IP_ETH, 17)] == [b"no checksum"]
    assert gw.errors == []


def test_udp_echo_does_not_answer_broadcasts_or_source_port_0():
    clock, link, gw, s = configured()
    for dst, data in ((b"\xff" * 4, b"to all"), (bytes([10, 0, 2, 255]), b"to the subnet")):
        bcast = dpkt.ip.IP(src=GW_IP, dst=dst, p=17, data=Gateway._udp_packet(99, 7, data))
        link.deliver(bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=GW_MAC, type=IP_ETH,
                                                  data=bcast)))
    gw.udp_to_guest(b"from port 0", sport=0)
    gw.udp_to_guest(b"a real one", sport=40000)
    assert inet.udp_echo(s, 7, count=1) == 1                # the service goes on
    assert [(e.data.data.dport, e.data.data.data) for e in gw.sent_of(IP_ETH, 17)] == \
        [(40000, b"a real one")]
    assert s.stats["echo_refused"] == 3
    assert s.stats["rx_udp"] == 4 and accounted(s)          # received, then not answered


def test_udp_sockets_still_receive_broadcasts_and_port_0():
    clock, link, gw, s = configured()
    u = s.socket(9)
    s.input(_udp_frame(b"all", dst=b"\xff\xff\xff\xff", dst_mac=b"\xff" * 6))
    gw.udp_to_guest(b"zero", sport=0, dport=9)
    s.poll(10)
    assert u.recvfrom() == (b"all", ("10.0.2.2", 40000))
    assert u.recvfrom() == (b"zero", ("10.0.2.2", 0))


def test_udp_echo_stops_when_idle():
    clock, link, gw, s = configured()
    gw.udp_to_guest(b"one")
    t0 = clock.ticks_ms()
    assert inet.udp_echo(s, 7, idle_ms=3000) == 1
    assert 3000 <= clock.ticks_diff(clock.ticks_ms(), t0) <= 3200


def test_udp_queue_is_bounded_and_unbound_ports_are_counted():
    clock, link, gw, s = configured()
    u = s.socket(9)
    for i in range(u.queue_len + 3):
        gw.udp_to_guest(b"%d" % i, dport=9)
    gw.udp_to_guest(b"nobody", dport=10)
    while s.poll(10):
        pass
    assert u.pending() == u.queue_len
    assert s.drops["queue_full"] == 3 and s.drops["no_port"] == 1
    assert [u.recv() for _ in range(3)] == [b"0", b"1", b"2"]
    assert accounted(s)


def test_sending_more_than_the_mtu_raises_valueerror_naming_the_limit():
    clock, link, gw, s = configured()
    u = s.socket()
    with pytest.raises(ValueError) as e:
        u.sendto(bytes(1473), (GW_IP, 7))
    assert str(e.value) == "UDP payload of 1473 bytes exceeds the limit of 1472 bytes (MTU 1500)"
    with pytest.raises(ValueError) as e:
        s.ping(GW_IP, size=1473)
    assert "limit of 1480 bytes (MTU 1500)" in str(e.value)
    assert link.sent == []                      # nothing half-sent
    u.sendto(bytes(1472), (GW_IP, 7))           # the limit itself is fine
    assert len(link.sent[-1]) == 14 + 1500


def test_a_smaller_mtu_is_honoured():
    clock, link, gw, s = configured(mtu=576)
    with pytest.raises(ValueError) as e:
        s.socket().sendto(bytes(549), (GW_IP, 7))
    assert "limit of 548 bytes (MTU 576)" in str(e.value)
    # A frame bigger than the link's MTU is dropped as oversized.
    gw.udp_to_guest(bytes(1000), dport=7)
    s.poll(10)
    assert s.drops["oversized"] == 1


def test_no_route_and_no_address_errors():
    clock, link, gw = make_net()
    s = inet.Stack(link, clock)
    with pytest.raises(OSError) as e:
        s.socket().sendto(b"x", ("10.0.2.2", 7))
    assert e.value.errno == 101
    s.configure("10.0.2.15", "255.255.255.0")   # no gateway
    with pytest.raises(OSError) as e:
        s.socket().sendto(b"x", ("8.8.8.8", 53))
    assert e.value.errno == 113 and "no route to 8.8.8.8" in str(e.value)


def test_frames_are_padded_to_the_ethernet_minimum_with_zeros():
    clock, link, gw, s = configured()
    u = s.socket()
    u.sendto(b"\xaa" * 1000, (GW_IP, 7))        # fills the transmit buffer with 0xaa
    u.sendto(b"z", (GW_IP, 7))
    short = link.sent[-1]
    assert len(short) == 60 and short[43:] == bytes(17)


def test_traffic_for_other_hosts_is_counted_not_answered():
    clock, link, gw, s = configured()
    other = bytes([10, 0, 2, 20])
    ip = dpkt.ip.IP(src=GW_IP, dst=other, p=17, data=Gateway._udp_packet(1, 7, b"x"))
    s.input(bytes(dpkt.ethernet.Ethernet(dst=GUEST_MAC, src=GW_MAC, type=IP_ETH, data=ip)))
    s.input(bytes(dpkt.ethernet.Ethernet(dst=b"\x02" * 6, src=GW_MAC, type=IP_ETH, data=ip)))
    s.input(bytes(dpkt.ethernet.Ethernet(dst=GUEST_MAC, src=GW_MAC, type=0x86DD, data=b"v6" * 30)))
    assert s.drops["not_for_us"] == 2 and s.drops["unknown_ethertype"] == 1
    assert link.sent == [] and accounted(s)


# ---- the link misbehaving, and what a user reads ----------------------------------------

class RefusingLink(FakeLink):
    """A link whose transmit queue is full: send raises OSError."""

    def __init__(self, clock):
        FakeLink.__init__(self, clock)
        self.refuse = False

    def send(self, frame):
        if self.refuse:
            raise OSError(105, "TX queue full")
        FakeLink.send(self, frame)


def test_a_reply_the_link_refuses_is_counted_not_raised():
    clock = FakeClock()
    link = RefusingLink(clock)
    gw = Gateway(link)
    s = inet.Stack(link, clock, "10.0.2.15", gateway="10.0.2.2")
    s.resolve(GW_IP)
    link.refuse = True
    gw.ping_guest(seq=1)
    gw.arp_request(GUEST_IP)
    gw.udp_to_guest(b"echo me")
    assert inet.udp_echo(s, 7, idle_ms=500) == 1        # the service keeps running
    assert s.stats["tx_errors"] == 3
    assert s.stats["tx_icmp"] == 0 and s.stats["tx_udp"] == 0
    # What the caller sends raises the link's error to the caller.
    with pytest.raises(OSError) as e:
        s.socket().sendto(b"x", (GW_IP, 7))
    assert e.value.errno == 105
    link.refuse = False
    assert s.ping(GW_IP, count=1) == [400]


def test_a_memoryview_frame_is_copied_before_use():
    clock, link, gw, s = configured()
    u = s.socket(7)
    gw.udp_to_guest(b"original")
    frame = bytearray(link.recv(10))
    s.input(memoryview(frame))
    frame[42:50] = b"changed!"                  # the driver reuses its buffer
    assert u.recv() == b"original"


def test_summary_line():
    clock, link, gw, s = configured()
    s.ping(GW_IP, count=2)
    gw.udp_to_guest(b"nobody listens", dport=9)
    s.poll(10)
    assert s.summary() == ("rx 4 (arp 1 icmp 2 udp 0) tx 3 (arp 1 icmp 2 udp 0) errors 0 "
                           "dropped 1 (no_port 1)")


def test_own_address_and_bad_mtu_are_refused_clearly():
    clock, link, gw, s = configured()
    with pytest.raises(OSError) as e:
        s.socket().sendto(b"x", ("10.0.2.15", 7))
    assert "10.0.2.15 is this host's own address" in str(e.value)
    assert link.sent == []
    with pytest.raises(ValueError) as e:
        inet.Stack(FakeLink(clock, mtu=0), clock)
    assert str(e.value) == "link MTU 0 is outside 68..65535"


def _udp_frame(data=b"hello", dport=9, dst=GUEST_IP, dst_mac=GUEST_MAC, opts=b"", off=0,
               csum=None, pad=b""):
    """A UDP datagram from the gateway as raw frame bytes (dpkt fills in the checksums
    unless csum is given)."""
    u = dpkt.udp.UDP(sport=40000, dport=dport, data=data)
    u.ulen = len(u)
    ip = dpkt.ip.IP(src=GW_IP, dst=dst, p=17, ttl=64, id=7, data=u, opts=opts)
    ip._flags_offset = off
    ip.hl = 5 + len(opts) // 4
    ip.len = len(ip)
    raw = bytes(dpkt.ethernet.Ethernet(dst=dst_mac, src=GW_MAC, type=IP_ETH, data=ip))
    if csum is not None:
        at = 14 + ip.hl * 4 + 6
        raw = raw[:at] + csum.to_bytes(2, "big") + raw[at + 2:]
    return raw + pad


@pytest.mark.parametrize("frame, got, reason", [
    (_udp_frame(), b"hello", None),
    (_udp_frame(pad=b"\x00" * 20), b"hello", None),                   # Ethernet padding
    (_udp_frame(csum=0), b"hello", None),                              # no checksum sent
    (_udp_frame(opts=b"\x01\x01\x01\x00"), b"hello", None),            # IP options skipped
    (_udp_frame(dst=b"\xff\xff\xff\xff", dst_mac=b"\xff" * 6), b"hello", None),
    (_udp_frame(csum=0x1234), None, "bad_checksum"),
    (_udp_frame(off=0x2000), None, "fragment"),                        # more fragments
    (_udp_frame(off=0x0001), None, "fragment"),                        # offset 8
    (_udp_frame(dport=10), None, "no_port"),
    (_udp_frame(dst=b"\x0a\x00\x02\x10"), None, "not_for_us"),        # another address
    (_udp_frame(dst_mac=b"\x52\x54\x00\x00\x00\x01"), None, "not_for_us"),
    (_udp_frame()[:40], None, "truncated"),
], ids=["plain", "padded", "no_checksum", "ip_options", "broadcast", "bad_checksum", "mf",
        "offset", "no_port", "other_ip", "other_mac", "truncated"])
def test_udp_datagrams_are_delivered_or_dropped_by_what_they_hold(frame, got, reason):
    clock, link, gw, s = configured()
    u = s.socket(9)
    s.input(frame)
    assert u.recv() == got
    assert s.dropped() == (0 if reason is None else 1)
    if reason is not None:
        assert s.drops[reason] == 1
    assert accounted(s)


def test_udp_queue_full_is_counted_whichever_path_the_datagram_takes():
    clock, link, gw, s = configured()
    u = s.socket(9)
    u.queue_len = 1
    s.input(_udp_frame(b"first"))
    s.input(_udp_frame(b"second"))
    s.input(_udp_frame(b"third", opts=b"\x01\x01\x01\x00"))
    assert s.drops["queue_full"] == 2 and u.recv() == b"first" and accounted(s)
