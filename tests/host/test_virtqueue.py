"""Split virtqueues (spec 2.7) against the device model: round trips, used
lengths, many requests in flight, out-of-order completion, the 16-bit index
wrap, indirect descriptors, notification suppression, timeouts, dump."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from virtio import features as F, split as S
from virtio.errors import VirtioError, VirtioTimeout, VirtqueueFull
from virtio.split import VIRTQ_AVAIL_F_NO_INTERRUPT, SplitVirtqueue
from virtio.virtqueue import (VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
                              need_event)

from tests.host.models import GenericModel
from tests.host.models.bench import bring_up, buf

SPLIT = F.mask(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX)
NO_INDIRECT = F.mask(F.VERSION_1, F.EVENT_IDX)
PLAIN = F.mask(F.VERSION_1)


def setup(mode='modern', wanted=SPLIT, queue_size=8, alias=True, **model_kw):
    model_kw.setdefault('queue_sizes', (queue_size,))
    model = GenericModel(**model_kw)
    m, dev = bring_up(model, mode, wanted=wanted, alias=alias)
    return m, model, dev.vq


def read_desc(m, vq, i):
    return struct.unpack('<QIHH', m.read(vq.desc + 16 * i, 16))


@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_round_trip_echo(mode):
    m, model, vq = setup(mode)
    src = buf(m, b'hello virtio')
    dst = buf(m, size=64)
    head = vq.add([src], [dst], token='t1')
    assert vq.kick() is True
    assert vq.pop() == ('t1', 12)
    assert m.read(dst[0], 12) == b'hello virtio'
    assert vq.pop() is None
    assert vq.num_free == vq.size and vq.in_flight == 0
    assert model.errors == []
    assert head == 0


def test_a_kick_before_enable_is_refused_and_sent_once_enabled():
    m, model, vq = setup()
    q = SplitVirtqueue(m, vq.transport, 0, vq.size, SPLIT, name='fresh queue')
    dst = buf(m, size=16)
    q.add([buf(m, b'early')], [dst], token='early')
    with pytest.raises(VirtioError, match='fresh queue: kick before enable'):
        q.kick()
    q.enable()
    assert q.kick() is True and q.wait(500) == ('early', 5)
    assert m.read(dst[0], 5) == b'early'


@pytest.mark.parametrize('wanted', [SPLIT, NO_INDIRECT])
def test_descriptors_written_without_a_memory_view(wanted):
    # hw without bytearray_at (qtest): descriptors go through hw.write.
    m, model, vq = setup(wanted=wanted, alias=False)
    assert type(vq._ring).__name__ == 'CopyTable'
    vq.add([buf(m, b'copy')], [buf(m, size=2), buf(m, size=8)], 'c')
    vq.kick()
    assert vq.pop() == ('c', 4)
    assert model.errors == []


def test_used_length_counts_only_bytes_written():
    m, model, vq = setup()
    vq.add([buf(m, b'abc')], [buf(m, size=10), buf(m, size=100)], 'x')
    vq.kick()
    assert vq.pop() == ('x', 3)


def test_readable_only_request_reports_zero_length():
    m, model, vq = setup()
    vq.add([buf(m, b'abc')], [], 'ro')
    vq.kick()
    assert vq.pop() == ('ro', 0)


def test_chain_without_indirect_takes_one_descriptor_per_buffer():
    m, model, vq = setup(wanted=NO_INDIRECT)
    a, b, c = buf(m, b'12'), buf(m, size=4), buf(m, size=4)
    head = vq.add([a], [b, c], 't')
    assert vq.num_free == 5
    d0 = read_desc(m, vq, head)
    assert d0[:3] == (a[0], 2, VIRTQ_DESC_F_NEXT)
    d1 = read_desc(m, vq, d0[3])
    assert d1[:3] == (b[0], 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT)
    d2 = read_desc(m, vq, d1[3])
    assert d2[:3] == (c[0], 4, VIRTQ_DESC_F_WRITE)
    vq.kick()
    assert vq.pop() == ('t', 2)
    assert vq.num_free == 8


def test_indirect_chain_takes_one_ring_descriptor():
    m, model, vq = setup(wanted=SPLIT)
    assert vq.indirect_max == 8
    src = buf(m, b'0123456789')
    outs = [buf(m, size=4) for _ in range(3)]
    head = vq.add([src], outs, 'ind')
    assert vq.num_free == 7
    addr, length, flags, _ = read_desc(m, vq, head)
    assert flags == VIRTQ_DESC_F_INDIRECT and length == 4 * 16
    table = [struct.unpack('<QIHH', m.read(addr + 16 * i, 16)) for i in range(4)]
    assert [t[2] for t in table] == [1, 3, 3, 2]            # NEXT, WRITE|NEXT..., WRITE
    assert [t[3] for t in table[:3]] == [1, 2, 3]
    vq.kick()
    assert vq.pop() == ('ind', 10)
    assert b''.join(m.read(a, 4) for a, n in outs)[:10] == b'0123456789'
    assert vq.num_free == 8
    assert model.errors == []


def test_single_buffer_and_oversized_chains_stay_direct():
    m, model, vq = setup(wanted=SPLIT, queue_size=16)
    vq.indirect_max = 2
    head = vq.add([], [buf(m, size=4)], 'one')
    assert read_desc(m, vq, head)[2] == VIRTQ_DESC_F_WRITE
    vq.add([buf(m, b'a'), buf(m, b'b')], [buf(m, size=2)], 'three')
    assert vq.num_free == 16 - 1 - 3
    vq.kick()
    assert sorted(vq.collect()) == [('one', 4), ('three', 2)]
    assert model.errors == []


def test_queue_full_is_a_clear_error_and_changes_nothing():
    m, model, vq = setup(wanted=NO_INDIRECT, completion='deferred')
    for i in range(4):
        vq.add([buf(m, b'x')], [buf(m, size=1)], i)
    with pytest.raises(VirtqueueFull) as e:
        vq.add([buf(m, b'x')], [buf(m, size=1)], 'extra')
    assert str(e.value) == ('00:03.0 virtio-generic queue 0: 2 descriptors needed, '
                            '0 free (4 requests in flight)')
    with pytest.raises(VirtioError) as e:
        vq.add([buf(m, b'x')] * 9, [], 'never')
    assert 'can never fit a ring of 8' in str(e.value)
    with pytest.raises(VirtioError):
        vq.add([], [], 'empty')
    assert vq.in_flight == 4
    vq.kick()
    model.complete()
    assert sorted(t for t, n in vq.collect()) == [0, 1, 2, 3]
    assert vq.num_free == 8


@pytest.mark.parametrize('order', ['lifo', 'random'])
def test_many_in_flight_completed_out_of_order(order):
    m, model, vq = setup(queue_size=64, completion='deferred', order=order,
                         wanted=NO_INDIRECT, seed=7)
    bufs = []
    for i in range(32):
        src, dst = buf(m, bytes([i]) * (i + 1)), buf(m, size=64)
        bufs.append(dst)
        vq.add([src], [dst], i)
    assert vq.num_free == 0 and vq.in_flight == 32
    vq.kick()
    model.complete(count=10)
    first = vq.collect()
    model.complete()
    rest = vq.collect()
    got = first + rest
    assert sorted(got) == [(i, i + 1) for i in range(32)]
    assert [t for t, n in got] != list(range(32))           # really out of order
    for i, (a, n) in enumerate(bufs):
        assert m.read(a, i + 1) == bytes([i]) * (i + 1)
    # The free list survived: the whole ring can be used again.
    for i in range(32):
        vq.add([buf(m, b'z')], [buf(m, size=1)], 100 + i)
    vq.kick()
    model.complete()
    assert sorted(t for t, n in vq.collect()) == list(range(100, 132))
    assert model.errors == []


def start_indices_at(vq, model, idx):
    """Move both sides of a fresh, idle ring to index `idx` (white box: a real
    trip past 65535 takes 65536 round trips, too slow for a unit test)."""
    ring = model.queues[vq.index].ring
    from virtio import split as S
    vq.st[S.RING_AVAIL_IDX] = vq.st[S.RING_KICKED] = vq.st[S.RING_LAST_USED] = idx
    ring.last_avail = ring.used_idx = idx
    vq.hw.write16(vq.avail + 2, idx)
    vq.hw.write16(vq.used + 2, idx)
    if vq.event_idx:
        vq.hw.write16(vq._avail_event, idx)
        vq.suppress_interrupts()


@pytest.mark.parametrize('wanted', [SPLIT, PLAIN])
def test_indices_wrap_past_65535(wanted):
    m, model, vq = setup(queue_size=8, wanted=wanted, completion='deferred', order='random')
    start_indices_at(vq, model, 65530)
    sent = 0
    got = []
    for rnd in range(5):                # 5 rounds of 4 requests: 20 > 6 before the wrap
        for k in range(4):
            vq.add([buf(m, bytes([sent]))], [buf(m, size=1)], sent)
            sent += 1
        assert vq.kick() is True
        model.complete()
        got += vq.collect()
    assert sorted(got) == [(i, 1) for i in range(20)]
    assert vq.st[S.RING_AVAIL_IDX] == (65530 + 20) & 0xFFFF == 14
    assert m.read16(vq.used + 2) == 14
    assert model.errors == []


def test_event_idx_kick_notifies_only_when_the_device_asked():
    m, model, vq = setup(wanted=SPLIT, completion='lazy')
    assert vq.event_idx
    q = model.queues[0]
    vq.add([buf(m, b'a')], [], 1)
    assert vq.kick() is True                 # avail_event 0 lies in [0, 1)
    vq.add([buf(m, b'b')], [], 2)
    # The device has not caught up (avail_event still 0): it will find
    # request 2 on its own, so no notification.
    assert vq.kick() is False
    assert q.notifications == 1
    model.complete()                         # consumes both: avail_event 2
    assert m.read16(vq._avail_event) == 2
    assert sorted(vq.collect()) == [(1, 0), (2, 0)]
    vq.add([buf(m, b'c')], [], 3)
    assert vq.kick() is True                 # 2 lies in [2, 3)
    assert q.notifications == 2 and vq.notifications == 2
    assert model.errors == []


def test_no_notify_flag_without_event_idx():
    m, model, vq = setup(wanted=PLAIN)
    model.ring_no_notify(0, True)
    vq.add([buf(m, b'a')], [], 1)
    assert vq.kick() is False
    assert model.queues[0].notifications == 0
    model.ring_no_notify(0, False)
    assert vq.kick() is False                # nothing new since the last kick
    vq.add([buf(m, b'b')], [], 2)
    assert vq.kick() is True
    assert sorted(vq.collect()) == [(1, 0), (2, 0)]


def test_need_event_formula():
    assert need_event(0, 1, 0)
    assert not need_event(1, 1, 0)
    assert need_event(0xFFFF, 2, 0xFFFE)     # across the wrap
    assert not need_event(5, 2, 0xFFFE)


@pytest.mark.parametrize('wanted', [SPLIT, PLAIN])
def test_polling_suppresses_interrupts(wanted):
    m, model, vq = setup(wanted=wanted)
    for i in range(40):
        vq.add([buf(m, b'x')], [buf(m, size=1)], i)
        vq.kick()
        assert vq.wait() == (i, 1)
    assert model.interrupts == 0
    if not vq.event_idx:
        assert m.read16(vq.avail) == VIRTQ_AVAIL_F_NO_INTERRUPT
    vq.enable_interrupts()
    vq.add([buf(m, b'x')], [buf(m, size=1)], 'irq')
    vq.kick()
    vq.wait()
    assert model.interrupts == 1


def test_wait_times_out_and_keeps_the_request_in_flight():
    m, model, vq = setup(misbehave='never_complete')
    vq.add([buf(m, b'x')], [buf(m, size=1)], 'lost')
    vq.kick()
    with pytest.raises(VirtioTimeout) as e:
        vq.wait(timeout_ms=5)
    assert e.value.errno == 110
    assert ('00:03.0 virtio-generic queue 0: no completion within 5 ms (1 requests in flight)'
            in str(e.value))
    assert vq.in_flight == 1 and vq.num_free == 7     # not freed: the device owns it


def test_wait_returns_when_a_deferred_device_completes():
    m, model, vq = setup(completion='deferred', auto_complete=True)
    vq.add([buf(m, b'later')], [buf(m, size=8)], 'd')
    vq.kick()
    assert vq.pop() is None                  # nothing until time passes
    assert vq.wait(timeout_ms=1000) == ('d', 5)


def test_legacy_layout_round_trip_many():
    m, model, vq = setup('legacy', wanted=SPLIT, queue_size=16)
    assert vq.used % 4096 == 0
    for i in range(50):
        vq.add([buf(m, b'%d' % i)], [buf(m, size=4), buf(m, size=4)], i)
        vq.kick()
        assert vq.wait() == (i, len(b'%d' % i))
    assert model.errors == []


def test_ring_sizes_must_be_powers_of_two():
    m, model, vq = setup()
    for bad in (0, 3, 65536):
        with pytest.raises(VirtioError):
            SplitVirtqueue(m, vq.transport, 0, bad)


def test_dump_shows_descriptors_and_both_rings():
    m, model, vq = setup(wanted=SPLIT, completion='deferred')
    vq.add([buf(m, b'hdr')], [buf(m, size=8), buf(m, size=1)], 'a')
    vq.indirect_max = 0
    vq.add([buf(m, b'x')], [buf(m, size=2)], 'b')
    vq.kick()
    model.complete(count=1)
    lines = []
    vq.dump(lines.append)
    text = '\n'.join(lines)
    assert lines[0] == ('00:03.0 virtio-generic queue 0: split ring, size 8, 2 in flight, '
                        '5 free descriptors')
    assert 'INDIRECT' in text and 'NEXT|WRITE' in text
    assert '     [0] ' in text and '     [2] ' in text
    assert '  avail: flags 0x0000 idx 2 ring 0 1  used_event 65535' in lines
    assert '  used:  flags 0x0000 idx 1 ring 0/3  avail_event 2' in lines
    assert lines[-1] == ('  driver: next avail idx 2, last used idx 0, kicked at 2, '
                         '1 notifications')


def test_a_ring_taken_over_by_its_driver_refuses_the_generic_calls_and_dumps_its_state():
    # blk and net post prebuilt chains through the ring's steps; the generic
    # calls refuse, and dump() shows the one state both paths keep.
    from array import array
    m, model, vq = setup(wanted=SPLIT, completion='deferred')
    steps = vq.take_over('the test driver', 4, 2, False)
    with pytest.raises(VirtioError, match='driven by the test driver'):
        vq.add([buf(m, b'x')], [], 'a')
    with pytest.raises(VirtioError, match='driven by the test driver'):
        vq.pop()
    a, n = buf(m, b'abc')
    steps.build(m, vq.st, array('I', [a, n, VIRTQ_DESC_F_NEXT, a, 1, VIRTQ_DESC_F_WRITE] * 4))
    steps.post(m, vq.st, array('I', [1, 0, 0]), 1, 2, -1, 0)     # slot 1: head descriptor 2
    assert steps.publish(m, vq.st)
    lines = []
    vq.dump(lines.append)
    assert lines[0] == ('00:03.0 virtio-generic queue 0: split ring, size 8, 1 in flight, '
                        'driven by the test driver')
    assert any(l.startswith('     2* ') for l in lines)
    assert not any(l.startswith('     0* ') for l in lines)


def test_a_ring_with_requests_in_flight_cannot_be_handed_over():
    m, model, vq = setup(wanted=SPLIT, completion='deferred')
    vq.add([buf(m, b'x')], [], 'a')
    with pytest.raises(VirtioError, match='1 requests in flight'):
        vq.take_over('the test driver', 4, 2, False)
    assert vq.owner is None


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 3), st.booleans()),
                    min_size=1, max_size=40),
       indirect=st.booleans(), seed=st.integers(0, 1000))
def test_random_traffic_keeps_every_token_once(ops, indirect, seed):
    m, model, vq = setup(queue_size=8, completion='deferred', order='random', seed=seed,
                         wanted=SPLIT if indirect else NO_INDIRECT)
    outstanding = set()
    done = []
    n = 0
    for nread, nwrite, flush in ops:
        try:
            vq.add([buf(m, b'r')] * nread, [buf(m, size=2)] * nwrite, n)
            outstanding.add(n)
        except VirtqueueFull:
            assert vq.num_free < nread + nwrite
        n += 1
        vq.kick()
        if flush:
            model.complete(count=2)
            for t, ln in vq.collect():
                assert t in outstanding
                outstanding.remove(t)
                done.append(t)
    model.complete()
    for t, ln in vq.collect():
        outstanding.remove(t)
        done.append(t)
    assert not outstanding and len(done) == len(set(done))
    assert vq.num_free == 8 and vq.in_flight == 0
    assert model.errors == []


def test_constants_repeated_for_viper_agree_with_their_originals():
    # Viper builds in its own module's constants only: virtio.split.ring,
    # virtio.packed.ring and virtio.blk.fast repeat some as literals. Each must
    # equal the name it stands for.
    import ast
    import os
    from virtio import virtqueue as V
    from virtio.blk import consts as BC, fast as BF
    from virtio.packed import ring as P
    from virtio.split import ring as S
    for mod in (S, P):
        for name in ('RING_IN_FLIGHT', 'RING_LEN', 'RING_FREED', 'RING_NSLOTS', 'RING_PER',
                     'RING_INDIRECT', 'RING_CHAINS', 'RING_EVENT_IDX', 'RING_NOTIFIED'):
            assert getattr(mod, name) == getattr(V, name), (mod.__name__, name)
        assert mod.RING_WORDS > V.RING_COMMON
        assert (mod._F_NEXT, mod._F_INDIRECT, mod._DESC) == (
            V.VIRTQ_DESC_F_NEXT, V.VIRTQ_DESC_F_INDIRECT, V.DESC_SIZE)
    assert P._F_WRITE == V.VIRTQ_DESC_F_WRITE
    # Every constant blk's fast paths define names one of virtio.blk.consts or
    # virtio.virtqueue, with the same value.
    src = open(os.path.join(os.path.dirname(BF.__file__), 'fast.py')).read()
    names = [t.targets[0].id for t in ast.parse(src).body
             if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name)
             and t.targets[0].id.isupper()]
    assert len(names) > 35
    for name in names:
        if name == 'SIMPLE_BLOCK':
            assert BF.SIMPLE_BLOCK == 3     # header, one data segment, status
            continue
        origin = BC if hasattr(BC, name) else V
        assert getattr(BF, name) == getattr(origin, name), name
