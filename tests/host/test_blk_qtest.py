"""The virtio-blk driver under CPython against QEMU's own virtio-blk-pci (and virtio-blk-device
on microvm, virtio-mmio v1 and v2) over qtest
(tests/host/qtest.py: no guest code runs). Every request type in each interface mode,
read-only (`readonly=on`), 4096-byte logical blocks, split transfers, many requests in
flight, blkdebug error injection; the disk image file is checked byte for byte on the
host. Data goes through the driver's bounce buffers here (qtest cannot alias memory)."""

import errno

import pytest

import virtio
from virtio import blk as B
from virtio.device import CORE_FEATURES

from tests.host.qtest import qtest_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.qemu

SECTOR = 512
DISK_SECTORS = 2048
MODES = {'legacy-only': ',disable-modern=on', 'modern-only': ',disable-legacy=on',
         'transitional': '', 'packed offered': ',disable-legacy=on,packed=on'}
# virtio-mmio on microvm: (window version, device properties).
MMIO_MODES = {'mmio-v1': (1, ''), 'mmio-v2': (2, ''), 'mmio-v2 packed offered': (2, ',packed=on')}
TRANSPORT_NAMES = {'legacy-only': 'legacy', 'mmio-v1': 'mmio-v1', 'mmio-v2': 'mmio-v2',
                   'mmio-v2 packed offered': 'mmio-v2'}


def sector_bytes(n):
    """What the fresh image holds in sector n: distinct in every sector."""
    return bytes(((n * 37 + i * 11) ^ (i >> 8)) & 0xFF for i in range(SECTOR))


def pattern(nbytes, seed):
    return bytes(((i * 5 + seed * 29 + (i >> 9) * 3) & 0xFF) for i in range(nbytes))


@pytest.fixture
def image(tmp_path):
    """A fresh image per test (QEMU locks images)."""
    path = tmp_path / 'disk.img'
    path.write_bytes(b''.join(sector_bytes(n) for n in range(DISK_SECTORS)))
    return path


def start(qtest_factory, image, props='', drive='', extra=(), mmio=None):
    """QEMU with one virtio-blk-pci on `image` (or, with mmio=1 or 2, one
    virtio-blk-device on microvm behind a window of that version), probed: the
    bound driver."""
    device, kw = 'virtio-blk-pci', {}
    if mmio is not None:
        device, kw = 'virtio-blk-device', {'machine': 'microvm'}
        if mmio == 2:
            extra = ['-global', 'virtio-mmio.force-legacy=false'] + list(extra)
    hw = qtest_factory(['-drive', 'if=none,id=d0,format=raw,file=%s%s' % (image, drive),
                        '-device', '%s,drive=d0%s' % (device, props)] + list(extra), **kw)
    dev, = virtio.probe(hw)
    assert isinstance(dev, B.BlkDevice), str(dev)
    return dev


def file_sectors(image, sector, count):
    with open(str(image), 'rb') as f:
        f.seek(sector * SECTOR)
        return f.read(count * SECTOR)


@pytest.mark.parametrize('mode', sorted(MODES) + sorted(MMIO_MODES))
def test_every_request_type_against_qemu(qtest_factory, image, mode):
    version, props = MMIO_MODES.get(mode, (None, MODES.get(mode)))
    blk = start(qtest_factory, image, props + ',serial=QT-0042', ',discard=unmap', mmio=version)
    assert blk.capacity == DISK_SECTORS and blk.block_size == SECTOR and not blk.read_only
    assert blk.transport.name == TRANSPORT_NAMES.get(mode, 'modern')
    # T_IN: what the host put there.
    assert blk.read(5, 3) == b''.join(sector_bytes(n) for n in (5, 6, 7))
    # T_OUT, then T_FLUSH: on the host's file, byte for byte, nothing else touched.
    data = pattern(16 * SECTOR, 1)
    blk.write(100, data)
    blk.flush()
    assert file_sectors(image, 100, 16) == data
    assert file_sectors(image, 99, 1) == sector_bytes(99)
    assert file_sectors(image, 116, 1) == sector_bytes(116)
    # T_GET_ID: the drive's serial=.
    assert blk.id() == 'QT-0042'
    # T_WRITE_ZEROES and T_DISCARD (discard=unmap: QEMU punches a hole, it reads zeroes).
    blk.write_zeroes(200, 8)
    blk.discard(300, 16)
    blk.flush()
    assert file_sectors(image, 200, 8) == bytes(8 * SECTOR)
    assert file_sectors(image, 300, 16) == bytes(16 * SECTOR)
    assert file_sectors(image, 208, 1) == sector_bytes(208)
    assert blk.read(200, 8) == bytes(8 * SECTOR)


@pytest.mark.parametrize('mmio', [None, 1, 2])
def test_the_whole_disk_written_and_read_back(qtest_factory, image, mmio):
    blk = start(qtest_factory, image, mmio=mmio)
    data = pattern(DISK_SECTORS * SECTOR, 7)
    blk.write(0, data)
    blk.flush()
    assert image.read_bytes() == data
    assert blk.read(0, DISK_SECTORS) == data


def test_read_only_drive(qtest_factory, image):
    blk = start(qtest_factory, image, drive=',readonly=on')
    assert blk.read_only and 'RO' in blk.feature_names().split('|')
    assert blk.read(0, 1) == sector_bytes(0)
    for call in (lambda: blk.write(0, bytes(SECTOR)), lambda: blk.write_zeroes(0, 8),
                 lambda: blk.discard(0, 8)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EROFS
    assert file_sectors(image, 0, 1) == sector_bytes(0)


def test_read_only_drive_refuses_writes_on_its_side_too(qtest_factory, image):
    # A driver that did not accept RO (spec: it should) still cannot write: QEMU
    # answers VIRTIO_BLK_S_IOERR and writes nothing.
    hw = qtest_factory(['-drive', 'if=none,id=d0,format=raw,readonly=on,file=%s' % image,
                        '-device', 'virtio-blk-pci,drive=d0'])
    fns = virtio.pci.scan(hw)
    virtio.pci.assign_resources(hw, fns)
    fn, = [f for f in fns if virtio.transport.is_virtio(f)]
    blk = B.BlkDevice(virtio.transport.open_transport(hw, fn),
                      (B.BlkDevice.SUPPORTED_FEATURES | CORE_FEATURES) & ~(1 << B.VIRTIO_BLK_F_RO))
    blk.init()
    assert not blk.read_only
    with pytest.raises(OSError) as e:
        blk.write(8, bytes(SECTOR))
    assert e.value.errno == errno.EIO and 'write of sector 8' in str(e.value)
    assert file_sectors(image, 8, 1) == sector_bytes(8)
    assert blk.read(8, 1) == sector_bytes(8)


def test_4096_byte_logical_blocks(qtest_factory, image):
    blk = start(qtest_factory, image, ',logical_block_size=4096,physical_block_size=4096')
    assert blk.block_size == 4096 and blk.ioctl(5, 0) == 4096
    assert blk.ioctl(4, 0) == DISK_SECTORS // 8
    data = pattern(3 * 4096, 2)
    blk.writeblocks(5, data)
    blk.flush()
    assert file_sectors(image, 40, 24) == data
    buf = bytearray(4096)
    blk.readblocks(6, buf)
    assert bytes(buf) == data[4096:8192]
    with pytest.raises(ValueError):
        blk.read(4, 8)                  # QEMU would answer IOERR: refused before
    blk.writeblocks(5, b'xyz', 4094)     # a partial write: read, patch, write back
    assert file_sectors(image, 40, 24)[4094:4097] == b'xyz'
    blk.write_zeroes(64, 16)
    assert file_sectors(image, 64, 16) == bytes(16 * SECTOR)


def test_split_transfers_in_flight_together(qtest_factory, image):
    blk = start(qtest_factory, image)
    blk.max_transfer = 4096
    data = pattern(256 * 1024, 3)
    notes = blk.notifications
    blk.write(512, data)
    assert blk.notifications - notes <= 2      # 64 requests, one notification
    assert file_sectors(image, 512, 512) == data
    assert blk.read(512, 512) == data


def test_many_requests_in_flight_complete_and_wrap_the_ring(qtest_factory, image):
    blk = start(qtest_factory, image, ',queue-size=16')
    assert blk.requestq.size == 16
    rounds = []
    for r in range(3):              # 3 x 60 requests through a 16-entry ring
        bufs = {}
        for i in range(60):
            sector = (i * 97 + r * 13) % DISK_SECTORS
            bufs[i] = (sector, bytearray(SECTOR))
            blk.submit(B.VIRTIO_BLK_T_IN, sector, bufs[i][1], i)
        done = blk.collect()
        rounds.append(sorted(done))
        for i, (sector, buf) in bufs.items():
            assert bytes(buf) == sector_bytes(sector), (r, i)
    assert rounds == [list(range(60))] * 3
    assert blk.in_flight == 0


def test_submit_batch_keeps_requests_in_flight(qtest_factory, image):
    from array import array
    blk = start(qtest_factory, image)
    depth = 24
    bufs = [bytearray(4096) for _ in range(depth)]
    sectors = array('I', [0] * depth)
    tags = array('I', range(depth))
    out = array('I', [0] * depth)
    got = {}
    nxt = 0
    for t in range(depth):
        sectors[t] = nxt * 8
        nxt += 1
    blk.submit_batch(B.VIRTIO_BLK_T_IN, tags, depth, sectors, bufs)
    while len(got) < 100:
        n = blk.poll_batch(out, 2000)
        k = 0
        for t in out[:n]:
            got[sectors[t]] = bytes(bufs[t])
            if nxt < 100:
                sectors[t] = nxt * 8
                nxt += 1
                tags[k] = t
                k += 1
        blk.submit_batch(B.VIRTIO_BLK_T_IN, tags, k, sectors, bufs)
    assert sorted(got) == [i * 8 for i in range(100)]
    for sector, data in got.items():
        assert data == b''.join(sector_bytes(sector + i) for i in range(8))


def test_a_mixed_batch(qtest_factory, image):
    blk = start(qtest_factory, image, drive=',discard=unmap')
    out = {}
    for i in range(20):
        out[i] = pattern(2 * SECTOR, i)
        blk.submit(B.VIRTIO_BLK_T_OUT, 1000 + 2 * i, out[i], ('w', i))
    blk.submit(B.VIRTIO_BLK_T_WRITE_ZEROES, 1100, count=8, tag='z')
    blk.submit(B.VIRTIO_BLK_T_DISCARD, 1200, count=8, tag='d')
    done = blk.collect()
    assert sorted(map(str, done)) == sorted(map(str, [('w', i) for i in out] + ['z', 'd']))
    blk.submit(B.VIRTIO_BLK_T_FLUSH, tag='f')
    assert blk.collect() == ['f']
    for i, data in out.items():
        assert file_sectors(image, 1000 + 2 * i, 2) == data
    assert file_sectors(image, 1100, 8) == bytes(8 * SECTOR)


def test_blkdebug_eio_is_reported_and_the_driver_keeps_working(qtest_factory, image, tmp_path):
    rules = tmp_path / 'rules.conf'
    rules.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\nsector = "100"\n'
                     'once = "off"\n')
    hw = qtest_factory(['-drive', 'if=none,id=d0,format=raw,file=blkdebug:%s:%s'
                        % (rules, image), '-device', 'virtio-blk-pci,drive=d0'])
    blk, = virtio.probe(hw)
    with pytest.raises(OSError) as e:
        blk.read(96, 8)
    assert e.value.errno == errno.EIO and 'sectors 96-103' in str(e.value)
    assert blk.read(96, 4) == b''.join(sector_bytes(n) for n in range(96, 100))
    # In a batch: only the request on sector 100 fails, with its tag.
    for s in (90, 100, 110):
        blk.submit(B.VIRTIO_BLK_T_IN, s, bytearray(SECTOR), s)
    with pytest.raises(OSError) as e:
        blk.collect()
    assert e.value.tag == 100
    assert sorted(blk.collect()) == [90, 110]
    assert blk.in_flight == 0
