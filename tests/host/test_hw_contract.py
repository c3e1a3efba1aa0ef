"""The hardware interface contract (docs/hardware-interface.md), run against every host
implementation: the device-model Machine and QtestMachine on QEMU's pc and q35.

Only what both a PC and the models decode is touched: the PCI configuration ports
0xCF8/0xCFC of the host bridge at 00:00.0, and RAM handed out by dma_alloc.
"""

import time

import pytest

from tests.host.qtest import QtestMachine, qemu_available

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
ENABLE = 0x80000000
CACHE_LINE_SIZE = 0x0C          # a plain read/write byte in every PCI header
TICKS_PERIOD = 1 << 30          # MicroPython's ticks on a 32-bit port wrap here

HOST_BRIDGE = {                 # (vendor, device) at 00:00.0
    'model': (0x8086, 0x1237),
    'qtest-pc': (0x8086, 0x1237),   # i440FX
    'qtest-q35': (0x8086, 0x29C0),  # Q35 MCH
}


def _model_machine():
    try:
        from tests.host.models.machine import Machine
    except ImportError as e:
        pytest.skip('model Machine not importable yet: %s' % e)
    return Machine()


def _qtest_machine(machine):
    if not qemu_available():
        pytest.skip('QEMU is not installed')
    return QtestMachine(machine=machine)


@pytest.fixture(scope='module', params=[
    'model',
    pytest.param('qtest-pc', marks=pytest.mark.qemu),
    pytest.param('qtest-q35', marks=pytest.mark.qemu),
])
def hw(request):
    if request.param == 'model':
        m = _model_machine()
    else:
        m = _qtest_machine(request.param.split('-')[1])
    m.kind = request.param
    yield m
    close = getattr(m, 'close', None)
    if close is not None:
        close()


def select(hw, reg, bus=0, device=0, function=0):
    hw.outl(CONFIG_ADDRESS, ENABLE | bus << 16 | device << 11 | function << 8 | reg)


INTERFACE = ('inb', 'inw', 'inl', 'outb', 'outw', 'outl',
             'read8', 'read16', 'read32', 'read64', 'write8', 'write16', 'write32', 'write64',
             'read', 'write', 'dma_alloc', 'barrier', 'ticks_ms', 'ticks_us', 'ticks_diff')


def test_every_name_of_the_interface_is_there(hw):
    missing = [name for name in INTERFACE if not callable(getattr(hw, name, None))]
    assert not missing, '%s lacks %s' % (hw.kind, ', '.join(missing))


# -- port I/O -----------------------------------------------------------------------------

def test_config_address_register_reads_back(hw):
    select(hw, 0x10)
    assert hw.inl(CONFIG_ADDRESS) == ENABLE | 0x10


def test_port_write_is_masked_to_its_width(hw):
    hw.outl(CONFIG_ADDRESS, (1 << 32) | ENABLE | 0x08)
    assert hw.inl(CONFIG_ADDRESS) == ENABLE | 0x08
    select(hw, CACHE_LINE_SIZE)
    hw.outb(CONFIG_DATA, 0x1AB)
    assert hw.inb(CONFIG_DATA) == 0xAB
    hw.outw(CONFIG_DATA, 0x10042)   # cache line 0x42, latency timer 0 (read-only on QEMU)
    assert hw.inw(CONFIG_DATA) == 0x0042
    hw.outb(CONFIG_DATA, 0)


def test_host_bridge_ids_at_each_port_width(hw):
    vendor, device = HOST_BRIDGE[hw.kind]
    select(hw, 0)
    assert hw.inl(CONFIG_DATA) == device << 16 | vendor
    assert hw.inw(CONFIG_DATA) == vendor
    assert hw.inw(CONFIG_DATA + 2) == device
    assert hw.inb(CONFIG_DATA) == vendor & 0xFF
    assert hw.inb(CONFIG_DATA + 1) == vendor >> 8
    assert hw.inb(CONFIG_DATA + 3) == device >> 8


def test_absent_function_reads_all_ones(hw):
    select(hw, 0, device=31, function=7)
    assert hw.inl(CONFIG_DATA) == 0xFFFFFFFF
    assert hw.inw(CONFIG_DATA) == 0xFFFF
    assert hw.inb(CONFIG_DATA) == 0xFF


# -- physical memory ----------------------------------------------------------------------

def test_memory_widths_are_little_endian(hw):
    a = hw.dma_alloc(16, 8)
    hw.write64(a, 0x0102030405060708)
    assert hw.read8(a) == 0x08
    assert hw.read16(a) == 0x0708
    assert hw.read32(a) == 0x05060708
    assert hw.read32(a + 4) == 0x01020304
    assert hw.read64(a) == 0x0102030405060708
    assert hw.read(a, 8) == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    hw.write16(a + 1, 0xBEEF)
    hw.write32(a + 8, 0xCAFEF00D)
    assert hw.read(a, 12) == bytes([8, 0xEF, 0xBE, 5, 4, 3, 2, 1, 0x0D, 0xF0, 0xFE, 0xCA])


def test_memory_values_are_unsigned_and_masked(hw):
    a = hw.dma_alloc(16, 8)
    hw.write64(a, 0xFFFFFFFFFFFFFFFF)
    assert hw.read64(a) == 0xFFFFFFFFFFFFFFFF
    assert hw.read32(a) == 0xFFFFFFFF
    assert hw.read16(a) == 0xFFFF
    assert hw.read8(a) == 0xFF
    hw.write64(a + 8, 0)
    hw.write8(a + 8, 0x1FF)
    hw.write16(a + 10, 0x1ABCD)
    hw.write32(a + 12, 0x1_0000_0001)
    assert hw.read(a + 8, 8) == bytes([0xFF, 0, 0xCD, 0xAB, 1, 0, 0, 0])


def test_byte_ranges_round_trip(hw):
    size = 3 * 4096 + 123           # not a multiple of anything
    a = hw.dma_alloc(size + 64)
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(size))
    hw.write(a + 5, pattern)
    got = hw.read(a + 5, size)
    assert isinstance(got, bytes)
    assert got == pattern
    assert hw.read(a, 5) == bytes(5)                         # nothing written before
    assert hw.read(a + 5 + size, 8) == bytes(8)              # ...or after
    assert hw.read(a + 5 + 1000, 3) == pattern[1000:1003]


def test_write_accepts_any_bytes_like_and_empty(hw):
    a = hw.dma_alloc(32)
    hw.write(a, bytearray(b'\x11\x22'))
    hw.write(a + 2, memoryview(b'\x33\x44\x55')[1:])
    hw.write(a + 4, b'')
    assert hw.read(a, 0) == b''
    assert hw.read(a, 5) == b'\x11\x22\x44\x55\x00'


def test_memory_range_larger_than_a_bulk_chunk(hw):
    size = 200000                   # crosses qtest's transfer chunks
    a = hw.dma_alloc(size)
    pattern = bytes((i ^ (i >> 8)) & 0xFF for i in range(size))
    hw.write(a, pattern)
    assert hw.read(a, size) == pattern


# -- DMA memory ---------------------------------------------------------------------------

@pytest.mark.parametrize('align', [1, 8, 64, 4096, 65536])
def test_dma_alloc_is_aligned(hw, align):
    hw.dma_alloc(3, 1)              # leave the bump pointer unaligned
    assert hw.dma_alloc(100, align) % align == 0


def test_dma_alloc_default_alignment_is_a_page(hw):
    hw.dma_alloc(1, 1)
    assert hw.dma_alloc(10) % 4096 == 0


def test_dma_blocks_do_not_overlap(hw):
    blocks = [(hw.dma_alloc(size, align), size)
              for size, align in [(1, 1), (100, 4), (4096, 4096), (7, 2), (5000, 64), (1, 1)]]
    for i, (a, n) in enumerate(blocks):
        hw.write(a, bytes([i + 1]) * n)
    for i, (a, n) in enumerate(blocks):
        assert hw.read(a, n) == bytes([i + 1]) * n
    spans = sorted(blocks)
    for (a, n), (b, _) in zip(spans, spans[1:]):
        assert a + n <= b


def test_dma_alloc_returns_zeroed_memory_even_over_dirty_ram(hw):
    a = hw.dma_alloc(16, 16)
    hw.write(a + 16, b'\xA5' * 8192)    # dirty what a bump allocator hands out next
    b = hw.dma_alloc(8000, 16)
    assert hw.read(b, 8000) == bytes(8000)


def test_dma_exhaustion_raises_memory_error_and_leaves_the_allocator_usable(hw):
    with pytest.raises(MemoryError):
        hw.dma_alloc(1 << 40)
    a = hw.dma_alloc(64)
    hw.write(a, b'ok')
    assert hw.read(a, 2) == b'ok'


def test_dma_free_is_there(hw):
    # Optional in the interface (docs/hardware-interface.md); every implementation here has it.
    assert callable(getattr(hw, 'dma_free', None)), '%s lacks dma_free' % hw.kind


def test_dma_free_gives_the_memory_back_whole(hw):
    # Fill what is left with 1 MiB blocks, give them back in an interleaved order, and the
    # same blocks fit again, then one block of their total size (the pieces merged).
    blocks = []
    with pytest.raises(MemoryError):
        while True:
            blocks.append(hw.dma_alloc(1 << 20, 4096))
    assert len(blocks) >= 2
    for a in blocks[::2] + blocks[1::2]:
        hw.dma_free(a)
    again = [hw.dma_alloc(1 << 20, 4096) for _ in blocks]
    for a in again:
        hw.dma_free(a)
    whole = hw.dma_alloc(len(blocks) << 20, 4096)
    hw.write(whole + (len(blocks) << 20) - 2, b'ok')
    hw.dma_free(whole)


def test_a_freed_block_comes_back_zeroed(hw):
    a = hw.dma_alloc(256, 64)
    hw.write(a, b'\xA5' * 256)
    hw.dma_free(a)
    b = hw.dma_alloc(256, 64)
    assert hw.read(b, 256) == bytes(256)
    hw.dma_free(b)


def test_dma_free_refuses_what_is_not_a_block_in_use(hw):
    a = hw.dma_alloc(64, 16)
    hw.dma_free(a)
    with pytest.raises(ValueError) as e:
        hw.dma_free(a)                      # twice
    assert 'not a DMA block in use' in str(e.value)
    b = hw.dma_alloc(64, 16)
    with pytest.raises(ValueError):
        hw.dma_free(b + 16)                 # inside a block, not its start
    with pytest.raises(ValueError):
        hw.dma_free(0x12345)                # never allocated
    hw.dma_free(b)                          # the allocator still works
    c = hw.dma_alloc(64, 16)
    hw.write(c, b'fine')
    assert hw.read(c, 4) == b'fine'
    hw.dma_free(c)


def test_bytearray_at_if_present_aliases_memory(hw):
    if not hasattr(hw, 'bytearray_at'):
        assert isinstance(hw, QtestMachine), 'only qtest may lack bytearray_at'
        return
    a = hw.dma_alloc(16)
    view = hw.bytearray_at(a, 16)
    view[3] = 0x5A
    assert hw.read8(a + 3) == 0x5A
    hw.write32(a + 4, 0x11223344)
    assert bytes(view[4:8]) == b'\x44\x33\x22\x11'


# -- ordering and time --------------------------------------------------------------------

def test_barrier_is_callable(hw):
    assert hw.barrier() is None


@pytest.mark.parametrize('clock, unit', [('ticks_ms', 1000), ('ticks_us', 1000000)])
def test_ticks_advance_through_ticks_diff(hw, clock, unit):
    ticks = getattr(hw, clock)
    t0 = ticks()
    assert 0 <= t0 < TICKS_PERIOD
    time.sleep(0.005)
    t1 = ticks()
    elapsed = hw.ticks_diff(t1, t0)
    assert elapsed >= 0.005 * unit - 1         # slept at least 5 ms (rounding: 1 tick)
    assert hw.ticks_diff(t0, t1) == -elapsed
    assert hw.ticks_diff(t1, t1) == 0


def test_ticks_diff_wraps_like_micropython(hw):
    assert hw.ticks_diff(5, TICKS_PERIOD - 5) == 10
    assert hw.ticks_diff(TICKS_PERIOD - 5, 5) == -10
    assert hw.ticks_diff(TICKS_PERIOD // 2 - 1, 0) == TICKS_PERIOD // 2 - 1


# -- interrupts (tests/irq_contract.py: the same checks run in the image) ------------------

from tests import irq_contract  # noqa: E402

INTX_LINE = 10


class _Pin:
    """Something with an INTx pin wired to a line of the model machine."""

    def __init__(self, line):
        self.config = bytearray(256)
        self.config[0x3C] = line


class ModelFire:
    """A device's side of the model Machine: MSI writes and an INTx pin."""
    line = INTX_LINE

    def __init__(self):
        self.pin = _Pin(INTX_LINE)

    def msi(self, hw, vector):
        hw.msi_write(*hw.msi_message(vector))

    def intx(self, hw, line, level):
        assert line == self.pin.config[0x3C]
        hw.set_intx(self.pin, level)


class QtestFire:
    """QEMU's side: an MSI is a device's memory write of `data` to `address`; an INTx
    line is an input of the I/O APIC, driven with qtest's set_irq_in."""
    line = INTX_LINE

    @staticmethod
    def msi(hw, vector):
        address, data = hw.msi_message(vector)
        hw.write32(address, data)

    @staticmethod
    def intx(hw, line, level):
        hw.qtest('set_irq_in ioapic unnamed-gpio-in %d %d' % (line, level))


IRQ_INTERFACE = ('msi_alloc', 'msi_free', 'msi_message', 'intx_vector', 'irq_attach',
                 'irq_detach', 'irq_mask', 'irq_unmask', 'irq_count', 'irq_wait')


def test_every_interrupt_call_is_there(hw):
    missing = [name for name in IRQ_INTERFACE if not callable(getattr(hw, name, None))]
    assert not missing, '%s lacks %s' % (hw.kind, ', '.join(missing))


@pytest.mark.parametrize('check', irq_contract.CHECKS, ids=lambda c: c.__name__[6:])
def test_interrupt_contract(hw, check):
    check(hw, ModelFire() if hw.kind == 'model' else QtestFire())
