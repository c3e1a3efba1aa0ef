"""The virtio-blk driver (drivers/virtio/blk.py) against the device model
(tests/host/models/blk.py): configuration, every request type, the status byte, bad input
refused before the device sees it, splitting by seg_max/size_max, many requests in flight
completing out of order, bounce and zero-copy data paths, MicroPython's block device
protocol. The model's disk is checked byte for byte."""

import errno

import pytest
from hypothesis import assume, given, settings, strategies as st

import virtio
from virtio import blk as B, features as F
from virtio.errors import DeviceError, VirtioError, VirtioTimeout

from tests.host.models import Machine
from tests.host.models.mmio import place
from tests.host.models.blk import AddressingMachine, BlkModel, VIRTIO_BLK_F_DISCARD, \
    VIRTIO_BLK_F_FLUSH, DEFAULT_FEATURES, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_WRITE_ZEROES

SECTOR = 512
MODES = ['legacy', 'transitional', 'modern', 'mmio-v1', 'mmio-v2']


def pattern(nbytes, seed=0):
    return bytes(((i * 7 + seed * 13 + (i >> 9)) & 0xFF) for i in range(nbytes))


def up(machine=Machine, transport=None, **model_kw):
    """(machine, model, driver) with the blk driver bound through virtio.probe."""
    m, model = place(BlkModel, machine=machine, **model_kw)
    devs = virtio.probe(m, transport)
    dev, = devs
    assert isinstance(dev, B.BlkDevice), str(dev)
    return m, model, dev


def dma_view(m, n):
    return m.bytearray_at(m.dma_alloc(n, 16), n)


def quiet(model):
    """What the device has seen so far: requests served and notifications."""
    return (list(model.requests), list(model.notifications))


def test_cpython_runs_the_plain_request_paths():
    m, model, blk = up()
    assert blk.native is False          # CPython runs the plain ring functions


# -- configuration and negotiation ----------------------------------------------------------

@pytest.mark.parametrize('mode', MODES)
def test_probe_binds_the_driver_and_reads_the_configuration(mode):
    m, model, blk = up(mode=mode, sectors=4096)
    assert virtio.find('blk') is blk
    assert blk.capacity == 4096 and blk.block_size == 512 and not blk.read_only
    assert blk.seg_max == 254 and blk.size_max == 0
    assert blk.geometry == (1024, 16, 63)
    assert blk.topology == (0, 0, 1, 0)
    assert blk.max_discard_sectors == 0x3FFFFF and blk.max_discard_seg == 1
    assert blk.max_write_zeroes_sectors == 0x3FFFFF and blk.write_zeroes_may_unmap
    assert blk.writeback is True
    names = blk.feature_names().split('|')
    for n in ('SEG_MAX', 'GEOMETRY', 'BLK_SIZE', 'FLUSH', 'TOPOLOGY', 'CONFIG_WCE', 'DISCARD',
              'WRITE_ZEROES'):
        assert n in names
    assert '4096 sectors (512-byte blocks)' in str(blk)
    assert model.errors == []


def test_read_only_and_4096_byte_blocks_show_in_the_configuration():
    m, model, blk = up(read_only=True, blk_size=4096, sectors=64)
    assert blk.read_only and blk.block_size == 4096
    assert blk.topology[0] == 3             # 8 logical sectors per physical block
    assert 'RO' in blk.feature_names().split('|')
    assert 'read-only' in str(blk)


def test_garbage_configuration_leaves_the_device_unbound_naming_the_field():
    model = BlkModel(misbehave='garbage_config')
    devs = virtio.probe(Machine([model]))
    assert isinstance(devs[0], virtio.UnboundDevice)
    assert 'capacity' in devs[0].error and 'outside' in devs[0].error


def test_block_size_not_a_power_of_two_is_refused():
    model = BlkModel(blk_size=1536)
    devs = virtio.probe(Machine([model]))
    assert isinstance(devs[0], virtio.UnboundDevice)
    assert 'blk_size = 1536' in devs[0].error


def test_writeback_can_be_switched_through_config_wce():
    m, model, blk = up()
    blk.writeback = False
    assert model.writeback == 0 and blk.writeback is False
    blk.write(0, pattern(SECTOR))
    assert bytes(model.stable[:SECTOR]) == pattern(SECTOR)     # writethrough: stable at once
    blk.writeback = True
    assert model.writeback == 1


def test_without_config_wce_the_cache_mode_is_fixed():
    m, model, blk = up(features=DEFAULT_FEATURES & ~(1 << VIRTIO_BLK_F_CONFIG_WCE))
    assert blk.writeback is True            # FLUSH without CONFIG_WCE: a writeback cache
    with pytest.raises(OSError) as e:
        blk.writeback = False
    assert e.value.args[0] == errno.EOPNOTSUPP


def test_config_change_is_seen_after_refresh():
    m, model, blk = up(sectors=64)
    model.set_config(0, (128).to_bytes(8, 'little'))
    model.disk.extend(bytes(64 * SECTOR))
    assert blk.capacity == 64
    blk.refresh()
    assert blk.capacity == 128
    blk.write(100, pattern(SECTOR))
    assert bytes(model.disk[100 * SECTOR:101 * SECTOR]) == pattern(SECTOR)


# -- every request type -------------------------------------------------------------------------

@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('machine', [Machine, AddressingMachine])
def test_write_then_read_back_byte_for_byte(mode, machine):
    m, model, blk = up(machine, mode=mode, sectors=256)
    data = pattern(16 * SECTOR, 1)
    blk.write(10, data)
    assert bytes(model.disk[10 * SECTOR:26 * SECTOR]) == data
    assert bytes(model.disk[:10 * SECTOR]) == bytes(10 * SECTOR)
    assert bytes(model.disk[26 * SECTOR:]) == bytes(230 * SECTOR)
    assert blk.read(10, 16) == data
    buf = bytearray(4 * SECTOR)
    blk.readinto(12, buf)
    assert bytes(buf) == data[2 * SECTOR:6 * SECTOR]
    assert model.errors == []


@pytest.mark.parametrize('indirect', [True, False])
def test_a_packed_ring_carries_the_prebuilt_chains_when_the_device_offers_it(indirect):
    """Issue 10: blk negotiates RING_PACKED and posts its slots' chains into the packed
    ring (one descriptor per request pointing at the slot's indirect table, or the chain
    copied into the ring without INDIRECT_DESC), wrapping the ring many times."""
    m, model, blk = up(mode='modern', packed=True, sectors=256, indirect=indirect)
    assert blk.requestq.kind == 'packed' and 'RING_PACKED' in blk.feature_names()
    assert blk.has(F.INDIRECT_DESC) == indirect
    for k in range(3 * blk.requestq.size):
        data = pattern(1024, k)
        blk.write(k % 200, data)
        assert blk.read(k % 200, 2) == data
    blk.flush()
    assert blk.id() == 'model-disk'
    tags = [blk.submit_read(8 * i, bytearray(4096), i) for i in range(20)]
    assert sorted(blk.collect()) == tags
    # The generic ring object is handed over, so it cannot be misused beside the driver.
    with pytest.raises(VirtioError, match='driven by the virtio-blk driver'):
        blk.requestq.pop()
    assert model.errors == []


def test_read_of_data_the_host_put_on_the_disk():
    disk = bytearray(pattern(64 * SECTOR, 5))
    m, model, blk = up(disk=disk)
    assert blk.read(0, 64) == bytes(disk)
    assert blk.read(63, 1) == bytes(disk[63 * SECTOR:])


def test_flush_makes_completed_writes_stable():
    m, model, blk = up(sectors=64)
    blk.write(4, pattern(2 * SECTOR))
    assert bytes(model.stable[4 * SECTOR:6 * SECTOR]) == bytes(2 * SECTOR)   # still volatile
    blk.flush()
    assert model.flushes == 1
    assert bytes(model.stable) == bytes(model.disk)
    assert model.requests[-1] == (B.VIRTIO_BLK_T_FLUSH, 0, 0, 0)


def test_flush_waits_for_the_writes_in_flight_first():
    # The device serves the last request it saw first: a flush sent along with the
    # writes would overtake them.
    m, model, blk = up(sectors=64, completion='deferred', order='lifo', auto_complete=True)
    blk.submit_write(0, pattern(SECTOR, 1), 'w1')
    blk.submit_write(8, pattern(SECTOR, 2), 'w2')
    blk.flush()
    assert [r[0] for r in model.requests] == [1, 1, 4]     # both writes, then the flush
    assert bytes(model.stable[:SECTOR]) == pattern(SECTOR, 1)
    assert bytes(model.stable[8 * SECTOR:9 * SECTOR]) == pattern(SECTOR, 2)
    assert sorted(blk.poll()) == ['w1', 'w2']


def test_flush_without_the_feature_sends_nothing():
    m, model, blk = up(features=DEFAULT_FEATURES & ~(1 << VIRTIO_BLK_F_FLUSH)
                       & ~(1 << VIRTIO_BLK_F_CONFIG_WCE))
    before = quiet(model)
    blk.flush()
    assert quiet(model) == before
    assert blk.writeback is False


@pytest.mark.parametrize('serial, expect', [(b'disk-0042', 'disk-0042'),
                                            (b'A' * 20, 'A' * 20),
                                            (b'', ''),
                                            (b'ab\x01\xffcd', 'ab??cd')])
def test_id_returns_the_serial(serial, expect):
    m, model, blk = up(serial=serial)
    assert blk.id() == expect
    assert model.errors == []            # GET_ID with exactly 20 data bytes


def test_write_zeroes_zeroes_the_range_and_discard_reaches_the_device():
    m, model, blk = up(disk=bytearray(pattern(64 * SECTOR, 3)))
    blk.write_zeroes(8, 16)
    assert bytes(model.disk[8 * SECTOR:24 * SECTOR]) == bytes(16 * SECTOR)
    assert bytes(model.disk[:8 * SECTOR]) == pattern(64 * SECTOR, 3)[:8 * SECTOR]
    assert blk.read(8, 16) == bytes(16 * SECTOR)
    blk.write_zeroes(30, 2, unmap=True)
    assert bytes(model.disk[30 * SECTOR:32 * SECTOR]) == bytes(2 * SECTOR)
    blk.discard(40, 24)
    assert model.discarded == [(40, 24)]
    assert model.errors == []


def test_discard_and_write_zeroes_split_by_the_device_limits():
    m, model, blk = up(sectors=256, max_discard_sectors=16, max_write_zeroes_sectors=10)
    blk.discard(0, 40)
    assert model.discarded == [(0, 16), (16, 16), (32, 8)]
    n = len(model.requests)
    blk.write_zeroes(100, 25)
    assert len(model.requests) - n == 3


@pytest.mark.parametrize('bit, call', [(VIRTIO_BLK_F_DISCARD, 'discard'),
                                       (VIRTIO_BLK_F_WRITE_ZEROES, 'write_zeroes')])
def test_discard_or_write_zeroes_without_the_feature_is_eopnotsupp(bit, call):
    m, model, blk = up(features=DEFAULT_FEATURES & ~(1 << bit))
    before = quiet(model)
    with pytest.raises(OSError) as e:
        getattr(blk, call)(0, 8)
    assert e.value.args[0] == errno.EOPNOTSUPP
    assert quiet(model) == before


# -- status byte ----------------------------------------------------------------------------------

def test_ioerr_raises_eio_naming_the_sectors_and_the_driver_keeps_working():
    m, model, blk = up(sectors=64, bad_sectors=[20])
    with pytest.raises(OSError) as e:
        blk.read(16, 8)
    assert e.value.errno == errno.EIO
    assert 'sectors 16-23' in str(e.value) and 'VIRTIO_BLK_S_IOERR' in str(e.value)
    with pytest.raises(OSError) as e:
        blk.write(20, pattern(SECTOR))
    assert e.value.errno == errno.EIO and 'write of sector 20' in str(e.value)
    blk.write(0, pattern(SECTOR))
    assert blk.read(0, 1) == pattern(SECTOR)
    assert blk.in_flight == 0


def test_unsupp_raises_eopnotsupp():
    m, model, blk = up(unsupported=[B.VIRTIO_BLK_T_FLUSH, B.VIRTIO_BLK_T_GET_ID])
    with pytest.raises(OSError) as e:
        blk.flush()
    assert e.value.errno == errno.EOPNOTSUPP and 'flush' in str(e.value)
    with pytest.raises(OSError) as e:
        blk.id()
    assert e.value.errno == errno.EOPNOTSUPP and 'VIRTIO_BLK_S_UNSUPP' in str(e.value)
    assert blk.read(0, 1) == bytes(SECTOR)


@pytest.mark.parametrize('how, words', [('no_status', 'never written'), ('bad_status', '0x07')])
def test_a_status_byte_out_of_the_spec_is_a_device_error(how, words):
    m, model, blk = up(blk_misbehave=how)
    with pytest.raises(DeviceError) as e:
        blk.read(0, 1)
    assert words in str(e.value) and 'sector 0' in str(e.value)
    assert blk.in_flight == 0


def test_a_device_that_never_answers_times_out():
    m, model, blk = up(misbehave='never_complete')
    blk.timeout_ms = 50
    with pytest.raises(VirtioTimeout) as e:
        blk.read(0, 1)
    assert 'no completion within 50 ms' in str(e.value)
    assert e.value.errno == errno.ETIMEDOUT


@pytest.mark.parametrize('how', ['oversized_len', 'bad_used_id', 'used_idx_jump'])
def test_a_misbehaving_ring_is_a_device_error_not_a_hang(how):
    m, model, blk = up(misbehave=how)
    blk.timeout_ms = 200
    with pytest.raises(DeviceError):
        blk.read(0, 1)


# -- bad input: refused before the device sees anything ------------------------------------------

@pytest.mark.parametrize('call, kind, words', [
    (lambda b: b.read(60, 8), ValueError, 'runs past the end of the disk (capacity 64'),
    (lambda b: b.write(64, bytes(SECTOR)), ValueError, 'sector 64 runs past the end'),
    (lambda b: b.write(0, bytes(100)), ValueError, 'multiple of the 512-byte block size'),
    (lambda b: b.readinto(0, bytearray(0)), ValueError, 'positive multiple'),
    (lambda b: b.read(0, 0), ValueError, 'count must be positive'),
    (lambda b: b.read(-1, 1), ValueError, 'not on a 512-byte block boundary'),
    (lambda b: b.readinto(0, b'\0' * SECTOR), TypeError, ''),
    (lambda b: b.discard(63, 2), ValueError, 'sectors 63-64 runs past'),
    (lambda b: b.write_zeroes(0, 0), ValueError, 'positive multiple'),
    (lambda b: b.submit(B.VIRTIO_BLK_T_IN, 0, None), ValueError, 'needs a buffer'),
    (lambda b: b.submit(99, 0, bytearray(SECTOR)), ValueError, 'unknown request type 99'),
])
def test_bad_input_is_refused_before_anything_reaches_the_device(call, kind, words):
    m, model, blk = up(sectors=64, disk=bytearray(pattern(64 * SECTOR)))
    before = quiet(model)
    with pytest.raises(kind) as e:
        call(blk)
    assert words in str(e.value)
    assert quiet(model) == before
    assert bytes(model.disk) == pattern(64 * SECTOR)
    assert blk.in_flight == 0


def test_the_last_sector_can_be_written_and_nothing_past_it():
    m, model, blk = up(sectors=64)
    model.disk.extend(b'\xEE' * SECTOR)         # a guard past the capacity the device reports
    blk.write(63, pattern(SECTOR))
    with pytest.raises(ValueError):
        blk.write(63, pattern(2 * SECTOR))
    assert bytes(model.disk[63 * SECTOR:64 * SECTOR]) == pattern(SECTOR)
    assert bytes(model.disk[64 * SECTOR:]) == b'\xEE' * SECTOR


def test_read_only_disk_refuses_writes_before_the_device_sees_them():
    m, model, blk = up(read_only=True, disk=bytearray(pattern(64 * SECTOR)))
    assert blk.read(0, 2) == pattern(2 * SECTOR)
    before = quiet(model)
    for call in (lambda: blk.write(0, bytes(SECTOR)), lambda: blk.discard(0, 8),
                 lambda: blk.write_zeroes(0, 8), lambda: blk.writeblocks(0, bytes(SECTOR)),
                 lambda: blk.writeblocks(0, b'x', 3)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EROFS and 'read-only' in str(e.value)
    assert quiet(model) == before
    assert bytes(model.disk) == pattern(64 * SECTOR)


def test_4096_byte_blocks_need_whole_aligned_blocks():
    m, model, blk = up(blk_size=4096, sectors=256)
    data = pattern(8192)
    blk.write(8, data)
    assert blk.read(8, 16) == data
    before = quiet(model)
    with pytest.raises(ValueError) as e:
        blk.read(4, 8)
    assert 'not on a 4096-byte block boundary' in str(e.value)
    with pytest.raises(ValueError) as e:
        blk.write(8, bytes(SECTOR))
    assert 'multiple of the 4096-byte block size' in str(e.value)
    with pytest.raises(ValueError):
        blk.discard(8, 4)
    assert quiet(model) == before
    assert model.errors == []


def test_tags_default_to_new_ints():
    m, model, blk = up(completion='deferred', auto_complete=True)
    tags = [blk.submit(B.VIRTIO_BLK_T_IN, i, bytearray(SECTOR)) for i in range(5)]
    assert len(set(tags)) == 5
    assert sorted(blk.collect()) == sorted(tags)


# -- splitting ----------------------------------------------------------------------------------

def test_transfers_split_by_seg_max_and_size_max():
    m, model, blk = up(AddressingMachine, sectors=1024, seg_max=4, size_max=4096)
    assert blk.size_max == 4096 and blk.seg_max == 4
    data = pattern(64 * 1024, 2)
    src = dma_view(m, len(data))
    src[:] = data
    blk.write(0, src)
    writes = [r for r in model.requests if r[0] == B.VIRTIO_BLK_T_OUT]
    assert writes == [(1, s, 16384, 4) for s in (0, 32, 64, 96)]
    dst = dma_view(m, len(data))
    blk.readinto(0, dst)
    assert bytes(dst) == data
    assert model.errors == []


def test_size_max_below_a_block_still_makes_whole_block_requests():
    m, model, blk = up(AddressingMachine, blk_size=4096, sectors=256, seg_max=8, size_max=1024)
    dst = dma_view(m, 8192)
    blk.readinto(0, dst)
    reads = [r for r in model.requests if r[0] == B.VIRTIO_BLK_T_IN]
    assert reads == [(0, 0, 8192, 8)]
    assert model.errors == []


def test_limits_that_cannot_carry_one_block_leave_the_device_unbound():
    devs = virtio.probe(Machine([BlkModel(blk_size=4096, seg_max=2, size_max=1024)]))
    assert isinstance(devs[0], virtio.UnboundDevice)
    assert 'seg_max 2 x size_max 1024 cannot carry one 4096-byte block' in devs[0].error


def test_seg_max_one_and_a_smaller_max_transfer():
    m, model, blk = up(AddressingMachine, sectors=1024, seg_max=1)
    blk.max_transfer = 8192
    assert blk.max_request == 8192
    dst = dma_view(m, 40960)
    blk.readinto(0, dst)
    assert [r[2] for r in model.requests if r[0] == 0] == [8192] * 5


def test_zero_copy_sends_one_request_and_bounce_buffers_split_it():
    m, model, blk = up(AddressingMachine, sectors=4096, disk=bytearray(pattern(4096 * SECTOR)))
    dst = dma_view(m, 1 << 20)
    blk.readinto(0, dst)
    assert [r for r in model.requests if r[0] == 0] == [(0, 0, 1 << 20, 1)]
    assert bytes(dst) == bytes(model.disk[:1 << 20])
    # A heap buffer the device cannot reach goes through bounce buffers.
    n = len(model.requests)
    plain = bytearray(1 << 20)
    blk.readinto(0, plain)
    sizes = [r[2] for r in model.requests[n:]]
    assert len(sizes) > 1 and sum(sizes) == 1 << 20
    assert plain == model.disk[:1 << 20]


def test_a_view_of_dma_memory_at_an_offset_is_used_in_place():
    m, model, blk = up(AddressingMachine, sectors=64)
    big = dma_view(m, 8 * SECTOR)
    blk.write(0, pattern(8 * SECTOR))
    blk.readinto(2, big[SECTOR:3 * SECTOR])
    assert bytes(big[SECTOR:3 * SECTOR]) == pattern(8 * SECTOR)[2 * SECTOR:4 * SECTOR]
    assert bytes(big[:SECTOR]) == bytes(SECTOR)


# -- many requests in flight ----------------------------------------------------------------------

@pytest.mark.parametrize('machine', [Machine, AddressingMachine])
def test_a_batch_goes_with_one_notification_and_completes_out_of_order(machine):
    m, model, blk = up(machine, sectors=2048, disk=bytearray(pattern(2048 * SECTOR, 9)),
                       completion='deferred', order='random', auto_complete=True)
    bufs = {}
    for i in range(60):     # within the 64 bounce buffers of the plain machine
        buf = dma_view(m, 2 * SECTOR) if machine is AddressingMachine else bytearray(2 * SECTOR)
        bufs[('r', i)] = (i * 37 % 1000, buf)
        blk.submit(B.VIRTIO_BLK_T_IN, i * 37 % 1000, buf, ('r', i))
    assert model.notifications == [0]           # queued, not sent
    done = blk.collect()
    assert sorted(done) == sorted(bufs)
    assert done != sorted(done, key=lambda t: t[1])  # the device answered out of order
    assert model.notifications[0] == 1
    for tag, (sector, buf) in bufs.items():
        assert bytes(buf) == bytes(model.disk[sector * SECTOR:(sector + 2) * SECTOR]), tag
    assert blk.poll() == [] and blk.in_flight == 0


def test_poll_returns_what_finished_and_raises_a_failure_once_with_its_tag():
    m, model, blk = up(sectors=256, bad_sectors=[100], completion='deferred')
    for i, s in enumerate((0, 96, 8, 16)):
        blk.submit(B.VIRTIO_BLK_T_IN, s, bytearray(8 * SECTOR), i)
    assert blk.poll() == []                    # sent, none completed yet
    model.complete()
    with pytest.raises(OSError) as e:
        blk.poll()
    assert e.value.errno == errno.EIO and e.value.tag == 1 and 'sectors 96-103' in str(e.value)
    assert sorted(blk.poll()) == [0, 2, 3]
    assert blk.poll() == []


def test_depth_bounds_the_requests_in_flight():
    m, model, blk = up(sectors=2048, completion='deferred', auto_complete=True)
    blk.depth = 4
    seen = []
    steps = blk._steps

    class Spy:                      # the ring's steps, counting what is in flight at each post
        def __getattr__(self, name):
            return getattr(steps, name)

        def post(self, *args):
            seen.append(blk.in_flight)
            return steps.post(*args)
    blk._steps = Spy()
    for i in range(30):
        blk.submit(B.VIRTIO_BLK_T_OUT, i * 8, pattern(8 * SECTOR, i))
    blk.collect()
    assert max(seen) == 4 and len(seen) == 30
    for i in range(30):
        assert bytes(model.disk[i * 8 * SECTOR:(i + 1) * 8 * SECTOR]) == pattern(8 * SECTOR, i)


def test_more_transfers_than_ring_slots():
    m, model, blk = up(AddressingMachine, sectors=4096, queue_sizes=(16,),
                       completion='deferred', order='lifo', auto_complete=True)
    bufs = [dma_view(m, SECTOR) for _ in range(100)]
    blk.write(0, pattern(100 * SECTOR, 4))
    for i, buf in enumerate(bufs):
        blk.submit(B.VIRTIO_BLK_T_IN, i, buf, i)
    assert sorted(blk.collect()) == list(range(100))
    assert b''.join(bytes(b) for b in bufs) == pattern(100 * SECTOR, 4)


def test_one_large_transfer_split_over_many_requests_in_flight_at_once():
    m, model, blk = up(AddressingMachine, sectors=4096, seg_max=2, size_max=4096,
                       completion='deferred', order='random', auto_complete=True)
    data = pattern(512 * 1024, 6)
    src = dma_view(m, len(data))
    src[:] = data
    blk.write(0, src)
    assert bytes(model.disk[:len(data)]) == data
    assert len([r for r in model.requests if r[0] == 1]) == 64
    assert model.notifications[0] <= 2


@pytest.mark.parametrize('size_max, slots', [(0, 5), (1024, 2)])
def test_without_indirect_descriptors_the_chains_live_in_the_ring(size_max, slots):
    m, model, blk = up(AddressingMachine, sectors=1024, indirect=False, queue_sizes=(16,),
                       size_max=size_max, seg_max=4, completion='deferred', order='random',
                       auto_complete=True)
    assert 'INDIRECT_DESC' not in blk.feature_names() and blk.slots == slots
    data = pattern(64 * SECTOR, 8)
    src = dma_view(m, len(data))
    src[:] = data
    for i in range(16):
        blk.submit_write(i * 4, src[i * 2048:(i + 1) * 2048], i)
    assert sorted(blk.collect()) == list(range(16))
    assert bytes(model.disk[:len(data)]) == data
    assert blk.read(0, 64) == data
    assert model.errors == []


def test_a_submit_that_times_out_half_way_leaves_the_driver_usable():
    m, model, blk = up(AddressingMachine, sectors=1024, completion='lazy')
    blk.max_transfer = 4096
    blk.depth = 2
    blk.timeout_ms = 30
    dst = dma_view(m, 4 * 4096)
    with pytest.raises(VirtioTimeout):
        blk.readinto(0, dst)             # 4 requests, room for 2, the device sleeps
    assert blk.in_flight == 2
    model.auto_complete = True          # the device wakes up
    blk.write(0, pattern(SECTOR))
    assert blk.read(0, 1) == pattern(SECTOR)
    assert blk.poll() == [] and blk.in_flight == 0


# -- the vector batch interface ------------------------------------------------------------------

def keep_depth(blk, m, nreq, depth, bs, first_sector=0, write_seed=None, machine_bufs=True):
    """The way a benchmark drives submit_batch/poll_batch: `depth` requests in flight,
    each refilled as it completes. Returns {sector: bytes read} (or written)."""
    from array import array
    bufs = [dma_view(m, bs) if machine_bufs else bytearray(bs) for _ in range(depth)]
    sectors = array('I', [0] * depth)
    tags = array('I', range(depth))
    out = array('I', [0] * depth)
    op = B.VIRTIO_BLK_T_IN if write_seed is None else B.VIRTIO_BLK_T_OUT
    seen = {}
    issued = 0

    def fill(t):
        nonlocal issued
        sectors[t] = first_sector + issued * (bs // SECTOR)
        if write_seed is not None:
            bufs[t][:] = pattern(bs, write_seed + issued)
        issued += 1

    for t in range(depth):
        fill(t)
    blk.submit_batch(op, tags, depth, sectors, bufs)
    while len(seen) < nreq:
        n = blk.poll_batch(out, 1000)
        k = 0
        for j in range(n):
            t = out[j]
            seen[sectors[t]] = bytes(bufs[t])
            if issued < nreq:
                fill(t)
                tags[k] = t
                k += 1
        if k:
            blk.submit_batch(op, tags, k, sectors, bufs)
    return seen


@pytest.mark.parametrize('machine', [Machine, AddressingMachine])
def test_batches_keep_the_depth_and_every_request_reads_its_own_sectors(machine):
    disk = bytearray(pattern(2048 * SECTOR, 4))
    m, model, blk = up(machine, disk=disk, completion='deferred', order='random',
                       auto_complete=True)
    seen = keep_depth(blk, m, 100, 16, 4096, machine_bufs=machine is AddressingMachine)
    assert sorted(seen) == [i * 8 for i in range(100)]
    for sector, data in seen.items():
        assert data == bytes(disk[sector * SECTOR:sector * SECTOR + 4096]), sector
    assert blk.in_flight == 0 and blk.poll() == []


def test_batched_writes_land_on_the_disk():
    m, model, blk = up(AddressingMachine, sectors=1024, completion='deferred', order='lifo',
                       auto_complete=True)
    keep_depth(blk, m, 64, 8, 512, write_seed=3)
    for i in range(64):
        assert bytes(model.disk[i * SECTOR:(i + 1) * SECTOR]) == pattern(SECTOR, 3 + i)


def test_a_bad_request_in_a_batch_queues_nothing():
    from array import array
    m, model, blk = up(AddressingMachine, sectors=64)
    bufs = [dma_view(m, SECTOR) for _ in range(3)]
    before = quiet(model)
    for sectors, bufs_, words in (([0, 8, 64], bufs, 'sector 64 runs past the end'),
                                  ([0, 8, 3], [bufs[0], bufs[1], bytes(SECTOR)], 'TypeError'),
                                  ([0, 8, 9], [bufs[0], bufs[1], dma_view(m, 100)], 'multiple')):
        with pytest.raises((ValueError, TypeError)) as e:
            blk.submit_batch(B.VIRTIO_BLK_T_IN, array('I', [0, 1, 2]), 3, array('I', sectors),
                             bufs_)
        assert words in str(e.value) or words == e.type.__name__
    with pytest.raises(ValueError) as e:
        blk.submit_batch(B.VIRTIO_BLK_T_IN, array('I', [0, 5]), 2, array('I', [0, 8]), bufs)
    assert 'tag 5' in str(e.value)
    with pytest.raises(ValueError) as e:
        blk.submit_batch(B.VIRTIO_BLK_T_FLUSH, array('I', [0]), 1, array('I', [0]), bufs)
    assert quiet(model) == before and blk.in_flight == 0
    with pytest.raises(OSError) as e:
        up(AddressingMachine, read_only=True)[2].submit_batch(
            B.VIRTIO_BLK_T_OUT, [0], 1, [0], [bytes(SECTOR)])
    assert e.value.errno == errno.EROFS


def test_a_failed_batch_request_raises_with_its_tag_and_the_others_come_through():
    from array import array
    m, model, blk = up(AddressingMachine, sectors=256, bad_sectors=[40])
    bufs = [dma_view(m, 4096) for _ in range(4)]
    blk.submit_batch(B.VIRTIO_BLK_T_IN, array('I', range(4)), 4, array('I', [0, 40, 80, 120]),
                     bufs)
    out = array('I', [0] * 4)
    with pytest.raises(OSError) as e:
        blk.poll_batch(out, 1000)
    assert e.value.errno == errno.EIO and e.value.tag == 1 and 'sectors 40-47' in str(e.value)
    assert sorted(out[:blk.poll_batch(out)]) == [0, 2, 3]


def test_finished_batch_tags_wait_for_poll_batch_within_the_slots():
    from array import array
    m, model, blk = up(AddressingMachine, sectors=4096, queue_sizes=(8,))
    bufs = [dma_view(m, SECTOR) for _ in range(8)]
    tags = array('I', range(8))
    blk.submit_batch(B.VIRTIO_BLK_T_IN, tags, 8, array('I', range(8)), bufs)
    blk.collect()
    with pytest.raises(ValueError) as e:
        blk.submit_batch(B.VIRTIO_BLK_T_IN, tags, 1, array('I', range(8)), bufs)
    assert '8 finished batch tags wait for poll_batch()' in str(e.value)
    out = array('I', [0] * 5)
    assert blk.poll_batch(out) == 5 and blk.poll_batch(out) == 3
    assert blk.poll_batch(out) == 0


def test_dump_shows_the_ring_and_the_requests_in_flight():
    m, model, blk = up(AddressingMachine, sectors=256, completion='deferred')
    blk.submit_read(8, dma_view(m, 4096), 'a')
    blk.submit(B.VIRTIO_BLK_T_FLUSH, tag='f')
    blk.kick()
    lines = []
    blk.dump(lines.append)
    assert 'split ring of 256, 256 slots (indirect tables of 3 descriptors), 2 in flight' \
        in lines[0]
    assert 'avail idx 2 (posted up to 2)  used idx 0 (seen up to 0)' in lines[1]
    assert any('read of sectors 8-15 -> 0x' in x and '(4096 bytes), status 0xff' in x
               for x in lines)
    assert any(': flush, status 0xff' in x for x in lines)
    model.complete()
    assert sorted(blk.collect()) == ['a', 'f']
    lines = []
    blk.dump(lines.append)
    assert len(lines) == 2 and 'used idx 2 (seen up to 2)' in lines[1]


# -- MicroPython's block device protocol ---------------------------------------------------------

def test_block_device_protocol_in_block_size_units():
    m, model, blk = up(blk_size=4096, sectors=256)
    assert blk.ioctl(4, 0) == 32 and blk.ioctl(5, 0) == 4096
    assert blk.ioctl(1, 0) == 0 and blk.ioctl(6, 3) == 0 and blk.ioctl(99, 0) is None
    blk.writeblocks(3, pattern(8192))
    assert bytes(model.disk[3 * 4096:5 * 4096]) == pattern(8192)
    buf = bytearray(4096)
    blk.readblocks(4, buf)
    assert bytes(buf) == pattern(8192)[4096:]
    flushes = model.flushes
    assert blk.ioctl(3, 0) == 0 and model.flushes == flushes + 1


def test_block_device_protocol_with_offsets_patches_partial_blocks():
    m, model, blk = up(disk=bytearray(pattern(64 * SECTOR)))
    blk.writeblocks(2, b'hello', 510)              # straddles blocks 2 and 3
    expect = bytearray(pattern(64 * SECTOR))
    expect[2 * SECTOR + 510:2 * SECTOR + 515] = b'hello'
    assert model.disk == expect
    buf = bytearray(7)
    blk.readblocks(2, buf, 509)
    assert bytes(buf) == bytes(expect[2 * SECTOR + 509:2 * SECTOR + 516])


# -- a random workload against a reference disk ----------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODES), st.sampled_from([512, 4096]), st.sampled_from([0, 1024, 4096]),
       st.integers(1, 6), st.booleans(),
       st.lists(st.tuples(st.sampled_from(['r', 'w', 'z', 'q']), st.integers(0, 63),
                          st.integers(1, 8), st.integers(0, 255)), min_size=1, max_size=12))
def test_random_workload_matches_a_reference_disk(mode, bs, size_max, seg_max, zero_copy, ops):
    assume(not size_max or seg_max * size_max >= bs)    # else unusable: tested below
    machine = AddressingMachine if zero_copy else Machine
    spb = bs // SECTOR
    m, model, blk = up(machine, mode=mode, sectors=64 * spb, blk_size=bs, size_max=size_max,
                       seg_max=seg_max, completion='deferred', order='random',
                       auto_complete=True)
    ref = bytearray(64 * bs)
    queued = []

    def drain():
        # Queued reads race later writes on a real device too: settle them first.
        blk.collect()
        for tag, buf, expect in queued:
            assert bytes(buf) == expect
        del queued[:]

    for op, block, nblocks, seed in ops:
        nblocks = min(nblocks, 64 - block)
        sector = block * spb
        n = nblocks * bs
        if op in 'wz':
            drain()
        if op == 'w':
            data = pattern(n, seed)
            blk.write(sector, data)
            ref[block * bs:block * bs + n] = data
        elif op == 'z':
            blk.write_zeroes(sector, nblocks * spb)
            ref[block * bs:block * bs + n] = bytes(n)
        elif op == 'q':
            buf = dma_view(m, n) if zero_copy else bytearray(n)
            queued.append((blk.submit(B.VIRTIO_BLK_T_IN, sector, buf), buf,
                           bytes(ref[block * bs:block * bs + n])))
        else:
            assert blk.read(sector, nblocks * spb) == bytes(ref[block * bs:block * bs + n])
    drain()
    assert bytes(model.disk) == bytes(ref)
    assert model.errors == []
