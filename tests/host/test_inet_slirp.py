"""The inet stack against QEMU's real user network (slirp), no guest and no NIC needed.

QEMU runs with `-machine none` and two netdevs joined on a hub: `-netdev user` (slirp, with a
hostfwd) and `-netdev socket,udp=...`, which carries every Ethernet frame as one UDP datagram
on 127.0.0.1. The test's UdpLink is the other end of that socket: what the stack sends
reaches slirp as if from a NIC, and slirp's frames come back. So DHCP, ARP, ping and UDP are
checked against the same implementation the image will meet, in CPython, in milliseconds,
with QEMU's own pcap dump of the traffic read back by dpkt. All traffic stays on loopback
and in slirp's virtual 10.0.2.0/24.
"""

import os
import socket
import subprocess
import tempfile
import threading
import time

import dpkt
import pytest

import inet
from tests.host.test_inet_sim import GUEST_MAC, TICKS_PERIOD, FakeClock, ref_checksum
from tests.ports import free_udp_port

pytestmark = pytest.mark.qemu

QEMU = os.environ.get("QEMU", "qemu-system-i386")
QEMU_TIMEOUT_S = 60


class HostClock:
    """Real time with MicroPython's ticks semantics."""

    ticks_diff = staticmethod(FakeClock.ticks_diff)

    def ticks_ms(self):
        return (time.monotonic_ns() // 1000000) % TICKS_PERIOD

    def ticks_us(self):
        return (time.monotonic_ns() // 1000) % TICKS_PERIOD


class UdpLink:
    """The link for the stack: frames as datagrams to and from QEMU's socket netdev."""

    def __init__(self, sock, qemu_addr, mac=GUEST_MAC, mtu=1500):
        self.sock = sock
        self.qemu_addr = qemu_addr
        self.mac = mac
        self.mtu = mtu

    def send(self, frame):
        self.sock.sendto(bytes(frame), self.qemu_addr)

    def recv(self, timeout_ms=0):
        self.sock.settimeout(timeout_ms / 1000.0 if timeout_ms > 0 else 0.0)
        try:
            return self.sock.recv(2048)
        except (socket.timeout, BlockingIOError):
            return None


class Slirp:
    """One QEMU with slirp; killed by PID on close."""

    def __init__(self, tmpdir, hostfwd=()):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        qemu_port = free_udp_port()
        self.fwd_port = free_udp_port()
        self.pcap = os.path.join(tmpdir, "slirp.pcap")
        args = [QEMU, "-machine", "none", "-accel", "tcg", "-nodefaults", "-display", "none",
                "-netdev", "user,id=u0,hostfwd=udp:127.0.0.1:%d-:7" % self.fwd_port
                + "".join([",hostfwd=" + f for f in hostfwd]),
                "-object", "filter-dump,id=d0,netdev=u0,file=%s" % self.pcap,
                "-netdev", "hubport,id=h0,hubid=0,netdev=u0",
                "-netdev", "socket,id=s0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d"
                % (self.sock.getsockname()[1], qemu_port),
                "-netdev", "hubport,id=h1,hubid=0,netdev=s0"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.link = UdpLink(self.sock, ("127.0.0.1", qemu_port))
        self._killer = threading.Timer(QEMU_TIMEOUT_S, self.close)
        self._killer.start()
        self._wait_ready()

    def _wait_ready(self):
        # QEMU is ready once its socket netdev forwards: slirp answers an ARP request.
        probe = inet.Stack(self.link, HostClock(), "10.0.2.15", gateway="10.0.2.2")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("QEMU exited: %s" % self.proc.stderr.read().decode())
            try:
                probe.resolve("10.0.2.2", retries=1, retry_ms=100)
                return
            except OSError:
                pass
        raise RuntimeError("slirp did not answer ARP within 10 s")

    def close(self):
        self._killer.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sock.close()


@pytest.fixture
def slirp():
    try:
        subprocess.run([QEMU, "--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("%s not available" % QEMU)
    tmp = tempfile.mkdtemp(prefix="inet-slirp-")
    s = Slirp(tmp)
    try:
        yield s
    finally:
        s.close()
        if os.path.exists(s.pcap):
            os.unlink(s.pcap)
        os.rmdir(tmp)


def test_dhcp_ping_and_udp_with_slirp(slirp):
    s = inet.Stack(slirp.link, HostClock())
    lease = s.dhcp(timeout_ms=5000)
    assert str(s).endswith("10.0.2.15/24 gw 10.0.2.2 dns 10.0.2.3")
    assert lease.server == bytes([10, 0, 2, 2]) and lease.lease_s == 86400

    rtts = s.ping("10.0.2.2", count=5, timeout_ms=2000)
    assert None not in rtts and all(r > 0 for r in rtts)

    # The guest's datagrams to 10.0.2.2:P reach the host's 127.0.0.1:P, and back.
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    try:
        u = s.socket()
        for n in (0, 1, 100, 1472):
            data = bytes((i * 3 + n) & 0xFF for i in range(n))
            u.sendto(data, ("10.0.2.2", port))
            got, addr = server.recvfrom(2048)
            assert got == data
            server.sendto(got[::-1], addr)
            assert u.recvfrom(2000) == (data[::-1], ("10.0.2.2", port))
    finally:
        server.close()
    st = s.stats
    assert st["rx_frames"] == st["rx_arp"] + st["rx_icmp"] + st["rx_udp"] + st["rx_tcp"] + s.dropped()


def test_udp_echo_service_through_hostfwd(slirp):
    """1000 datagrams of mixed sizes from a host client through hostfwd to the stack's
    echo service on port 7: none lost, none altered; the pcap QEMU recorded parses."""
    s = inet.Stack(slirp.link, HostClock())
    s.dhcp(timeout_ms=5000)
    count = 1000
    served = []
    service = threading.Thread(target=lambda: served.append(
        inet.udp_echo(s, 7, count=count, idle_ms=5000)), daemon=True)
    service.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    sizes = [0, 1, 2, 3, 17, 64, 100, 255, 512, 999, 1024, 1400, 1471, 1472]
    try:
        for i in range(count):
            n = sizes[i % len(sizes)]
            data = bytes(((i >> 8) & 0xFF, i & 0xFF)) + os.urandom(max(0, n - 2))
            data = data[:n]
            client.sendto(data, ("127.0.0.1", slirp.fwd_port))
            got = client.recv(2048)
            assert got == data, "datagram %d (%d bytes) came back altered" % (i, n)
    finally:
        client.close()
        service.join(10)
    assert served == [count]
    assert s.stats["rx_udp"] >= count and s.stats["tx_udp"] >= count
    assert s.stats["tx_errors"] == 0

    slirp.close()       # flush the dump
    frames = 0
    with open(slirp.pcap, "rb") as f:
        for ts, raw in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(raw)
            frames += 1
            if eth.type != dpkt.ethernet.ETH_TYPE_IP:
                assert eth.type == dpkt.ethernet.ETH_TYPE_ARP
                continue
            ip = eth.data
            assert isinstance(ip, dpkt.ip.IP) and ip.v == 4
            assert ref_checksum(raw[14:14 + ip.hl * 4]) == 0
            assert ip.len <= 1500
    assert frames >= 2 * count
