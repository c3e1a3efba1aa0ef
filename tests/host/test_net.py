"""The virtio-net driver (drivers/virtio/net/) on the device model (models/net.py):
negotiation, the header in each format, the MAC, link and MTU, a receiveq that stays
full, transmit buffers reclaimed, the controlq, and a device that misbehaves."""

import pytest

import virtio
from virtio import features as F
from virtio import net as N
from virtio import mmio_probe
from virtio.errors import DeviceError, VirtioError, VirtioTimeout
from virtio.mmio import MmioTransport

from tests.host.models import Machine
from tests.host.models.bench import machine_with
from tests.host.models.mmio import MMIO_MODES, MmioModel
from tests.host.models.net import (BROADCAST, DEFAULT_MAC, F_CTRL_MAC_ADDR, F_CTRL_RX,
                                   F_CTRL_VQ, F_MAC, F_MRG_RXBUF, F_STATUS, QEMU_FEATURES,
                                   NetModel, Reflector)
from virtio.transport import open_transport

OTHER_MAC = bytes([0x02, 0, 0, 0, 0, 0x99])
GROUP_MAC = bytes([0x01, 0x00, 0x5E, 0, 0, 1])


def net_model(mode, **kw):
    """A NetModel for `mode`: a PCI mode, or 'mmio-v1' / 'mmio-v2' (up() then puts it
    behind a virtio-mmio window of that version)."""
    pci_mode, version = MMIO_MODES.get(mode, (mode, None))
    model = NetModel(mode=pci_mode, **kw)
    model.mmio_version = version
    return model


def up(model, transport=None, **driver_kw):
    """The model in a fresh Machine, driven by the NetDevice driver. -> (machine, driver)."""
    version = getattr(model, 'mmio_version', None)
    if version:
        m = Machine(host_bridge=False, mmio=[MmioModel(model, version)])
        (found,), _ = mmio_probe.discover(m)
        t = MmioTransport(m, found[0])
    else:
        m, fns = machine_with(model)
        t = open_transport(m, fns[0], transport)
    dev = N.NetDevice(t, **driver_kw)
    dev.init()
    return m, dev


def frame(dst, src, n=60, seed=0):
    """An Ethernet frame of n bytes (IPv4 EtherType), its body a pattern of seed."""
    body = bytes(((i * 7 + seed * 13) ^ (seed >> 3)) & 0xFF for i in range(n - 14))
    return bytes(dst) + bytes(src) + b'\x08\x00' + body


def to_guest(n=60, seed=0, dst=DEFAULT_MAC):
    return frame(dst, OTHER_MAC, n, seed)


def from_guest(n=60, seed=0):
    return frame(OTHER_MAC, DEFAULT_MAC, n, seed)


def full(dev):
    """No receive buffer is lost: each is with the device or waits for the next refill,
    and at most RX_REFILL_BATCH - 1 wait (5.1.6.3: keep the receiveq full)."""
    held = dev.rx_count - dev.rx_posted
    return 0 <= held < N.RX_REFILL_BATCH


def idle_full(dev):
    """After a recv that found nothing, every receive buffer is with the device."""
    return dev.recv(1) is None and dev.rx_posted == dev.rx_count


# -- negotiation and identity -------------------------------------------------------------

def test_accepts_what_it_handles_and_nothing_of_the_offloads_or_vlan():
    model = NetModel(mode='legacy')
    m, dev = up(model)
    assert dev.feature_names() == ('MAC|MRG_RXBUF|STATUS|CTRL_VQ|CTRL_RX|CTRL_MAC_ADDR|'
                                   'ANY_LAYOUT|INDIRECT_DESC|EVENT_IDX')
    assert model.driver_features & (1 << 19 | 1 << 20 | 1 << 21 | 1 << 2) == 0
    assert model.errors == []


def test_control_features_are_refused_without_a_controlq():
    model = NetModel(mode='modern', features=F_MAC | F_CTRL_RX | F_CTRL_MAC_ADDR)
    m, dev = up(model)
    assert dev.controlq is None
    assert not dev.has(N.VIRTIO_NET_F_CTRL_RX) and not dev.has(N.VIRTIO_NET_F_CTRL_MAC_ADDR)
    assert model.errors == []
    with pytest.raises(VirtioError) as e:
        dev.set_promiscuous(True)
    assert 'promiscuous mode needs feature CTRL_RX, not negotiated' in str(e.value)


def test_probe_binds_the_driver_and_describes_the_link():
    m = machine_with(NetModel(mode='modern'))[0]
    virtio.probe(m)
    dev = virtio.find('net')
    assert isinstance(dev, N.NetDevice)
    assert str(dev).endswith('mac 52:54:00:12:34:56 mtu 1500 link up')


@pytest.mark.parametrize('mode, transport, feats, hdr_len', [
    ('legacy', None, QEMU_FEATURES & ~F_MRG_RXBUF, 10),   # 5.1.6.1: no num_buffers
    ('legacy', None, QEMU_FEATURES, 12),
    ('transitional', 'modern', QEMU_FEATURES & ~F_MRG_RXBUF, 12),
    ('modern', None, QEMU_FEATURES, 12),
    ('mmio-v1', None, QEMU_FEATURES & ~F_MRG_RXBUF, 10),
    ('mmio-v2', None, QEMU_FEATURES, 12),
])
def test_header_format_round_trip(mode, transport, feats, hdr_len):
    """Frames cross intact both ways, so driver and device agree on the header size;
    in memory the frame starts hdr_len bytes into the receive buffer."""
    model = net_model(mode, features=feats, peer=Reflector())
    m, dev = up(model, transport)
    assert dev.hdr_len == hdr_len
    for n in (60, 61, 1000, 1514):
        out = from_guest(n, seed=n)
        dev.send(out)
        back = dev.recv(100)
        assert back == out[6:12] + out[0:6] + out[12:]
        assert model.sent[-1] == out
    buf = dev._rx_base
    assert m.read(buf + hdr_len, 14) == DEFAULT_MAC + OTHER_MAC + b'\x08\x00'
    assert m.read(buf, hdr_len) == bytes(10) + (b'\x01\x00' if hdr_len == 12 else b'')
    assert model.errors == []


def test_legacy_framing_without_any_layout_gives_the_header_its_own_descriptor():
    model = NetModel(mode='legacy', any_layout=False, peer=Reflector())
    m, dev = up(model)
    assert dev.split_header and not dev.has(F.ANY_LAYOUT)
    out = from_guest(200, seed=3)
    dev.send(out)
    assert dev.recv(100)[12:] == out[12:]
    dev.set_mac_filter([OTHER_MAC], [GROUP_MAC])
    assert model.errors == []       # the model checks every descriptor layout
    assert dev.rx_count == 128     # two descriptors per buffer in a ring of 256


def test_mac_from_the_device_when_offered():
    model = NetModel(mode='modern', mac=bytes([0x52, 0x54, 0, 1, 2, 3]))
    m, dev = up(model)
    assert dev.mac == bytes([0x52, 0x54, 0, 1, 2, 3])
    assert model.promisc is False       # the device filters on it now


def test_without_f_mac_a_locally_administered_address_is_set_on_the_device():
    model = NetModel(mode='modern', features=QEMU_FEATURES & ~F_MAC)
    m, dev = up(model)
    assert dev.mac != DEFAULT_MAC and len(dev.mac) == 6
    assert dev.mac[0] & 0x03 == 0x02        # locally administered, unicast
    assert model.filter_mac == dev.mac and model.promisc is False
    model.deliver(to_guest(dst=dev.mac))
    model.deliver(to_guest(dst=DEFAULT_MAC, seed=1))   # the old address: filtered
    model.deliver(to_guest(dst=dev.mac, seed=2))
    assert dev.recv(100) == to_guest(dst=dev.mac)
    assert dev.recv(100) == to_guest(dst=dev.mac, seed=2)
    assert len(model.filtered) == 1


def test_without_f_mac_and_no_way_to_tell_the_device_it_stays_promiscuous():
    model = NetModel(mode='modern', features=F_STATUS)
    m, dev = up(model)
    assert dev.mac[0] & 0x03 == 0x02 and model.promisc is True
    model.deliver(to_guest(dst=dev.mac))
    assert dev.recv(100) == to_guest(dst=dev.mac)


def test_two_devices_get_different_local_addresses():
    m, fns = machine_with(NetModel(mode='modern', features=F_STATUS),
                          NetModel(mode='modern', features=F_STATUS))
    macs = [N.NetDevice(open_transport(m, fn)).init().mac for fn in fns]
    assert macs[0] != macs[1]


def test_link_status_follows_the_device():
    model = NetModel(mode='modern')
    m, dev = up(model)
    assert dev.link_up is True
    model.set_link(False)
    assert dev.link_up is False
    assert 'link down' in str(dev)
    model.set_link(True)
    assert dev.link_up is True


def test_without_f_status_the_link_is_assumed_up():
    model = NetModel(mode='modern', features=F_MAC, link_up=False)
    m, dev = up(model)
    assert dev.link_up is True


# -- MTU ---------------------------------------------------------------------------------

def test_default_mtu_1500_and_send_beyond_it_raises():
    model = NetModel(mode='modern')
    m, dev = up(model)
    assert dev.mtu == 1500
    dev.send(from_guest(1514))
    with pytest.raises(ValueError) as e:
        dev.send(from_guest(1515))
    assert str(e.value) == ('frame of 1515 bytes exceeds the 1514-byte limit '
                            '(MTU 1500 + 14-byte Ethernet header)')
    with pytest.raises(ValueError):
        dev.send(b'\x00' * 13)
    assert len(model.sent) == 1 and dev.tx_packets == 1


def test_mtu_from_the_device():
    model = NetModel(mode='modern', mtu=1400, peer=Reflector())
    m, dev = up(model)
    assert dev.has(N.VIRTIO_NET_F_MTU) and dev.mtu == 1400
    dev.send(from_guest(1414))
    assert len(dev.recv(100)) == 1414
    with pytest.raises(ValueError):
        dev.send(from_guest(1415))


def test_an_impossible_mtu_fails_initialization_and_says_why():
    m = machine_with(NetModel(mode='modern', mtu=20))[0]
    dev, = virtio.probe(m)
    assert isinstance(dev, virtio.UnboundDevice)
    assert 'config mtu = 0x14 is outside [0x44, 0xffff]' in dev.error


def test_frames_over_the_mtu_from_the_device_are_dropped_and_counted():
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.deliver(to_guest(1518, seed=1))    # fits the buffer (room for a VLAN tag)
    model.deliver(DEFAULT_MAC + b'\x02\x00')    # a runt: not even an Ethernet header
    model.deliver(to_guest(1514, seed=2))
    assert dev.recv(100) == to_guest(1514, seed=2)
    assert (dev.rx_dropped, dev.rx_errors, dev.rx_packets) == (2, 0, 1)
    assert full(dev)


# -- the receiveq stays full ---------------------------------------------------------------

@pytest.mark.parametrize('mode', ['legacy', 'modern', 'mmio-v1', 'mmio-v2'])
def test_receive_buffers_are_refilled_past_the_ring_size(mode):
    model = net_model(mode)
    m, dev = up(model)
    n = dev.rx_count
    assert n == 256 and full(dev)
    for k in range(n + 50):
        model.deliver(to_guest(60 + k % 200, seed=k))
        assert dev.recv(100) == to_guest(60 + k % 200, seed=k)
        assert full(dev)
    assert idle_full(dev)
    assert dev.rx_packets == n + 50 and model.backlog == []


def test_a_burst_larger_than_the_ring_waits_in_the_device_and_arrives_in_order():
    model = NetModel(mode='modern')
    m, dev = up(model)
    for k in range(600):
        model.deliver(to_guest(100, seed=k))
    assert len(model.backlog) == 600 - 256      # the device ran out of buffers
    got = []
    while True:
        f = dev.recv(50)
        if f is None:
            break
        got.append(f)
    assert got == [to_guest(100, seed=k) for k in range(600)]
    assert model.backlog == [] and idle_full(dev)


def test_recv_waits_for_a_frame_that_arrives_while_it_polls():
    model = NetModel(mode='modern', rx_on_tick=True)
    m, dev = up(model)
    model.deliver(to_guest(seed=5))         # lands at the next tick: while recv waits
    assert dev.recv(0) is None
    assert dev.recv(1000) == to_guest(seed=5)


def test_recv_gives_up_after_its_timeout():
    m, dev = up(NetModel(mode='modern'))
    assert dev.recv(5) is None
    assert dev.recv() is None


def test_received_frames_are_copies_that_later_traffic_does_not_change():
    model = NetModel(mode='modern', peer=Reflector())
    m, dev = up(model, rx_buffers=1)
    model.deliver(to_guest(seed=1))
    first = dev.recv(100)
    model.deliver(to_guest(seed=2))         # reuses the one buffer
    assert dev.recv(100) == to_guest(seed=2)
    assert first == to_guest(seed=1) and isinstance(first, bytes)


def test_merged_receive_buffers_are_joined():
    """MRG_RXBUF: a device may spread a packet over several buffers (num_buffers)."""
    model = NetModel(mode='modern', chunk=500)
    m, dev = up(model)
    model.deliver(to_guest(1514, seed=9))
    model.deliver(to_guest(300, seed=10))
    assert dev.recv(100) == to_guest(1514, seed=9)
    assert dev.recv(100) == to_guest(300, seed=10)
    assert dev.rx_packets == 2 and full(dev)


def test_merged_packet_over_the_mtu_is_dropped_whole():
    model = NetModel(mode='modern', chunk=500)
    m, dev = up(model)
    model.deliver(to_guest(1700, seed=1))       # four buffers, 1700 > 1514
    model.deliver(to_guest(80, seed=2))
    assert dev.recv(100) == to_guest(80, seed=2)
    assert dev.rx_dropped == 1 and full(dev)


# -- transmit buffers are reclaimed ----------------------------------------------------------

@pytest.mark.parametrize('mode', ['legacy', 'modern', 'mmio-v1', 'mmio-v2'])
def test_transmit_buffers_are_reclaimed_past_the_ring_size(mode):
    model = net_model(mode)
    m, dev = up(model)
    for k in range(300):
        dev.send(from_guest(60 + k, seed=k))
        assert 1 <= dev.tx_in_flight <= 64
    assert dev.recv(1) is None and dev.tx_in_flight < 32    # reclaimed when idle
    assert model.sent == [from_guest(60 + k, seed=k) for k in range(300)]
    assert dev.tx_packets == 300 and dev.tx_bytes == sum(60 + k for k in range(300))


def test_send_waits_for_a_device_that_completes_late():
    model = NetModel(mode='modern', completion='deferred', auto_complete=True)
    m, dev = up(model)
    for k in range(150):        # more than the 64 transmit buffers
        dev.send(from_guest(100, seed=k))
    model.complete()
    assert model.sent == [from_guest(100, seed=k) for k in range(150)]
    dev.reclaim()
    assert dev.tx_in_flight == 0


def test_a_device_that_keeps_every_transmit_buffer_times_out():
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.misbehave = 'never_complete'
    dev.tx_timeout_ms = 20
    for k in range(64):
        dev.send(from_guest(seed=k))
    with pytest.raises(VirtioTimeout) as e:
        dev.send(from_guest())
    assert 'all 64 transmit buffers still with the device after 20 ms' in str(e.value)
    assert dev.tx_packets == 64


def test_transmit_used_length_is_ignored():
    """5.1.6.1: old legacy devices put the buffer length in the transmit used length."""
    model = NetModel(mode='legacy', misbehave='tx_used_len')
    m, dev = up(model)
    for k in range(100):
        dev.send(from_guest(seed=k))
    dev.reclaim()
    assert dev.tx_in_flight == 0 and dev.tx_errors == 0
    assert len(model.sent) == 100


def test_transmitted_header_is_all_zeros():
    model = NetModel(mode='modern')
    m, dev = up(model)
    a = dev._tx_base                    # buffer 0 goes first
    dev.send(from_guest())
    assert m.read(a, 12 + 60) == bytes(12) + from_guest()


def test_packed_rings_carry_the_prebuilt_buffers_when_offered():
    """Issue 10: net negotiates RING_PACKED and posts its buffers into the packed rings,
    wrapping them several times."""
    model = NetModel(mode='modern', packed=True, peer=Reflector())
    m, dev = up(model)
    assert dev.has(F.RING_PACKED) and dev.receiveq.kind == dev.transmitq.kind == 'packed'
    for k in range(3 * dev.receiveq.size):
        out = from_guest(100 + k % 1400, seed=k)
        dev.send(out)
        assert dev.recv(100)[12:] == out[12:]
    assert full(dev) and model.errors == []


# -- a misbehaving device ----------------------------------------------------------------------

@pytest.mark.parametrize('misbehave', ['rx_short', 'rx_oversized', 'bad_num_buffers'])
def test_bad_receive_completions_are_counted_and_their_buffers_recycled(misbehave):
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.misbehave = misbehave
    model.deliver(to_guest(seed=1))
    assert dev.recv(10) is None
    assert dev.rx_errors == 1 and dev.rx_packets == 0 and full(dev)
    model.misbehave = None
    model.deliver(to_guest(seed=2))
    assert dev.recv(100) == to_guest(seed=2)


def test_a_used_id_that_is_not_ours_raises():
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.misbehave = 'rx_bad_id'
    model.deliver(to_guest())
    with pytest.raises(DeviceError) as e:
        dev.recv(10)
    assert str(e.value) == ('00:03.0 virtio-net: queue receiveq: used id 259 is not the head '
                            'of a request in flight')
    assert dev.rx_errors == 1


@pytest.mark.parametrize('queue', ['rx', 'tx'])
def test_a_used_idx_running_ahead_raises_and_changes_nothing(queue):
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.misbehave = 'used_idx_jump'
    with pytest.raises(DeviceError) as e:
        if queue == 'rx':
            model.deliver(to_guest())
            dev.recv(10)
        else:
            dev.send(from_guest())
            dev.reclaim()
    assert str(e.value) == ('00:03.0 virtio-net: queue %s: used idx jumped from 0 to 258, '
                            'more than the queue size 256'
                            % ('receiveq' if queue == 'rx' else 'transmitq'))
    assert (dev.rx_errors, dev.tx_errors) == ((1, 0) if queue == 'rx' else (0, 1))
    posted = dev.rx_posted
    with pytest.raises(DeviceError):
        dev.recv(0) if queue == 'rx' else dev.reclaim()
    assert dev.rx_posted == posted


def test_device_needs_reset_while_waiting_is_reported():
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.set_needs_reset()
    with pytest.raises(DeviceError) as e:
        dev.recv(1000)
    assert 'DEVICE_NEEDS_RESET' in str(e.value)


# -- the controlq -------------------------------------------------------------------------------

def test_promiscuous_mode_decides_whether_frames_for_others_arrive():
    model = NetModel(mode='modern')
    m, dev = up(model)
    assert model.commands == [(0, 0, b'\x00')]     # PROMISC off at start: we have F_MAC
    model.deliver(to_guest(dst=OTHER_MAC, seed=1))
    model.deliver(to_guest(dst=BROADCAST, seed=2))
    assert dev.recv(50) == to_guest(dst=BROADCAST, seed=2)
    dev.set_promiscuous(True)
    assert dev.promiscuous is True
    model.deliver(to_guest(dst=OTHER_MAC, seed=3))
    assert dev.recv(50) == to_guest(dst=OTHER_MAC, seed=3)
    dev.set_promiscuous(False)
    model.deliver(to_guest(dst=OTHER_MAC, seed=4))
    assert dev.recv(5) is None
    assert model.filtered == [to_guest(dst=OTHER_MAC, seed=1), to_guest(dst=OTHER_MAC, seed=4)]


def test_mac_table_and_allmulti():
    model = NetModel(mode='legacy')
    m, dev = up(model)
    dev.set_mac_filter([OTHER_MAC], [GROUP_MAC])
    assert model.commands[-1] == (1, 0, b'\x01\x00\x00\x00' + OTHER_MAC
                                  + b'\x01\x00\x00\x00' + GROUP_MAC)
    other_group = bytes([0x01, 0, 0x5E, 0, 0, 2])
    for k, dst in enumerate((OTHER_MAC, GROUP_MAC, other_group)):
        model.deliver(to_guest(dst=dst, seed=k))
    assert dev.recv(50) == to_guest(dst=OTHER_MAC, seed=0)
    assert dev.recv(50) == to_guest(dst=GROUP_MAC, seed=1)
    assert dev.recv(5) is None
    dev.set_allmulti(True)
    model.deliver(to_guest(dst=other_group, seed=9))
    assert dev.recv(50) == to_guest(dst=other_group, seed=9)
    dev.set_mac_filter()
    assert model.uni_table == [] and model.multi_table == []


def test_mac_table_arguments_are_checked_before_anything_is_sent():
    model = NetModel(mode='modern')
    m, dev = up(model)
    sent = len(model.commands)
    with pytest.raises(ValueError):
        dev.set_mac_filter([GROUP_MAC])             # a group address as unicast
    with pytest.raises(ValueError):
        dev.set_mac_filter([], [OTHER_MAC])
    with pytest.raises(ValueError):
        dev.set_mac_filter([b'\x02\x00\x00'])
    with pytest.raises(ValueError) as e:
        dev.set_mac_filter([bytes([2, 0, 0, 0, 0, k]) for k in range(21)])
    assert 'at most 20' in str(e.value)
    with pytest.raises(ValueError):
        dev.set_mac(GROUP_MAC)
    assert len(model.commands) == sent


def test_set_mac_moves_the_filter():
    model = NetModel(mode='modern')
    m, dev = up(model)
    new = bytes([0x02, 1, 2, 3, 4, 5])
    dev.set_mac(new)
    assert dev.mac == new and model.filter_mac == new
    model.deliver(to_guest(dst=new))
    assert dev.recv(50) == to_guest(dst=new)


def test_a_refused_command_raises_with_the_ack():
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.misbehave = 'ctrl_err'
    with pytest.raises(DeviceError) as e:
        dev.set_promiscuous(True)
    assert str(e.value) == ('00:03.0 virtio-net: control command RX_PROMISC refused '
                            '(ack 1, VIRTIO_NET_ERR)')
    assert dev.promiscuous is False


def test_a_command_never_answered_times_out_and_blocks_the_next_one():
    model = NetModel(mode='modern')
    m, dev = up(model)
    model.misbehave = 'ctrl_silent'
    dev.ctrl_timeout_ms = 10
    with pytest.raises(VirtioTimeout) as e:
        dev.set_allmulti(True)
    assert 'no answer to control command RX_ALLMULTI within 10 ms' in str(e.value)
    with pytest.raises(VirtioError) as e:
        dev.set_allmulti(False)
    assert 'the controlq still holds an unanswered command' in str(e.value)


def test_a_device_refusing_filter_commands_at_start_stays_promiscuous_and_works():
    model = NetModel(mode='modern', misbehave='ctrl_err', peer=Reflector())
    m, dev = up(model)
    assert dev.promiscuous is True and model.promisc is True
    assert dev.filter_error == ('00:03.0 virtio-net: control command RX_PROMISC refused '
                                '(ack 1, VIRTIO_NET_ERR)')
    dev.send(from_guest(seed=4))
    assert dev.recv(50)[12:] == from_guest(seed=4)[12:]

