"""The transport contract (virtio.transport.Transport): what every transport must do,
checked the same way on each of them, on the Python models and on QEMU's own devices
over qtest. A new transport joins by adding an entry to TRANSPORTS (a way to open one
transport to an rng device with queue 0) and passing every test here."""

import pytest

from virtio import features, pci, transport as tp
from virtio.trace import enable as trace_registers
from virtio.errors import VirtioError, VirtioTimeout
from virtio.transport import Transport, open_transport
from virtio.split import SplitVirtqueue

from virtio import mmio_probe
from virtio.mmio import MmioTransport

from tests.host.models import Machine, RngModel
from tests.host.models.bench import buf, machine_with
from tests.host.models.mmio import MmioModel
from tests.host.qtest import qtest_factory  # noqa: F401 (fixture)

VIRTIO_ID_RNG = 4


def model_rng(kind):
    def open_it(_factory):
        m, (fn,) = machine_with(RngModel())
        return m, open_transport(m, fn, kind)
    return open_it


def qtest_rng(kind):
    def open_it(factory):
        hw = factory(['-device', 'virtio-rng-pci'])
        fns = pci.scan(hw)
        pci.assign_resources(hw, fns)
        (fn,) = [f for f in fns if tp.is_virtio(f)]
        return hw, open_transport(hw, fn, kind)
    return open_it


def model_mmio_rng(version):
    def open_it(_factory):
        model = RngModel(mode='legacy' if version == 1 else 'modern')
        m = Machine(host_bridge=False, mmio=[MmioModel(model, version)])
        (found,), _ = mmio_probe.discover(m)
        return m, MmioTransport(m, found[0])
    return open_it


def qtest_mmio_rng(version):
    def open_it(factory):
        extra = [] if version == 1 else ['-global', 'virtio-mmio.force-legacy=false']
        hw = factory(['-device', 'virtio-rng-device'] + extra, machine='microvm')
        (found,), _ = mmio_probe.discover(hw)
        return hw, MmioTransport(hw, found[0])
    return open_it


TRANSPORTS = {
    'model-legacy': model_rng('legacy'),
    'model-modern': model_rng('modern'),
    'model-mmio-v1': model_mmio_rng(1),
    'model-mmio-v2': model_mmio_rng(2),
    'qtest-legacy': qtest_rng('legacy'),
    'qtest-modern': qtest_rng('modern'),
    'qtest-mmio-v1': qtest_mmio_rng(1),
    'qtest-mmio-v2': qtest_mmio_rng(2),
}


@pytest.fixture(params=sorted(TRANSPORTS))
def opened(request, qtest_factory):
    hw, t = TRANSPORTS[request.param](qtest_factory)
    return hw, t


def declared_methods():
    """Every method the base class declares and leaves to the subclass."""
    out = []
    for name in dir(Transport):
        fn = getattr(Transport, name)
        if not callable(fn) or name.startswith('__'):
            continue
        try:
            code = fn.__code__
        except AttributeError:
            continue
        if 'NotImplementedError' in code.co_names:
            out.append(name)
    return out


def test_the_base_class_declares_the_interface():
    names = declared_methods()
    for need in ('get_status', 'set_status', 'device_features', 'set_driver_features',
                 'num_queues', 'queue_max_size', 'enable_queue', '_notify_register', 'isr',
                 'config_generation', 'config_read32', 'config_write32', 'describe'):
        assert need in names
    with pytest.raises(NotImplementedError):
        Transport(None)


def test_every_declared_method_is_implemented(opened):
    _, t = opened
    for name in declared_methods():
        assert getattr(type(t), name) is not getattr(Transport, name), name


def test_capabilities_are_declared(opened):
    _, t = opened
    assert isinstance(t.address, str) and t.address
    assert t.device_type == VIRTIO_ID_RNG
    assert t.legacy_interface in (False, True)
    assert t.ring_align == 0 or t.ring_align & (t.ring_align - 1) == 0
    assert t.fixed_queue_size in (False, True)


def test_reset_then_status_bits_read_back(opened):
    _, t = opened
    t.reset()
    assert t.get_status() == 0
    t.add_status(tp.ACKNOWLEDGE)
    t.add_status(tp.DRIVER)
    assert t.get_status() == tp.ACKNOWLEDGE | tp.DRIVER
    t.reset()
    assert t.get_status() == 0


def test_features_and_the_legacy_interface_agree(opened):
    _, t = opened
    t.reset()
    offered = t.device_features()
    if t.legacy_interface:
        assert offered >> 32 == 0
        with pytest.raises(VirtioError):
            t.set_driver_features(1 << features.VERSION_1)
    else:
        assert features.has(offered, features.VERSION_1)


def test_queues_exist_up_to_num_queues(opened):
    _, t = opened
    t.reset()
    n = t.num_queues()
    assert n >= 1
    assert t.queue_max_size(0) >= 1


def test_config_outside_its_length_is_refused(opened):
    _, t = opened
    with pytest.raises(VirtioError) as e:
        t.config_read32(t.config_length)
    assert t.address in str(e.value)
    t.config_generation()           # answers on every transport, with or without one


def queue_0_live(hw, t):
    """Reset, negotiate VERSION_1 if offered, set up and enable queue 0 (split), DRIVER_OK:
    through the transport interface alone."""
    t.reset()
    t.add_status(tp.ACKNOWLEDGE | tp.DRIVER)
    accept = t.device_features() & features.mask(features.VERSION_1)
    t.set_driver_features(accept)
    if not t.legacy_interface:
        t.add_status(tp.FEATURES_OK)
    vq = SplitVirtqueue(hw, t, 0, t.queue_max_size(0), accept)
    vq.enable()
    t.add_status(tp.DRIVER_OK)
    return vq


def test_a_request_travels_and_the_isr_says_queue(opened):
    """Set up queue 0 through the interface alone, send one request, read the ISR."""
    hw, t = opened
    vq = queue_0_live(hw, t)
    vq.enable_interrupts()
    t.isr()                             # acknowledge anything from before
    addr, n = buf(hw, size=16)
    vq.add([], [(addr, n)], 'tok')
    vq.kick()
    token, length = vq.wait(2000)
    assert token == 'tok' and 0 < length <= 16
    assert t.isr() & tp.ISR_QUEUE
    t.reset()


def test_the_queue_notifier_is_sent_and_follows_the_register_trace(opened):
    """A queue keeps its notifier ([write, where, index]) from enable() and calls it on
    every kick, never asking the transport again: the notification must reach the
    device, and once the register trace is on, the same list must be traced."""
    hw, t = opened
    vq = queue_0_live(hw, t)
    kept = vq.notifier
    assert kept[2] == 0 and t.notifier(0) is kept
    addr, n = buf(hw, size=16)
    lines = []
    trace_registers(True, lines.append)
    try:
        for token in ('traced', 'again'):
            vq.add([], [(addr, n)], token)
            assert vq.kick() is True
            assert vq.wait(2000)[0] == token
            notified = [l for l in lines if '<- 0x0000' in l and 'notify' in l.lower()]
            assert len(notified) == 1, lines
            del lines[:]
            if token == 'traced':
                vq.notifier = t.notifier(0)     # what enable() does again: the same list
                assert vq.notifier is kept
    finally:
        trace_registers(False)
    assert vq.notifications == 2
    t.reset()


def test_a_reset_that_never_ends_times_out_with_the_address(opened):
    _, t = opened
    get = t.get_status
    t.get_status = lambda: 1
    try:
        with pytest.raises(VirtioTimeout) as e:
            t.reset(timeout_ms=5)
        assert t.address in str(e.value)
    finally:
        t.get_status = get
