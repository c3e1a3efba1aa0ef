"""virtio-net in the booted image (MicroPython on x86 under TCG) on QEMU's user network:
a DHCP lease, pings of the gateway, a UDP echo service answering a host-side client
through hostfwd for 1000 datagrams of mixed sizes, and the traffic QEMU recorded with
filter-dump read back as valid Ethernet/IPv4 by dpkt. The driver is the image's
frozen virtio.net (`make test` builds the image from the tree first).
"""

import socket
import threading
import time

import dpkt
import pytest

from tests.qemu import harness
from tests.ports import free_udp_port

pytestmark = pytest.mark.qemu

DATAGRAMS = 1000
ECHO_IDLE_MS = 1500         # the guest's echo service stops after this long without traffic
REPLY_TIMEOUT_S = 2.0

START = """
import time, x86, virtio, inet
virtio.probe(x86)
net = virtio.find('net')
s = inet.Stack(net, time)
lease = s.dhcp(timeout_ms=5000)
idle = net.recv(5)
print(repr((str(net), str(lease), idle, net.rx_posted, net.rx_count)))
"""


def payload(k):
    """Datagram k: sizes from 1 to 1472 (the largest that fits the MTU), distinct data."""
    n = (1, 2, 64, 100, 512, 1000, 1400, 1472)[k % 8] if k % 3 else 1 + (k * 97) % 1472
    return bytes([(k * 7 + i * 13 + (k >> 8)) & 0xFF for i in range(n)])


@pytest.fixture(scope='module')
def env(image, tmp_path_factory):
    """One guest for the module, leased and ready: (guest, pcap path, hostfwd port, facts)."""
    port = free_udp_port()
    pcap = str(tmp_path_factory.mktemp('net') / 'net.pcap')
    devices = ['-netdev', 'user,id=n0,hostfwd=udp:127.0.0.1:%d-:7' % port,
               '-device', 'virtio-net-pci,netdev=n0,romfile=',
               '-object', 'filter-dump,id=f0,netdev=n0,file=%s' % pcap]
    g = harness.Guest(machine='pc', image=image, devices=devices)
    try:
        g.start()
        facts = {'start': eval(g.exec(START, timeout=30).strip().splitlines()[-1]),
                 'echoed': 0}
        yield g, pcap, port, facts
    finally:
        g.close()


def test_dhcp_lease_from_user_networking(env):
    g, pcap, port, facts = env
    dev, lease, idle, in_flight, buffers = facts['start']
    assert 'virtio-net' in dev and dev.endswith('mac 52:54:00:12:34:56 mtu 1500 link up')
    assert lease == '10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 lease 86400 s from 10.0.2.2'
    assert idle is None and in_flight == buffers == 256    # idle: the receiveq is full again
    assert g.eval('str(s)') == 'inet 52:54:00:12:34:56 10.0.2.15/24 gw 10.0.2.2 dns 10.0.2.3'


def test_ping_the_gateway(env):
    g = env[0]
    rtts = g.eval('s.ping("10.0.2.2", count=20, timeout_ms=1000)', timeout=30)
    print('ping 10.0.2.2 RTT us: %s' % sorted(rtts))
    assert len(rtts) == 20 and None not in rtts and all(r > 0 for r in rtts)


def test_udp_echo_of_1000_datagrams_through_hostfwd(env):
    """The guest serves echo on port 7; the host sends 1000 datagrams of mixed sizes to
    the forwarded port, one at a time, and each comes back unchanged."""
    g, pcap, port, facts = env
    result = {'sent': 0, 'good': 0, 'bad': [], 'rtt': []}

    def client():
        deadline = time.monotonic() + 20
        while 'ECHO READY' not in g.output:
            if time.monotonic() > deadline:
                result['bad'].append('guest never said ECHO READY')
                return
            time.sleep(0.01)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(REPLY_TIMEOUT_S)
        c.connect(('127.0.0.1', port))
        try:
            for k in range(DATAGRAMS):
                data = payload(k)
                t0 = time.perf_counter()
                c.send(data)
                result['sent'] += 1
                try:
                    back = c.recv(2048)
                except socket.timeout:
                    result['bad'].append('datagram %d (%d bytes): no echo' % (k, len(data)))
                    return
                result['rtt'].append(time.perf_counter() - t0)
                if back != data:
                    result['bad'].append('datagram %d: %d bytes sent, %d back, different'
                                         % (k, len(data), len(back)))
                else:
                    result['good'] += 1
        finally:
            c.close()

    t = threading.Thread(target=client)
    t.start()
    try:
        out = g.exec("print('ECHO READY'); print('ECHOED', inet.udp_echo(s, 7, 0, %d))"
                     % ECHO_IDLE_MS, timeout=120)
    finally:
        t.join(30)
    rtt = sorted(result['rtt'])
    if rtt:
        print('UDP echo RTT (host side) median %.0f us, p99 %.0f us, max %.0f us'
              % (rtt[len(rtt) // 2] * 1e6, rtt[len(rtt) * 99 // 100] * 1e6, rtt[-1] * 1e6))
    assert result['bad'] == []
    assert result['good'] == DATAGRAMS
    assert out.split()[-2:] == ['ECHOED', str(DATAGRAMS)]
    facts['echoed'] = DATAGRAMS
    counters = g.eval('net.counters()')
    assert counters['rx_errors'] == 0 and counters['rx_dropped'] == 0
    assert counters['tx_errors'] == 0


def test_a_frame_in_any_buffer_is_sent_whole(env):
    """send() counts a frame's bytes, not its items: 60-byte frames (to no one, EtherType
    ARP) as a memoryview of part of a bytearray, a memoryview of an array('H') and an
    array('I') each go out as 60 bytes."""
    g = env[0]
    out = g.exec("""
from array import array
f = bytes(6) + bytes(net.mac) + b'\\x08\\x06' + bytes(46)
frames = [memoryview(bytearray(f) + bytearray(40))[:60], memoryview(array('H', f)),
          array('I', f)]
before = net.counters()['tx_bytes']
for fr in frames:
    net.send(fr)
print(net.counters()['tx_bytes'] - before, [len(fr) for fr in frames])
""", timeout=30)
    assert out.strip().split(None, 1) == ['180', '[60, 30, 15]']


def test_recorded_traffic_is_valid_ethernet_and_ipv4(env):
    """Runs last: stops the guest, then reads QEMU's pcap with dpkt."""
    g, pcap, port, facts = env
    g.close()
    with open(pcap, 'rb') as f:
        records = list(dpkt.pcap.Reader(f))
    assert records
    kinds = {'arp': 0, 'dhcp': 0, 'icmp': 0, 'echo': 0}
    for ts, raw in records:
        eth = dpkt.ethernet.Ethernet(raw)
        assert len(raw) >= 14
        assert eth.type in (dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_ARP), raw[:14].hex()
        if eth.type == dpkt.ethernet.ETH_TYPE_ARP:
            kinds['arp'] += 1
            continue
        ip = eth.data
        assert isinstance(ip, dpkt.ip.IP) and ip.v == 4 and ip.hl == 5
        assert ip.len <= len(raw) - 14
        header = bytes(raw[14:34])
        assert dpkt.in_cksum(header) == 0, 'bad IPv4 header checksum'
        if isinstance(ip.data, dpkt.udp.UDP):
            u = ip.data
            if 67 in (u.sport, u.dport):
                kinds['dhcp'] += 1
            if 7 in (u.sport, u.dport):
                kinds['echo'] += 1
                assert u.ulen == len(u) and u.ulen == ip.len - 20
        elif isinstance(ip.data, dpkt.icmp.ICMP):
            kinds['icmp'] += 1
    assert kinds['dhcp'] >= 4           # DISCOVER, OFFER, REQUEST, ACK
    assert kinds['arp'] >= 2
    assert kinds['echo'] == 2 * facts['echoed']
    if facts['echoed']:
        assert kinds['icmp'] >= 40      # 20 pings and their replies
