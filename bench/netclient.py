"""The host side of the UDP echo workloads, the same for both guests.

The guest echoes on UDP port 7; QEMU's user network forwards 127.0.0.1:PORT there
(hostfwd). Every datagram carries a sequence number and a size-dependent body, and every
echo is compared byte for byte: an altered or missing echo is counted, never timed.
A datagram reading BENCH-QUIT asks the guest's echo server to stop (it answers BYE).
"""
import select
import socket
import struct
import time

QUIT = b'BENCH-QUIT'


def payload(seq, size):
    head = struct.pack('<4sI', b'ECHO', seq)
    fill = bytes((seq + k) & 0xff for k in range(max(0, size - len(head))))
    return (head + fill)[:max(size, len(head))]


def _sock(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.connect(('127.0.0.1', port))
    return s


def rtt(port, count, sizes, timeout=1.0):
    """Ping-pong count datagrams; {'rtt_ms': [...], 'lost': n, 'bad': n}."""
    s = _sock(port)
    rtts, lost, bad = [], 0, 0
    try:
        for i in range(count):
            p = payload(i, sizes[i % len(sizes)])
            t0 = time.perf_counter()
            s.send(p)
            while True:
                left = timeout - (time.perf_counter() - t0)
                r, _, _ = select.select([s], [], [], max(0.0, left))
                if not r:
                    lost += 1
                    break
                try:
                    got = s.recv(65536)
                except ConnectionRefusedError:
                    continue  # an ICMP error from before the guest listened
                if got == p:
                    rtts.append((time.perf_counter() - t0) * 1000.0)
                    break
                if got[:4] == b'ECHO' and len(got) >= 8 and struct.unpack('<I', got[4:8])[0] < i:
                    continue  # a late echo of an earlier datagram counted as lost
                bad += 1
                break
    finally:
        s.close()
    return {'rtt_ms': rtts, 'lost': lost, 'bad': bad}


def rate(port, count, sizes, window, timeout=1.0):
    """Keep `window` datagrams in flight; {'seconds', 'received', 'lost', 'bad', 'per_s'}."""
    s = _sock(port)
    sent, received, bad = 0, 0, 0
    expect = {}
    try:
        t0 = time.perf_counter()
        last = t0
        while received + bad < count:
            while sent < count and len(expect) < window:
                p = payload(sent, sizes[sent % len(sizes)])
                expect[sent] = p
                s.send(p)
                sent += 1
            r, _, _ = select.select([s], [], [], timeout)
            if not r:
                break  # what is still expected is lost
            try:
                got = s.recv(65536)
            except ConnectionRefusedError:
                continue
            last = time.perf_counter()
            seq = struct.unpack('<I', got[4:8])[0] if got[:4] == b'ECHO' and len(got) >= 8 else -1
            if expect.get(seq) == got:
                del expect[seq]
                received += 1
            else:
                bad += 1
                expect.pop(seq, None)
        seconds = last - t0
    finally:
        s.close()
    lost = count - received - bad
    return {'seconds': seconds, 'received': received, 'lost': lost, 'bad': bad,
            'per_s': received / seconds if seconds > 0 else 0.0}


def quit(port, tries=5):
    """Ask the guest's echo server to stop; True when it said BYE."""
    s = _sock(port)
    try:
        for _ in range(tries):
            s.send(QUIT)
            r, _, _ = select.select([s], [], [], 1.0)
            while r:
                try:
                    if s.recv(65536) == b'BYE':
                        return True
                except ConnectionRefusedError:
                    break
                r, _, _ = select.select([s], [], [], 0.2)
        return False
    finally:
        s.close()
