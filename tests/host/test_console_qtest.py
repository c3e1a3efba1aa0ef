"""The console driver against QEMU's own virtio-serial over qtest (no guest code):
the MULTIPORT control protocol with virtconsole and named virtserialport devices,
the host side a unix socket this test connects and closes, data both ways."""

import os
import random
import socket
import threading

import pytest

import virtio
from virtio import console as C

from tests.host.qtest import qtest_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.qemu


def chardev(sockdir, name):
    return 'socket,id=%s,path=%s,server=on,wait=off' % (name, os.path.join(sockdir, name))


def connect(sockdir, name, timeout=5):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(os.path.join(sockdir, name))
    return s


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


# virtio-mmio on microvm: the window version for each transport name.
MMIO = {'mmio-v1': 1, 'mmio-v2': 2}


def serial_args(sockdir, props='', transport=None):
    if transport in MMIO:
        extra = [] if MMIO[transport] == 1 else ['-global', 'virtio-mmio.force-legacy=false']
        return extra + ['-device', 'virtio-serial-device' + props] + serial_args(sockdir)[2:]
    return ['-device', 'virtio-serial-pci' + props,
            '-chardev', chardev(sockdir, 'c0'), '-device', 'virtconsole,chardev=c0',
            '-chardev', chardev(sockdir, 'c1'),
            '-device', 'virtserialport,chardev=c1,name=org.example.0',
            '-device', 'virtserialport,name=org.example.nochardev']


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_ports_names_console_and_host_state_from_qemu(qtest_factory, sockdir, transport):
    hw = qtest_factory(serial_args(sockdir))
    virtio.probe(hw, transport=transport)
    con = virtio.find('console')
    assert con.multiport and con.max_nr_ports == 31
    ports = [(p.id, p.name, p.is_console, p.host_connected) for p in con.port_list()]
    assert ports == [(0, None, True, True),                  # a console is always connected
                     (1, 'org.example.0', False, False),     # no client on its socket yet
                     (2, 'org.example.nochardev', False, False)]
    assert con.errors == []
    assert str(con).endswith('ports=0:console,1:org.example.0,2:org.example.nochardev')


@pytest.mark.parametrize('transport', ['legacy', 'modern', 'mmio-v1', 'mmio-v2'])
def test_host_open_close_and_a_line_each_way(qtest_factory, sockdir, transport):
    if transport in MMIO:
        hw = qtest_factory(serial_args(sockdir, transport=transport), machine='microvm')
        virtio.probe(hw)
    else:
        hw = qtest_factory(serial_args(sockdir))
        virtio.probe(hw, transport=transport)
    assert virtio.find('console').transport.name == transport
    p = virtio.find('console').port('org.example.0')
    host = connect(sockdir, 'c1')
    p.wait_host(timeout_ms=5000)
    host.sendall(b'hello guest\nsecond')
    assert p.readline(timeout_ms=5000) == b'hello guest\n'
    assert p.read(6, timeout_ms=5000) == b'second'
    p.write(b'hello host\n')
    assert recv_exactly(host, 11) == b'hello host\n'
    host.close()
    p.wait_host(timeout_ms=5000, connected=False)
    host = connect(sockdir, 'c1')               # and open again
    p.wait_host(timeout_ms=5000)
    host.close()


def test_random_bytes_echo_through_a_named_port(qtest_factory, sockdir):
    """256 KiB of random bytes from the host, echoed by the driver, back on the
    host unchanged; the host sends and reads at once (QEMU throttles both ways)."""
    hw = qtest_factory(serial_args(sockdir))
    virtio.probe(hw)
    p = virtio.find('console').port('org.example.0')
    host = connect(sockdir, 'c1', timeout=20)
    p.wait_host(timeout_ms=5000)
    data = random.Random(6).randbytes(256 * 1024)
    back = bytearray()

    def receive():
        while len(back) < len(data):
            chunk = host.recv(65536)
            if not chunk:
                return
            back.extend(chunk)
    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    tx = threading.Thread(target=host.sendall, args=(data,), daemon=True)
    tx.start()
    echoed = 0
    while echoed < len(data):
        chunk = p.read(C.RX_BUFFER_SIZE, timeout_ms=10000)
        assert chunk, 'nothing from the host for 10 s (%d bytes echoed)' % echoed
        p.write(chunk, timeout_ms=10000)
        echoed += len(chunk)
    p.flush(timeout_ms=10000)
    rx.join(20)
    tx.join(20)
    host.close()
    assert bytes(back) == data


def test_console_port_and_emergency_write_reach_the_chardev(qtest_factory, sockdir):
    hw = qtest_factory(serial_args(sockdir))
    virtio.probe(hw)
    con = virtio.find('console')
    host = connect(sockdir, 'c0')
    con.write(b'on the console\n')
    assert recv_exactly(host, 15) == b'on the console\n'
    assert con.emerg_write(b'SOS') == 3
    assert recv_exactly(host, 3) == b'SOS'
    host.sendall(b'typed\n')
    assert con.readline(timeout_ms=5000) == b'typed\n'
    host.close()


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_without_multiport_port0_works_alone(qtest_factory, sockdir, transport):
    hw = qtest_factory(['-device', 'virtio-serial-pci,max_ports=1',
                        '-chardev', chardev(sockdir, 'c0'), '-device', 'virtconsole,chardev=c0'])
    virtio.probe(hw, transport=transport)
    con = virtio.find('console')
    assert not con.multiport and con.feature_names().find('MULTIPORT') < 0
    host = connect(sockdir, 'c0')
    con.write(b'single port\n')
    assert recv_exactly(host, 12) == b'single port\n'
    host.sendall(b'back\n')
    assert con.readline(timeout_ms=5000) == b'back\n'
    host.close()


def test_packed_rings_with_qemu(qtest_factory, sockdir):
    hw = qtest_factory(serial_args(sockdir, ',packed=on'))
    virtio.probe(hw)
    con = virtio.find('console')
    assert con.ctl_rxq.kind == 'packed'
    assert [p.name for p in con.port_list()] == [None, 'org.example.0', 'org.example.nochardev']
    host = connect(sockdir, 'c0')
    con.write(b'packed\n')
    assert recv_exactly(host, 7) == b'packed\n'
    host.sendall(b'in\n')
    assert con.readline(timeout_ms=5000) == b'in\n'
    host.close()
