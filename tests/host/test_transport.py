"""Both transports behind one interface: register layout, features, queues,
notifications, device configuration, reset, and reaching a BAR above 4 GiB."""

import struct

import pytest

from virtio import pci, transport as tp
from virtio.errors import VirtioError, VirtioTimeout
from virtio.legacy import LegacyTransport, ring_layout
from virtio.modern import ModernTransport
from virtio.regs import CfgWindow, MemWindow, PortWindow
from virtio.transport import open_transport

from tests.host.models import BlkModel, GenericModel, Machine, RngModel
from tests.host.models.bench import bring_up, machine_with


def test_transitional_device_is_driven_modern_by_default():
    m, (fn,) = machine_with(BlkModel())
    t = open_transport(m, fn)
    assert isinstance(t, ModernTransport) and t.name == 'modern'
    assert not t.legacy_interface and t.ring_align == 0 and not t.fixed_queue_size


def test_transitional_device_legacy_on_request():
    m, (fn,) = machine_with(BlkModel())
    t = open_transport(m, fn, 'legacy')
    assert isinstance(t, LegacyTransport) and t.name == 'legacy'
    assert t.legacy_interface and t.ring_align == 4096 and t.fixed_queue_size


def test_legacy_only_device_is_driven_legacy():
    m, (fn,) = machine_with(BlkModel(mode='legacy'))
    assert open_transport(m, fn).name == 'legacy'
    with pytest.raises(VirtioError) as e:
        open_transport(m, fn, 'modern')
    assert '00:03.0: no modern interface' in str(e.value)


def test_modern_only_device_refuses_legacy():
    m, (fn,) = machine_with(BlkModel(mode='modern'))
    with pytest.raises(VirtioError) as e:
        open_transport(m, fn, 'legacy')
    assert str(e.value).startswith('00:03.0: no legacy interface')
    with pytest.raises(VirtioError):
        open_transport(m, fn, 'mmio')


def test_legacy_features_are_32_bits_with_legacy_only_bits():
    m, (fn,) = machine_with(BlkModel())
    t = open_transport(m, fn, 'legacy')
    f = t.device_features()
    assert f == 0x79006E54          # what QEMU 7.2's virtio-blk shows
    with pytest.raises(VirtioError):
        t.set_driver_features(1 << 32)


def test_modern_features_are_64_bits():
    m, (fn,) = machine_with(BlkModel())
    t = open_transport(m, fn)
    assert t.device_features() == 0x10130006E54    # QEMU 7.2 virtio-blk, modern
    t.set_driver_features(0x100000044)
    model = m.root.functions[(3, 0)]
    assert model.driver_features == 0x100000044
    assert model.feature_writes == [(0, 0x44), (1, 0x1)]


@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_status_register_round_trip(mode):
    m, (fn,) = machine_with(BlkModel())
    t = open_transport(m, fn, mode)
    t.reset()
    assert t.get_status() == 0
    t.add_status(tp.ACKNOWLEDGE)
    t.add_status(tp.DRIVER)
    assert t.get_status() == tp.ACKNOWLEDGE | tp.DRIVER
    t.set_status(0)
    assert t.get_status() == 0


@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_reset_times_out_when_status_never_reads_zero(mode):
    m, (fn,) = machine_with(BlkModel(misbehave='stuck_reset'))
    t = open_transport(m, fn, mode)
    t.set_status(tp.ACKNOWLEDGE)
    with pytest.raises(VirtioTimeout) as e:
        t.reset(timeout_ms=5)
    assert e.value.errno == 110
    assert '00:03.0: device status still 0x01 5 ms after reset' in str(e.value)


def test_queue_discovery_on_both_transports():
    m, (fn,) = machine_with(GenericModel(queue_sizes=(256, 256, 64)))
    for mode in ('legacy', 'modern'):
        t = open_transport(m, fn, mode)
        assert t.num_queues() == 3
        assert [t.queue_max_size(i) for i in range(3)] == [256, 256, 64]
        assert t.queue_max_size(3) == 0


def test_legacy_queue_address_is_a_page_number_of_the_legacy_layout():
    m, dev = bring_up(GenericModel(queue_sizes=(16,)), 'legacy')
    vq = dev.vq
    q = m.root.functions[(3, 0)].queues[0]
    assert q.pfn == vq.desc >> 12 and vq.desc % 4096 == 0
    assert (q.driver, q.device) == ring_layout(vq.desc, 16) == (vq.avail, vq.used)
    assert vq.used % 4096 == 0 and vq.used > vq.avail


def test_legacy_queue_size_is_fixed():
    m, (fn,) = machine_with(GenericModel(queue_sizes=(16,)))
    t = open_transport(m, fn, 'legacy')
    with pytest.raises(VirtioError) as e:
        t.enable_queue(0, 8, 0x100000, *ring_layout(0x100000, 8))
    assert 'legacy queue 0 has fixed size 16, not 8' in str(e.value)
    with pytest.raises(VirtioError) as e:
        t.enable_queue(0, 16, 0x100000, 0x100100, 0x101000 + 4096)
    assert 'not in the legacy single-block layout' in str(e.value)


def test_modern_queue_registers_take_64_bit_addresses_and_smaller_size():
    m, (fn,) = machine_with(GenericModel(mode='modern', queue_sizes=(64, 32)))
    t = open_transport(m, fn)
    t.enable_queue(1, 16, 0x1_2345_6780, 0x2_0000_0002, 0x3_0000_0004)
    q = m.root.functions[(3, 0)].queues[1]
    assert (q.size, q.desc, q.driver, q.device, q.enabled) == (
        16, 0x1_2345_6780, 0x2_0000_0002, 0x3_0000_0004, True)


@pytest.mark.parametrize('multiplier', [0, 2, 4, 0x100])
def test_modern_notify_uses_notify_off_multiplier(multiplier):
    model = GenericModel(mode='modern', queue_sizes=(8, 8, 8), notify_multiplier=multiplier)
    m, (fn,) = machine_with(model)
    t = open_transport(m, fn)
    for i in range(3):
        t.enable_queue(i, 8, 0x200000 + 0x1000 * i, 0x200800 + 0x1000 * i, 0x200C00 + 0x1000 * i)
    t.notify(2)
    t.notify(0)
    assert model.notifications == [1, 0, 1]
    assert model.errors == []       # each notify landed at its queue's address


def test_legacy_notify_reaches_the_queue():
    model = GenericModel(queue_sizes=(8, 8))
    m, (fn,) = machine_with(model)
    t = open_transport(m, fn, 'legacy')
    t.notify(1)
    assert model.notifications == [0, 1]


def _blk_capacity(t):
    return t.config_read64(0)


@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_device_config_reads(mode):
    m, (fn,) = machine_with(BlkModel(sectors=4096))
    t = open_transport(m, fn, mode)
    assert _blk_capacity(t) == 4096
    assert t.config_read32(12) == 254          # seg_max
    assert t.config_read16(16) == 1024         # geometry.cylinders
    assert t.config_read8(18) == 16            # geometry.heads
    assert t.config_read32(20) == 512          # blk_size
    t.config_write8(32, 0)                     # writeback
    assert t.config_read8(32) == 0
    t.config_write64(0, 0x1_0000_0002)
    assert t.config_read64(0) == 0x1_0000_0002


def test_legacy_config_moves_when_msix_is_enabled():
    model = BlkModel(sectors=777)
    m, (fn,) = machine_with(model)
    cap = fn.find_capability(pci.CAP_ID_MSIX)
    fn.write16(cap + 2, fn.read16(cap + 2) | pci.MSIX_CONTROL_ENABLE)
    t = open_transport(m, fn, 'legacy')
    assert t.config_base == 0x18
    assert t.config_read64(0) == 777
    assert model.errors == []


@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_config_access_out_of_range_is_refused_before_touching_the_device(mode):
    model = RngModel()
    m, (fn,) = machine_with(model)
    t = open_transport(m, fn, mode)
    with pytest.raises(VirtioError) as e:
        t.config_read32(t.config_length - 2)
    assert 'outside the %d-byte configuration space' % t.config_length in str(e.value)
    with pytest.raises(VirtioError):
        t.config_write8(-1, 0)
    assert model.errors == []


def test_modern_config_generation_follows_device_changes():
    model = BlkModel()
    m, (fn,) = machine_with(model)
    t = open_transport(m, fn)
    g = t.config_generation()
    model.set_config(0, struct.pack('<Q', 99))
    assert t.config_generation() == (g + 1) & 0xFF
    assert t.config_read64(0) == 99
    assert open_transport(m, fn, 'legacy').config_generation() == 0


@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_isr_read_clears(mode):
    model = BlkModel()
    m, (fn,) = machine_with(model)
    t = open_transport(m, fn, mode)
    model.set_config(0, struct.pack('<Q', 5))
    assert t.isr() == tp.ISR_CONFIG
    assert t.isr() == 0


def test_transport_enables_decoding_and_bus_mastering():
    m, (fn,) = machine_with(BlkModel())
    fn.write16(pci.COMMAND, 0)
    open_transport(m, fn, 'legacy')
    assert fn.command & 7 == pci.COMMAND_IO_SPACE | pci.COMMAND_BUS_MASTER
    fn.write16(pci.COMMAND, 0)
    open_transport(m, fn, 'modern')
    assert fn.command & 7 == pci.COMMAND_MEMORY_SPACE | pci.COMMAND_BUS_MASTER


def test_unassigned_bar_is_a_clear_error():
    m = Machine([BlkModel()])
    fn = [f for f in pci.scan(m) if tp.is_virtio(f)][0]
    with pytest.raises(VirtioError) as e:
        open_transport(m, fn, 'modern')
    assert 'BAR4: the BAR has no address (run virtio.pci.assign_resources)' in str(e.value)
    with pytest.raises(VirtioError) as e:
        open_transport(m, fn, 'legacy')
    assert 'BAR0 has no address' in str(e.value)


def test_32_bit_modern_bar_uses_plain_mmio():
    m, (fn,) = machine_with(RngModel(mode='modern', modern_bar=2, modern_bar64=False))
    t = open_transport(m, fn)
    assert isinstance(t.common_cfg, MemWindow)
    assert fn.bar(2).base < 1 << 32 and not fn.bar(2).is64


def _above_4g(model):
    m, (fn,) = machine_with(model)
    fn.set_bar(4, 0x8_0000_0000)            # where a 64-bit firmware might put it
    return m, fn


def test_bar_above_4gib_is_reached_through_pci_cfg_window():
    model = BlkModel(mode='modern', sectors=1234)
    m, fn = _above_4g(model)
    t = open_transport(m, fn)
    assert isinstance(t.common_cfg, CfgWindow) and isinstance(t.notify_cfg, CfgWindow)
    assert t.config_read64(0) == 1234
    t.reset()
    t.add_status(tp.ACKNOWLEDGE)
    assert t.device_features() >> 32 & 1
    t.enable_queue(0, 8, 0x200000, 0x200800, 0x200C00)
    t.notify(0)
    assert model.queues[0].desc == 0x200000 and model.notifications == [1]
    assert model.status == tp.ACKNOWLEDGE
    assert m.faults == [] and model.errors == []


def test_bar_above_4gib_without_pci_cfg_capability_is_refused():
    model = BlkModel(mode='modern', pci_cfg_cap=False)
    m, fn = _above_4g(model)
    with pytest.raises(VirtioError) as e:
        open_transport(m, fn)
    assert ('is above 4 GiB and the device has no PCI configuration access capability'
            in str(e.value))
    assert m.faults == []


def test_a_32_bit_cpu_cannot_touch_memory_above_4gib_in_the_model():
    from tests.host.models import BusFault
    m = Machine([])
    with pytest.raises(BusFault):
        m.write32(0x1_0000_0000, 1)


def test_windows_are_port_io_for_legacy():
    m, (fn,) = machine_with(RngModel())
    t = open_transport(m, fn, 'legacy')
    assert type(t.regs) is PortWindow and t.regs.base == fn.bar(0).base
