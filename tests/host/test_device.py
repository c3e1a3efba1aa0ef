"""Device initialization (spec 3.1.1) and feature negotiation (2.2) through
the device base class, on both transports."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from virtio import features as F, transport as tp
from virtio.device import VirtioDevice
from virtio.errors import DeviceError, NegotiationError, VirtioError, VirtioTimeout

from tests.host.models import BlkModel, GenericModel
from tests.host.models.bench import GenericDriver, bring_up, machine_with
from tests.host.models.virtio import F_BAD_FEATURE
from virtio.transport import open_transport


def model_of(m):
    return m.root.functions[(3, 0)]


def test_modern_init_walks_the_status_sequence():
    m, dev = bring_up(GenericModel())
    assert model_of(m).status_writes == [
        0, tp.ACKNOWLEDGE, tp.ACKNOWLEDGE | tp.DRIVER,
        tp.ACKNOWLEDGE | tp.DRIVER | tp.FEATURES_OK,
        tp.ACKNOWLEDGE | tp.DRIVER | tp.FEATURES_OK | tp.DRIVER_OK]
    assert model_of(m).queues[0].enabled
    assert model_of(m).errors == []


def test_legacy_init_has_no_features_ok_step():
    m, dev = bring_up(GenericModel(), 'legacy')
    assert model_of(m).status_writes == [0, 1, 3, 7]
    assert model_of(m).errors == []


def test_queue_is_set_up_before_driver_ok():
    class Watch(GenericDriver):
        def setup(self):
            GenericDriver.setup(self)
            self.status_at_setup = self.transport.get_status()
    m, dev = bring_up(GenericModel(), driver=Watch)
    assert dev.status_at_setup == tp.ACKNOWLEDGE | tp.DRIVER | tp.FEATURES_OK


def test_negotiated_is_offered_and_supported():
    class Picky(GenericDriver):
        SUPPORTED_FEATURES = F.mask(3, 5)
        FEATURE_NAMES = {3: 'THREE', 5: 'FIVE', 7: 'SEVEN'}
    model = GenericModel(features=F.mask(5, 7, 9), event_idx=False)
    m, dev = bring_up(model, driver=Picky)
    assert dev.features == F.mask(5, F.INDIRECT_DESC, F.VERSION_1)
    assert dev.offered == F.mask(5, 7, 9, F.INDIRECT_DESC, F.VERSION_1, F.RING_RESET)
    assert dev.feature_names() == 'FIVE|INDIRECT_DESC|VERSION_1'
    assert model.driver_features == dev.features
    assert str(dev) == '00:03.0 virtio-generic modern 256q features=FIVE|INDIRECT_DESC|VERSION_1'


def test_legacy_never_acknowledges_bad_feature_or_legacy_only_bits():
    model = GenericModel(features=0xFFFFFF)
    m, dev = bring_up(model, 'legacy', wanted=(1 << 64) - 1)
    acked = [v for sel, v in model.feature_writes]
    assert acked and all(not v & F_BAD_FEATURE for v in acked)
    assert not dev.has(F.BAD_FEATURE)
    assert dev.offered & F_BAD_FEATURE
    assert model.errors == []


@settings(max_examples=40, deadline=None)
@given(offered=st.integers(0, (1 << 24) - 1), wanted=st.integers(0, (1 << 64) - 1),
       mode=st.sampled_from(['legacy', 'modern']))
def test_driver_writes_only_offered_bits(offered, wanted, mode):
    wanted |= F.mask(F.VERSION_1)       # a modern device needs it accepted
    model = GenericModel(features=offered)
    m, dev = bring_up(model, mode, wanted=wanted)
    written = 0
    for sel, v in model.feature_writes:
        written |= v << (32 * sel)
    legacy_word = (model.features & 0xFFFFFFFF) | 0x49000000
    seen = legacy_word if mode == 'legacy' else model.features
    assert written == seen & wanted & ~F_BAD_FEATURE
    assert dev.features == written
    assert model.errors == []


@pytest.mark.parametrize('mode', ['modern'])
def test_refused_features_ok_fails_the_device_and_names_step_and_device(mode):
    model = BlkModel(misbehave='refuse_features_ok')
    m, (fn,) = machine_with(model)

    class Blk(VirtioDevice):
        NAME = 'virtio-blk'
    dev = Blk(open_transport(m, fn, mode))
    with pytest.raises(NegotiationError) as e:
        dev.init()
    msg = str(e.value)
    assert msg.startswith('00:03.0 virtio-blk: FEATURES_OK step: device did not accept '
                          'FEATURES_OK (features 0x1')
    assert e.value.step == 'FEATURES_OK'
    assert model.status & tp.FAILED
    assert not model.status & tp.DRIVER_OK
    assert model.status_writes[-1] & tp.FAILED


def test_refused_features_ok_does_not_matter_to_legacy():
    m, dev = bring_up(GenericModel(misbehave='refuse_features_ok'), 'legacy')
    assert dev.transport.get_status() & tp.DRIVER_OK


def test_modern_device_without_version_1_is_refused():
    model = GenericModel(mode='modern')
    model.features &= ~(1 << 32)
    with pytest.raises(NegotiationError) as e:
        bring_up(model)
    assert e.value.step == 'features'
    assert 'a modern device must offer VERSION_1' in str(e.value)
    assert model.status & tp.FAILED


def test_setup_failure_sets_failed_and_names_the_setup_step():
    class TwoQueues(GenericDriver):
        def setup(self):
            self.setup_queue(0)
            self.setup_queue(1)
    model = GenericModel(queue_sizes=(8,))
    with pytest.raises(NegotiationError) as e:
        bring_up(model, driver=TwoQueues)
    assert str(e.value) == ('00:03.0 virtio-generic: setup step: 00:03.0 virtio-generic: '
                            'queue 1 does not exist (1 queues)')
    assert isinstance(e.value.cause, VirtioError)
    assert model.status & tp.FAILED and not model.status & tp.DRIVER_OK


def test_reset_that_never_completes_is_a_timeout_naming_the_step():
    model = GenericModel(misbehave='stuck_reset')
    m, (fn,) = machine_with(model)
    t = open_transport(m, fn)
    t.set_status(tp.ACKNOWLEDGE)
    dev = GenericDriver(t)
    t.reset = lambda timeout_ms=5, r=t.reset: r(timeout_ms)
    with pytest.raises(VirtioTimeout) as e:
        dev.init()
    assert e.value.errno == 110
    assert '00:03.0 virtio-generic: reset step: 00:03.0: device status still 0x01' in str(e.value)
    assert model.status & tp.FAILED


def test_queue_size_smaller_than_maximum_and_too_large():
    m, dev = bring_up(GenericModel(queue_sizes=(64,)), queue_size=16)
    assert dev.vq.size == 16 and model_of(m).queues[0].size == 16
    with pytest.raises(NegotiationError) as e:
        bring_up(GenericModel(queue_sizes=(64,)), queue_size=128)
    assert 'queue 0 size 128 is above the device maximum 64' in str(e.value)


def test_packed_ring_chosen_when_negotiated():
    m, dev = bring_up(GenericModel(mode='modern', packed=True))
    assert dev.has(F.RING_PACKED) and dev.vq.kind == 'packed'
    m, dev = bring_up(GenericModel(mode='modern', packed=True),
                      wanted=F.mask(F.VERSION_1, F.INDIRECT_DESC))
    assert not dev.has(F.RING_PACKED) and dev.vq.kind == 'split'


def test_device_needs_reset_is_reported_by_check():
    model = GenericModel()
    m, dev = bring_up(model)
    dev.check()
    model.set_needs_reset()
    with pytest.raises(DeviceError) as e:
        dev.check()
    assert str(e.value) == ('00:03.0 virtio-generic: device set DEVICE_NEEDS_RESET '
                            '(status 0x4f ACKNOWLEDGE|DRIVER|DRIVER_OK|FEATURES_OK|'
                            'DEVICE_NEEDS_RESET)')


def test_device_needs_reset_raised_while_waiting_instead_of_a_timeout():
    model = GenericModel(misbehave='needs_reset')
    m, dev = bring_up(model)
    buf = m.dma_alloc(16)
    dev.vq.add([], [(buf, 16)], 'req')
    dev.vq.kick()
    with pytest.raises(DeviceError) as e:
        dev.vq.wait(timeout_ms=10000)
    assert 'DEVICE_NEEDS_RESET' in str(e.value)


def test_read_config_retries_until_generation_is_stable():
    model = BlkModel()
    m, (fn,) = machine_with(model)
    dev = VirtioDevice(open_transport(m, fn))
    changes = [3]

    def reader():
        v = dev.transport.config_read64(0)
        if changes[0]:
            changes[0] -= 1
            model.set_config(0, struct.pack('<Q', v + 1))
        return v
    assert dev.read_config(reader) == 2048 + 3
    model_changes_forever = lambda: model.set_config(0, bytes(8))
    with pytest.raises(DeviceError) as e:
        dev.read_config(model_changes_forever)
    assert 'config_generation kept changing' in str(e.value)


def test_check_config_rejects_garbage():
    model = BlkModel(misbehave='garbage_config')
    m, (fn,) = machine_with(model)
    dev = VirtioDevice(open_transport(m, fn))
    dev.NAME = 'virtio-blk'
    blk_size = dev.transport.config_read32(20)
    with pytest.raises(DeviceError) as e:
        dev.check_config('blk_size', blk_size, 512, 65536)
    assert str(e.value) == ('00:03.0 virtio-blk: config blk_size = 0xffffffff is outside '
                            '[0x200, 0x10000]')
    assert dev.check_config('x', 512, 512, 512) == 512


def test_reset_stops_the_device():
    model = GenericModel()
    m, dev = bring_up(model)
    dev.reset()
    assert model.status == 0 and not model.queues[0].enabled and dev.queues == []


def test_a_feature_whose_prerequisite_is_not_accepted_is_dropped_spec_2_2():
    from virtio import features as F
    deps = {5: (3,), 3: (1,)}
    assert F.drop_unmet(F.mask(1, 3, 5), deps) == F.mask(1, 3, 5)
    assert F.drop_unmet(F.mask(3, 5), deps) == 0            # 3 needs 1; then 5 needs 3
    assert F.drop_unmet(F.mask(1, 5), deps) == F.mask(1)
    # The core's own: packed rings need VERSION_1, whatever a driver asks.
    assert F.drop_unmet(F.mask(F.RING_PACKED), F.DEPENDENCIES) == 0


def test_a_driver_never_accepts_ring_features_its_queues_cannot_handle():
    from virtio import features as F
    from virtio.blk import BlkDevice
    m, fns = machine_with(BlkModel(mode='modern', packed=True))
    dev = BlkDevice(open_transport(m, fns[0]), wanted=~0)
    assert not dev.wanted & F.mask(F.RING_PACKED) & ~BlkDevice.RING_FEATURES
