"""Interrupts below the drivers, on the device models: MSI-X (virtio.msix and the
transports' vector registers, 4.1.4.8), INTx (shared, level triggered, lowered by the
ISR read, 4.1.4.5), the ring's notification suppression deciding whether a completion
interrupts, and devices that misbehave: a storm, an interrupt with nothing in the used
ring, no interrupt at all, a refused vector."""

import pytest

from virtio import msix, pci
from virtio.errors import VirtioError

from tests.host.models import GenericModel
from tests.host.models.machine import Machine
from tests.host.models.pci import PlainDevice
from tests.host.models.bench import buf, bring_up, machine_with
from tests.host.models.virtio import IRQ_STORM
from virtio.transport import open_transport
from tests.host.models.bench import GenericDriver

SHORT_MS = 30


def model_of(m, slot=3):
    return m.root.functions[(slot, 0)]


def request(m, dev, token='r'):
    """One 16-byte request on queue 0, kicked, not waited for."""
    dev.vq.add((), [buf(m, size=16)], token)
    dev.vq.kick()


def with_msix(m, dev, entries=1):
    """MSI-X on: entry i -> a fresh CPU vector; returns (Msix, [vectors])."""
    x = msix.Msix(m, dev.transport.pci)
    vectors = []
    for i in range(entries):
        v = m.msi_alloc()
        x.set_entry(i, *m.msi_message(v))
        vectors.append(v)
    x.enable()
    dev.transport.follow_msix()
    return x, vectors


# -- the MSI-X capability ---------------------------------------------------------------

def test_msix_capability_table_and_pba_are_found_in_their_bar():
    m, dev = bring_up(GenericModel(queue_sizes=(8, 8, 8)))
    x = msix.Msix(m, dev.transport.pci)
    assert x.size == 4                          # three queues and the configuration
    bar1 = dev.transport.pci.bar(1)
    assert x.table == bar1.base and x.pba == bar1.base + 0x800
    x.set_entry(2, 0xFEE00000, 0x41, masked=True)
    assert x.entry(2) == (0xFEE00000, 0x41, True)
    x.mask(2, False)
    assert x.entry(2) == (0xFEE00000, 0x41, False)
    assert not x.enabled()
    x.enable()
    assert x.enabled() and dev.transport.pci.msix_enabled()
    with pytest.raises(VirtioError, match='out of range'):
        x.set_entry(4, 0, 0)


def test_a_function_without_msix_is_refused_clearly():
    m = Machine([PlainDevice(bars=[(0, 4096, 'mem32', False)])])
    fns = pci.scan(m)
    pci.assign_resources(m, fns)
    plain = fns[-1]
    assert msix.find(plain) is None
    with pytest.raises(VirtioError, match='no MSI-X capability'):
        msix.Msix(m, plain)


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_vector_registers_read_back_what_was_written(transport):
    m, dev = bring_up(GenericModel(queue_sizes=(8, 8)), transport)
    with_msix(m, dev)
    t = dev.transport
    assert t.set_config_msix_vector(2) == 2
    assert t.set_queue_msix_vector(1, 1) == 1
    assert t.set_queue_msix_vector(0, 0) == 0
    assert (t.config_msix_vector(), t.queue_msix_vector(0), t.queue_msix_vector(1)) == (2, 0, 1)
    assert t.set_queue_msix_vector(0, msix.NO_VECTOR) == msix.NO_VECTOR


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_a_refused_vector_reads_back_no_vector(transport):
    m, dev = bring_up(GenericModel(misbehave='refuse_msix'), transport)
    with_msix(m, dev)
    assert dev.transport.set_queue_msix_vector(0, 0) == msix.NO_VECTOR
    assert dev.transport.set_config_msix_vector(0) == msix.NO_VECTOR


def test_legacy_device_config_moves_to_0x18_while_msix_is_on():
    cfg = bytes(range(0x40, 0x50))
    m, dev = bring_up(GenericModel(config=cfg), 'legacy')
    t = dev.transport
    assert t.config_base == 0x14 and t.config_read32(0) == 0x43424140
    with pytest.raises(VirtioError, match='only while MSI-X is enabled'):
        t.set_queue_msix_vector(0, 0)
    x, _ = with_msix(m, dev)
    assert t.config_base == 0x18 and t.config_read32(4) == 0x47464544
    x.enable(False)
    t.follow_msix()
    assert t.config_base == 0x14 and t.config_read8(15) == 0x4F
    assert model_of(m).errors == []


# -- MSI-X end to end ---------------------------------------------------------------------

@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_a_completion_sends_its_queue_vector_and_the_handler_runs(transport):
    m, dev = bring_up(GenericModel(), transport)
    _, (v,) = with_msix(m, dev)
    assert dev.transport.set_queue_msix_vector(0, 0) == 0
    seen = []
    m.irq_attach(v, lambda vector: seen.append((vector, dev.vq.pop())))
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(1000) == (v,)
    assert seen == [(v, ('r', 16))]
    assert m.irq_count(v) == 1


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_suppressed_notifications_raise_nothing(transport):
    m, dev = bring_up(GenericModel(), transport)
    _, (v,) = with_msix(m, dev)
    dev.transport.set_queue_msix_vector(0, 0)
    dev.vq.suppress_interrupts()
    request(m, dev, 'quiet')
    assert m.irq_wait(SHORT_MS) == ()
    assert dev.vq.pop() == ('quiet', 16)
    dev.vq.enable_interrupts()
    request(m, dev, 'loud')
    assert m.irq_wait(1000) == (v,)
    assert dev.vq.pop() == ('loud', 16)


def test_a_masked_entry_holds_its_message_in_the_pba_until_unmasked():
    m, dev = bring_up(GenericModel())
    x, (v,) = with_msix(m, dev)
    dev.transport.set_queue_msix_vector(0, 0)
    dev.vq.enable_interrupts()
    x.mask(0)
    request(m, dev)
    assert m.irq_wait(SHORT_MS) == ()
    assert x.pending(0)
    x.mask(0, False)
    assert not x.pending(0)
    assert m.irq_wait(1000) == (v,)


def test_configuration_change_uses_the_config_vector():
    m, dev = bring_up(GenericModel(config=bytes(8)))
    _, (vq, vc) = with_msix(m, dev, entries=2)
    dev.transport.set_queue_msix_vector(0, 0)
    assert dev.transport.set_config_msix_vector(1) == 1
    model_of(m).set_config(0, b'\x01')
    assert m.irq_wait(1000) == (vc,)
    assert dev.transport.isr() & 2


# -- INTx ------------------------------------------------------------------------------------

@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_intx_with_msix_off_is_lowered_by_the_isr_read(transport):
    m, dev = bring_up(GenericModel(), transport)
    line = dev.transport.pci.interrupt_line
    assert line in (10, 11)                     # as the machine's "firmware" wired it
    v = m.intx_vector(line)
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(1000) == (v,)
    assert dev.transport.isr() & 1              # acknowledge: the line drops
    m.irq_unmask(v)
    assert m.irq_wait(SHORT_MS) == ()
    assert dev.vq.pop() == ('r', 16)


def test_two_devices_share_a_line_and_each_reads_its_own_isr():
    a, b = GenericModel(), GenericModel()
    m, fns = machine_with((3, a), (7, b))
    devs = []
    for fn in fns:
        d = GenericDriver(open_transport(m, fn), None)
        d.init()
        devs.append(d)
    lines = {d.transport.pci.interrupt_line for d in devs}
    assert len(lines) == 1, lines
    v = m.intx_vector(lines.pop())
    isr_seen = {}
    for name, d in zip('ab', devs):
        d.vq.enable_interrupts()
        m.irq_attach(v, lambda vector, d=d, name=name: isr_seen.setdefault(name, []).append(
            d.transport.isr()))
    request(m, devs[1], 'for b')
    assert m.irq_wait(1000) == (v,)
    assert isr_seen == {'a': [0], 'b': [1]}
    assert m.irq_wait(SHORT_MS) == ()           # served: the line is low, nothing more
    request(m, devs[0], 'for a')
    assert m.irq_wait(1000) == (v,)
    assert isr_seen == {'a': [0, 1], 'b': [1, 0]}
    assert m.irq_count(v) == 2


def test_intx_disable_in_the_command_register_keeps_the_line_low():
    m, dev = bring_up(GenericModel())
    fn = dev.transport.pci
    v = m.intx_vector(fn.interrupt_line)
    fn.write16(0x04, fn.read16(0x04) | 0x400)
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(SHORT_MS) == ()
    assert dev.vq.pop() == ('r', 16)


# -- misbehaving devices ----------------------------------------------------------------------

def test_an_msix_storm_is_counted_but_wakes_the_wait_once():
    m, dev = bring_up(GenericModel(misbehave='irq_storm'))
    _, (v,) = with_msix(m, dev)
    dev.transport.set_queue_msix_vector(0, 0)
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(1000) == (v,)
    assert m.irq_count(v) == IRQ_STORM
    assert m.irq_wait(SHORT_MS) == ()


def test_an_intx_storm_refires_at_each_unmask_and_the_deadline_still_ends_it():
    m, dev = bring_up(GenericModel(misbehave='irq_storm'))
    v = m.intx_vector(dev.transport.pci.interrupt_line)
    m.irq_attach(v, lambda vector: dev.transport.isr())     # acknowledged, yet it stays up
    dev.vq.enable_interrupts()
    request(m, dev)
    fired = 0
    t0 = m.ticks_ms()
    while m.ticks_diff(m.ticks_ms(), t0) < 100:
        fired += len(m.irq_wait(10))
    assert fired >= 5 and m.irq_count(v) >= 5
    m.irq_mask(v)                               # a driver's way out: mask the line
    assert m.irq_wait(SHORT_MS) == ()


def test_an_interrupt_with_nothing_in_the_used_ring():
    m, dev = bring_up(GenericModel(misbehave='empty_irq', completion='deferred'))
    _, (v,) = with_msix(m, dev)
    dev.transport.set_queue_msix_vector(0, 0)
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(1000) == (v,)
    assert dev.vq.pop() is None                 # woken, yet nothing is there
    model_of(m).complete()
    assert m.irq_wait(1000) == (v,)
    assert dev.vq.pop() == ('r', 16)


@pytest.mark.parametrize('use_msix', [True, False], ids=['msix', 'intx'])
def test_no_interrupt_at_all_ends_at_the_deadline(use_msix):
    m, dev = bring_up(GenericModel(misbehave='no_irq'))
    if use_msix:
        _, (v,) = with_msix(m, dev)
        dev.transport.set_queue_msix_vector(0, 0)
    else:
        v = m.intx_vector(dev.transport.pci.interrupt_line)
    dev.vq.enable_interrupts()
    request(m, dev)
    t0 = m.ticks_ms()
    assert m.irq_wait(50) == ()
    assert m.ticks_diff(m.ticks_ms(), t0) >= 50
    assert m.irq_count(v) == 0
    assert dev.vq.pop() == ('r', 16)            # the work was done all the same


# -- virtio.interrupts: MSI-X if the device takes it, else INTx ----------------------------

from virtio.interrupts import Interrupts  # noqa: E402


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_interrupts_use_msix_with_a_vector_per_queue_and_one_for_config(transport):
    m, dev = bring_up(GenericModel(queue_sizes=(8, 8), config=bytes(4)), transport)
    changes = []
    irqs = Interrupts(m, dev.transport, queues=2, on_config=lambda: changes.append(1))
    assert irqs.mode == 'msix' and len(irqs.vectors) == 3
    assert dev.transport.queue_msix_vector(1) == 2
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(1000) == (irqs.vectors[1],)      # queue 0 -> entry 1
    model_of(m).set_config(0, b'\x07')
    assert m.irq_wait(1000) == (irqs.vectors[0],)
    assert changes == [1] and irqs.config_events == 1


def test_interrupts_share_the_last_entry_when_the_table_is_small():
    m, dev = bring_up(GenericModel(queue_sizes=(8, 8, 8), msix_vectors=2))
    irqs = Interrupts(m, dev.transport, queues=3)
    assert irqs.mode == 'msix' and len(irqs.vectors) == 2
    assert [dev.transport.queue_msix_vector(q) for q in range(3)] == [1, 1, 1]


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_a_refused_vector_falls_back_to_intx_with_msix_off(transport):
    cfg = bytes(range(8))
    m, dev = bring_up(GenericModel(misbehave='refuse_msix', config=cfg), transport)
    irqs = Interrupts(m, dev.transport, queues=1)
    assert irqs.mode == 'intx'
    assert not dev.transport.pci.msix_enabled()
    assert dev.transport.config_read8(3) == 3            # legacy config back at 0x14
    assert m.msi_alloc() == 64                          # the MSI vectors were given back
    dev.vq.enable_interrupts()
    request(m, dev)
    assert m.irq_wait(1000) == tuple(irqs.vectors)
    assert m.irq_wait(SHORT_MS) == ()                   # the handler's ISR read served it


def test_intx_config_changes_reach_each_device_on_a_shared_line():
    a, b = GenericModel(config=bytes(4)), GenericModel(config=bytes(4))
    m, fns = machine_with((3, a), (7, b))
    seen = []
    irqs = []
    for name, fn in zip('ab', fns):
        t = open_transport(m, fn)
        GenericDriver(t, None).init()
        irqs.append(Interrupts(m, t, 1, on_config=lambda name=name: seen.append(name),
                               use_msix=False))
    assert [i.mode for i in irqs] == ['intx', 'intx']
    assert irqs[0].vectors == irqs[1].vectors
    b.set_config(0, b'\x01')
    assert m.irq_wait(1000) == tuple(irqs[0].vectors)
    a.set_config(0, b'\x01')
    b.set_config(0, b'\x02')
    m.irq_wait(1000)
    assert seen == ['b', 'a', 'b']
    assert m.irq_wait(SHORT_MS) == ()


def test_without_the_interrupt_calls_there_is_nothing_to_set_up():
    class Polling:
        def __init__(self, m):
            self._m = m

        def __getattr__(self, name):
            if name.startswith('irq_') or name.startswith('msi_') or name == 'intx_vector':
                raise AttributeError(name)
            return getattr(self._m, name)
    m, dev = bring_up(GenericModel())
    irqs = Interrupts(Polling(m), dev.transport, 1)
    assert irqs.mode is None and irqs.vectors == []


def test_close_gives_the_vectors_back():
    m, dev = bring_up(GenericModel())
    irqs = Interrupts(m, dev.transport, 1)
    assert irqs.mode == 'msix'
    irqs.close()
    assert not dev.transport.pci.msix_enabled()
    assert [m.msi_alloc(), m.msi_alloc()] == [64, 65]
