"""Two inet stacks on one simulated Ethernet for the TCP tests: a seeded Wire that can drop,
duplicate, delay and reorder frames (or a `tamper` function that sees each one), and a
driver loop that polls both stacks and moves the shared FakeClock on when nothing is due.
Everything is deterministic for a given seed.
"""

import random

from inet import Stack
from tests.host.test_inet_sim import FakeClock

A_MAC = bytes.fromhex("525400123456")
B_MAC = bytes.fromhex("52550a000202")
A_IP = "10.0.2.15"
B_IP = "10.0.2.2"


class End:
    """One side's link: what the stack sees (mac, mtu, send, recv)."""

    def __init__(self, wire, mac, mtu):
        self.wire = wire
        self.mac = mac
        self.mtu = mtu
        self.rx = []            # [(due us, order, frame)]
        self.peer = None
        self.sent = []

    def send(self, frame):
        frame = bytes(frame)
        assert len(frame) <= 14 + self.mtu
        self.sent.append(frame)
        self.wire.carry(self.peer, frame)

    def recv(self, timeout_ms=0):
        now = self.wire.clock.us
        if self.rx and self.rx[0][0] <= now:
            return self.rx.pop(0)[2]
        return None


class Wire:
    def __init__(self, seed=0, loss=0.0, dup=0.0, reorder=0.0, latency_us=500, mtu=1500,
                 b_mtu=None):
        self.clock = FakeClock()
        self.rng = random.Random(seed)
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.latency_us = latency_us
        self.tamper = None      # function(to_end, frame) -> frame or None (dropped)
        self.cut = False        # drop everything (a vanished peer)
        self.dropped = 0
        self._order = 0
        self.a = End(self, A_MAC, mtu)
        self.b = End(self, B_MAC, b_mtu or mtu)
        self.a.peer = self.b
        self.b.peer = self.a

    def carry(self, to, frame):
        if self.cut:
            return
        if self.tamper is not None:
            frame = self.tamper(to, frame)
            if frame is None:
                return
        r = self.rng
        if self.loss and r.random() < self.loss:
            self.dropped += 1
            return
        copies = 2 if self.dup and r.random() < self.dup else 1
        for _ in range(copies):
            delay = self.latency_us
            if self.reorder and r.random() < self.reorder:
                delay += r.randrange(1, 4) * self.latency_us
            self._order += 1
            to.rx.append((self.clock.us + delay, self._order, frame))
            to.rx.sort()


def pair(**kw):
    """-> (wire, stack a at 10.0.2.15, stack b at 10.0.2.2), each knowing the other's MAC."""
    w = Wire(**kw)
    a = Stack(w.a, w.clock, ip=A_IP)
    b = Stack(w.b, w.clock, ip=B_IP)
    a.arp.add(bytes([10, 0, 2, 2]), B_MAC)
    b.arp.add(bytes([10, 0, 2, 15]), A_MAC)
    return w, a, b


def run(w, stacks, until, limit_ms=60000, step=None):
    """Poll the stacks until until() is true; the clock moves 1 ms whenever a round handled
    nothing. step(): called every round (an application's part). -> simulated ms taken.
    Fails the test if limit_ms of simulated time pass first."""
    start = w.clock.us
    while True:
        if step is not None:
            step()
        n = 0
        for s in stacks:
            n += s.poll(0)
        if until():
            return (w.clock.us - start) // 1000
        if not n:
            w.clock.advance_ms(1)
        if w.clock.us - start > limit_ms * 1000:
            raise AssertionError("simulated time limit of %d ms reached" % limit_ms)


class Pump:
    """Moves data both ways on one connection like an application: writes `out` as the
    send buffer takes it, reads whatever arrives into `got`, half-closes when all is
    written (close=True)."""

    def __init__(self, conn, out=b"", close=True, read=True):
        self.c = conn
        self.out = memoryview(out)
        self.sent = 0
        self.got = bytearray()
        self.close = close
        self.read = read
        self.closed = False

    def __call__(self):
        c = self.c
        if self.sent < len(self.out) and c.writable():
            self.sent += c.send(self.out[self.sent:self.sent + 8192])
        if self.close and not self.closed and self.sent == len(self.out) and c.writable():
            c.shutdown_write()
            self.closed = True
        if self.read and c.rcvq is not None and len(c.rcvq):
            self.got += c.recv_take(65536)

    def eof(self):
        return self.c.fin_received and (self.c.rcvq is None or not len(self.c.rcvq))
