"""virtio-console (drivers/virtio/console.py) on the host model of QEMU's
virtio-serial (tests/host/models/console.py): port 0, the MULTIPORT control
protocol, named ports, the host side opening and closing, data both ways,
and a device that breaks the protocol."""

import random
import struct

import pytest

import virtio
from virtio import console as C
from virtio import transport as tp
from virtio.errors import DeviceError, VirtioError, VirtioTimeout

from tests.host.models import Machine
from tests.host.models.console import ConsoleModel, HostPort
from tests.host.models.mmio import place

MODES = ['legacy', 'transitional', 'modern', 'mmio-v1', 'mmio-v2']


def bring_up(*ports, **kw):
    """A console model with these ports, probed: (model, driver)."""
    m, model = place(ConsoleModel, ports=ports, **kw)
    virtio.probe(m)
    return model, virtio.find('console')


def named(name, **kw):
    return HostPort(name=name, **kw)


# -- bring-up -------------------------------------------------------------------------

@pytest.mark.parametrize('mode', MODES)
def test_without_multiport_port0_is_the_only_port(mode):
    model, con = bring_up(HostPort(console=True), mode=mode, multiport=False)
    assert not con.multiport
    assert [p.id for p in con.port_list()] == [0]
    assert [q.enabled for q in model.queues[:4]] == [True, True, False, False]
    assert model.control_log == []             # no control queue, no messages
    assert con.write(b'no control queue needed\n') == 24
    assert model.port(0).received == b'no control queue needed\n'
    model.host_send(0, b'typed\n')
    assert con.readline() == b'typed\n'
    assert model.errors == []


@pytest.mark.parametrize('mode', MODES)
def test_multiport_bring_up_finds_ports_names_and_console(mode):
    model, con = bring_up(HostPort(console=True), named('org.example.0'),
                          named('org.example.1', host_connected=False), mode=mode)
    assert model.ready_status & tp.DRIVER_OK       # DEVICE_READY only after DRIVER_OK
    assert model.control_log == [
        (C.VIRTIO_CONSOLE_BAD_ID, C.VIRTIO_CONSOLE_DEVICE_READY, 1),
        (0, C.VIRTIO_CONSOLE_PORT_READY, 1), (1, C.VIRTIO_CONSOLE_PORT_READY, 1),
        (2, C.VIRTIO_CONSOLE_PORT_READY, 1),
        (0, C.VIRTIO_CONSOLE_PORT_OPEN, 1)]      # a console port is opened at once
    ports = con.port_list()
    assert [(p.id, p.name, p.is_console, p.host_connected) for p in ports] == [
        (0, None, True, True), (1, 'org.example.0', False, True),
        (2, 'org.example.1', False, False)]
    assert con.port('org.example.1') is ports[2]    # QEMU's NUL is not in the name
    assert con.port(1) is ports[1]
    assert con.console() is ports[0]
    assert str(con).endswith('ports=0:console,1:org.example.0,2:org.example.1')
    assert model.dropped == [] and model.errors == [] and con.errors == []


def test_only_the_queues_of_existing_ports_are_set_up():
    """31 ports' worth of queues exist; only the control pair and the pairs of
    the two ports announced get rings and buffers."""
    model, con = bring_up(named('a'), named('b', port_id=7))
    enabled = [q.index for q in model.queues if q.enabled]
    assert enabled == [2, 3, 4, 5, 16, 17]
    assert len(model.queues) == 64


def test_thirty_one_ports_announced_at_once_lose_no_control_message():
    ports = [HostPort(console=True)] + [named('org.port.%d' % i) for i in range(1, 31)]
    model, con = bring_up(*ports)
    assert model.dropped == []
    assert [p.name for p in con.port_list()][1:] == ['org.port.%d' % i for i in range(1, 31)]
    assert all(p.host_connected for p in con.port_list())


def test_a_missing_port_is_an_error_naming_those_there():
    model, con = bring_up(HostPort(console=True), named('org.example.0'))
    with pytest.raises(VirtioError) as e:
        con.port('org.example.9', timeout_ms=0)
    assert str(e.value) == ("00:03.0 virtio-console: no port 'org.example.9' "
                            "(ports: 0:console, 1:org.example.0)")
    with pytest.raises(VirtioError, match='no port 5 '):
        con.port(5, timeout_ms=0)


def test_the_console_methods_use_port0_when_no_port_is_a_console():
    model, con = bring_up(HostPort(port_id=0), named('x'))
    assert con.console().id == 0
    con.write(b'to port 0')
    assert model.port(0).received == b'to port 0'


def test_a_device_with_no_ports_says_so():
    model, con = bring_up()
    with pytest.raises(VirtioError, match='the device has no ports'):
        con.write(b'x')


# -- data ----------------------------------------------------------------------------------

@pytest.mark.parametrize('mode', MODES)
def test_random_bytes_round_trip_through_a_named_port(mode):
    """400 KiB each way in random-sized pieces, more than the posted buffers
    hold at once: nothing lost, nothing changed, order kept."""
    model, con = bring_up(named('org.example.0'), mode=mode)
    p = con.port('org.example.0')
    rnd = random.Random(6)
    data = bytes(rnd.getrandbits(8) for _ in range(400 * 1024))
    pos = got = 0
    back = bytearray()
    while got < len(data):
        if pos < len(data):
            n = rnd.randrange(1, 20000)
            model.host_send(p.id, data[pos:pos + n])
            pos += n
        chunk = p.read(rnd.randrange(1, 30000), timeout_ms=0)
        got += len(chunk)
        p.write(chunk)
        back += chunk
    assert bytes(back) == data
    assert bytes(model.port(p.id).received) == data
    assert model.errors == [] and con.errors == []


def test_unread_data_stays_with_the_host_until_read():
    """The guest holds RX_BUFFERS buffers; what does not fit waits on the host
    side (flow control), it is not dropped."""
    model, con = bring_up(named('p'))
    p = con.port('p')
    p.open()
    model.host_send(p.id, b'\xAA' * (C.RX_BUFFERS * C.RX_BUFFER_SIZE + 5000))
    assert len(model.port(p.id).pending) == 5000
    assert p.any() == C.RX_BUFFERS * C.RX_BUFFER_SIZE
    data = p.read(C.RX_BUFFERS * C.RX_BUFFER_SIZE + 5000, timeout_ms=50)
    assert data == b'\xAA' * (C.RX_BUFFERS * C.RX_BUFFER_SIZE + 5000)
    assert len(model.port(p.id).pending) == 0


def test_read_waits_for_n_bytes_and_returns_what_came_on_timeout():
    model, con = bring_up(named('p'))
    p = con.port('p')
    model.host_send(p.id, b'abc')       # the port is not open yet: held by the host
    assert p.read(0) == b''
    assert p.read(2) == b'ab'           # reading opens it
    assert p.read(10, timeout_ms=5) == b'c'
    assert p.read(10, timeout_ms=0) == b''
    with pytest.raises(ValueError):
        p.read(-1)


def test_readline_splits_lines_across_buffers():
    model, con = bring_up(named('p'))
    p = con.port('p')
    p.open()
    model.host_send(p.id, b'first\nsec')
    model.host_send(p.id, b'ond\nthird')
    assert p.readline() == b'first\n'
    assert p.readline() == b'second\n'
    assert p.readline(timeout_ms=5) == b'third'
    model.host_send(p.id, b'x' * 100)
    assert p.readline(limit=40) == b'x' * 40


def test_readinto_is_the_non_blocking_stream_protocol():
    model, con = bring_up(HostPort(console=True))
    buf = bytearray(4)
    assert con.readinto(buf) is None
    model.host_send(0, b'abcdef')
    assert con.readinto(buf) == 4 and buf == b'abcd'
    assert con.any() == 2
    assert con.readinto(buf) == 2 and buf[:2] == b'ef'


def test_write_to_a_port_the_host_has_closed_is_discarded():
    model, con = bring_up(named('p', host_connected=False))
    p = con.port('p')
    assert p.write(b'nobody listens') == 14
    assert model.port(p.id).received == b''
    assert model.errors == []


def test_a_host_that_takes_nothing_gives_a_write_timeout_not_a_hang():
    model, con = bring_up(named('p'))
    p = con.port('p')
    model.port(p.id).throttled = True
    total = (C.TX_BUFFERS + 1) * C.TX_BUFFER_SIZE
    with pytest.raises(VirtioTimeout) as e:
        p.write(bytes(range(256)) * (total // 256), timeout_ms=5)
    assert str(e.value).endswith('00:03.0 virtio-console port 1: the host took no data for '
                                 '5 ms (%d of %d bytes written)'
                                 % (C.TX_BUFFERS * C.TX_BUFFER_SIZE, total))
    with pytest.raises(VirtioTimeout, match='4 writes still in flight'):
        p.flush(timeout_ms=5)
    model.release(p.id)                 # the host reads again: all that was queued arrives
    p.flush()
    assert model.port(p.id).received == (bytes(range(256)) * (total // 256))[:4 * 4096]
    p.write(b'more')
    assert model.port(p.id).received[-4:] == b'more'


def test_str_is_written_as_utf8():
    model, con = bring_up(HostPort(console=True))
    con.write('caf\u00e9')
    assert model.port(0).received == 'caf\u00e9'.encode()


# -- open, close, hot-plug, resize -------------------------------------------------------------

def test_host_open_and_close_are_seen():
    model, con = bring_up(named('p', host_connected=False))
    p = con.port('p')
    assert not p.host_connected
    with pytest.raises(VirtioTimeout, match='the host side did not open within 5 ms'):
        p.wait_host(timeout_ms=5)
    model.host_open(p.id)
    p.wait_host(timeout_ms=0)
    assert p.host_connected
    model.host_close(p.id)
    p.wait_host(timeout_ms=0, connected=False)
    assert not p.host_connected


def test_guest_open_and_close_reach_the_device():
    model, con = bring_up(named('p'))
    p = con.port('p')
    assert not model.port(p.id).guest_connected       # nobody asked for it yet
    model.host_send(p.id, b'early')
    assert p.read(5) == b'early'                      # reading opened it
    assert model.port(p.id).guest_connected
    p.close()
    assert not model.port(p.id).guest_connected
    assert model.control_log[-1] == (p.id, C.VIRTIO_CONSOLE_PORT_OPEN, 0)


def test_hot_plug_and_unplug():
    model, con = bring_up(HostPort(console=True))
    model.hotplug(named('late'))
    p = con.port('late', timeout_ms=0)
    assert p.id == 1 and model.control_log[-1] == (1, C.VIRTIO_CONSOLE_PORT_READY, 1)
    model.unplug(1)
    with pytest.raises(VirtioError, match='port 1: the device removed this port'):
        p.read(1, timeout_ms=0)
    assert [q.id for q in con.port_list()] == [0]
    model.hotplug(named('again', port_id=1))        # same id: its queues are reused
    q = con.port('again', timeout_ms=0)
    assert q is p and not q.removed
    model.host_send(1, b'back')
    assert q.read(4) == b'back'
    assert model.errors == [] and con.errors == []


def test_resize_and_the_config_size():
    model, con = bring_up(HostPort(console=True), size=(80, 25))
    assert con.size() == (80, 25)
    model.set_config(0, struct.pack('<HH', 132, 43))
    assert con.size() == (132, 43)
    model.resize(0, 100, 30)
    assert con.console().size == (100, 30)
    assert bring_up(HostPort(console=True))[1].size() is None


@pytest.mark.parametrize('mode', MODES)
def test_emergency_write(mode):
    model, con = bring_up(HostPort(console=True), mode=mode)
    assert con.emerg_write(b'panic!') == 6
    assert model.emerg == b'panic!' and model.port(0).received == b'panic!'
    model, con = bring_up(HostPort(console=True), emerg_write=False)
    with pytest.raises(VirtioError, match='does not offer EMERG_WRITE'):
        con.emerg_write(b'x')


# -- a device that breaks the protocol ------------------------------------------------------------

@pytest.mark.parametrize('misbehave, error', [
    ('add_out_of_range', 'DEVICE_ADD for port 31, beyond max_nr_ports 31'),
    ('add_twice', 'DEVICE_ADD for port 0, which exists'),
    ('remove_unknown', 'DEVICE_REMOVE for port 30, which the device has not added'),
    ('short_control', 'control message of 4 bytes, shorter than its 8-byte header'),
    ('unknown_event', 'unknown control event 99 (value 1) for port 0'),
])
def test_control_protocol_violations_are_reported_and_harmless(misbehave, error):
    model, con = bring_up(HostPort(console=True), named('n'), misbehave=misbehave)
    assert error in con.errors
    assert [(p.id, p.name) for p in con.port_list()] == [(0, None), (1, 'n')]
    con.write(b'still works')
    assert model.port(0).received == b'still works'


def test_a_name_longer_than_the_control_buffer_is_cut_not_overrun():
    name = 'n' * 400
    model, con = bring_up(named(name), misbehave='long_name')
    assert con.port_list()[0].name == name[:C.CONTROL_RX_SIZE - C.CONTROL_SIZE]
    assert con.errors == ['a control message longer than its 256-byte buffer was cut']


def test_legacy_transmit_used_lengths_are_ignored_modern_ones_are_not():
    model, con = bring_up(HostPort(console=True), mode='legacy', misbehave='tx_used_len')
    con.write(b'x' * 10000)
    con.console().flush()
    assert len(model.port(0).received) == 10000
    with pytest.raises(VirtioError):
        bring_up(HostPort(console=True), mode='modern', misbehave='tx_used_len')[1].write(b'x')


def test_a_device_that_never_answers_leaves_no_ports_and_no_hang():
    model, con = bring_up(HostPort(console=True), misbehave='never_complete')
    assert con.port_list() == []
    with pytest.raises(VirtioError, match=r'no port 0 \(ports: none\)'):
        con.port(0, timeout_ms=5)


def test_bad_max_nr_ports_fails_the_bring_up():
    model = ConsoleModel(ports=[HostPort(console=True)], max_ports=4)
    model.cfg[4:8] = struct.pack('<I', 9)        # more ports than the 10 queues allow
    (dev,) = virtio.probe(Machine([model]))
    assert 'config max_nr_ports = 0x9 is outside [0x1, 0x4]' in str(dev)
    assert dev.KIND is None                         # unbound


def test_packed_rings_carry_ports_and_data():
    model, con = bring_up(HostPort(console=True), named('n'), mode='modern', packed=True)
    assert con.ctl_rxq.kind == 'packed' and con.console().rxq.kind == 'packed'
    assert [p.name for p in con.port_list()] == [None, 'n']
    con.write(b'packed out')
    model.host_send(0, b'packed in\n')
    assert con.readline() == b'packed in\n'
    assert model.port(0).received == b'packed out'
