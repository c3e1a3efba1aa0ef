# Block workloads for our image, sent over the raw REPL (MicroPython 1.23; also runs under
# CPython against a fake disk in tests/host/test_bench_guest.py).
#
# Same rules as the Linux helper (bench/helper/bhelper.c): only the driver calls are timed;
# every sector's stamp and each request's first sector in full are checked against the
# pattern (bench/pattern.py); the figures come out as
#   @@ NAME
#   RESULT op=read bs=4096 depth=1 mode=rand ops=N bytes=N ns=N bad=N
# or, when the driver cannot do it yet,
#   @@ NAME
#   NA reason
import struct
from array import array

try:
    from time import ticks_us, ticks_diff
except ImportError:  # CPython
    import time as _t

    def ticks_us():
        return _t.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

SECTOR = 512
READ_MAGIC = 0x48434e42   # b'BNCH'
WRITE_MAGIC = 0x54495257  # b'WRIT'
READ_SALT = 0
WRITE_SALT = 0x5a
WHEEL = bytes([k & 0xff for k in range(256 + SECTOR)])
OFFSETS = 4096            # random block numbers drawn once, outside the timing
STALL_US = 5000000        # in-flight reads with no completion for this long: give up


_POOL = {}                # size -> the DMA buffers of that size handed out so far


def dma_buffers(n, count=1):
    """count buffers of n bytes the device can reach without a copy where the
    port offers that. The same ones for every run of a workload: a paired
    bench runs each workload many times in one boot, and DMA memory is not
    garbage-collected."""
    pool = _POOL.setdefault(n, [])
    while len(pool) < count:
        try:
            import x86
            pool.append(x86.bytearray_at(x86.dma_alloc(n), n))
        except (ImportError, AttributeError):
            pool.append(bytearray(n))
    return pool[:count]


def base(sector, salt):
    return (sector * 131 + salt) & 0xff


# The pattern checks, in plain Python; on MicroPython the viper versions below replace them
# (a 4 KiB request takes ~120 us to check in bytecode, ~2 us in viper).
def stamps_bad(buf, nbytes, sector, magic):
    """Sectors in buf[:nbytes] whose stamp is not (sector number, magic)."""
    bad = 0
    unpack = struct.unpack_from
    s = sector
    for o in range(0, nbytes, SECTOR):
        n, m = unpack('<II', buf, o)
        if n != s or m != magic:
            bad += 1
        s += 1
    return bad


def body_bad(buf, wheel, b):
    """1 if bytes 8-511 of buf are not wheel[b + 8:b + 512]."""
    return 0 if bytes(buf[8:SECTOR]) == wheel[b + 8:b + SECTOR] else 1


def put_stamps(buf, nbytes, sector, magic):
    pack = struct.pack_into
    s = sector
    for o in range(0, nbytes, SECTOR):
        pack('<II', buf, o, s, magic)
        s += 1


VIPER = """
@micropython.viper
def stamps_bad(buf, nbytes: int, sector: int, magic: int) -> int:
    p = ptr32(buf)
    n = nbytes >> 2
    i = 0
    bad = 0
    s = sector
    while i < n:
        if p[i] != s or p[i + 1] != magic:
            bad += 1
        s += 1
        i += 128
    return bad


@micropython.viper
def body_bad(buf, wheel, b: int) -> int:
    p = ptr8(buf)
    w = ptr8(wheel)
    i = 8
    while i < 512:
        if p[i] != w[b + i]:
            return 1
        i += 1
    return 0


@micropython.viper
def put_stamps(buf, nbytes: int, sector: int, magic: int):
    p = ptr32(buf)
    n = nbytes >> 2
    i = 0
    s = sector
    while i < n:
        p[i] = s
        p[i + 1] = magic
        s += 1
        i += 128
"""

try:
    import sys
    if sys.implementation.name == 'micropython':
        import micropython  # noqa: F401  (the decorators in VIPER name it)
        exec(VIPER)
except (ImportError, SyntaxError, ValueError):  # an image without the native emitter
    pass


def check(buf, nbytes, sector):
    """Failed checks in buf[:nbytes] read from `sector`: every stamp, the first sector whole."""
    return (stamps_bad(buf, nbytes, sector, READ_MAGIC)
            + body_bad(buf, WHEEL, base(sector, READ_SALT)))


_template = []


def write_template():
    """Bodies of the WRIT pattern for 256 sectors; base() repeats every 256 sectors."""
    if not _template:
        t = bytearray(256 * SECTOR)
        for s in range(256):
            b = base(s, WRITE_SALT)
            t[s * SECTOR + 8:(s + 1) * SECTOR] = WHEEL[b + 8:b + SECTOR]
        _template.append(memoryview(t))
    return _template[0]


def fill(buf, nbytes, sector):
    """Put the WRIT pattern for `sector` onward into buf[:nbytes]."""
    tpl = write_template()
    mv = memoryview(buf)
    o = 0
    s = sector
    while o < nbytes:
        k = s & 255
        n = min(nbytes - o, (256 - k) * SECTOR)
        mv[o:o + n] = tpl[k * SECTOR:k * SECTOR + n]
        o += n
        s += n // SECTOR
    put_stamps(buf, nbytes, sector, WRITE_MAGIC)


def random_blocks(nblocks, count):
    # A 31-bit LCG: small ints only on MicroPython, no allocation.
    x = 12345
    out = []
    for _ in range(count):
        x = (x * 1103515 + 12345) & 0x7fffffff
        out.append((x >> 4) % nblocks)
    return out


def report(name, op, bs, depth, mode, ops, nbytes, us, bad):
    print('@@ %s' % name)
    print('RESULT op=%s bs=%d depth=%d mode=%s ops=%d bytes=%d ns=%d bad=%d'
          % (op, bs, depth, mode, ops, nbytes, us * 1000, bad))


def na(name, why):
    print('@@ %s' % name)
    print('NA %s' % why)


def read_depth1(blk, name, bs, mode, region, max_ops, max_ms):
    buf = dma_buffers(bs)[0]
    per = bs // SECTOR
    nblocks = region // bs
    blocks = random_blocks(nblocks, OFFSETS) if mode == 'rand' else None
    budget = max_ms * 1000
    busy = ops = bad = 0
    readinto = blk.readinto
    while ops < max_ops and busy < budget:
        b = blocks[ops % OFFSETS] if blocks else ops % nblocks
        sector = b * per
        t0 = ticks_us()
        readinto(sector, buf)
        busy += ticks_diff(ticks_us(), t0)
        bad += check(buf, bs, sector)
        ops += 1
    report(name, 'read', bs, 1, mode, ops, ops * bs, busy, bad)


def batch_api(blk):
    """The driver's vector batch interface as an object with
        submit(tags, k, sectors, bufs)  queue reads: for t in tags[:k], bufs[t] at sectors[t]
        poll(out)                       send what is queued, put the tags done since in out,
                                        return how many
    or None when the driver has none. This is the one place that maps the driver's own
    names: drivers/virtio/blk.py has submit_batch(VIRTIO_BLK_T_IN, tags, k, sectors, bufs)
    and poll_batch(out), one call per batch (its fast path, in viper on the target)."""
    if not (hasattr(blk, 'submit_batch') and hasattr(blk, 'poll_batch')):
        return None
    return BlkBatch(blk)


class BlkBatch:
    def __init__(self, blk):
        try:
            from virtio.blk import VIRTIO_BLK_T_IN
        except ImportError:
            VIRTIO_BLK_T_IN = 0  # spec 5.2.6
        self.op = VIRTIO_BLK_T_IN
        self.submit_batch = blk.submit_batch
        self.poll = blk.poll_batch

    def submit(self, tags, k, sectors, bufs):
        self.submit_batch(self.op, tags, k, sectors, bufs)


def read_deep(blk, name, bs, depth, mode, region, max_ops, max_ms, api=None):
    """Keep `depth` reads in flight: refill each slot as it completes, check its data.
    Timed: the submit and poll calls only (the checks between them are not)."""
    api = api or batch_api(blk)
    if api is None:
        na(name, 'no batch interface in the driver')
        return
    if hasattr(blk, 'depth'):
        blk.depth = max(blk.depth, depth)  # the driver's own cap on requests in flight
    per = bs // SECTOR
    nblocks = region // bs
    blocks = random_blocks(nblocks, OFFSETS) if mode == 'rand' else None
    bufs = dma_buffers(bs, depth)
    where = array('I', [0] * depth)       # per tag: the sector it reads
    tags = array('I', [0] * depth)        # the tags of the next batch
    out = array('I', [0] * depth)         # the tags completed by a poll
    budget = max_ms * 1000
    busy = ops = bad = issued = 0
    submit = api.submit
    poll = api.poll
    k = 0
    for tag in range(depth):
        if issued >= max_ops:
            break
        b = blocks[issued % OFFSETS] if blocks else issued % nblocks
        where[tag] = b * per
        tags[k] = tag
        k += 1
        issued += 1
    t0 = ticks_us()
    if k:
        submit(tags, k, where, bufs)
    busy += ticks_diff(ticks_us(), t0)
    inflight = k
    last = ticks_us()
    while inflight:
        t0 = ticks_us()
        n = poll(out)
        busy += ticks_diff(ticks_us(), t0)
        if not n:
            if ticks_diff(ticks_us(), last) > STALL_US:
                print('NOTE %s: %d reads never completed' % (name, inflight))
                bad += inflight  # a device that stops answering gives no figure
                break
            continue
        last = ticks_us()
        k = 0
        for j in range(n):
            tag = out[j]
            inflight -= 1
            bad += check(bufs[tag], bs, where[tag])
            ops += 1
            if busy < budget and issued < max_ops:
                b = blocks[issued % OFFSETS] if blocks else issued % nblocks
                where[tag] = b * per
                tags[k] = tag
                k += 1
                issued += 1
        if k:
            t0 = ticks_us()
            submit(tags, k, where, bufs)
            busy += ticks_diff(ticks_us(), t0)
            inflight += k
    report(name, 'read', bs, depth, mode, ops, ops * bs, busy, bad)


def read(blk, name, bs, depth, mode, region, max_ops, max_ms):
    if blk is None:
        na(name, 'driver missing')
    elif depth == 1:
        read_depth1(blk, name, bs, mode, region, max_ops, max_ms)
    else:
        read_deep(blk, name, bs, depth, mode, region, max_ops, max_ms)


def write(blk, name, bs, offset, total):
    if blk is None:
        na(name, 'driver missing')
        return
    buf = dma_buffers(bs)[0]
    per = bs // SECTOR
    busy = ops = 0
    sector = offset // SECTOR
    end = (offset + total) // SECTOR
    while sector < end:
        fill(buf, bs, sector)
        t0 = ticks_us()
        blk.write(sector, buf)
        busy += ticks_diff(ticks_us(), t0)
        sector += per
        ops += 1
    t0 = ticks_us()
    blk.flush()
    busy += ticks_diff(ticks_us(), t0)
    report(name, 'write', bs, 1, 'seq', ops, ops * bs, busy, 0)


def find_blk():
    try:
        import virtio
        return virtio.find('blk')
    except Exception as e:  # no driver yet, or no such device: the table says n/a
        print('NOTE blk unavailable: %r' % (e,))
        return None
