"""Device events on the host models (issue 11, "Events reach the user"): the device
changes something and interrupts; a handler (run by the machine's irq_wait, as the
target runs it through the scheduler) updates the driver's attributes and calls the
user's on_event(source, what). Nothing here calls a driver method between the change
and the check: only the interrupt can have told the driver. Also virtio.trace(True)
printing each interrupt."""

import pytest

import virtio
from virtio.blk import BlkDevice
from virtio.console import ConsoleDevice
from virtio.net import NetDevice
from virtio.trace import _transports

from tests.host.models import RngModel
from tests.host.models.blk import BlkModel
from tests.host.models.console import ConsoleModel, HostPort
from tests.host.models.mmio import place
from tests.host.models.net import NetModel

HANDLERS_MS = 5         # one irq_wait: the machine delivers and the handlers run


def probe(model_cls, mode='modern', interrupts=True, **kw):
    m, model = place(model_cls, mode=mode, **kw)
    virtio.probe(m, interrupts=interrupts)
    return m, model


def recorder(dev, attr):
    """on_event for dev that records (source is dev, what, dev.<attr> at the time)."""
    seen = []
    dev.on_event = lambda source, what: seen.append((source is dev, what,
                                                      getattr(source, attr)))
    return seen


@pytest.fixture(params=['msix', 'intx'])
def irq_mode(request, monkeypatch):
    """MSI-X where the driver takes it, or INTx for every device (as vectors=0)."""
    if request.param == 'intx':
        for cls in (BlkDevice, ConsoleDevice, NetDevice):
            monkeypatch.setattr(cls, 'USE_MSIX', False)
    return request.param


# -- net: link up and down (5.1.4.2) ---------------------------------------------------

@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_link_down_and_up_reach_link_up_and_the_callback(mode, irq_mode):
    m, model = probe(NetModel, mode)
    net = virtio.find('net')
    seen = recorder(net, 'link_up')
    model.set_link(False)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(True, 'link', False)]
    model.set_link(True)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(True, 'link', False), (True, 'link', True)]
    assert net.interrupts.mode == 'intx'        # virtio-net keeps to INTx (net.py)


def test_a_config_change_that_is_not_the_link_is_just_config():
    m, model = probe(NetModel)
    net = virtio.find('net')
    seen = recorder(net, 'link_up')
    model.set_config(0, b'\x02')                # the MAC's first byte, link untouched
    m.irq_wait(HANDLERS_MS)
    assert seen == [(True, 'config', True)]


def test_with_polling_nothing_is_heard():
    m, model = probe(NetModel, interrupts=False)
    net = virtio.find('net')
    seen = recorder(net, 'link_up')
    model.set_link(False)
    m.irq_wait(HANDLERS_MS)
    assert seen == [] and net.link_up is False      # the attribute still reads the device


# -- blk: capacity (block_resize) ------------------------------------------------------

@pytest.mark.parametrize('mode', ['legacy', 'modern'])
def test_a_resize_updates_capacity_and_calls_back(mode, irq_mode):
    m, model = probe(BlkModel, mode, sectors=2048)
    blk = virtio.find('blk')
    assert blk.interrupts.mode == irq_mode
    seen = recorder(blk, 'capacity')
    model.resize(4096)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(True, 'capacity', 4096)]
    assert blk.read(4095, 1) == bytes(512)      # the new end is readable
    model.resize(1024)
    m.irq_wait(HANDLERS_MS)
    assert seen[-1] == (True, 'capacity', 1024) and blk.capacity == 1024
    with pytest.raises(ValueError):
        blk.read(1024, 1)                       # beyond the new end: refused by the driver


def test_a_callback_that_raises_leaves_the_driver_updated():
    m, model = probe(BlkModel, sectors=2048)
    blk = virtio.find('blk')

    def broken(source, what):
        raise RuntimeError('user bug')
    blk.on_event = broken
    model.resize(3000)
    with pytest.raises(RuntimeError):
        m.irq_wait(HANDLERS_MS)                 # the models let a handler's error out
    assert blk.capacity == 3000
    assert blk.read(2999, 1) == bytes(512)


# -- console: size, ports opened, closed, added, removed ---------------------------------

def console(irq_mode=None, **kw):
    m, model = probe(ConsoleModel, msix_vectors=2,      # QEMU's default: config + 1
                     ports=[HostPort(console=True), HostPort(name='org.example.0',
                                                             host_connected=False)], **kw)
    con = virtio.find('console')
    seen = []
    con.on_event = lambda source, what: seen.append((source, what))
    return m, model, con, seen


def test_host_open_and_close_reach_the_port_without_a_poll(irq_mode):
    m, model, con, seen = console()
    assert con.interrupts.mode == irq_mode
    p = con.ports[1]
    assert p.name == 'org.example.0' and not p.host_connected
    model.host_open(1)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(p, 'open')] and p.host_connected
    model.host_close(1)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(p, 'open'), (p, 'close')] and not p.host_connected


def test_hot_plug_and_unplug_reach_the_user(irq_mode):
    m, model, con, seen = console()
    model.hotplug(HostPort(name='late', host_connected=True))
    m.irq_wait(HANDLERS_MS)
    late = con.ports[2]
    assert [(s.id, w) for s, w in seen] == [(2, 'add'), (2, 'name'), (2, 'open')]
    assert late.name == 'late' and late.host_connected and not late.removed
    model.unplug(2)
    m.irq_wait(HANDLERS_MS)
    assert seen[-1] == (late, 'remove') and late.removed
    assert [p.id for p in con.port_list()] == [0, 1]
    assert model.errors == [] and con.errors == []


def test_many_events_in_a_row_are_all_delivered():
    # More messages than one look takes in, with EVENT_IDX: each handler run must
    # ask for the next notification or the later ones would wait for a poll.
    m, model, con, seen = console()
    for i in range(20):
        model.host_open(1)
        m.irq_wait(HANDLERS_MS)
        model.host_close(1)
        m.irq_wait(HANDLERS_MS)
    assert [w for s, w in seen] == ['open', 'close'] * 20


def test_a_ctrl_c_in_the_callback_loses_no_later_event():
    m, model, con, seen = console()
    record = con.on_event

    def interrupted(source, what):
        con.on_event = record
        raise KeyboardInterrupt
    con.on_event = interrupted
    model.host_open(1)
    with pytest.raises(KeyboardInterrupt):
        m.irq_wait(HANDLERS_MS)
    assert con.ports[1].host_connected          # the state came before the callback
    model.host_close(1)
    model.hotplug(HostPort(name='late'))
    m.irq_wait(HANDLERS_MS)                     # the ring was re-armed before the callback
    assert [w for s, w in seen] == ['close', 'add', 'name', 'open']


def test_a_resize_message_updates_port_size():
    m, model, con, seen = console()
    model.resize(0, 132, 43)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(con.ports[0], 'resize')] and con.ports[0].size == (132, 43)


def test_f_size_config_change_updates_cols_and_rows(irq_mode):
    m, model, con, seen = console(size=(80, 25))
    assert (con.cols, con.rows) == (80, 25)
    model.set_size(100, 40)
    m.irq_wait(HANDLERS_MS)
    assert seen == [(con, 'size')] and (con.cols, con.rows) == (100, 40)


def test_without_interrupts_the_port_learns_at_the_next_call():
    m, model, con, seen = console(interrupts=False)
    model.host_open(1)
    m.irq_wait(HANDLERS_MS)
    assert seen == [] and not con.ports[1].host_connected
    con.poll()
    assert seen == [(con.ports[1], 'open')] and con.ports[1].host_connected


def test_an_interrupt_during_our_own_control_traffic_is_served_after_it():
    m, model, con, seen = console()
    con._pumping = True                 # as if the handler cut into _control_pump
    con._control_irq()
    assert con._missed
    con._pumping = False
    model.host_open(1)
    con.poll()                          # the interrupted code ends: it serves the miss
    assert not con._missed
    assert seen == [(con.ports[1], 'open')]


# -- virtio.trace(True) shows each interrupt ----------------------------------------------

def test_trace_shows_msix_config_and_queue_interrupts():
    m, model, con, seen = console()
    lines = []
    virtio.trace(True, write=lines.append)
    try:
        model.host_open(1)
        m.irq_wait(HANDLERS_MS)
    finally:
        virtio.trace(False, write=print)
    irqs = [line for line in lines if ' interrupt ' in line]
    vq_vector = con.interrupts.vectors[1]
    assert irqs == ['%s interrupt msix vector %d entry 1 (queue 0-3)'
                    % (con.address, vq_vector)], lines
    model.host_close(1)
    m.irq_wait(HANDLERS_MS)             # tracing off: the handler is gone again
    assert seen[-1][1] == 'close'
    assert len([line for line in lines if ' interrupt ' in line]) == 1


def traced_resize():
    """The trace lines of interrupts while a probed BlkModel's disk is resized."""
    m, model = probe(BlkModel)
    blk = virtio.find('blk')
    lines = []
    virtio.trace(True, write=lines.append)
    try:
        model.resize(4096)
        m.irq_wait(HANDLERS_MS)
    finally:
        virtio.trace(False, write=print)
    return blk, [x for x in lines if ' interrupt ' in x]


def test_trace_shows_an_intx_interrupt_with_its_isr_bits(monkeypatch):
    monkeypatch.setattr(BlkDevice, 'USE_MSIX', False)
    blk, irqs = traced_resize()
    line = blk.transport.pci.interrupt_line
    assert irqs == ['%s interrupt intx line %d vector %d isr 0x02 CONFIG'
                    % (blk.address, line, blk.interrupts.vectors[0])]


def test_trace_shows_an_msix_config_interrupt():
    blk, irqs = traced_resize()
    assert irqs == ['%s interrupt msix vector %d entry 0 (config)'
                    % (blk.address, blk.interrupts.vectors[0])]


def test_trace_forgets_the_interrupts_of_a_device_whose_reset_failed():
    m, model = probe(RngModel)
    old = virtio.find('rng')
    irqs = old.interrupts
    assert irqs.mode == 'msix' and irqs in _transports()
    model.misbehave = 'stuck_reset'             # the next probe cannot reset it
    virtio.probe(m)
    assert old.memory.retired is not None and irqs not in _transports()
    lines = []
    virtio.trace(True, write=lines.append)      # would raise on the retired memory
    virtio.trace(False, write=print)
