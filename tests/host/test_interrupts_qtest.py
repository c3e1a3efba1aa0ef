"""QEMU's own devices interrupt our host-side driver through the hardware interface's
interrupt calls (QtestMachine): MSI-X messages that a real virtio-rng writes where
msi_message() told it (a mailbox in guest RAM: qtest cannot watch the APIC window), and
INTx that QEMU raises on the I/O APIC's inputs, lowered by our ISR read."""

import pytest

import virtio
from virtio import msix, pci

from tests.host.qtest import qtest_factory  # noqa: F401  (fixture)

pytestmark = pytest.mark.qemu

PIIX3 = (0x8086, 0x7000)        # the PCI-to-ISA bridge at 00:01.0 on pc
PIRQ_ROUTE = 0x60               # PIRQA..D route control registers
PIRQ_IRQS = (5, 9, 10, 11)
SHORT_MS = 30


def rng_on(hw, transport):
    virtio.probe(hw, transport=transport)
    rng = virtio.find('rng')
    buf = hw.dma_alloc(16)

    def one_request(token):
        rng.requestq.add((), [(buf, 16)], token)
        rng.requestq.kick()
    return rng, one_request


@pytest.mark.parametrize('machine', ['pc', 'q35'])
@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_msix_message_from_qemus_rng_ends_the_wait(qtest_factory, machine, transport):
    hw = qtest_factory(['-device', 'virtio-rng-pci'], machine=machine)
    rng, one_request = rng_on(hw, transport)
    t = rng.transport
    m = msix.Msix(hw, t.pci)
    v = hw.msi_alloc()
    m.set_entry(0, *hw.msi_message(v))
    m.enable()
    t.follow_msix()
    assert t.set_queue_msix_vector(0, 0) == 0
    seen = []
    hw.irq_attach(v, lambda vector: seen.append(rng.requestq.pop()))
    rng.requestq.enable_interrupts()
    one_request('first')
    assert hw.irq_wait(2000) == (v,)
    assert seen == [('first', 16)]
    # With EVENT_IDX QEMU signals the first used buffer whatever the ring says (see
    # test_qtest_virtio.py); after that, suppression holds.
    rng.requestq.suppress_interrupts()
    one_request('quiet')
    assert rng.requestq.wait(2000) == ('quiet', 16)
    assert hw.irq_wait(SHORT_MS) == ()              # suppressed: QEMU sent nothing
    rng.requestq.enable_interrupts()
    one_request('loud')
    assert hw.irq_wait(2000) == (v,)
    assert seen == [('first', 16), ('loud', 16)]
    assert hw.irq_count(v) == 2


def test_qemu_refuses_a_vector_beyond_its_table(qtest_factory):
    hw = qtest_factory(['-device', 'virtio-rng-pci,vectors=2'])
    rng, _ = rng_on(hw, 'modern')
    m = msix.Msix(hw, rng.transport.pci)
    assert m.size == 2
    m.enable()
    assert rng.transport.set_queue_msix_vector(0, 5) == msix.NO_VECTOR


def test_intx_from_qemus_rng_is_lowered_by_the_isr_read(qtest_factory):
    hw = qtest_factory(['-device', 'virtio-rng-pci,vectors=0'])
    fns = pci.scan(hw)
    pci.assign_resources(hw, fns)
    isa, = [f for f in fns if (f.vendor_id, f.device_id) == PIIX3]
    for i, irq in enumerate(PIRQ_IRQS):            # the firmware's routing, by hand
        isa.write8(PIRQ_ROUTE + i, irq)
    rng, one_request = rng_on(hw, None)
    fn = rng.transport.pci
    line = PIRQ_IRQS[(fn.device - 1 + fn.interrupt_pin - 1) & 3]
    v = hw.intx_vector(line)
    rng.requestq.enable_interrupts()
    one_request('r')
    assert hw.irq_wait(2000) == (v,)
    assert hw.irq_wait(SHORT_MS) == ()              # masked since it fired
    assert rng.transport.isr() & 1
    hw.irq_unmask(v)
    assert hw.irq_wait(SHORT_MS) == ()              # lowered: nothing more
    assert rng.requestq.pop() == ('r', 16)
    assert hw.irq_count(v) == 1
