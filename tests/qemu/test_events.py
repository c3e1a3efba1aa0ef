"""Device events in the booted image, driven from the host over QMP (issue 11, "link
off/on and block_resize over QMP seen by callbacks"): QEMU's set_link, block_resize, a
virtserialport's host socket connecting and closing, and device_add / device_del of a
virtserialport reach the user's on_event(source, what) with the attributes updated, on
pc and q35 (MSI-X where the driver takes it) and with MSI-X off (vectors=0: INTx). The
guest only sleeps (x86.irq_wait) between the host's action and the check: no driver
call in between, so only the interrupt's handler can have told the driver. With
virtio.probe(interrupts=False) nothing is heard until the program asks. And
virtio.trace(True) shows each interrupt.

QEMU 7.2's virtio-serial offers no VIRTIO_CONSOLE_F_SIZE and never sends RESIZE, so the
console size cannot be driven from the host: tests/host/test_events.py covers it on the
model; here we check that QEMU indeed does not offer it."""
import ast
import os
import re
import shutil
import socket
import tempfile
import time

import pytest

from tests.qemu import harness
from tests.qemu.qmp import QmpError

pytestmark = pytest.mark.qemu

MACHINES = [('pc', ''), ('q35', ''), ('pc', ',vectors=0')]
IDS = ['pc-msix', 'q35-msix', 'pc-intx']

# The guest's side: record every event, and sleep until n have come.
RECORD = '''
import virtio, x86
ev = []
def record(source, what):
    ev.append((what, SHOW(source)))
def wait_events(n, ms=5000):
    t0 = x86.ticks_ms()
    while len(ev) < n and x86.ticks_diff(x86.ticks_ms(), t0) < ms:
        x86.irq_wait(20)
    print(repr(ev))
'''


def record(g, show, devices, probe=''):
    """Set the guest up to record events; show: the text of SHOW(source)."""
    g.exec(RECORD.replace('SHOW(source)', show) + probe
           + ''.join(['virtio.find(%r).on_event = record\n' % d for d in devices]))


def events(g, n, ms=5000):
    """The guest's events once n have come (or after ms)."""
    return ast.literal_eval(g.exec('wait_events(%d, %d)' % (n, ms), timeout=15).strip())


def net_blk_devices(disk, props):
    return ['-drive', 'file=%s,format=raw,if=none,id=disk0' % disk,
            '-device', 'virtio-blk-pci,drive=disk0' + props,
            '-netdev', 'user,id=net0',
            '-device', 'virtio-net-pci,netdev=net0,romfile=' + props]


@pytest.mark.parametrize('machine, props', MACHINES, ids=IDS)
def test_set_link_and_block_resize_over_qmp_reach_the_callbacks(boot, tmp_disk, machine,
                                                                 props):
    g = boot(machine=machine, qmp=True,
             devices=net_blk_devices(tmp_disk(1 << 20), props))
    record(g, '(source.NAME, source.link_up if what == "link" else source.capacity)',
           ['net', 'blk'])
    modes = g.eval('virtio.find("net").interrupts.mode, virtio.find("blk").interrupts.mode')
    # virtio-net keeps to INTx by choice (drivers/virtio/net/__init__.py, USE_MSIX).
    assert modes == ('intx', 'intx' if 'vectors=0' in props else 'msix')
    assert g.eval('virtio.find("net").link_up, virtio.find("blk").capacity') == (True, 2048)

    g.qmp('set_link', name='net0', up=False)
    assert events(g, 1) == [('link', ('virtio-net', False))]
    g.qmp('set_link', name='net0', up=True)
    assert events(g, 2)[1] == ('link', ('virtio-net', True))
    g.qmp('block_resize', device='disk0', size=4 << 20)
    assert events(g, 3)[2] == ('capacity', ('virtio-blk', 8192))
    # The driver uses the new size: the last sector of the grown disk reads as zeros,
    # the one after it is refused.
    assert g.eval('virtio.find("blk").read(8191, 1) == bytes(512)') is True
    with pytest.raises(harness.GuestError) as e:
        g.exec('virtio.find("blk").read(8192, 1)')
    assert e.value.exc_type == 'ValueError'


@pytest.mark.parametrize('machine', ['pc', 'q35'])
def test_on_the_legacy_interface_with_msix_the_config_is_read_at_0x18(boot, tmp_disk,
                                                                       machine):
    # 4.1.4.8: with MSI-X on, a legacy device's configuration moves from 0x14 to 0x18;
    # the capacity a resize reports is read there.
    g = boot(machine=machine, qmp=True, devices=net_blk_devices(tmp_disk(1 << 20), ''))
    record(g, '(source.NAME, source.link_up if what == "link" else source.capacity)',
           ['net', 'blk'], probe='virtio.probe(transport="legacy")\n')
    assert g.eval('virtio.find("blk").transport.name, virtio.find("blk").interrupts.mode, '
                  'virtio.find("blk").transport.config_base') == ('legacy', 'msix', 0x18)
    g.qmp('block_resize', device='disk0', size=3 << 20)
    g.qmp('set_link', name='net0', up=False)
    assert sorted(events(g, 2)) == [('capacity', ('virtio-blk', 6144)),
                                    ('link', ('virtio-net', False))]


PORT_SHOW = ('"device" if source is virtio.find("console") else '
             '(source.id, source.name, source.host_connected, source.removed)')


@pytest.fixture
def sock_dir():
    # A short path of our own: a unix socket's path has at most 107 bytes.
    d = tempfile.mkdtemp(prefix='x86virt-ev-')
    yield d
    shutil.rmtree(d, ignore_errors=True)


def serial_devices(sock, props):
    return ['-device', 'virtio-serial-pci,id=vser0' + props,
            '-chardev', 'socket,id=c1,path=%s,server=on,wait=off' % sock,
            '-device', 'virtserialport,chardev=c1,name=org.test.0,bus=vser0.0']


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


@pytest.mark.parametrize('machine, props', MACHINES, ids=IDS)
def test_console_port_open_close_and_hot_plug_reach_the_callback(boot, sock_dir, machine,
                                                                  props):
    sock = os.path.join(sock_dir, 'port.sock')
    g = boot(machine=machine, qmp=True, devices=serial_devices(sock, props))
    record(g, PORT_SHOW, ['console'])
    assert g.eval('virtio.find("console").interrupts.mode') == (
        'intx' if 'vectors=0' in props else 'msix')
    assert g.eval('[(p.id, p.name, p.host_connected) for p in '
                  'virtio.find("console").port_list()]') == [(1, 'org.test.0', False)]

    host = connect(sock)                        # QEMU: PORT_OPEN 1 (5.3.6.2)
    assert events(g, 1) == [('open', (1, 'org.test.0', True, False))]
    host.close()                                # PORT_OPEN 0
    assert events(g, 2)[1] == ('close', (1, 'org.test.0', False, False))
    for i in range(5):                          # each handler run re-arms the ring
        host = connect(sock)
        assert events(g, 3 + 2 * i)[-1][0] == 'open'
        host.close()
        assert events(g, 4 + 2 * i)[-1][0] == 'close'

    g.qmp('chardev-add', id='hotc', backend={'type': 'null', 'data': {}})
    g.qmp('device_add', driver='virtserialport', bus='vser0.0', chardev='hotc',
          name='org.test.hot', id='hot')       # PORT_ADD, then PORT_NAME after PORT_READY
    # QEMU also sends a configuration change with each port it adds (nothing in the
    # configuration changed): the device hears 'config'.
    assert sorted(events(g, 15)[12:]) == sorted([('add', (2, None, False, False)),
                                               ('name', (2, 'org.test.hot', False, False)),
                                               ('config', 'device')])
    g.qmp('device_del', id='hot')               # PORT_REMOVE
    assert events(g, 16)[15] == ('remove', (2, 'org.test.hot', False, True))
    assert g.eval('[p.id for p in virtio.find("console").port_list()], '
                  'virtio.find("console").errors') == ([1], [])


def test_without_interrupts_nothing_is_heard_until_the_program_asks(boot, sock_dir):
    sock = os.path.join(sock_dir, 'port.sock')
    g = boot(qmp=True, devices=serial_devices(sock, '') + [
        '-netdev', 'user,id=net0', '-device', 'virtio-net-pci,netdev=net0,romfile='])
    record(g, '(what, getattr(source, "link_up", None), getattr(source, "host_connected", None))',
           ['net', 'console'], probe='virtio.probe(interrupts=False)\n')
    host = connect(sock)
    g.qmp('set_link', name='net0', up=False)
    time.sleep(0.2)
    assert events(g, 1, 1000) == []             # a second of sleeping: no handler, no event
    assert g.eval('virtio.find("net").link_up') is False       # the attribute reads the device
    g.exec('virtio.find("console").poll()')     # the console learns when asked
    assert events(g, 1) == [('open', ('open', None, True))]
    host.close()


def test_qemu_offers_no_console_size(boot):
    g = boot(devices=['-device', 'virtio-serial-pci', '-device', 'virtconsole'])
    g.exec('import virtio')
    assert g.eval('virtio.find("console").offered & 1, virtio.find("console").cols') == (0, None)


def test_trace_shows_each_interrupt(boot, tmp_disk):
    g = boot(qmp=True, devices=net_blk_devices(tmp_disk(1 << 20), '') + [
        '-device', 'virtio-serial-pci,id=vser0'])
    record(g, 'getattr(source, "NAME", "virtio-console")', ['net', 'blk', 'console'])
    g.exec('lines = []\nvirtio.trace(True, write=lines.append)')
    g.qmp('set_link', name='net0', up=False)
    g.qmp('block_resize', device='disk0', size=2 << 20)
    g.qmp('chardev-add', id='hotc', backend={'type': 'null', 'data': {}})
    g.qmp('device_add', driver='virtserialport', bus='vser0.0', chardev='hotc',
          name='org.test.hot', id='hot')
    assert sorted(events(g, 5)) == sorted([
        ('link', 'virtio-net'), ('capacity', 'virtio-blk'), ('config', 'virtio-console'),
        ('add', 'virtio-console'), ('name', 'virtio-console')])
    out = g.exec('virtio.trace(False)\n'
                 'print("\\n".join([x for x in lines if " interrupt " in x]))')
    info = g.eval('[(d.address, d.interrupts.vectors, d.transport.pci.interrupt_line) '
                  'for d in (virtio.find("net"), virtio.find("blk"), virtio.find("console"))]')
    (net, nv, line), (blk, bv, _), (con, cv, _) = info
    got = out.strip().splitlines()
    # The INTx line may be shared with another device: each handler prints its own.
    # (the ISR may carry the queue bit as well: the link going down can come with traffic)
    intx = re.compile(r'%s interrupt intx line %d vector %d isr 0x0[23] (QUEUE\|)?CONFIG$'
                      % (re.escape(net), line, nv[0]))
    assert [x for x in got if intx.match(x)], out
    assert '%s interrupt msix vector %d entry 0 (config)' % (blk, bv[0]) in got
    assert '%s interrupt msix vector %d entry 1 (queue 0-3)' % (con, cv[1]) in got, out


def test_a_qmp_error_is_raised_with_qemus_words(boot):
    g = boot(qmp=True)
    with pytest.raises(QmpError) as e:
        g.qmp('block_resize', device='nope', size=1)
    assert e.value.cls == 'GenericError' and 'nope' in e.value.desc
    assert g.qmp('query-status')['status'] == 'running'
