"""Issue 10 item 8: the viper steps of each ring format (virtio.split, virtio.packed) and
blk's viper fast paths agree with the plain reference, in the booted image where both
exist. The same scenario runs twice on the same ring memory, through the plain functions
and through the viper ones, with a fake device (this script) taking and completing
requests: ring memory, state and results must be identical, and so must the errors for a
device that lies (a used id never posted, a used idx that jumps, an oversized length)."""
import pytest

pytestmark = pytest.mark.qemu

COMMON = r'''
import x86
from array import array
from virtio import split as S, packed as P
from virtio.errors import DeviceError
NEXT, WRITE, INDIRECT, AVAIL, USED = 1, 2, 4, 0x80, 0x8000
SIZE = 16
MEM = x86.dma_alloc(65536, 4096)
DESC, AV, US, CHAINS, HDRS, STATUS = MEM, MEM + 4096, MEM + 8192, MEM + 12288, MEM + 20480, MEM + 24576

NOTES = []                  # the queue indexes notified, in order

def noted(where, index):
    NOTES.append(index)

class T:
    address = '00:00.0'
    legacy_interface = False
    ring_align = 0
    fixed_queue_size = False
    def notifier(self, i):
        return [noted, 0, i]

class Device:
    """A device in this script: takes what was made available, completes it."""
    def __init__(self, kind, desc=DESC, avail=AV, used=US):
        self.kind = kind
        self.desc, self.av, self.us = desc, avail, used
        self.seen = 0           # split: avail idx seen; packed: next position
        self.wrap = 1
        self.used = 0
        self.used_wrap = 1
        self.pending = []
    def take(self):
        if self.kind == 'split':
            idx = x86.read16(self.av + 2)
            while self.seen != idx:
                self.pending.append((x86.read16(self.av + 4 + 2 * (self.seen % SIZE)), 1))
                self.seen = (self.seen + 1) & 0xFFFF
            return
        while True:
            at = self.desc + 16 * self.seen
            f = x86.read16(at + 14)
            if bool(f & AVAIL) != bool(self.wrap) or bool(f & USED) == bool(self.wrap):
                return
            n = 1
            while f & NEXT:
                at = self.desc + 16 * ((self.seen + n) % SIZE)
                f = x86.read16(at + 14)
                n += 1
            self.pending.append((x86.read16(at + 12), n))
            self.seen += n
            if self.seen >= SIZE:
                self.seen -= SIZE
                self.wrap ^= 1
    def complete(self, order, length):
        done = [self.pending[i] for i in order]
        for d in done:
            self.pending.remove(d)
        for ident, n in done:
            self.put(ident, n, length(ident))
    def put(self, ident, n, ln):
        if self.kind == 'split':
            at = self.us + 4 + 8 * (self.used % SIZE)
            x86.write32(at, ident)
            x86.write32(at + 4, ln)
            self.used = (self.used + 1) & 0xFFFF
            x86.write16(self.us + 2, self.used)
            return
        at = self.desc + 16 * self.used
        x86.write32(at + 8, ln)
        x86.write16(at + 12, ident)
        x86.write16(at + 14, (AVAIL | USED) if self.used_wrap else 0)
        self.used += n
        if self.used >= SIZE:
            self.used -= SIZE
            self.used_wrap ^= 1

def fresh(kind):
    for a in range(MEM, MEM + 65536, 4096):
        x86.write(a, bytes(4096))
    if kind == 'split':
        return S.new_state(DESC, AV, US, SIZE, True)
    return P.new_state(DESC, AV, US, SIZE, True)

def memory():
    return x86.read(MEM, 28672)

def error_of(fn):
    try:
        fn()
    except DeviceError as e:
        return str(e)
    return None
'''

RING_CHECK = COMMON + r'''
def wish(kind, r, st):
    # The device's wish before round r's kick: by turns each edge of the notification
    # decision (notify when the event lies in [told, published), 2.7.10, 2.8.10), so
    # that viper and plain must agree on every one.
    if kind == 'split':
        old, new = st[S.RING_KICKED], st[S.RING_AVAIL_IDX]
        event = (old, new - 1, new, old - 1)[r % 4]
        x86.write16(US + 4 + 8 * SIZE, event & 0xFFFF)              # avail_event
        return
    old = st[P.RING_KICK_POS]
    new = st[P.RING_NEXT_AVAIL] + (0 if st[P.RING_AVAIL_WRAP] else SIZE)
    flags = (P.RING_EVENT_FLAGS_ENABLE, P.RING_EVENT_FLAGS_DISABLE)[r % 6] if r % 6 < 2 \
        else P.RING_EVENT_FLAGS_DESC
    event = (old, new - 1, new, old - 1)[r % 4] % (2 * SIZE)     # a position
    x86.write16(US, event % SIZE | (0x8000 if event < SIZE else 0))    # off_wrap
    x86.write16(US + 2, flags)

def scenario(kind, indirect, steps):
    st = fresh(kind)
    per = 3
    nslots = SIZE if indirect else SIZE // per
    steps.use_slots(x86, st, nslots, per, indirect)
    if kind == 'packed' or indirect:
        st[S.RING_CHAINS] = CHAINS          # the same place in both runs
    t = array('I')
    for k in range(nslots):
        t.extend(array('I', [HDRS + 32 * k, 16, NEXT, 0, 0, NEXT, STATUS + k, 1, WRITE]))
    steps.build(x86, st, t)
    dev = Device(kind)
    log = []
    for r in range(12):                     # 4 requests a round: every ring wraps
        if r % 2:                           # odd rounds: three in one post
            reqs = array('I')
            for k in range(3):
                reqs.extend(array('I', [k, 0x100000 + 4096 * k, 512 * (k + r + 1)]))
            steps.post(x86, st, reqs, 3, 3, 1, NEXT | WRITE)
        for k in range(4):
            if k == 3:                      # a chain of two (a flush: no data)
                steps.set_desc(x86, st, k, 1, STATUS + k, 1, WRITE)
                steps.post(x86, st, array('I', [k, 0, 0]), 1, 2, -1, 0)
            elif r % 2 == 0:
                steps.post(x86, st, array('I', [k, 0x100000 + 4096 * k, 512 * (k + r + 1)]), 1,
                           3, 1, NEXT | WRITE)
        n0 = len(NOTES)
        wish(kind, r, st)
        log.append(('kick', steps.kick(x86, st, [noted, 0, 5])))
        log.append(NOTES[n0:])              # what kick() said it sent, it sent
        dev.take()
        dev.complete([3, 1, 0, 2][:len(dev.pending)], lambda i: 7 * i + r)
        got = []
        while True:
            slot = steps.pop(x86, st, 'ring')
            if slot < 0:
                break
            got.append((slot, st[S.RING_LEN], st[S.RING_FREED]))
        log.append(got)
        log.append((memory(), list(st)))
    # A device that lies: a used id never posted, then (split) an index that jumps.
    steps.post(x86, st, array('I', [0, 0x100000, 512]), 1, 3, 1, NEXT | WRITE)
    steps.kick(x86, st, [noted, 0, 5])
    before = list(st)
    dev.put(9 if indirect else 9 * per, 3, 1)
    log.append(error_of(lambda: steps.pop(x86, st, 'ring')))
    log.append(list(st) == before)
    if kind == 'split':
        x86.write16(US + 2, (st[S.RING_LAST_USED] + 9) & 0xFFFF)
        log.append(error_of(lambda: steps.pop(x86, st, 'ring')))
        log.append(list(st) == before)
    return log

out = {'native': S.NATIVE and P.NATIVE}
for kind, mod in (('split', S), ('packed', P)):
    for indirect in (True, False):
        a = scenario(kind, indirect, mod.PlainSteps)
        b = scenario(kind, indirect, mod)
        kicks = sorted(set([x[1] for x in a if isinstance(x, tuple) and x[0] == 'kick']))
        out[(kind, indirect)] = (a == b, [x for x in a if isinstance(x, str)], a[2], a[1], kicks)
print(repr(out))
'''


def test_viper_ring_steps_agree_with_the_plain_ones(guest):
    out = eval(guest.exec(RING_CHECK, timeout=120).strip().splitlines()[-1])
    assert out['native'] is True
    for kind in ('split', 'packed'):
        for indirect in (True, False):
            same, errors, first_pops, first_notes, kicks = out[(kind, indirect)]
            assert same, 'viper and plain %s steps differ (indirect %s)' % (kind, indirect)
            # Round 0: slots 3, 1, 0, 2 complete in that order, lengths 7 * id + 0.
            per = 1 if indirect or kind == 'packed' else 3     # the id the device returns
            want = [(3, 7 * 3 * per, 1 if indirect else 2)]
            want += [(k, 7 * k * per, 1 if indirect else 3) for k in (1, 0, 2)]
            if kind == 'split':
                want = [(s, ln, 2 if s == 3 else 3) for s, ln, _ in want]
            assert first_pops == want
            assert first_notes == [5]           # the first kick notified, with its index
            assert kicks == [0, 1]              # the device declined some notifications
            never = 'ring: used %s %d' % ('id' if kind == 'split' else 'buffer id',
                                          9 if indirect else 27)
            assert errors[0].startswith(never), errors
            if kind == 'split':
                assert errors[1].endswith('reports 9 completions, only 1 requests in flight')


BLK_CHECK = COMMON + r'''
from virtio import blk as B, features as F
from virtio.split import SplitVirtqueue
from virtio.packed import PackedVirtqueue

class HW:
    """The x86 module, with DMA memory from the same place in each run."""
    __name__ = 'x86'
    def __init__(self):
        self.next = MEM
    def dma_alloc(self, n, align=4096):
        a = (self.next + align - 1) & ~(align - 1)
        self.next = a + n
        return a
    def __getattr__(self, name):
        return getattr(x86, name)

class FakeBlk(B.BlkDevice):
    def __init__(self):
        pass
    def check(self):
        pass

def blk_up(kind, indirect, native):
    fresh(kind)
    hw = HW()
    feats = (1 << F.VERSION_1) | (1 << F.EVENT_IDX) | ((1 << F.INDIRECT_DESC) if indirect else 0)
    cls = SplitVirtqueue if kind == 'split' else PackedVirtqueue
    vq = cls(hw, T(), 0, SIZE, feats, 0)
    vq.notifier = T().notifier(0)
    if not native:
        vq.steps = (S if kind == 'split' else P).PlainSteps
    dev = FakeBlk()
    dev.hw, dev.transport, dev.features, dev.address = hw, T(), feats, '00:00.0'
    dev._who = '00:00.0 virtio-blk'
    dev.capacity, dev.block_size, dev.seg_max, dev.size_max, dev.read_only = 1 << 20, 512, 1, 0, False
    dev._max_transfer, dev._depth, dev.timeout_ms = B.MAX_TRANSFER, 128, 100
    dev.requestq = vq
    dev._setup_slots()
    assert dev.native
    if not native:
        dev.native = False
        dev._reap = lambda: B.BlkDevice._reap(dev)
        dev.submit_read = lambda s, b, t: B.BlkDevice.submit_read(dev, s, b, t)
        dev.submit_write = lambda s, b, t: B.BlkDevice.submit_write(dev, s, b, t)
    return dev

def catch(fn):
    try:
        return fn()
    except DeviceError as e:
        return ('DeviceError', str(e), getattr(e, 'tag', None))
    except OSError as e:
        return ('OSError', str(e), getattr(e, 'tag', None))

BUFS = [bytearray(4096) for _ in range(6)]
WBUF = bytes(range(256)) * 4

def blk_scenario(kind, indirect, native):
    dev = blk_up(kind, indirect, native)
    per = 1 if indirect or kind == 'packed' else 3
    vq = dev.requestq
    if kind == 'split':
        device = Device(kind, vq.desc, vq.avail, vq.used)
    else:
        device = Device(kind, vq.desc)
    st = dev._st
    log = []
    out = array('I', [0] * 4)
    for rnd in range(6):                    # enough rounds for every ring to wrap
        for i in range(3):
            dev.submit_read(8 * i + rnd, BUFS[i], 'r%d' % i)
        dev.submit_write(100 + rnd, WBUF, 'w')
        dev.submit_batch(B.VIRTIO_BLK_T_IN, array('I', [1]), 1, array('I', [200, 208]),
                         [BUFS[3], BUFS[4]])         # 5 requests: as many as 5 chains in 16
        log.append(dev.kick())
        device.take()
        log.append([ident for ident, n in device.pending])
        for ident, n in device.pending:
            x86.write8(st[B.ST_STATUS] + ident // per, B.VIRTIO_BLK_S_IOERR if rnd == 3 and
                       ident // per == 1 else B.VIRTIO_BLK_S_OK)
        device.complete([4, 0, 3, 1, 2], lambda ident: 1)
        log.append(catch(dev.poll))
        log.append(catch(dev.poll))
        log.append(catch(lambda: (dev.poll_batch(out), list(out))))
        log.append((x86.read(MEM, 28672), list(dev.requestq.st), list(st), dev.in_flight))
    # A device that lies: an oversized used length, a used id never posted, an index that jumps.
    dev.submit_read(0, BUFS[5], 'big')
    dev.submit_read(8, BUFS[0], 'held')
    dev.kick()
    device.take()
    ident, n = device.pending.pop(0)
    x86.write8(st[B.ST_STATUS] + ident // per, 0)
    device.put(ident, n, 4096 + 2)
    log.append(catch(dev.poll))
    device.put(9 * per, 3, 1)
    log.append(catch(dev.poll))
    if kind == 'split':
        x86.write16(vq.used + 2, (vq.st[S.RING_LAST_USED] + 9) & 0xFFFF)
        log.append(catch(dev.poll))
    return log

out = {}
for kind in ('split', 'packed'):
    for indirect in (True, False):
        a = blk_scenario(kind, indirect, False)
        b = blk_scenario(kind, indirect, True)
        out[(kind, indirect)] = (a == b, a[2], a[-3:])
print(repr(out))
'''


def test_blk_viper_fast_paths_agree_with_the_plain_ones(guest):
    out = eval(guest.exec(BLK_CHECK, timeout=120).strip().splitlines()[-1])
    for kind in ('split', 'packed'):
        for indirect in (True, False):
            same, first_poll, lies = out[(kind, indirect)]
            assert same, 'blk viper and plain paths differ (%s ring, indirect %s)' % (
                kind, indirect)
            assert sorted(first_poll) == ['r0', 'r1', 'r2', 'w'], first_poll
            oversized, never, jump = lies if kind == 'split' else lies[1:] + [None]
            assert oversized[0] == 'DeviceError' and 'used length 4098 exceeds' in oversized[1]
            assert oversized[2] == 'big'
            assert never[0] == 'DeviceError' and 'is not' in never[1] and 'in flight' in never[1]
            if kind == 'split':
                assert jump[0] == 'DeviceError' and 'reports 9 completions' in jump[1]
