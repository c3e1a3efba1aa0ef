"""The host side of the TCP workloads, the same for both guests (through hostfwd).

tcp_rx    the host sends BYTES to the guest's port 5001 (pattern(): the host knows what it
          sent) and closes; the guest counts what arrived until the FIN and prints
          "RESULT op=tcprx bytes=N". Timed from connect to that line; a short count voids it.
tcp_tx    the guest connects to the host's port and sends BYTES of zeros; timed from the
          accept to the FIN; every byte is checked (count and value).
http_rps  GET /1k (1024 bytes, both guests serve the same file) with a new connection each,
          one at a time, for SECONDS; every answer is checked (status 200, the exact body).
QUIT      a connection to the guest's quit port ends its server (Linux; ours stops when idle).
"""
import socket
import time

RX_GUEST_PORT = 5001
HTTP_GUEST_PORT = 80
QUIT_GUEST_PORT = 5009
CHUNK = 1 << 16
# The 1 KiB page: 63 times 0-f, then 0-d and CRLF (drivers/webstatus.py KIB_PAGE; the Linux
# side writes the same bytes with printf).
PAGE = (b'0123456789abcdef' * 63 + b'0123456789abcd\r\n')
assert len(PAGE) == 1024
REQUEST = b'GET /1k HTTP/1.1\r\nHost: guest\r\nConnection: close\r\n\r\n'


def pattern(n):
    """n bytes whose every 64 KiB block differs (a misordered block would show)."""
    out = bytearray()
    k = 0
    while len(out) < n:
        out += bytes([(k * 7 + 1) & 0xff]) * 16 + bytes(range(256)) * 255 + bytes(240)
        k += 1
    return bytes(out[:n])


def send_bulk(port, data, timeout=120):
    """Connect to the forwarded guest port, send data, close. -> monotonic start time."""
    c = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    t0 = time.monotonic()
    try:
        mv = memoryview(data)
        for i in range(0, len(data), CHUNK):
            c.sendall(mv[i:i + CHUNK])
        c.shutdown(socket.SHUT_WR)
        c.settimeout(timeout)
        while c.recv(4096):             # until the guest closes too
            pass
    finally:
        c.close()
    return t0


class Sink:
    """A listening host socket the guest sends to (10.0.2.2:port in the guest)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]

    def receive(self, expect, timeout=120):
        """-> {'bytes', 'bad', 'seconds'}: accept one connection, read `expect` bytes (or
        to an early EOF); `bad` counts bytes that are not zero."""
        self.sock.settimeout(timeout)
        c, _ = self.sock.accept()
        t0 = time.monotonic()
        n = bad = 0
        zero = bytes(CHUNK)
        c.settimeout(timeout)
        try:
            while n < expect:           # not waiting for the FIN: nc may not send one
                b = c.recv(CHUNK)
                if not b:
                    break
                n += len(b)
                if b != zero[:len(b)]:
                    bad += len(b) - b.count(0)
        finally:
            c.close()
        return {'bytes': n, 'bad': bad, 'seconds': time.monotonic() - t0}

    def close(self):
        self.sock.close()


def http_get(port, timeout=10):
    """One GET /1k on a new connection. -> True when the answer is 200 with PAGE."""
    c = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    try:
        c.sendall(REQUEST)
        buf = bytearray()
        while True:
            b = c.recv(8192)
            if not b:
                break
            buf += b
    finally:
        c.close()
    head, _, body = bytes(buf).partition(b'\r\n\r\n')
    return head.startswith(b'HTTP/1.') and head.split(b' ', 2)[1] == b'200' and body == PAGE


def http_rate(port, seconds, timeout=10):
    """GET /1k over and over for `seconds`. -> {'ok', 'bad', 'seconds', 'per_s'}."""
    ok = bad = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            if http_get(port, timeout):
                ok += 1
            else:
                bad += 1
        except OSError:
            bad += 1
    s = time.monotonic() - t0
    return {'ok': ok, 'bad': bad, 'seconds': s, 'per_s': ok / s if s > 0 else 0.0}


def wait_http(port, timeout=30):
    """hostfwd accepts before the guest listens: try until a GET gets an answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(port, 5):
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def quit(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
        return True
    except OSError:
        return False
