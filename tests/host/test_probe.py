"""virtio.probe / find / trace and the rng driver, on model machines."""

import random
import sys
import types

import pytest

import virtio
from virtio import pci, transport as tp
from virtio.errors import VirtioError, VirtioTimeout
from virtio.regs import PortWindow
from virtio.trace import Traced

from tests.host.models import BlkModel, GenericModel, Machine, PciBridge, PlainDevice, RngModel


def lines_of(fn):
    out = []
    virtio.trace(True, out.append)
    try:
        fn()
    finally:
        virtio.trace(False)
    return out


def test_probe_binds_known_devices_and_lists_unknown_ones():
    m = Machine([RngModel(), PlainDevice(), GenericModel(device_type=9, mode='modern'),
                 RngModel(mode='legacy')])
    devs = virtio.probe(m)
    assert [str(d) for d in devs] == [
        '00:03.0 virtio-rng modern 8q features=INDIRECT_DESC|EVENT_IDX|VERSION_1',
        '00:05.0 virtio-9p 1af4:1049 unbound: no driver for device type 9',
        '00:06.0 virtio-rng legacy 8q features=INDIRECT_DESC|EVENT_IDX',
    ]
    assert devs[0].transport.name == 'modern' and devs[2].transport.name == 'legacy'
    assert devs[1].KIND is None and devs[1].device_type == 9
    assert virtio.devices() == devs


def test_probe_assigns_resources_only_when_no_firmware_did():
    model = RngModel()
    m = Machine([model])
    virtio.probe(m)
    bar4 = model.bar_base(model.bars[4])
    assert bar4 != 0
    model.config[0x20:0x24] = (0xF0000000 | 0xC).to_bytes(4, 'little')   # "firmware" moves it
    virtio.probe(m)
    assert model.bar_base(model.bars[4]) == 0xF0000000


def test_probe_leaves_a_firmware_assignment_alone_and_reports_the_gap():
    a, b = RngModel(), RngModel(mode='modern')
    m = Machine([a, b])
    virtio.probe(m)
    b.config[0x20:0x28] = bytes([0xC, 0, 0, 0, 0, 0, 0, 0])      # BAR4 lost its address
    base_a = a.bar_base(a.bars[4])
    devs = virtio.probe(m)
    assert a.bar_base(a.bars[4]) == base_a                       # nothing moved
    assert devs[0].KIND == 'rng'
    assert str(devs[1]).startswith('00:04.0 virtio-rng 1af4:1044 unbound: VirtioError: '
                                   '00:04.0: VirtIO structure 1 in BAR4: the BAR has no address')


def test_find_by_kind_and_index():
    m = Machine([RngModel(), GenericModel(device_type=9, mode='modern'), RngModel(mode='modern')])
    virtio.probe(m)
    assert virtio.find('rng').pci.address == '00:03.0'
    assert virtio.find('rng', 1).pci.address == '00:05.0'
    with pytest.raises(VirtioError) as e:
        virtio.find('rng', 2)
    assert str(e.value).startswith('no rng device #2 (probe found 2): 00:03.0 virtio-rng')
    with pytest.raises(VirtioError):
        virtio.find('blk')


def test_probe_with_transport_request():
    m = Machine([RngModel(), RngModel(mode='modern')])
    devs = virtio.probe(m, transport='legacy')
    assert devs[0].transport.name == 'legacy'
    assert 'unbound: VirtioError: 00:04.0: no legacy interface' in str(devs[1])
    devs = virtio.probe(m, transport='modern')
    assert [d.transport.name for d in devs] == ['modern', 'modern']


def test_failing_driver_import_leaves_device_unbound(monkeypatch):
    monkeypatch.setitem(virtio.DRIVERS, 9, 'nosuchdriver')
    m = Machine([GenericModel(device_type=9, mode='modern')])
    (dev,) = virtio.probe(m)
    assert str(dev).startswith('00:03.0 virtio-9p 1af4:1049 unbound: driver virtio.nosuchdriver '
                               'unavailable (')


def test_driver_raising_at_import_leaves_device_unbound(monkeypatch):
    monkeypatch.setitem(virtio.DRIVERS, 9, 'exploding')
    mod = types.ModuleType('virtio.exploding')
    monkeypatch.setitem(sys.modules, 'virtio.exploding', mod)     # imported, no DRIVER
    (dev,) = virtio.probe(Machine([GenericModel(device_type=9, mode='modern')]))
    assert 'unbound: ' in str(dev) and 'DRIVER' in str(dev)


def test_device_whose_initialization_fails_is_listed_with_the_reason():
    m = Machine([RngModel(misbehave='refuse_features_ok'), RngModel(mode='modern')])
    devs = virtio.probe(m)
    assert str(devs[0]) == ('00:03.0 virtio-rng 1af4:1005 unbound: NegotiationError: 00:03.0 '
                            'virtio-rng: FEATURES_OK step: device did not accept FEATURES_OK '
                            '(features 0x130000000 INDIRECT_DESC|EVENT_IDX|VERSION_1)')
    assert devs[1].KIND == 'rng'


def test_devices_behind_bridges_and_multifunction_are_probed():
    m = Machine([PciBridge([RngModel(mode='modern'), PciBridge([RngModel()])]),
                 (9, 0, RngModel(mode='legacy')), (9, 3, RngModel())])
    devs = virtio.probe(m)
    assert [(d.pci.address, d.KIND, d.transport.name) for d in devs] == [
        ('01:00.0', 'rng', 'modern'), ('02:00.0', 'rng', 'modern'),
        ('00:09.0', 'rng', 'legacy'), ('00:09.3', 'rng', 'modern')]
    for d in devs:
        assert len(d.read(8)) == 8


def test_device_type_from_ids():
    m = Machine([BlkModel(), BlkModel(mode='modern'), GenericModel(device_type=9, mode='modern')])
    fns = [f for f in pci.scan(m) if tp.is_virtio(f)]
    assert [tp.device_type(f) for f in fns] == [2, 2, 9]
    assert not tp.is_virtio(pci.scan(Machine([PlainDevice()]))[1])


def expected_random(n, seed=1):
    r = random.Random(seed)
    return bytes(r.getrandbits(8) for _ in range(n))


@pytest.mark.parametrize('mode', ['legacy', 'transitional', 'modern'])
def test_rng_read_returns_the_device_bytes(mode):
    model = RngModel(mode=mode)
    virtio.probe(Machine([model]))
    rng = virtio.find('rng')
    data = rng.read(100)
    # One 64-byte buffer per request: 64 + 64 asked, the first 100 kept.
    assert data == expected_random(128)[:100]
    assert model.given == 128 and model.errors == []


def test_rng_read_gathers_short_answers():
    model = RngModel(max_bytes=5)
    virtio.probe(Machine([model]))
    data = virtio.find('rng').read(23)
    assert data == expected_random(25)[:23]
    assert model.queues[0].completed == 5


def test_rng_read_times_out_when_the_device_gives_nothing():
    model = RngModel(completion='lazy')       # takes buffers only when told
    virtio.probe(Machine([model]))
    rng = virtio.find('rng')
    with pytest.raises(VirtioTimeout) as e:
        rng.read(8, timeout_ms=5)
    assert e.value.errno == 110
    assert str(e.value).endswith('00:03.0 virtio-rng: no entropy within 5 ms (0 of 8 bytes)')
    # The buffer is still the device's: a second read waits for it, adds nothing.
    with pytest.raises(VirtioTimeout):
        rng.read(8, timeout_ms=5)
    assert rng.requestq.in_flight == 1
    model.complete()                           # the device wakes up
    assert rng.read(8) == expected_random(8)
    assert model.errors == []


def test_trace_lines_of_a_legacy_bring_up():
    m = Machine([RngModel()])
    out = lines_of(lambda: virtio.probe(m, transport='legacy'))
    assert out[:6] == [
        '00:03.0 legacy device_status <- 0x00 RESET',
        '00:03.0 legacy device_status -> 0x00 RESET',
        '00:03.0 legacy device_status -> 0x00 RESET',
        '00:03.0 legacy device_status <- 0x01 ACKNOWLEDGE',
        '00:03.0 legacy device_status -> 0x01 ACKNOWLEDGE',
        '00:03.0 legacy device_status <- 0x03 ACKNOWLEDGE|DRIVER',
    ]
    assert ('00:03.0 legacy device_feature -> 0x79000000 NOTIFY_ON_EMPTY|ANY_LAYOUT|'
            'INDIRECT_DESC|EVENT_IDX|BAD_FEATURE') in out
    assert '00:03.0 legacy driver_feature <- 0x30000000 INDIRECT_DESC|EVENT_IDX' in out
    assert out[-1] == '00:03.0 legacy device_status -> 0x07 ACKNOWLEDGE|DRIVER|DRIVER_OK'
    assert any(l.startswith('00:03.0 legacy queue_address <- 0x00000') and ' ring at 0x' in l
               for l in out)


def test_trace_lines_of_a_modern_bring_up_and_a_kick():
    m = Machine([RngModel(mode='modern')])
    out = lines_of(lambda: virtio.probe(m))
    assert '00:03.0 modern device_feature[1] -> 0x00000101 VERSION_1|RING_RESET' in out
    assert '00:03.0 modern driver_feature[1] <- 0x00000001 VERSION_1' in out
    assert '00:03.0 modern device_status <- 0x0b ACKNOWLEDGE|DRIVER|FEATURES_OK' in out
    assert '00:03.0 modern queue_enable <- 0x0001' in out
    rng = virtio.find('rng')
    out = lines_of(lambda: rng.read(4))
    assert out == ['00:03.0 modern queue_notify[+0x0] <- 0x0000 queue 0']


def test_trace_is_free_when_off():
    m = Machine([RngModel(mode='legacy')])
    (dev,) = virtio.probe(m)
    assert type(dev.transport.regs) is PortWindow
    virtio.trace(True, lambda line: None)
    assert type(dev.transport.regs) is Traced
    virtio.trace(False)
    assert type(dev.transport.regs) is PortWindow


def test_trace_shows_device_specific_feature_names():
    from virtio.device import VirtioDevice
    from virtio.transport import open_transport

    class Named(VirtioDevice):
        FEATURE_NAMES = {9: 'FLUSH', 6: 'BLK_SIZE'}
    m = Machine([BlkModel(mode='legacy')])
    fns = pci.scan(m)
    pci.assign_resources(m, fns)
    dev = Named(open_transport(m, fns[1]))
    out = lines_of(dev.transport.device_features)
    assert out == ['00:03.0 legacy device_feature -> 0x79006e54 bit2|bit4|BLK_SIZE|FLUSH|bit10|'
                   'bit11|bit13|bit14|NOTIFY_ON_EMPTY|ANY_LAYOUT|INDIRECT_DESC|EVENT_IDX|'
                   'BAD_FEATURE']
