"""The TCP bench workloads' wiring, on the host (no `make bench`): our guest side
(bench/guest/ours_tcp.py) runs on the inet stack in CPython over real slirp, the host side
(bench/tcpclient.py through figures.tcp) measures it exactly as in a bench run; the Linux
side's script makes the same 1 KiB page; the host client refuses wrong data."""

import builtins
import os
import re
import socket
import subprocess
import sys
import threading

import pytest

from inet import sockets as gsock

BENCH = os.path.join(os.path.dirname(__file__), '..', '..', 'bench')
sys.path.insert(0, os.path.abspath(BENCH))

import figures  # noqa: E402
import linux_guest  # noqa: E402
import qemu  # noqa: E402
import tcpclient  # noqa: E402
import workloads as W  # noqa: E402

from tests.host.test_inet_slirp import QEMU, HostClock, Slirp  # noqa: E402


class Lines:
    """What figures.tcp needs of a Qemu: expect(regex) over the guest's printed lines."""

    def __init__(self):
        self.text = ''
        self.pos = 0
        self.cond = threading.Condition()

    def write(self, *args):
        with self.cond:
            self.text += ' '.join([str(a) for a in args]) + '\n'
            self.cond.notify_all()

    def expect(self, pattern, timeout=None):
        rx = re.compile(pattern.decode() if isinstance(pattern, bytes) else pattern)
        with self.cond:
            while True:
                m = rx.search(self.text, self.pos)
                if m:
                    self.pos = m.end()
                    return _BytesMatch(m), 0.0
                if not self.cond.wait(timeout or 60):
                    raise qemu.Timeout('no %r in %r' % (pattern, self.text[-300:]))


class _BytesMatch:
    def __init__(self, m):
        self.m = m

    def group(self, i=0):
        return self.m.group(i).encode()


def guest_namespace(out):
    """bench/guest/ours_tcp.py as the image runs it: `socket` is ours, print is captured."""
    real = builtins.__import__

    def imp(name, *args, **kw):
        return gsock if name == 'socket' else real(name, *args, **kw)
    ns = {'__builtins__': dict(vars(builtins), __import__=imp, print=out.write)}
    with open(os.path.join(BENCH, 'guest', 'ours_tcp.py')) as f:
        exec(compile(f.read(), 'ours_tcp.py', 'exec'), ns)
    return ns


@pytest.mark.qemu
def test_tcp_workloads_measure_our_stack_over_slirp(tmp_path, monkeypatch):
    try:
        subprocess.run([QEMU, '--version'], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('%s not available' % QEMU)
    monkeypatch.setattr(W, 'TCP_BYTES', 512 * 1024)
    monkeypatch.setattr(W, 'SECONDS', 1.0)
    ports = qemu.tcp_forwards()
    fwd = ['tcp:127.0.0.1:%d-:%d' % hg for hg in qemu.tcp_fwd_map(ports).items()]
    slirp = Slirp(str(tmp_path), hostfwd=fwd)
    sink = tcpclient.Sink()
    out = Lines()
    try:
        import inet
        stack = inet.Stack(slirp.link, HostClock(), ip='10.0.2.15', gateway='10.0.2.2')
        ns = guest_namespace(out)
        guest = threading.Thread(target=ns['tcp_server'], args=(
            stack, tcpclient.RX_GUEST_PORT, sink.port, W.TCP_BYTES, tcpclient.HTTP_GUEST_PORT,
            1), daemon=True)
        guest.start()
        out.expect(rb'TCP READY')
        results = {}
        figures.tcp(out, ports, sink, results)
        guest.join(30)
    finally:
        gsock.set_stack(None)
        sink.close()
        slirp.close()
    assert not guest.is_alive()
    for name in figures.TCP_NAMES:
        assert results[name]['error'] is None and results[name]['value'] > 0, results[name]
    assert results['tcp_rx']['detail']['bytes'] == W.TCP_BYTES
    assert results['tcp_tx']['detail']['bytes'] == W.TCP_BYTES
    assert results['http_rps']['detail']['ok'] >= 5


def test_linux_script_serves_the_same_page_and_counts_with_nc(tmp_path):
    text = linux_guest.script([W.BY_NAME['tcp_rx'], W.BY_NAME['http_rps']], 4321)
    assert 'nc -l -p %d | wc -c' % tcpclient.RX_GUEST_PORT in text
    # nc listens before the host is told to connect (else the guest resets it).
    assert text.index('nc -l -p %d' % tcpclient.RX_GUEST_PORT) < text.index('TCP READY')
    assert 'count=%d 2>/dev/null | nc 10.0.2.2 4321' % (W.TCP_BYTES // 65536) in text
    assert 'httpd -p 80 -h /www' in text
    # The page-making lines, run by the host's sh in a scratch folder: the same 1024 bytes.
    lines = [l.replace('/www', str(tmp_path)) for l in text.splitlines()
             if '/www/1k' in l or l.startswith('mkdir')]
    subprocess.run(['sh', '-c', '\n'.join(lines)], check=True)
    assert (tmp_path / '1k').read_bytes() == tcpclient.PAGE
    assert 'nc -l' not in linux_guest.script([W.BY_NAME['udp_rtt']], 4321)


def test_bulk_sink_counts_wrong_bytes_and_http_checks_the_body():
    sink = tcpclient.Sink()
    done = {}

    def send(data):
        c = socket.create_connection(('127.0.0.1', sink.port))
        c.sendall(data)
        c.close()
    t = threading.Thread(target=send, args=(bytes(1000) + b'\x01' + bytes(99),))
    t.start()
    r = sink.receive(1100, 10)
    t.join()
    sink.close()
    assert r['bytes'] == 1100 and r['bad'] == 1

    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(2)
    port = server.getsockname()[1]

    def serve(bodies):
        for body in bodies:
            c, _ = server.accept()
            c.recv(4096)
            c.sendall(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n' + body)
            c.close()
        done['ok'] = True
    t = threading.Thread(target=serve, args=([tcpclient.PAGE, tcpclient.PAGE[:-1] + b'X'],))
    t.start()
    assert tcpclient.http_get(port) is True
    assert tcpclient.http_get(port) is False
    t.join()
    server.close()
    assert len(tcpclient.pattern(200000)) == 200000
    assert tcpclient.pattern(1 << 17)[:1 << 16] != tcpclient.pattern(1 << 17)[1 << 16:]


def test_devices_forward_the_tcp_ports():
    ports = {'rx': 40001, 'http': 40002, 'quit': 40003}
    args = ' '.join(qemu.devices('/d.img', 40000, tcp_fwd=qemu.tcp_fwd_map(ports)))
    assert 'hostfwd=udp:127.0.0.1:40000-:7' in args
    assert 'hostfwd=tcp:127.0.0.1:40001-:5001' in args
    assert 'hostfwd=tcp:127.0.0.1:40002-:80' in args
    assert 'hostfwd=tcp:127.0.0.1:40003-:5009' in args
    assert 'tcp' not in ' '.join(qemu.devices('/d.img', 40000))
