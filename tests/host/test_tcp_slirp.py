"""The socket API (inet/sockets.py) and TCP against QEMU's real user network (slirp) and the
host's Linux TCP, in CPython: the stack talks to slirp over QEMU's socket netdev as in
test_inet_slirp.py. The guest side runs in the test's main thread, the host side (Linux
sockets) in threads. Data is random and compared by sha256."""

import hashlib
import os
import socket as hsocket
import struct
import threading
import time

import pytest

import inet
from inet import sockets as gsock
from tests.host.test_inet_slirp import QEMU, HostClock, Slirp
from tests.ports import free_tcp_port

pytestmark = pytest.mark.qemu

GUEST_PORT = 8000
# slirp's hostfwd drops a burst of simultaneous host connects (42 of 50 reset by the host
# side, no SYN ever sent to the guest): the connects are spaced, the connections stay open
# together all the same (a barrier holds every client until all are connected).
CONNECT_GAP_S = 0.02
HOST_TIMEOUT_S = 30


@pytest.fixture
def net(tmp_path):
    """-> (slirp, stack, host port forwarded to the guest's GUEST_PORT); the socket module
    uses the stack."""
    import subprocess
    try:
        subprocess.run([QEMU, "--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("%s not available" % QEMU)
    fwd = free_tcp_port()
    s = Slirp(str(tmp_path), hostfwd=["tcp:127.0.0.1:%d-:%d" % (fwd, GUEST_PORT)])
    try:
        stack = inet.Stack(s.link, HostClock())
        stack.dhcp(timeout_ms=5000)
        gsock.set_stack(stack)
        yield s, stack, fwd
    finally:
        gsock.set_stack(None)
        s.close()


def host_thread(fn):
    out = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as e:      # reported by the test
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def finish(t, out):
    t.join(HOST_TIMEOUT_S)
    assert not t.is_alive(), "host side did not finish"
    if "error" in out:
        raise out["error"]
    return out.get("result")


def guest_echo(conn):
    """Echo everything until the peer's FIN, then close."""
    while True:
        data = conn.recv(8192)
        if not data:
            break
        conn.sendall(data)
    conn.close()


def test_guest_client_of_a_host_server(net):
    _, stack, _ = net
    server = hsocket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(HOST_TIMEOUT_S)
    port = server.getsockname()[1]
    data = os.urandom(1 << 20)

    def host():
        c, _ = server.accept()
        with c:
            got = bytearray()
            while len(got) < len(data):
                got += c.recv(65536)
            c.sendall(hashlib.sha256(got).digest()[::-1] + bytes(got[::-1]))
        return bytes(got)
    t, out = host_thread(host)
    s = gsock.socket(gsock.AF_INET, gsock.SOCK_STREAM)
    s.settimeout(20)
    s.connect(("10.0.2.2", port))
    s.sendall(data)
    back = s.makefile("rb").read(32 + len(data))
    s.close()
    assert finish(t, out) == data
    assert back[:32] == hashlib.sha256(data).digest()[::-1] and back[32:] == data[::-1]
    server.close()


def test_host_client_through_hostfwd_both_ways(net):
    _, stack, fwd = net
    data = os.urandom(1 << 20)

    def host():
        c = hsocket.create_connection(("127.0.0.1", fwd), timeout=HOST_TIMEOUT_S)
        with c:
            sender = threading.Thread(target=lambda: (c.sendall(data),
                                                      c.shutdown(hsocket.SHUT_WR)))
            sender.start()
            got = bytearray()
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got += b
            sender.join()
        return hashlib.sha256(got).hexdigest()
    lst = gsock.socket()
    lst.setsockopt(gsock.SOL_SOCKET, gsock.SO_REUSEADDR, 1)
    lst.bind(("", GUEST_PORT))
    lst.listen(1)
    lst.settimeout(20)
    t, out = host_thread(host)
    conn, addr = lst.accept()
    assert addr[0] == "10.0.2.2"
    conn.settimeout(20)
    guest_echo(conn)
    assert finish(t, out) == hashlib.sha256(data).hexdigest()
    lst.close()
    st = stack.tcp.stats
    assert st["rx_bytes"] >= len(data) and st["tx_bytes"] >= len(data)


def test_refused_and_timeouts_and_errors(net):
    _, stack, _ = net
    s = gsock.socket()
    with pytest.raises(OSError) as e:
        s.connect(("10.0.2.2", free_tcp_port()))
    assert e.value.errno == gsock.ECONNREFUSED
    s.close()
    a = gsock.socket()
    a.bind(("", 9000))
    b = gsock.socket()
    with pytest.raises(OSError) as e:
        b.bind(("", 9000))
    assert e.value.errno == gsock.EADDRINUSE
    a.listen(1)
    a.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        a.accept()
    assert e.value.errno == gsock.ETIMEDOUT and time.monotonic() - t0 < 2
    a.setblocking(False)
    with pytest.raises(OSError) as e:
        a.accept()
    assert e.value.errno == gsock.EAGAIN
    a.close()
    b.close()
    with pytest.raises(OSError) as e:
        gsock.socket(gsock.AF_INET6)
    assert e.value.errno == gsock.EAFNOSUPPORT


def test_peer_that_resets_gives_econnreset(net):
    _, stack, fwd = net
    lst = gsock.socket()
    lst.bind(("", GUEST_PORT))
    lst.listen(1)
    lst.settimeout(20)

    def host():
        c = hsocket.create_connection(("127.0.0.1", fwd), timeout=HOST_TIMEOUT_S)
        c.sendall(b"hello")
        time.sleep(0.5)
        c.setsockopt(hsocket.SOL_SOCKET, hsocket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()                       # linger 0: an RST, the peer vanishes
    t, out = host_thread(host)
    conn, _ = lst.accept()
    conn.settimeout(10)
    assert conn.recv(5) == b"hello"
    finish(t, out)
    with pytest.raises(OSError) as e:
        while True:
            if not conn.recv(100):
                conn.send(b"x" * 100)   # slirp may pass the close on as a FIN first
                time.sleep(0.05)
    assert e.value.errno in (gsock.ECONNRESET, gsock.EPIPE)
    lst.close()


def test_poll_serves_many_connections_at_once(net):
    import select as _unused  # noqa: F401 - the host's; ours is gsock.poll
    _, stack, fwd = net
    n = 50
    lst = gsock.socket()
    lst.bind(("", GUEST_PORT))
    lst.listen(n)
    results = [None] * n
    barrier = threading.Barrier(n)

    def client(i):
        c = hsocket.create_connection(("127.0.0.1", fwd), timeout=HOST_TIMEOUT_S)
        with c:
            barrier.wait()
            msg = os.urandom(3000 + i)
            c.sendall(msg)
            c.shutdown(hsocket.SHUT_WR)
            got = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                got += b
            results[i] = got == msg
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(CONNECT_GAP_S)
    p = gsock.poll()
    p.register(lst, gsock.POLLIN)
    served = 0
    pending = {}
    deadline = time.monotonic() + HOST_TIMEOUT_S
    while served < n and time.monotonic() < deadline:
        for obj, ev in p.ipoll(100):
            if obj is lst:
                c, _ = lst.accept()
                c.setblocking(False)
                pending[id(c)] = bytearray()
                p.register(c, gsock.POLLIN)
                continue
            data = obj.recv(4096)
            if data:
                pending[id(obj)] += data
            else:
                obj.setblocking(True)
                obj.settimeout(10)
                obj.sendall(pending.pop(id(obj)))
                obj.close()
                p.unregister(obj)
                served += 1
    for t in threads:
        t.join(HOST_TIMEOUT_S)
    assert served == n and results == [True] * n, (served, stack.tcp.stats, [
        (c, c.snd_una, c.snd_max, c.snd_wnd, c.rcv_nxt, c.rcvq and len(c.rcvq), c.fin_received)
        for c in stack.tcp.conns.values() if c.state != 10], lst._listener, pending,
        {k: v for k, v in stack.drops.items() if v}, stack.stats)
    lst.close()
