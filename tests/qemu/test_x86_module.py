"""The `x86` module: every name of docs/hardware-interface.md, plus mem8/16/32,
addressof() and poweroff(), on the real (emulated) machine."""
import pytest

from tests.qemu.harness import GuestError

pytestmark = pytest.mark.qemu

MULTIBOOT_MAGIC = 0x1BADB002        # the first word of the image, loaded at 1 MiB
CONTRACT = ['inb', 'inw', 'inl', 'outb', 'outw', 'outl', 'read8', 'read16', 'read32',
            'read64', 'write8', 'write16', 'write32', 'write64', 'read', 'write',
            'dma_alloc', 'dma_free', 'bytearray_at', 'barrier', 'ticks_ms', 'ticks_us',
            'ticks_diff', 'msi_alloc', 'msi_free', 'msi_message', 'intx_vector', 'irq_attach',
            'irq_detach', 'irq_mask', 'irq_unmask', 'irq_count', 'irq_wait']
EXTRAS = ['mem8', 'mem16', 'mem32', 'addressof', 'poweroff', 'dupterm', 'irq_controller']


@pytest.fixture(scope='module')
def g(guest):
    guest.exec('import x86, gc')
    return guest


def test_exports_exactly_the_contract_and_the_extras(g):
    names = g.eval('sorted(n for n in dir(x86) if not n.startswith("_"))')
    assert names == sorted(CONTRACT + EXTRAS)


def test_pci_host_bridge_through_cf8_cfc(g):
    # Configuration mechanism #1: address 00:00.0 register 0 -> vendor 8086, i440FX 1237.
    g.exec('x86.outl(0xCF8, 0x80000000)')
    assert g.eval('x86.inl(0xCFC)') == 0x12378086
    g.exec('x86.outl(0xCF8, 0x80000000)')
    assert g.eval('x86.inw(0xCFC)') == 0x8086
    g.exec('x86.outl(0xCF8, 0x80000000)')
    assert g.eval('x86.inb(0xCFC + 1)') == 0x80


def test_q35_host_bridge(boot):
    g = boot(machine='q35')
    g.exec('import x86; x86.outl(0xCF8, 0x80000000)')
    assert g.eval('x86.inl(0xCFC)') == 0x29C08086


def test_outb_inb_through_cmos_ram(g):
    # CMOS byte 0x40 is plain battery-backed RAM: what we write reads back.
    for value in (0x5A, 0xA5):
        g.exec('x86.outb(0x70, 0x40); x86.outb(0x71, %d)' % value)
        assert g.eval('x86.outb(0x70, 0x40) or x86.inb(0x71)') == value


def test_port_given_as_a_long_int_in_range(g):
    # 0xFFFFFFFC is a long int on 32-bit MicroPython, and so is a value masked
    # with it (an I/O BAR base): a port number is its value, not its type.
    g.exec('x86.outl(0xCF8, 0x80000000)')
    assert g.eval('x86.inw(0xFFFFFFFC & 0xCFC)') == 0x8086


def test_outw_selects_a_fw_cfg_item(g):
    g.exec('x86.outw(0x510, 0)')            # FW_CFG_SIGNATURE
    assert g.eval('bytes(x86.inb(0x511) for i in range(4))') == b'QEMU'


def test_physical_memory_at_1_mib_holds_the_image(g):
    assert g.eval('x86.mem32[0x100000]') == MULTIBOOT_MAGIC
    assert g.eval('x86.read32(0x100000)') == MULTIBOOT_MAGIC
    assert g.eval('x86.read(0x100000, 4)') == MULTIBOOT_MAGIC.to_bytes(4, 'little')
    assert g.eval('x86.read16(0x100002)') == MULTIBOOT_MAGIC >> 16
    assert g.eval('x86.read8(0x100003)') == MULTIBOOT_MAGIC >> 24


def test_writes_and_reads_of_each_width_are_little_endian(g):
    g.exec('a = x86.dma_alloc(64)')
    g.exec('x86.write64(a, 0x1122334455667788)')
    assert g.eval('x86.read(a, 8)') == bytes.fromhex('8877665544332211')
    assert g.eval('x86.read64(a)') == 0x1122334455667788
    assert g.eval('x86.read32(a + 4)') == 0x11223344
    g.exec('x86.write32(a, 0xFEDCBA98)')
    assert g.eval('x86.read32(a)') == 0xFEDCBA98             # unsigned, not negative
    g.exec('x86.write16(a, 0xBEEF); x86.write8(a + 2, 0x42)')
    assert g.eval('x86.read(a, 4)') == bytes.fromhex('efbe42fe')
    g.exec('x86.write(a + 8, b"virtio")')
    assert g.eval('x86.read(a + 8, 6)') == b'virtio'
    assert g.eval('x86.read64(a + 8)') == int.from_bytes(b'virtio\0\0', 'little')


def test_values_are_masked_to_the_access_width(g):
    g.exec('a = x86.dma_alloc(16)')
    g.exec('x86.write32(a, 0x123456789)')
    assert g.eval('x86.read32(a)') == 0x23456789
    g.exec('x86.write16(a, -1)')
    assert g.eval('x86.read16(a)') == 0xFFFF
    g.exec('x86.write64(a, -2)')
    assert g.eval('x86.read64(a)') == 2 ** 64 - 2
    g.exec('x86.write8(a, 0x1FF)')
    assert g.eval('x86.read8(a)') == 0xFF


def test_mem8_16_32_read_and_write_unsigned(g):
    g.exec('a = x86.dma_alloc(16)')
    g.exec('x86.mem32[a] = 0xDEADBEEF')
    assert g.eval('x86.mem32[a]') == 0xDEADBEEF
    assert g.eval('x86.mem16[a + 2]') == 0xDEAD
    assert g.eval('x86.mem8[a]') == 0xEF
    g.exec('x86.mem8[a] = 0x80; x86.mem16[a + 2] = 0x8001')
    assert g.eval('x86.read32(a)') == 0x8001BE80
    with pytest.raises(GuestError, match='not aligned'):
        g.exec('x86.mem32[a + 2]')


def test_dma_alloc_is_aligned_and_zeroed(g):
    # Dirty DMA memory, give it back, allocate again: the new buffers read back as zeros
    # wherever the allocator places them.
    g.exec('a = x86.dma_alloc(16, align=16)\n'
           'c = x86.dma_alloc(12288, 16)\n'
           'x86.write(c, b"\\xff" * 12288)\n'
           'x86.dma_free(c)')
    g.exec('b = x86.dma_alloc(8192)')
    assert g.eval('b % 4096') == 0
    assert g.eval('x86.read(b, 8192) == bytes(8192)') is True
    g.exec('d = x86.dma_alloc(12288, 16)')
    assert g.eval('x86.read(d, 12288) == bytes(12288)') is True
    for align in (8, 64, 256, 65536):
        assert g.eval('x86.dma_alloc(3, %d) %% %d' % (align, align)) == 0
    assert g.eval('x86.dma_alloc(10, align=1) > 0') is True


def test_dma_buffers_do_not_move_across_gc(g):
    g.exec('d = x86.dma_alloc(4096)\n'
           'x86.write(d, bytes(range(256)) * 16)\n'
           'junk = [bytearray(1000) for i in range(2000)]\n'
           'junk = None\n'
           'gc.collect()\n'
           'more = [str(i) * 50 for i in range(5000)]\n'
           'gc.collect()')
    assert g.eval('x86.read(d, 4096) == bytes(range(256)) * 16') is True


def test_dma_alloc_refuses_bad_requests(g):
    with pytest.raises(GuestError, match='MemoryError'):
        g.exec('x86.dma_alloc(1 << 30)')
    with pytest.raises(GuestError, match='power of two'):
        g.exec('x86.dma_alloc(64, align=48)')
    with pytest.raises(GuestError, match='positive'):
        g.exec('x86.dma_alloc(0)')
    assert g.eval('x86.dma_alloc(64) % 4096') == 0         # still works afterwards


def test_dma_free_gives_memory_back_whole_and_refuses_a_wrong_free(g):
    # Fill the rest of the DMA area with 64 KiB blocks, free them in an interleaved
    # order: they fit again, and then as one block (the free pieces merged).
    g.exec('blocks = []\n'
           'try:\n'
           '    while True: blocks.append(x86.dma_alloc(65536, 4096))\n'
           'except MemoryError as e: full = str(e)\n'
           'for b in blocks[::2] + blocks[1::2]: x86.dma_free(b)\n'
           'again = [x86.dma_alloc(65536, 4096) for b in blocks]\n'
           'for b in again: x86.dma_free(b)\n'
           'whole = x86.dma_alloc(len(blocks) * 65536, 4096)')
    assert g.eval('len(blocks)') > 10
    assert 'DMA area exhausted: 65536 bytes aligned to 4096 asked' in g.eval('full')
    assert g.eval('x86.read(whole, 64) == bytes(64)') is True
    g.exec('x86.dma_free(whole)')
    with pytest.raises(GuestError, match='ValueError: dma_free: 0x[0-9a-f]+ is not a DMA block '
                                         'in use'):
        g.exec('x86.dma_free(whole)')                   # twice
    with pytest.raises(GuestError, match='not a DMA block in use'):
        g.exec('x86.dma_free(x86.dma_alloc(64, 16) + 16)')
    with pytest.raises(GuestError, match='TypeError'):
        g.exec('x86.dma_free("0x1000")')
    with pytest.raises(GuestError, match='OverflowError'):
        g.exec('x86.dma_free(x86.dma_alloc(64) + (1 << 32))')      # no alias of the block
    with pytest.raises(GuestError, match='not a DMA block in use'):
        g.exec('x86.dma_free(-4096)')
    assert g.eval('x86.dma_alloc(64) % 4096') == 0         # still works afterwards


def test_dma_allocator_places_blocks_as_the_host_model_does(boot):
    # The host's Machine and QtestMachine run tests/host/models/dma.py; the target's dma.c
    # must follow the same rules, block for block, over a random mix of sizes, alignments
    # and frees (a fresh guest with no devices: nothing is allocated yet).
    import random
    from tests.host.models.dma import DmaArea
    g = boot(mem=16)
    g.exec('import x86\n'
           'start = x86.dma_alloc(16, 16)\n'
           'x86.dma_free(start)\n'
           'try: x86.dma_alloc(1 << 30)\n'
           'except MemoryError as e: free = int(str(e).split(", ")[1].split()[0])')
    start, free = g.eval('start'), g.eval('free')
    model = DmaArea(start, start + free)
    rnd = random.Random(17)
    ops, live = [], []
    for _ in range(400):
        if live and rnd.random() < 0.35:
            ops.append(('f', live.pop(rnd.randrange(len(live)))))
        else:
            size = rnd.choice([1, 4, 16, 100, 1000, 4096, 5000, 65536, rnd.randrange(1, 400000)])
            ops.append(('a', size, rnd.choice([1, 2, 16, 64, 4096, 65536])))
            live.append(len(ops) - 1)      # freed later by the op's index
    want = []
    for op in ops:
        if op[0] == 'a':
            try:
                want.append(model.alloc(op[1], op[2]))
            except MemoryError:
                want.append(None)
        else:
            if want[op[1]] is not None:
                model.free(want[op[1]])
            want.append(0)
    g.exec('ops = %r\n'
           'got = []\n'
           'for op in ops:\n'
           '    if op[0] == "a":\n'
           '        try: got.append(x86.dma_alloc(op[1], op[2]))\n'
           '        except MemoryError: got.append(None)\n'
           '    else:\n'
           '        if got[op[1]] is not None: x86.dma_free(got[op[1]])\n'
           '        got.append(0)' % (ops,), timeout=60)
    assert g.eval('got') == want
    assert None in want and len(set(a for a in want if a)) > 100    # it ran out, and reused


@pytest.mark.parametrize('call, n', [
    ('x86.read(0xFFFFFFF0, 32)', 32), ('x86.write(0xFFFFFFFF, b"ab")', 2),
    ('x86.read16(0xFFFFFFFF)', 2), ('x86.read32(0xFFFFFFFE)', 4), ('x86.read64(0xFFFFFFFC)', 8),
    ('x86.write16(0xFFFFFFFF, 1)', 2), ('x86.write32(0xFFFFFFFD, 1)', 4),
    ('x86.write64(0xFFFFFFF9, 1)', 8), ('x86.bytearray_at(0xFFFFFF00, 257)', 257)])
def test_a_range_past_4_gib_is_refused_not_wrapped_to_0(g, call, n):
    with pytest.raises(GuestError, match='ValueError: %d bytes at 0x[0-9a-f]+ run past the '
                                         '4 GiB address space' % n):
        g.exec(call)
    # The last bytes below 4 GiB are still reachable (the BIOS ROM is mapped there).
    assert len(g.eval('x86.read(0xFFFFFFF0, 16)')) == 16
    assert g.eval('x86.read(0xFFFFFFFF, 0)') == b''


def test_bytearray_at_aliases_memory(g):
    g.exec('a = x86.dma_alloc(64)\nview = x86.bytearray_at(a, 64)')
    g.exec('x86.write(a, b"abc")')
    assert g.eval('bytes(view[:3])') == b'abc'
    g.exec('view[10:14] = b"\\x01\\x02\\x03\\x04"')
    assert g.eval('x86.read32(a + 10)') == 0x04030201
    assert g.eval('x86.addressof(view) == a') is True


def test_addressof_gives_a_buffers_physical_address(g):
    g.exec('buf = bytearray(b"hello world")')
    assert g.eval('x86.read(x86.addressof(buf), 11)') == b'hello world'
    g.exec('x86.write8(x86.addressof(buf), ord("j"))')
    assert g.eval('bytes(buf[:5])') == b'jello'


def test_barrier_and_ticks(g):
    assert g.eval('x86.barrier()') is None
    t = g.eval('x86.ticks_ms()')
    assert isinstance(t, int) and t >= 0
    assert g.eval('x86.ticks_diff(5, 3)') == 2
    assert g.eval('x86.ticks_diff is __import__("time").ticks_diff') is True


@pytest.mark.parametrize('call, error', [
    ('x86.read32(-4)', 'ValueError'),
    ('x86.read32(2 ** 32)', 'OverflowError'),
    ('x86.read8("0x100000")', 'TypeError'),
    ('x86.outb(0x10000, 0)', 'ValueError'),
    ('x86.inb(-1)', 'ValueError'),
    ('x86.inb(2 ** 40)', 'OverflowError'),
    ('x86.read(0x100000, -1)', 'ValueError'),
    ('x86.write(0x100000, 42)', 'TypeError'),
    ('x86.poweroff(128)', 'ValueError'),
    ('x86.poweroff(-1)', 'ValueError'),
])
def test_bad_arguments_raise_clear_errors(g, call, error):
    with pytest.raises(GuestError) as e:
        g.exec(call)
    assert e.value.exc_type == error
    assert g.eval('x86.mem32[0x100000]') == MULTIBOOT_MAGIC   # nothing was harmed
