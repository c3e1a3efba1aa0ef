"""The DNS client (inet/dns.py) and the datagram side of the socket API against the
simulated slirp-like Gateway, which here also answers DNS on 10.0.2.3:53 (built with dpkt,
an independent implementation). The stream side is tested against real slirp in
test_tcp_slirp.py and in the image in tests/qemu/test_tcp.py."""

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

import inet
from inet import dns
from inet import sockets as gsock
from tests.host.test_inet_sim import DNS_IP, FakeClock, FakeLink, Gateway

NAMES = {"example.test": bytes([192, 0, 2, 7]), "www.example.test": bytes([192, 0, 2, 8])}


class DnsGateway(Gateway):
    """The Gateway plus a DNS server at 10.0.2.3 that knows NAMES (www. by a CNAME)."""

    def __init__(self, link):
        super().__init__(link)
        self.queries = []
        self.silent = False
        self.mangle = None

    def _udp(self, eth, ip):
        u = ip.data
        if ip.dst == DNS_IP and u.dport == 53:
            return self._dns(eth, ip, u)
        return super()._udp(eth, ip)

    def _dns(self, eth, ip, u):
        q = dpkt.dns.DNS(u.data)
        name = q.qd[0].name
        self.queries.append(name)
        if self.silent:
            return
        r = dpkt.dns.DNS(id=q.id, op=dpkt.dns.DNS_RA, qd=q.qd, rcode=dpkt.dns.DNS_RCODE_NOERR)
        r.qr = dpkt.dns.DNS_R
        if name == "www.example.test":
            cname = dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_CNAME, cls=1, ttl=60,
                                    cname="example.test")
            a = dpkt.dns.DNS.RR(name="example.test", type=dpkt.dns.DNS_A, cls=1, ttl=60,
                                ip=NAMES["example.test"])
            r.an = [cname, a]
        elif name in NAMES:
            r.an = [dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_A, cls=1, ttl=60,
                                    ip=NAMES[name])]
        else:
            r.rcode = dpkt.dns.DNS_RCODE_NXDOMAIN
        data = bytes(r)
        if self.mangle is not None:
            data = self.mangle(data)
        self._send_ip(eth.src, DNS_IP, ip.src, dpkt.ip.IP_PROTO_UDP,
                      self._udp_packet(53, u.sport, data))


@pytest.fixture
def net():
    clock = FakeClock()
    link = FakeLink(clock)
    gw = DnsGateway(link)
    stack = inet.Stack(link, clock)
    stack.dhcp()
    gsock.set_stack(stack)
    yield stack, gw
    gsock.set_stack(None)


def test_resolve_names_through_the_dhcp_dns_server(net):
    stack, gw = net
    assert dns.resolve(stack, "example.test") == NAMES["example.test"]
    assert dns.resolve(stack, "www.example.test") == NAMES["example.test"]   # via CNAME
    assert gsock.getaddrinfo("example.test", 80) == [
        (gsock.AF_INET, gsock.SOCK_STREAM, 0, "", ("192.0.2.7", 80))]
    assert gw.queries == ["example.test", "www.example.test", "example.test"]


def test_unknown_name_and_silent_server(net):
    stack, gw = net
    with pytest.raises(OSError) as e:
        gsock.getaddrinfo("nowhere.test", 80)
    assert e.value.errno == dns.EAI_NONAME
    gw.silent = True
    t0 = stack.clock.ticks_ms()
    with pytest.raises(OSError) as e:
        dns.resolve(stack, "example.test")
    assert e.value.errno == dns.ETIMEDOUT
    assert stack.clock.ticks_diff(stack.clock.ticks_ms(), t0) == dns.TRIES * dns.TIMEOUT_MS
    assert len(gw.queries) == 1 + dns.TRIES


def test_numeric_getaddrinfo_needs_no_dns(net):
    stack, gw = net
    assert gsock.getaddrinfo("10.0.2.2", 7, 0, gsock.SOCK_DGRAM)[0][4] == ("10.0.2.2", 7)
    assert gw.queries == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_garbage_answers_are_ignored(garbage):
    clock = FakeClock()
    link = FakeLink(clock)
    gw = DnsGateway(link)
    stack = inet.Stack(link, clock)
    stack.dhcp()
    good = {}

    def once(data):
        if "sent" in good:
            return data
        good["sent"] = True
        return data[:2] + garbage            # right id, garbage after it
    gw.mangle = once
    try:
        addr = dns.resolve(stack, "example.test")
    except OSError as e:
        assert e.errno in (dns.EAI_NONAME, dns.ETIMEDOUT)
    else:
        assert addr == NAMES["example.test"]


def test_datagram_sockets(net):
    stack, gw = net
    s = gsock.socket(gsock.AF_INET, gsock.SOCK_DGRAM)
    s.bind(("", 5000))
    assert s.getsockname() == ("10.0.2.15", 5000)
    assert s.sendto(b"ping", ("10.0.2.2", 7)) == 4
    s.settimeout(1)
    assert s.recvfrom(100) == (b"ping", ("10.0.2.2", 7))
    s.setblocking(False)
    with pytest.raises(OSError) as e:
        s.recv(10)
    assert e.value.errno == gsock.EAGAIN
    s.settimeout(0.5)
    t0 = stack.clock.ticks_ms()
    with pytest.raises(OSError) as e:
        s.recv(10)
    assert e.value.errno == gsock.ETIMEDOUT
    assert stack.clock.ticks_diff(stack.clock.ticks_ms(), t0) >= 500
    p = gsock.poll()
    p.register(s, gsock.POLLIN)
    assert p.poll(0) == []
    gw.udp_to_guest(b"hello", dport=5000)
    assert p.poll(100) == [(s, gsock.POLLIN)]
    assert list(p.ipoll(0, 1)) == [(s, gsock.POLLIN)]
    assert p.poll(0) == []                     # one-shot: disarmed until modify()
    p.modify(s, gsock.POLLIN | gsock.POLLOUT)
    assert p.poll(0) == [(s, gsock.POLLIN | gsock.POLLOUT)]
    assert s.recv(3) == b"hel"                 # the rest of the datagram is discarded
    c = gsock.socket(gsock.AF_INET, gsock.SOCK_DGRAM)
    c.connect(("10.0.2.2", 7))
    c.send(b"connected")
    c.settimeout(1)
    assert c.recv(100) == b"connected"
    other = gsock.socket(gsock.AF_INET, gsock.SOCK_DGRAM)
    with pytest.raises(OSError) as e:
        other.bind(("", 5000))
    assert e.value.errno == gsock.EADDRINUSE
    for x in (s, c, other):
        x.close()
    with pytest.raises(OSError) as e:
        s.sendto(b"x", ("10.0.2.2", 7))
    assert e.value.errno == gsock.EBADF


def test_select_select_over_poll(net):
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "fw_select", os.path.join(os.path.dirname(__file__), "..", "..", "firmware", "select.py"))
    sel = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sel)
    stack, gw = net
    s = gsock.socket(gsock.AF_INET, gsock.SOCK_DGRAM)
    s.bind(("", 5001))
    assert sel.select([s], [], [], 0) == ([], [], [])
    assert sel.select([s], [s], [], 0) == ([], [s], [])
    gw.udp_to_guest(b"x", dport=5001)
    assert sel.select([s], [], [], 0.1) == ([s], [], [])
    s.close()
