"""The virtio-net driver, under CPython, on QEMU's own virtio-net-pci over qtest (no guest
code): legacy and modern, the 10- and 12-byte headers, ARP with the user network's gateway,
a DHCP lease and pings through the inet stack, the MTU QEMU reports, link status changed
through QMP, and the receive filter of the controlq between two NICs on one hub."""

import json
import socket
import struct

import pytest

import inet
from virtio import mmio_probe, pci
from virtio import transport as tp
from virtio.mmio import MmioTransport
from virtio.net import NetDevice

from tests.host.qtest import qtest_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.qemu

QEMU_MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
GATEWAY_MAC = bytes([0x52, 0x55, 10, 0, 2, 2])
GUEST_IP = bytes([10, 0, 2, 15])
GATEWAY_IP = bytes([10, 0, 2, 2])
ETH_P_ARP = 0x0806
USER_NET = ['-netdev', 'user,id=n0']


def nic(props=''):
    return ['-device', 'virtio-net-pci,netdev=n0,romfile=' + props]


def bring_up(qtest_factory, args, machine='pc', transport=None):
    """QEMU with these devices; every virtio-net function driven by NetDevice. On
    microvm (transport 'mmio-v1' or 'mmio-v2') the NIC is virtio-net-device."""
    if machine == 'microvm':
        args = [a.replace('virtio-net-pci', 'virtio-net-device').replace(',romfile=', '')
                for a in args]
        if transport == 'mmio-v2':
            args += ['-global', 'virtio-mmio.force-legacy=false']
        hw = qtest_factory(args, machine=machine)
        found, _ = mmio_probe.discover(hw)
        return hw, [NetDevice(MmioTransport(hw, w)).init() for w, _, dtype, _ in found
                    if dtype == 1]
    hw = qtest_factory(args, machine=machine)
    fns = pci.scan(hw)
    pci.assign_resources(hw, fns)
    nets = [NetDevice(tp.open_transport(hw, f, transport)).init()
            for f in fns if tp.is_virtio(f) and tp.device_type(f) == 1]
    return hw, nets


def arp_request(mac, sender_ip, target_ip):
    return (b'\xff' * 6 + mac + struct.pack('>H', ETH_P_ARP)
            + struct.pack('>HHBBH', 1, 0x0800, 6, 4, 1) + mac + sender_ip + bytes(6) + target_ip)


@pytest.mark.parametrize('machine, transport, props, hdr_len', [
    ('pc', 'legacy', ',mrg_rxbuf=off', 10),
    ('pc', 'legacy', '', 12),
    ('q35', 'modern', '', 12),
    ('q35', 'modern', ',mrg_rxbuf=off', 12),
    ('microvm', 'mmio-v1', ',mrg_rxbuf=off', 10),
    ('microvm', 'mmio-v2', '', 12),
])
def test_arp_with_the_gateway(qtest_factory, machine, transport, props, hdr_len):
    """With a header of the wrong size QEMU would misread the frame: no reply."""
    hw, (net,) = bring_up(qtest_factory, USER_NET + nic(props), machine, transport)
    assert net.transport.name == transport and net.hdr_len == hdr_len
    assert net.mac == QEMU_MAC and net.link_up and net.mtu == 1500
    net.send(arp_request(net.mac, GUEST_IP, GATEWAY_IP))
    reply = net.recv(2000)
    assert reply[:12] == QEMU_MAC + GATEWAY_MAC
    assert struct.unpack('>HH', reply[12:14] + reply[20:22]) == (ETH_P_ARP, 2)
    assert reply[22:32] == GATEWAY_MAC + GATEWAY_IP and reply[32:42] == QEMU_MAC + GUEST_IP
    assert net.counters() == {'rx_packets': 1, 'rx_bytes': len(reply), 'rx_errors': 0,
                              'rx_dropped': 0, 'tx_packets': 1, 'tx_bytes': 42, 'tx_errors': 0}
    assert net.recv(5) is None          # idle: the used buffer goes back
    assert net.rx_posted == net.rx_count == 256


@pytest.mark.parametrize('machine, transport, props', [
    ('pc', 'legacy', ''), ('q35', 'modern', ''), ('q35', 'modern', ',packed=on'),
    ('microvm', 'mmio-v1', ''), ('microvm', 'mmio-v2', ''), ('microvm', 'mmio-v2', ',packed=on')])
def test_dhcp_lease_and_ping_through_the_stack(qtest_factory, machine, transport, props):
    hw, (net,) = bring_up(qtest_factory, USER_NET + nic(props), machine, transport)
    assert net.transport.name == transport
    # QEMU's own device with packed=on: the prebuilt buffers go through a packed ring.
    assert net.receiveq.kind == net.transmitq.kind == ('packed' if 'packed' in props else 'split')
    s = inet.Stack(net, hw)
    lease = s.dhcp(timeout_ms=3000)
    assert (lease.ip, lease.router, lease.dns) == (GUEST_IP, GATEWAY_IP, [bytes([10, 0, 2, 3])])
    rtts = s.ping('10.0.2.2', count=3, timeout_ms=1000)
    assert len(rtts) == 3 and None not in rtts
    assert s.dropped() == 0 and net.rx_errors == net.rx_dropped == 0


def test_mtu_reported_by_qemu(qtest_factory):
    """host_mtu makes QEMU offer VIRTIO_NET_F_MTU; the limit applies to send()."""
    hw, (net,) = bring_up(qtest_factory, USER_NET + nic(',host_mtu=1400'), 'q35')
    assert net.mtu == 1400 and net.has(3)
    with pytest.raises(ValueError):
        net.send(bytes(1415))
    assert net.tx_packets == 0


class Qmp:
    """Just enough QMP to run one command."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.f = self.sock.makefile('rw')
        json.loads(self.f.readline())                   # the greeting
        self.run('qmp_capabilities')

    def run(self, command, **arguments):
        self.f.write(json.dumps({'execute': command, 'arguments': arguments}) + '\n')
        self.f.flush()
        while True:
            reply = json.loads(self.f.readline())
            if 'return' in reply or 'error' in reply:
                return reply

    def close(self):
        self.f.close()
        self.sock.close()


def test_link_status_follows_qemu_set_link(qtest_factory, tmp_path):
    path = str(tmp_path / 'qmp.sock')
    hw, (net,) = bring_up(qtest_factory, USER_NET + nic() + [
        '-qmp', 'unix:%s,server=on,wait=off' % path], 'q35')
    qmp = Qmp(path)
    try:
        assert net.link_up is True
        assert qmp.run('set_link', name='n0', up=False) == {'return': {}}
        assert net.link_up is False
        assert qmp.run('set_link', name='n0', up=True) == {'return': {}}
        assert net.link_up is True
    finally:
        qmp.close()


HUB = ['-netdev', 'hubport,id=h0,hubid=0', '-netdev', 'hubport,id=h1,hubid=0',
       '-device', 'virtio-net-pci,netdev=h0,romfile=,mac=52:54:00:00:00:0a',
       '-device', 'virtio-net-pci,netdev=h1,romfile=,mac=52:54:00:00:00:0b']


def test_receive_filter_between_two_nics_on_a_hub(qtest_factory):
    """B's driver turned promiscuous mode off at start: a frame for another address is
    dropped by QEMU, the one after it (for B) arrives. Then the MAC table and
    promiscuous mode let such frames through."""
    hw, (a, b) = bring_up(qtest_factory, HUB, 'q35')
    assert b.promiscuous is False
    other = bytes([0x02, 0, 0, 0, 0, 0x99])

    def to(dst, tag):
        return dst + a.mac + b'\x88\xb5' + tag + bytes(60 - 14 - len(tag))

    a.send(to(other, b'dropped'))
    a.send(to(b.mac, b'for b'))
    assert b.recv(2000) == to(b.mac, b'for b')
    b.set_mac_filter([other])
    a.send(to(other, b'in the table'))
    assert b.recv(2000) == to(other, b'in the table')
    b.set_mac_filter()
    b.set_promiscuous(True)
    third = bytes([0x02, 0, 0, 0, 0, 0x77])
    a.send(to(third, b'promiscuous'))
    assert b.recv(2000) == to(third, b'promiscuous')
    assert b.recv(0) is None and b.rx_packets == 3
