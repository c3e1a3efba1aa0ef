"""A device is not to be trusted: every misbehaviour of the model raises the
right error, and the driver's descriptor bookkeeping stays intact."""

import pytest

from virtio import features as F
from virtio.errors import DeviceError

from tests.host.models import GenericModel
from tests.host.models.bench import bring_up

SPLIT = F.mask(F.VERSION_1, F.EVENT_IDX)
PACKED = F.mask(F.VERSION_1, F.EVENT_IDX, F.RING_PACKED)
RINGS = [('modern', SPLIT), ('legacy', SPLIT), ('modern', PACKED)]


def setup(mode, wanted, misbehave, size=8):
    model = GenericModel(mode='modern' if wanted == PACKED else 'transitional',
                          packed=wanted == PACKED, queue_sizes=(size,))
    m, dev = bring_up(model, mode, wanted=wanted)
    model.misbehave = misbehave
    return m, model, dev.vq


def request(m, vq, token, nwrite=1):
    src = m.dma_alloc(4, 16)
    outs = [(m.dma_alloc(8, 16), 8) for _ in range(nwrite)]
    vq.add([(src, 4)], outs, token)
    vq.kick()


def works_again(m, model, vq):
    model.misbehave = None
    request(m, vq, 'after')
    assert vq.wait() == ('after', 4)


@pytest.mark.parametrize('mode,wanted', RINGS)
def test_used_id_out_of_range(mode, wanted):
    m, model, vq = setup(mode, wanted, 'bad_used_id')
    request(m, vq, 'r1')
    free = vq.num_free
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert '00:03.0 virtio-generic queue 0: used' in str(e.value)
    assert ' id 9 ' in str(e.value) and 'not' in str(e.value)
    assert vq.num_free == free and vq.in_flight == 1     # nothing freed


def test_used_id_naming_a_descriptor_inside_a_chain():
    m, model, vq = setup('modern', SPLIT, 'used_id_not_head')
    request(m, vq, 'r1')           # head 0, chain 0 -> 1
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert str(e.value) == ('00:03.0 virtio-generic queue 0: used id 1 is not the head of '
                            'a request in flight')
    assert vq.num_free == 6 and vq.in_flight == 1


@pytest.mark.parametrize('mode,wanted', RINGS)
def test_oversized_used_length_frees_once_and_names_the_request(mode, wanted):
    m, model, vq = setup(mode, wanted, 'oversized_len')
    request(m, vq, 'big', nwrite=2)
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert e.value.token == 'big'
    assert 'used length 528 ' in str(e.value) and 'exceeds its 16 writable bytes' in str(e.value)
    assert vq.num_free == 8 and vq.in_flight == 0
    works_again(m, model, vq)


@pytest.mark.parametrize('mode,wanted', RINGS[:2])
def test_split_completion_reported_twice_is_refused_by_the_index_check(mode, wanted):
    m, model, vq = setup(mode, wanted, 'double_used')
    request(m, vq, 'r1')
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert 'used idx 2 reports 2 completions, only 1 requests in flight' in str(e.value)
    assert vq.num_free == 6 and vq.in_flight == 1     # still the device's


def test_packed_completion_reported_twice_is_never_freed_twice():
    m, model, vq = setup('modern', PACKED, 'double_used')
    request(m, vq, 'r1')
    assert vq.pop() == ('r1', 4)
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert 'used buffer id 0 at slot 2 is not a request in flight' in str(e.value)
    assert vq.num_free == 8 and vq.in_flight == 0


def test_used_idx_jumping_beyond_the_queue_size():
    m, model, vq = setup('modern', SPLIT, 'used_idx_jump')
    request(m, vq, 'r1')
    for _ in range(2):                       # stays refused, changes nothing
        with pytest.raises(DeviceError) as e:
            vq.pop()
        assert str(e.value) == ('00:03.0 virtio-generic queue 0: used idx jumped from 0 to 10, '
                                'more than the queue size 8')
        assert vq.num_free == 6 and vq.in_flight == 1


def test_used_idx_ahead_of_what_is_in_flight():
    m, model, vq = setup('modern', SPLIT, None)
    request(m, vq, 'r1')
    vq.hw.write16(vq.used + 2, 3)            # claims 3 completions for 1 request
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert 'reports 3 completions, only 1 requests in flight' in str(e.value)


@pytest.mark.parametrize('mode,wanted', RINGS)
def test_device_errors_do_not_disturb_other_requests(mode, wanted):
    m, model, vq = setup(mode, wanted, None)
    model.completion = 'deferred'
    for i in range(3):
        request(m, vq, i)
    model.misbehave = 'oversized_len'
    model.complete(count=1)
    model.misbehave = None
    model.complete()
    with pytest.raises(DeviceError) as e:
        vq.pop()
    assert e.value.token == 0
    assert sorted(vq.collect()) == [(1, 4), (2, 4)]
    assert vq.num_free == 8
