"""virtio-blk in the booted image (TCG): the driver as the image freezes it (viper ring
functions included) against QEMU's virtio-blk-pci. Byte-for-byte checks of the disk image
from the host, data the host put there, id() == serial=, blkdebug EIO injection, a
read-only drive, 4096-byte logical blocks, many requests in flight, the block device
protocol."""
import os
import struct

import pytest

from tests.qemu.harness import GuestError

pytestmark = pytest.mark.qemu

SECTOR = 512
MAGIC = 0x4B4C4242                   # b'BBLK'
WHEEL = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(1024))

# The same pattern on both sides: every sector stamped with its number and a seed.
GUEST_LIB = '''
import struct, virtio, x86
from virtio import blk as B
WHEEL = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(1024))
def pat(sector, seed):
    k = (sector * 13 + seed) & 511
    return struct.pack('<II', sector, %d ^ seed) + WHEEL[k:k + 504]
def pats(sector, n, seed):
    return b''.join([pat(sector + i, seed) for i in range(n)])
''' % MAGIC


def pat(sector, seed):
    k = (sector * 13 + seed) & 511
    return struct.pack('<II', sector, MAGIC ^ seed) + WHEEL[k:k + 504]


def pats(sector, n, seed):
    return b''.join(pat(sector + i, seed) for i in range(n))


def drive(path, index, extra='', props=''):
    return ['-drive', 'file=%s,format=raw,if=none,id=d%d%s' % (path, index, extra),
            '-device', 'virtio-blk-pci,drive=d%d%s' % (index, props)]


@pytest.fixture(scope='module')
def disks(tmp_path_factory):
    d = tmp_path_factory.mktemp('blk')
    paths = {}
    for name, sectors in (('main', 16384), ('ro', 2048), ('big', 4096), ('faulty', 2048)):
        p = d / (name + '.img')
        p.write_bytes(pats(0, sectors, 1))
        paths[name] = p
    rules = d / 'eio.conf'
    rules.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "100"\n'
                     'once = "off"\n')
    paths['rules'] = rules
    return paths


@pytest.fixture(scope='module')
def g(image, disks):
    """One guest, four drives: main (serial=img-disk-0), read-only, 4096-byte blocks,
    blkdebug EIO on sector 100."""
    from tests.qemu.harness import Guest
    devices = (drive(disks['main'], 0, props=',serial=img-disk-0')
               + drive(disks['ro'], 1, ',readonly=on')
               + drive(disks['big'], 2, props=',logical_block_size=4096,physical_block_size=4096')
               + drive('blkdebug:%s:%s' % (disks['rules'], disks['faulty']), 3))
    with Guest(image=image, devices=devices) as guest:
        guest.start()
        guest.exec(GUEST_LIB)
        guest.exec('main = virtio.find("blk", 0); ro = virtio.find("blk", 1); '
                   'big = virtio.find("blk", 2); faulty = virtio.find("blk", 3)')
        yield guest


def file_sectors(path, sector, count):
    with open(str(path), 'rb') as f:
        f.seek(sector * SECTOR)
        return f.read(count * SECTOR)


def test_the_four_drives_are_found_and_the_viper_ring_is_in_use(g):
    assert g.eval('(main.capacity, main.block_size, main.read_only)') == (16384, 512, False)
    assert g.eval('(ro.capacity, ro.read_only)') == (2048, True)
    assert g.eval('(big.capacity, big.block_size)') == (4096, 4096)
    assert g.eval('main.native') is True
    assert 'virtio-blk' in g.eval('str(main)')


def test_id_is_the_serial(g):
    assert g.eval('main.id()') == 'img-disk-0'
    assert g.eval('ro.id()') == ''


def test_reads_the_data_the_host_put_there(g):
    # Every sector of the main disk, in 64 KiB reads, compared in the guest; a few
    # sectors also come back to the host.
    bad = g.eval('''[s for s in range(0, 16384, 128)
                     if main.read(s, 128) != pats(s, 128, 1)]''', timeout=60)
    assert bad == []
    assert g.eval('main.read(16383, 1)') == pat(16383, 1)
    assert g.eval('bytes(main.read(4097, 3))') == pats(4097, 3, 1)


def test_writes_land_in_the_image_byte_for_byte(g, disks):
    g.exec('main.write(2000, pats(2000, 40, 7)); main.flush()')
    assert file_sectors(disks['main'], 2000, 40) == pats(2000, 40, 7)
    assert file_sectors(disks['main'], 1999, 1) == pat(1999, 1)
    assert file_sectors(disks['main'], 2040, 1) == pat(2040, 1)
    # From DMA memory (no copy) and from the heap alike.
    g.exec('buf = x86.bytearray_at(x86.dma_alloc(8192), 8192); buf[:] = pats(3000, 16, 8); '
           'main.write(3000, buf); main.write(3016, bytearray(pats(3016, 16, 9))); main.flush()')
    assert file_sectors(disks['main'], 3000, 32) == pats(3000, 16, 8) + pats(3016, 16, 9)


def test_bad_input_is_refused_and_nothing_is_written(g, disks):
    before = disks['main'].read_bytes()
    for code, words in (('main.write(16383, bytes(1024))', 'runs past the end of the disk'),
                        ('main.write(0, bytes(100))', 'multiple of the 512-byte block size'),
                        ('main.readinto(0, b"x" * 512)', 'TypeError'),
                        ('main.read(-1, 1)', 'block boundary'),
                        ('main.write(1 << 40, bytes(512))', 'runs past the end')):
        with pytest.raises(GuestError) as e:
            g.exec(code)
        assert words in str(e.value), code
    assert g.eval('main.in_flight') == 0
    g.exec('main.flush()')
    assert disks['main'].read_bytes() == before


def test_many_requests_in_flight_with_one_notification_per_batch(g):
    out = g.exec('''
bufs = [x86.bytearray_at(x86.dma_alloc(4096), 4096) for i in range(200)]
n0 = main.notifications
for i in range(200):
    main.submit_read(i * 8 + 5000 - 5000 % 8, bufs[i], i)
done = main.collect()
print(sorted(done) == list(range(200)), main.notifications - n0 <= 4)
print(sum([1 for i in range(200) if bytes(bufs[i]) != pats(i * 8 + 5000 - 5000 % 8, 8, 1)]))
''', timeout=60)
    assert out.split() == ['True', 'True', '0']


def test_submit_batch_keeps_the_depth_and_checks_every_request(g):
    out = g.exec('''
from array import array
depth = 32            # sectors 8000-15999: no other test writes there
bufs = [x86.bytearray_at(x86.dma_alloc(4096), 4096) for i in range(depth)]
sectors = array('I', [0] * depth)
tags = array('I', range(depth))
out = array('I', [0] * depth)
nxt = done = bad = 0
for t in range(depth):
    sectors[t] = 8000 + (nxt * 37 % 1000) * 8
    nxt += 1
main.submit_batch(B.VIRTIO_BLK_T_IN, tags, depth, sectors, bufs)
while done < 600:
    n = main.poll_batch(out, 2000)
    k = 0
    for t in out[:n]:
        done += 1
        if bytes(bufs[t]) != pats(sectors[t], 8, 1):
            bad += 1
        if nxt < 600:
            sectors[t] = 8000 + (nxt * 37 % 1000) * 8
            nxt += 1
            tags[k] = t
            k += 1
    main.submit_batch(B.VIRTIO_BLK_T_IN, tags, k, sectors, bufs)
print(bad, done, main.in_flight)
''', timeout=60)
    assert out.split() == ['0', '600', '0']


def test_a_batch_with_one_bad_request_queues_nothing(g):
    out = g.exec('''
from array import array
bufs = [x86.bytearray_at(x86.dma_alloc(512), 512) for i in range(3)]
n0 = main.notifications
for sectors in ([0, 8, 16384], [0, 8, 1 << 31]):
    try:
        main.submit_batch(B.VIRTIO_BLK_T_IN, array('I', [0, 1, 2]), 3, array('I', sectors), bufs)
    except ValueError as e:
        print('refused', 'runs past the end' in str(e))
print(main.in_flight, main.poll_batch(array('I', [0] * 4)), main.notifications - n0)
''')
    assert out.split() == ['refused', 'True', 'refused', 'True', '0', '0', '0']


def test_a_mixed_batch_completes_with_its_tags(g, disks):
    out = g.exec('''
main.submit(B.VIRTIO_BLK_T_OUT, 6000, pats(6000, 8, 3), 'w')
main.submit(B.VIRTIO_BLK_T_WRITE_ZEROES, 6100, None, 'z', 16)
rb = bytearray(4096)
main.submit(B.VIRTIO_BLK_T_IN, 6200, rb, 'r')
print(sorted(main.collect()))
main.submit(B.VIRTIO_BLK_T_FLUSH, 0, None, 'f')
print(main.collect(), bytes(rb) == pats(6200, 8, 1))
''')
    assert out.splitlines() == ["['r', 'w', 'z']", "['f'] True"]
    assert file_sectors(disks['main'], 6000, 8) == pats(6000, 8, 3)
    assert file_sectors(disks['main'], 6100, 16) == bytes(16 * SECTOR)


def test_blkdebug_eio_gives_oserror_and_the_driver_keeps_working(g):
    with pytest.raises(GuestError) as e:
        g.exec('faulty.read(96, 8)')
    assert e.value.exc_type == 'BlkError' and '[Errno 5] EIO' in str(e.value)
    assert 'sectors 96-103' in str(e.value) and 'VIRTIO_BLK_S_IOERR' in str(e.value)
    out = g.exec('''
try:
    faulty.readinto(100, bytearray(512))
except OSError as e:
    print(e.errno, isinstance(e, OSError))
print(faulty.read(96, 4) == pats(96, 4, 1), faulty.read(101, 8) == pats(101, 8, 1))
for s in (90, 100, 110):
    faulty.submit_read(s, bytearray(512), s)
try:
    faulty.collect()
except OSError as e:
    print('failed', e.tag)
print(sorted(faulty.collect()), faulty.in_flight)
''')
    assert out.splitlines() == ['5 True', 'True True', 'failed 100', '[90, 110] 0']


def test_read_only_drive_refuses_writes(g, disks):
    before = disks['ro'].read_bytes()
    out = g.exec('''
for call in (lambda: ro.write(0, bytes(512)), lambda: ro.discard(0, 8),
             lambda: ro.write_zeroes(0, 8), lambda: ro.writeblocks(3, bytes(512))):
    try:
        call()
        print('written!')
    except OSError as e:
        print(e.errno)
print(ro.read(5, 2) == pats(5, 2, 1))
''')
    assert out.split() == ['30', '30', '30', '30', 'True']
    assert disks['ro'].read_bytes() == before


def test_4096_byte_blocks(g, disks):
    out = g.exec('''
big.writeblocks(10, pats(80, 16, 5))
big.flush()
b = bytearray(4096)
big.readblocks(11, b)
print(big.ioctl(4, 0), big.ioctl(5, 0), bytes(b) == pats(88, 8, 5))
for code in ('big.read(4, 8)', 'big.write(8, bytes(512))'):
    try:
        exec(code)
        print('accepted!')
    except ValueError as e:
        print('refused')
''')
    assert out.split() == ['512', '4096', 'True', 'refused', 'refused']
    assert file_sectors(disks['big'], 80, 16) == pats(80, 16, 5)
    assert file_sectors(disks['big'], 79, 1) == pat(79, 1)


def test_block_device_protocol_with_offsets(g, disks):
    g.exec('main.writeblocks(7000, b"hello", 510); main.ioctl(3, 0)')
    expect = bytearray(pats(7000, 2, 1))
    expect[510:515] = b'hello'
    assert file_sectors(disks['main'], 7000, 2) == bytes(expect)
    assert g.eval('(lambda b: (main.readblocks(7000, b, 508), bytes(b))[1])(bytearray(9))') \
        == bytes(expect[508:517])
    assert g.eval('[main.ioctl(op, 0) for op in (1, 2, 4, 5, 6, 99)]') \
        == [0, 0, 16384, 512, 0, None]


def test_whole_disk_pattern_flush_poweroff_then_byte_for_byte(boot, tmp_disk):
    path = tmp_disk(2 << 20)
    g = boot(devices=drive(path, 0))
    g.exec(GUEST_LIB)
    g.exec('''
blk = virtio.find("blk")
for s in range(0, blk.capacity, 256):
    blk.write(s, pats(s, 256, 11))
blk.flush()
''', timeout=60)
    status = g.exec_until_exit('x86.poweroff(0)', timeout=30)
    assert status == 0
    with open(path, 'rb') as f:
        data = f.read()
    assert len(data) == 2 << 20
    assert data == pats(0, 4096, 11)
