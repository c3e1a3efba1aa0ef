"""Packed virtqueues (spec 2.8) against the device model: round trips, wrap
counters, out-of-order completion, indirect tables, event suppression."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from virtio import features as F, packed as P
from virtio.errors import VirtioError, VirtioTimeout, VirtqueueFull
from virtio.packed import (RING_EVENT_FLAGS_DISABLE, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED,
                           PackedVirtqueue)
from virtio.virtqueue import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE

from tests.host.models import GenericModel
from tests.host.models.bench import bring_up, buf

PACKED = F.mask(F.VERSION_1, F.RING_PACKED, F.INDIRECT_DESC, F.EVENT_IDX)
DIRECT = F.mask(F.VERSION_1, F.RING_PACKED, F.EVENT_IDX)
PLAIN = F.mask(F.VERSION_1, F.RING_PACKED)


def setup(wanted=PACKED, queue_size=8, alias=True, **model_kw):
    model_kw.setdefault('queue_sizes', (queue_size,))
    model = GenericModel(mode='modern', packed=True, **model_kw)
    m, dev = bring_up(model, wanted=wanted, alias=alias)
    assert dev.vq.kind == 'packed'
    return m, model, dev.vq


def slot(m, vq, i):
    return struct.unpack('<QIHH', m.read(vq.desc + 16 * i, 16))


def test_round_trip_and_descriptor_flags():
    m, model, vq = setup(wanted=DIRECT, completion='deferred')
    src, d1, d2 = buf(m, b'packed!'), buf(m, size=4), buf(m, size=8)
    bid = vq.add([src], [d1, d2], 'p')
    flags = [slot(m, vq, i)[3] for i in range(3)]
    avail = VIRTQ_DESC_F_AVAIL
    assert flags == [avail | VIRTQ_DESC_F_NEXT, avail | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                     avail | VIRTQ_DESC_F_WRITE]
    assert slot(m, vq, 2)[2] == bid                # buffer ID in the last descriptor
    vq.kick()
    model.complete()
    used = slot(m, vq, 0)
    assert used[3] & (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) == VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED
    assert vq.pop() == ('p', 7)
    assert m.read(d1[0], 4) + m.read(d2[0], 3) == b'packed!'
    assert vq.num_free == 8 and model.errors == []


@pytest.mark.parametrize('write_flag', [False, True])
def test_used_length_read_with_or_without_the_write_flag(write_flag):
    # QEMU 7.2 leaves VIRTQ_DESC_F_WRITE off used descriptors (the model's
    # default); the spec sets it when the device wrote. Both must work.
    m, model, vq = setup(packed_write_flag=write_flag)
    vq.add([buf(m, b'seven!!')], [buf(m, size=16)], 'w')
    vq.kick()
    assert bool(slot(m, vq, 0)[3] & VIRTQ_DESC_F_WRITE) == write_flag
    assert vq.pop() == ('w', 7)


@pytest.mark.parametrize('wanted', [PACKED, DIRECT])
def test_descriptors_written_without_a_memory_view(wanted):
    m, model, vq = setup(wanted=wanted, alias=False, queue_size=4)
    assert type(vq._ring).__name__ == 'CopyTable'
    for i in range(6):                       # wraps the ring
        vq.add([buf(m, b'copy')], [buf(m, size=2), buf(m, size=8)], i)
        vq.kick()
        assert vq.wait() == (i, 4)
    assert model.errors == []


def test_wrap_counters_over_many_laps():
    m, model, vq = setup(wanted=DIRECT, queue_size=5)     # not a power of 2: allowed
    for i in range(60):
        n = 1 + i % 3
        vq.add([buf(m, bytes([i]))], [buf(m, size=1)] * (n - 1) or [], i)
        vq.kick()
        assert vq.wait() == (i, 1 if n > 1 else 0)
    assert vq.st[P.RING_AVAIL_WRAP] in (0, 1) and vq.num_free == 5
    assert model.errors == []


@pytest.mark.parametrize('order', ['lifo', 'random'])
def test_many_in_flight_out_of_order(order):
    m, model, vq = setup(wanted=DIRECT, queue_size=32, completion='deferred', order=order, seed=3)
    dsts = []
    for lap in range(3):
        for i in range(16):
            dst = buf(m, size=2)
            dsts.append(dst)
            vq.add([buf(m, bytes([i, lap]))], [dst], (lap, i))
        assert vq.num_free == 0
        with pytest.raises(VirtqueueFull):
            vq.add([buf(m, b'x')], [], 'no room')
        vq.kick()
        model.complete(count=5)
        part = vq.collect()
        model.complete()
        got = part + vq.collect()
        assert sorted(got) == [((lap, i), 2) for i in range(16)]
        assert [t for t, n in got] != [(lap, i) for i in range(16)]
        assert vq.num_free == 32
    assert model.errors == []


def test_indirect_table_takes_one_slot():
    m, model, vq = setup(wanted=PACKED)
    outs = [buf(m, size=3) for _ in range(3)]
    vq.add([buf(m, b'abcdefg')], outs, 'ind')
    assert vq.num_free == 7
    addr, length, bid, flags = slot(m, vq, 0)
    assert flags & VIRTQ_DESC_F_INDIRECT and length == 64
    table = [struct.unpack('<QIHH', m.read(addr + 16 * k, 16)) for k in range(4)]
    assert [t[3] for t in table] == [0, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_WRITE]
    vq.kick()
    assert vq.pop() == ('ind', 7)
    assert model.errors == []


def test_event_idx_descriptor_event_decides_the_kick():
    m, model, vq = setup(wanted=DIRECT, completion='lazy')
    q = model.queues[0]
    vq.add([buf(m, b'a')], [], 1)
    assert vq.kick() is True                 # device event ENABLE at start
    model.complete()                         # device now asks for position 1
    assert vq.collect() == [(1, 0)]
    vq.add([buf(m, b'b')], [], 2)
    assert vq.kick() is True                 # 1 lies in [1, 2)
    vq.add([buf(m, b'c')], [], 3)
    assert vq.kick() is False                # device has not caught up to 2
    model.complete()
    assert sorted(vq.collect()) == [(2, 0), (3, 0)]
    vq.add([buf(m, b'd')], [], 4)
    assert vq.kick() is True
    assert q.notifications == 3 and model.errors == []


def test_device_event_disable_stops_kicks():
    m, model, vq = setup(wanted=PLAIN)
    model.ring_no_notify(0, True)
    vq.add([buf(m, b'a')], [], 1)
    assert vq.kick() is False and model.queues[0].notifications == 0
    model.ring_no_notify(0, False)
    vq.add([buf(m, b'b')], [], 2)
    assert vq.kick() is True
    assert sorted(vq.collect()) == [(1, 0), (2, 0)]


def test_polling_suppresses_interrupts():
    m, model, vq = setup()
    assert m.read16(vq.driver_event + 2) == RING_EVENT_FLAGS_DISABLE
    for i in range(20):
        vq.add([], [buf(m, size=4)], i)
        vq.kick()
        assert vq.wait() == (i, 4)
    assert model.interrupts == 0
    vq.enable_interrupts()
    vq.add([], [buf(m, size=4)], 'irq')
    vq.kick()
    vq.wait()
    assert model.interrupts == 1


def test_timeout_when_the_device_never_answers():
    m, model, vq = setup(misbehave='never_complete')
    vq.add([], [buf(m, size=4)], 'lost')
    vq.kick()
    with pytest.raises(VirtioTimeout) as e:
        vq.wait(timeout_ms=5)
    assert e.value.errno == 110 and vq.in_flight == 1


def test_packed_needs_modern_and_a_sane_size():
    m, model, vq = setup()
    with pytest.raises(VirtioError):
        PackedVirtqueue(m, vq.transport, 0, 0)
    with pytest.raises(VirtioError):
        PackedVirtqueue(m, vq.transport, 0, 32769)


def test_dump_shows_slots_and_event_structures():
    m, model, vq = setup(completion='deferred')
    vq.add([buf(m, b'h')], [buf(m, size=2), buf(m, size=1)], 'a')
    vq.add([], [buf(m, size=1)], 'b')
    before = []
    vq.dump(before.append)
    assert before[3].endswith(' 48        0     INDIRECT|AVAIL')
    assert before[4].startswith('     [0] ') and before[6].startswith('     [2] ')
    vq.kick()
    model.complete(count=1)
    lines = []
    vq.dump(lines.append)
    assert lines[0] == ('00:03.0 virtio-generic queue 0: packed ring, size 8, 2 in flight, '
                        '6 free slots')
    assert lines[3].endswith(' 1         0     AVAIL|USED')     # used: 1 byte written
    assert lines[4].endswith(' 1         1     WRITE|AVAIL')
    assert '  driver event: flags DISABLE off 0 wrap 0' in lines
    assert '  device event: flags DESC off 2 wrap 1' in lines


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3), st.booleans()),
                    min_size=1, max_size=40),
       indirect=st.booleans(), size=st.integers(3, 9), seed=st.integers(0, 1000))
def test_random_traffic_keeps_every_token_once(ops, indirect, size, seed):
    m, model, vq = setup(queue_size=size, completion='deferred', order='random', seed=seed,
                         wanted=PACKED if indirect else DIRECT)
    outstanding = set()
    n = 0
    for nread, nwrite, flush in ops:
        try:
            vq.add([buf(m, b'r')] * nread, [buf(m, size=2)] * nwrite, n)
            outstanding.add(n)
        except VirtqueueFull:
            pass
        except VirtioError:
            assert nread + nwrite > size
        n += 1
        vq.kick()
        if flush:
            model.complete(count=2)
            for t, ln in vq.collect():
                outstanding.remove(t)
    model.complete()
    for t, ln in vq.collect():
        outstanding.remove(t)
    assert not outstanding and vq.num_free == size and vq.in_flight == 0
    assert model.errors == []
