"""virtio-console in the booted image: the host at the other end of unix sockets
(`-chardev socket,...,server=on,wait=off`) sends and receives; a guest loop echoes
1 MiB of random bytes; named ports are found and the host's open/close is seen;
the REPL is reachable over the console port (x86.dupterm)."""
import os
import random
import socket
import threading
import time

import pytest

pytestmark = pytest.mark.qemu

ECHO_BYTES = 1 << 20


def socket_chardev(sockdir, name):
    return ['-chardev', 'socket,id=%s,path=%s,server=on,wait=off'
            % (name, os.path.join(sockdir, name))]


def connect(sockdir, name, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(os.path.join(sockdir, name))
    return s


def recv_until(s, token, timeout=10):
    """Bytes from socket s up to and including `token` (AssertionError if it
    does not come in time)."""
    deadline = time.monotonic() + timeout
    buf = b''
    while token not in buf:
        left = deadline - time.monotonic()
        assert left > 0, 'no %r from the guest; got %r' % (token, buf)
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        assert chunk, 'socket closed; got %r' % buf
        buf += chunk
    return buf


def devices(sockdir):
    return (['-device', 'virtio-serial-pci']
            + socket_chardev(sockdir, 'c0') + ['-device', 'virtconsole,chardev=c0']
            + socket_chardev(sockdir, 'c1')
            + ['-device', 'virtserialport,chardev=c1,name=org.example.echo'])


def test_named_port_found_host_open_close_seen_and_1mib_echoed(boot, sockdir):
    g = boot(devices=devices(sockdir))
    assert 'ports=0:console,1:org.example.echo' in g.output       # the boot report
    g.exec('import virtio\ncon = virtio.find("console")\np = con.port("org.example.echo")')
    assert g.eval('(p.id, p.name, p.is_console, p.host_connected)') == (
        1, 'org.example.echo', False, False)
    host = connect(sockdir, 'c1', timeout=60)
    g.exec('p.wait_host(timeout_ms=5000)')
    assert g.eval('p.host_connected') is True

    data = random.Random(6).randbytes(ECHO_BYTES)
    back = bytearray()

    def receive():
        while len(back) < len(data):
            try:
                chunk = host.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            back.extend(chunk)
    rx = threading.Thread(target=receive, daemon=True)
    rx.start()
    tx = threading.Thread(target=host.sendall, args=(data,), daemon=True)
    tx.start()
    out = g.exec('n = 0\n'
                 'while n < %d:\n'
                 '    d = p.read(4096, 0)\n'
                 '    if d:\n'
                 '        p.write(d, 10000)\n'
                 '        n += len(d)\n'
                 'p.flush(10000)\n'
                 'print(n)' % ECHO_BYTES, timeout=60)
    assert out == '%d\n' % ECHO_BYTES
    rx.join(30)
    tx.join(30)
    assert len(back) == len(data)
    assert bytes(back) == data

    host.close()
    g.exec('p.wait_host(timeout_ms=5000, connected=False)')
    assert g.eval('p.host_connected') is False


def test_the_repl_over_the_console_port(boot, sockdir):
    g = boot(devices=devices(sockdir))
    host = connect(sockdir, 'c0')
    g.exec('import virtio, x86\nx86.dupterm(virtio.find("console").console())')
    g.exit_raw_repl()                       # back at the friendly prompt, now on both
    host.sendall(b'\r')
    recv_until(host, b'>>> ')
    host.sendall(b'print(6 * 7)\r')
    assert b'42\r\n>>> ' in recv_until(host, b'42\r\n>>> ')
    assert '42' in g.output                  # the serial console sees it too
    # The raw REPL (what mpremote speaks) over the port.
    host.sendall(b'\x01')
    recv_until(host, b'raw REPL; CTRL-B to exit\r\n>')
    host.sendall(b'print(sum(range(10)))\x04')
    assert recv_until(host, b'\x04>').endswith(b'OK45\r\n\x04\x04>')
    host.sendall(b'\x02')
    recv_until(host, b'>>> ')
    # Detached again, the port is quiet and the serial REPL carries on.
    host.sendall(b'x86.dupterm(None)\r')
    recv_until(host, b'x86.dupterm(None)\r\n')
    g.write('print("serial only")\r')
    g.read_until(b'serial only\r\n>>> ')
    host.settimeout(0.5)
    with pytest.raises(socket.timeout):
        host.recv(100)
    host.close()


def test_a_stream_that_fails_is_detached_and_the_repl_survives(boot):
    g = boot()
    g.exec('import x86\n'
           'class Bad:\n'
           '    def write(self, b):\n'
           '        raise OSError(5)\n'
           '    def readinto(self, b):\n'
           '        return None\n')
    g.exit_raw_repl()
    g.write('x86.dupterm(Bad())\r')
    # The next prompt goes to COM1, then to the stream, which fails.
    g.read_until(b'dupterm: stream detached after an error:\r\n', 10)
    g.read_until(b'OSError: [Errno 5] EIO', 10)
    assert g.eval('x86.dupterm()') is None
    with pytest.raises(Exception) as e:
        g.exec('x86.dupterm(42)')
    assert "no attribute 'write'" in str(e.value)
