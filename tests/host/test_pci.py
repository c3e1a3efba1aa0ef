"""PCI: configuration mechanism #1, scan through bridges, multifunction
devices, BAR decoding and sizing, capabilities, resource assignment."""

import struct

import pytest

from virtio import pci
from virtio.errors import VirtioError

from tests.host.models import (BlkModel, GenericModel, Machine, PciBridge, PlainDevice,
                               RngModel)
from tests.host.models.pci import PciDevice


class CountingHw:
    """Wraps a Machine and records which functions configuration cycles
    address (bus, device, function)."""

    def __init__(self, m):
        self.m = m
        self.addressed = []

    def __getattr__(self, name):
        return getattr(self.m, name)

    def outl(self, port, value):
        if port == pci.CONFIG_ADDRESS:
            self.addressed.append(((value >> 16) & 0xFF, (value >> 11) & 0x1F, (value >> 8) & 7))
        self.m.outl(port, value)


def test_scan_lists_functions_like_lspci():
    m = Machine([BlkModel(), RngModel(mode='modern')])
    fns = pci.scan(m)
    assert [str(f) for f in fns] == [
        '00:00.0 0600: 8086:1237 (rev 02)',
        '00:03.0 0100: 1af4:1001',
        '00:04.0 00ff: 1af4:1044 (rev 01)',
    ]
    blk = fns[1]
    assert (blk.bus, blk.device, blk.function) == (0, 3, 0)
    assert (blk.vendor_id, blk.device_id, blk.revision) == (0x1AF4, 0x1001, 0)
    assert blk.class_code == 0x010000
    assert (blk.subsystem_vendor_id, blk.subsystem_id) == (0x1AF4, 2)
    assert blk.header_type == 0 and not blk.multifunction
    assert blk.interrupt_pin == 1
    assert fns[2].subsystem_id == 0x1100


def test_absent_slots_cost_one_read_and_no_function_probe():
    m = Machine([(17, RngModel())])
    hw = CountingHw(m)
    fns = pci.scan(hw)
    assert [f.address for f in fns] == ['00:00.0', '00:11.0']
    for slot in range(32):
        if slot in (0, 17):
            continue
        touched = [a for a in hw.addressed if a[:2] == (0, slot)]
        assert touched == [(0, slot, 0)], 'slot %d: %r' % (slot, touched)
    # Single-function devices: functions 1-7 are never addressed.
    assert not [a for a in hw.addressed if a[1] == 17 and a[2] != 0]


def test_multifunction_device_all_functions_found():
    m = Machine([(5, 0, RngModel()), (5, 2, PlainDevice()), (5, 7, RngModel(mode='modern'))])
    fns = pci.scan(m)
    assert [f.address for f in fns] == ['00:00.0', '00:05.0', '00:05.2', '00:05.7']
    assert fns[1].multifunction
    assert fns[3].device_id == 0x1044


def test_function_behind_missing_function0_is_invisible():
    # Without function 0 nothing in the slot answers (PCI 3.0 requires it).
    m = Machine([(6, 1, RngModel())])
    assert [f.address for f in pci.scan(m)] == ['00:00.0']


BAR_KINDS = [
    (0, 0x40, 'io', False),
    (1, 0x1000, 'mem32', False),
    (2, 0x4000, 'mem64', True),
    (4, 0x200000000, 'mem64', False),      # 8 GiB: the size needs the upper half
]


def test_bar_sizing_decodes_every_kind():
    m = Machine([PlainDevice(bars=BAR_KINDS)])
    fn = pci.scan(m)[1]
    got = [(b.index, b.kind, b.is64, b.prefetchable, b.size) for b in fn.bars]
    assert got == [(0, 'io', False, False, 0x40), (1, 'mem', False, False, 0x1000),
                   (2, 'mem', True, True, 0x4000), (4, 'mem', True, False, 0x200000000)]
    assert all(b.base == 0 for b in fn.bars)


def test_bar_sizing_restores_bars_and_command():
    dev = PlainDevice(bars=BAR_KINDS[:3])
    m = Machine([dev])
    fns = pci.scan(m)
    pci.assign_resources(m, fns)
    before = bytes(dev.config)
    assert dev.command() & 3 == 3                    # decoding on
    fn = pci.scan(m)[1]                               # sizes again
    assert bytes(dev.config) == before
    assert [b.base for b in fn.bars] == [b.base for b in fns[1].bars]
    assert all(b.base for b in fn.bars)


def test_io_bar_of_16_bit_decoder_sized_from_low_half():
    dev = PlainDevice(bars=[(0, 0x20, 'io', False)])
    # A device that implements only 16 address bits of its I/O BAR.
    struct.pack_into('<I', dev.wmask, 0x10, 0x0000FFE0)
    fn = pci.scan(Machine([dev]))[1]
    assert fn.bars[0].size == 0x20


def test_capability_list_walk_of_a_modern_virtio_function():
    fn = pci.scan(Machine([RngModel(mode='modern')]))[1]
    assert fn.capabilities == [(0x11, 0x98), (0x09, 0x84), (0x09, 0x70), (0x09, 0x60),
                               (0x09, 0x50), (0x09, 0x40)]
    assert fn.find_capability(0x11) == 0x98
    assert fn.find_capability(0x05) is None


def test_capability_loop_is_bounded():
    dev = PlainDevice()
    dev.add_capability(0x05, bytes(6), offset=0x40)
    dev.config[0x41] = 0x40                         # points at itself
    fn = pci.scan(Machine([dev]))[1]
    assert len(fn.capabilities) == pci.MAX_CAPABILITIES
    assert set(fn.capabilities) == {(0x05, 0x40)}


def test_no_capabilities_when_status_bit_clear():
    fn = pci.scan(Machine([PlainDevice()]))[1]
    assert fn.capabilities == []


def test_bridges_get_bus_numbers_and_devices_behind_are_found():
    m = Machine([RngModel(),
                 PciBridge([RngModel(mode='modern'),
                            PciBridge([BlkModel(), PlainDevice()])]),
                 PciBridge([], pcie=True)])
    fns = pci.scan(m)
    assert [f.address for f in fns] == ['00:00.0', '00:03.0', '00:04.0', '01:00.0',
                                        '01:01.0', '02:00.0', '02:01.0', '00:05.0']
    outer, inner, empty = fns[2], fns[4], fns[7]
    assert (outer.secondary_bus, outer.subordinate_bus) == (1, 2)
    assert (inner.secondary_bus, inner.subordinate_bus) == (2, 2)
    assert (empty.secondary_bus, empty.subordinate_bus) == (3, 3)
    assert str(outer) == '00:04.0 0604: 1b36:0001'
    assert fns[3].parent is outer and fns[5].parent is inner
    assert empty.find_capability(pci.CAP_ID_PCIE) is not None


def test_bus_numbers_from_firmware_are_kept():
    m = Machine([PciBridge([RngModel()])])
    br = m.root.functions[(3, 0)]
    br.config[0x18:0x1B] = bytes([0, 7, 9])          # as a BIOS numbered it
    fns = pci.scan(m)
    assert [f.address for f in fns] == ['00:00.0', '00:03.0', '07:00.0']
    assert br.config[0x19:0x1B] == bytes([7, 9])


def test_assign_resources_places_bars_aligned_inside_windows_without_overlap():
    m = Machine([PlainDevice(bars=BAR_KINDS[:3]),
                 PciBridge([PlainDevice(bars=[(0, 0x100, 'io', False), (1, 0x100000, 'mem32', False),
                                              (2, 0x800000, 'mem64', True)]),
                            PciBridge([RngModel(mode='modern')])]),
                 BlkModel()])
    fns = pci.scan(m)
    assert pci.unassigned(fns)
    pci.assign_resources(m, fns)
    assert not pci.unassigned(fns)
    spans = {'io': [], 'mem': []}
    for fn in fns:
        for b in fn.bars:
            assert b.base % b.size == 0, b
            if b.io:
                assert 0xC000 <= b.base and b.base + b.size <= 0x10000
            else:
                assert 0xE0000000 <= b.base and b.base + b.size <= 0xFEC00000
            spans[b.kind].append((b.base, b.base + b.size))
    for kind in spans:
        s = sorted(spans[kind])
        assert all(a[1] <= b[0] for a, b in zip(s, s[1:])), kind
    # 64-bit BARs below 4 GiB with a zero upper half.
    dev = m.root.functions[(3, 0)]
    assert struct.unpack_from('<I', dev.config, 0x1C)[0] == 0
    # Every bridge window covers what is behind it.
    for br in [f for f in fns if f.is_bridge]:
        w = pci.bridge_windows(br)
        for fn in fns:
            if br.secondary_bus <= fn.bus <= br.subordinate_bus:
                for b in fn.bars:
                    lo, hi = w[b.kind]
                    assert lo <= b.base and b.base + b.size - 1 <= hi
        assert w['pref'] is None
        assert br.command & 7 == 7


def test_assigned_bars_decode_through_two_bridges():
    leaf = PlainDevice(bars=[(0, 0x100, 'io', False), (1, 0x1000, 'mem32', False)])
    m = Machine([PciBridge([PciBridge([leaf])])])
    fns = pci.scan(m)
    pci.assign_resources(m, fns)
    fn = fns[-1]
    io, mem = fn.bar(0).base, fn.bar(1).base
    m.write32(mem + 8, 0xDEADBEEF)
    assert m.read32(mem + 8) == 0xDEADBEEF
    assert leaf.bars[1].handler.read(8, 4) == 0xDEADBEEF
    m.outw(io + 2, 0x1234)
    assert m.inw(io + 2) == 0x1234
    # Closing the outer bridge's memory decode hides the device.
    outer = fns[1]
    outer.write16(pci.COMMAND, outer.command & ~pci.COMMAND_MEMORY_SPACE)
    m.strict = False
    assert m.read32(mem + 8) == 0xFFFFFFFF
    assert m.faults


def test_assign_resources_reports_exhaustion():
    m = Machine([PlainDevice(bars=[(1, 0x100000, 'mem32', False)]),
                 PlainDevice(bars=[(1, 0x100000, 'mem32', False)])])
    fns = pci.scan(m)
    with pytest.raises(VirtioError) as e:
        pci.assign_resources(m, fns, mem_window=(0xE0000000, 0xE0180000))
    assert str(e.value) == ('PCI memory window exhausted assigning 00:04.0 BAR1 '
                            '(0x100000 bytes)')


def test_enable_sets_command_bits_and_never_clears():
    m = Machine([PlainDevice()])
    fn = pci.scan(m)[1]
    fn.enable(io=True)
    assert fn.command & 7 == pci.COMMAND_IO_SPACE
    fn.enable(bus_master=True)
    assert fn.command & 7 == pci.COMMAND_IO_SPACE | pci.COMMAND_BUS_MASTER
    fn.enable(memory=True)
    assert fn.command & 7 == 7


def test_config_read_write_widths():
    dev = PlainDevice()
    m = Machine([dev])
    fn = pci.scan(m)[1]
    fn.write8(0x3C, 0x0B)
    assert fn.read8(0x3C) == 0x0B and fn.read16(0x3C) == 0x010B
    assert fn.read16(0x02) == 0x100E and fn.read32(0) == 0x100E8086
    fn.write32(0x3C, 0xFFFFFF0A)                     # only the line is writable
    assert fn.read32(0x3C) == 0x0000010A
    assert pci.scan(m)[1].interrupt_line == 0x0A


def test_unmapped_access_is_a_bus_fault_in_the_model():
    from tests.host.models import BusFault
    m = Machine([])
    with pytest.raises(BusFault):
        m.read32(0xE0000000)
    with pytest.raises(BusFault):
        m.outb(0xC000, 1)
    assert len(m.faults) == 2


def test_host_bridge_only_when_empty():
    assert [str(f) for f in pci.scan(Machine([]))] == ['00:00.0 0600: 8086:1237 (rev 02)']
    assert pci.scan(Machine([], host_bridge=False)) == []


def test_generic_pci_device_model_defaults():
    dev = PciDevice(0x1234, 0x5678, 0x030000)
    fn = pci.scan(Machine([dev]))[1]
    assert str(fn) == '00:03.0 0300: 1234:5678'
    assert fn.bars == []
