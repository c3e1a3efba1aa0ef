"""The inet stack inside the booted image (MicroPython 1.23 on x86 under TCG), no network
device needed: two Stack objects joined by an in-memory link pair, one the guest under
test, the other a responder at 10.0.2.2 (ARP, ping, a tiny DHCP server, UDP echo).

The current drivers/inet sources are sent over the raw REPL and installed in sys.modules
ahead of the frozen copy, so this checks the code in the tree, not the last build. It shows
the stack runs unchanged on MicroPython, and measures its per-frame cost there."""

import os

import pytest

from tests.qemu import harness

pytestmark = pytest.mark.qemu

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORDER = ["addr", "_fastsum", "checksum", "ethernet", "arp", "ipv4", "icmp", "udp", "dhcp", "tcpseg", "tcb",
         "tcp", "stack", "echo"]

LOADER = """
import sys
class _Mod:
    pass
def _install(name, src):
    m = sys.modules.get(name)
    if m is None:
        m = _Mod()
        sys.modules[name] = m
    g = {'__name__': name}
    exec(src, g)
    for k in g:
        setattr(m, k, g[k])
    parts = name.split('.')
    if len(parts) == 2:
        setattr(sys.modules[parts[0]], parts[1], m)
sys.modules['inet'] = _Mod()
"""

SCENARIO = r"""
import struct, time, inet
from inet import dhcp as D

GUEST_MAC = b'\x52\x54\x00\x12\x34\x56'
GW_MAC = b'\x52\x55\x0a\x00\x02\x02'

class PairLink:
    def __init__(self, mac):
        self.mac = mac
        self.mtu = 1500
        self.q = []
        self.other = None
        self.responder = None     # called when our queue is empty: the other side runs
    def send(self, frame):
        self.other.q.append(bytes(frame))
    def recv(self, timeout_ms=0):
        if not self.q and self.responder is not None:
            self.responder()
        if self.q:
            return self.q.pop(0)
        return None

la = PairLink(GUEST_MAC)
lb = PairLink(GW_MAC)
la.other = lb
lb.other = la
a = inet.Stack(la, time)
b = inet.Stack(lb, time, '10.0.2.2', '255.255.255.0')
dsock = b.socket(67)
esock = b.socket(7)

def dhcp_reply(req):
    xid = struct.unpack_from('>I', req, 4)[0]
    t = None
    i = 240
    while i < len(req) and req[i] != 255:
        if req[i] == 0:
            i += 1
            continue
        if req[i] == 53:
            t = req[i + 2]
        i += 2 + req[i + 1]
    m = bytearray(300)
    struct.pack_into('>BBBBI', m, 0, 2, 1, 6, 0, xid)
    m[16:20] = bytes([10, 0, 2, 15])
    m[28:34] = req[28:34]
    m[236:240] = D.MAGIC_COOKIE
    opts = bytes([53, 1, 2 if t == 1 else 5, 54, 4, 10, 0, 2, 2, 1, 4, 255, 255, 255, 0,
                  3, 4, 10, 0, 2, 2, 6, 4, 10, 0, 2, 3, 51, 4, 0, 1, 81, 128, 255])
    m[240:240 + len(opts)] = opts
    return m

def respond():
    b.poll(0)
    while dsock.pending():
        b.send_broadcast_udp(67, 68, dhcp_reply(dsock.recv()))
    esock.echo()

la.responder = respond
out = {}
# The viper sum agrees with the portable one, odd and even spans, any offset.
from inet import checksum as C
out['fast_sum'] = C._words_sum is not None and C.checksum_acc is not C._portable_checksum
agree = True
for n in range(0, 1600, 37):
    data = bytes([(i * 131 + n) & 255 for i in range(n)])
    for s0 in (0, 1, 14):
        if s0 <= n:
            agree = agree and C.ones_sum(data, s0, n, 5) == C._portable_ones_sum(data, s0, n, 5)
            agree = agree and C.checksum_acc(data, s0, n, 70000) == \
                C._portable_checksum(data, s0, n, 70000)
out['fast_sum_agrees'] = agree
lease = a.dhcp(timeout_ms=2000)
out['lease'] = str(lease)
out['ping'] = a.ping('10.0.2.2', count=20, timeout_ms=1000)

u = a.socket()
sizes = (1, 64, 512, 1472)
rtt = {}
ok = True
for n in sizes:
    data = bytes([(i * 13 + n) & 255 for i in range(n)])
    times = []
    for k in range(10):
        t0 = time.ticks_us()
        u.sendto(data, ('10.0.2.2', 7))
        got = u.recvfrom(1000)
        times.append(time.ticks_diff(time.ticks_us(), t0))
        ok = ok and got == (data, ('10.0.2.2', 7))
    times.sort()
    rtt[n] = times[5]
out['udp_ok'] = ok
out['udp_rtt_us'] = rtt

# Per-frame cost of the receive path on its own: answer a ping, queue a datagram.
la.responder = None
def frame_from(fn):          # a frame b sends (to a's queue), captured
    la.q.clear()
    fn()
    return la.q.pop()
b.arp.add(bytes([10, 0, 2, 15]), GUEST_MAC)
bs = b.socket(5000)
ping_frame = frame_from(lambda: b.ping('10.0.2.15', 1, 0))
udp_small = frame_from(lambda: bs.sendto(b'x' * 16, ('10.0.2.15', 9)))
udp_big = frame_from(lambda: bs.sendto(b'y' * 1472, ('10.0.2.15', 9)))
sink = a.socket(9)
cost = {}
for name, f, echo in (('ping_reply', ping_frame, False), ('udp_16', udp_small, False),
                      ('udp_1472', udp_big, False), ('echo_16', udp_small, True),
                      ('echo_1472', udp_big, True)):
    N = 200
    t0 = time.ticks_us()
    for k in range(N):
        a.input(f)
        if echo:
            sink.echo()
        else:
            sink._queue.clear()
        lb.q.clear()
    cost[name] = time.ticks_diff(time.ticks_us(), t0) // N
out['cost_us'] = cost

# Damaged and random input never raises, and every frame is counted once.
seed = 12345
def rnd():
    global seed
    seed = (seed * 1103515245 + 12345) & 0x3FFFFFFF
    return seed >> 8
raised = 0
for k in range(600):
    f = bytearray((ping_frame, udp_small, udp_big)[k % 3])
    kind = k % 4
    if kind == 0:
        f = f[:rnd() % len(f)]
    elif kind == 1:
        p = rnd() % (len(f) * 8)
        f[p // 8] ^= 1 << (p % 8)
    elif kind == 2:
        f = bytes([rnd() & 255 for i in range(rnd() % 120)])
    else:
        p = 14 + rnd() % 28
        f[p] = rnd() & 255
    try:
        a.input(bytes(f))
    except Exception as e:
        raised += 1
        print('raised', repr(e))
    sink._queue.clear()
    lb.q.clear()
st = a.stats
out['raised'] = raised
out['accounted'] = st['rx_frames'] == st['rx_arp'] + st['rx_icmp'] + st['rx_udp'] + a.dropped()
out['dropped'] = a.dropped()
try:
    u.sendto(bytes(1473), ('10.0.2.2', 7))
    out['mtu_error'] = None
except ValueError as e:
    out['mtu_error'] = str(e)
print(repr(out))
"""


def sources():
    chunks = []
    for name in ORDER + ["__init__"]:
        with open(os.path.join(ROOT, "drivers", "inet", name + ".py")) as f:
            src = f.read()
        chunks.append("_install(%r, %r)" % ("inet" if name == "__init__" else "inet." + name,
                                            src))
    return chunks


@pytest.fixture(scope="module")
def guest():
    if not os.path.exists(harness.IMAGE):
        pytest.skip("no image at %s (make build)" % harness.IMAGE)
    g = harness.Guest(machine="pc")
    try:
        g.start()
        g.exec(LOADER)
        for chunk in sources():
            g.exec(chunk, timeout=20)
        yield g
    finally:
        g.close()


def test_stack_runs_in_the_image(guest):
    import ast
    out = ast.literal_eval(guest.exec(SCENARIO, timeout=60).strip().splitlines()[-1])
    print(out)
    assert out["fast_sum"] is True and out["fast_sum_agrees"] is True
    assert out["lease"] == "10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 lease 86400 s from 10.0.2.2"
    assert len(out["ping"]) == 20 and None not in out["ping"]
    assert out["udp_ok"] is True
    assert out["raised"] == 0 and out["accounted"] is True and out["dropped"] > 300
    assert out["mtu_error"] == \
        "UDP payload of 1473 bytes exceeds the limit of 1472 bytes (MTU 1500)"
