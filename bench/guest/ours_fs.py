# File workloads for our image (docs/files.md), sent over the raw REPL; they also run
# under CPython on a folder (tests/host/test_bench_guest.py). Same data and output as
# the Linux helper's fswrite/fsread/fsfiles (bench/helper/bhelper.c): chunk k of the
# file starts with k and FILE_MAGIC, byte i >= 8 of a chunk is (i * 7 + 0x33) & 0xff;
#   @@ NAME
#   RESULT op=fswrite bs=N ops=N bytes=N ns=N bad=N
# Only the file calls (open, write/readinto, flush, close, mkdir, sync) are timed.
import os

try:
    from time import ticks_us, ticks_diff
except ImportError:  # CPython
    import time as _t

    def ticks_us():
        return _t.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

FILE_MAGIC = 0x454c4946   # b'FILE'
PERIOD = bytes([(i * 7 + 0x33) & 0xff for i in range(256)])


def fs_mount(index=1, path='/bench'):
    """Mount the file workloads' disk (the second virtio-blk, FAT) at path."""
    import virtio
    os.mount(virtio.find('blk', index), path)
    return path


def remount(path='/bench'):
    """What "caches dropped" means here: the file system is mounted afresh."""
    import virtio
    os.umount(path)
    os.mount(virtio.find('blk', 1), path)


def chunk(bs):
    return bytearray(PERIOD * (bs // 256))


def stamp(buf, k):
    buf[0:4] = k.to_bytes(4, 'little')
    buf[4:8] = FILE_MAGIC.to_bytes(4, 'little')


def result(name, op, bs, ops, nbytes, us, bad):
    print('@@ %s' % name)
    print('RESULT op=%s bs=%d ops=%d bytes=%d ns=%d bad=%d' % (op, bs, ops, nbytes, us * 1000, bad))


def _write(path, bs, total):
    """(ops, busy_us, bad): the file written in bs-byte writes, then closed."""
    buf = chunk(bs)
    t = ticks_us()
    f = open(path, 'wb')
    busy = ticks_diff(ticks_us(), t)
    ops = bad = 0
    for k in range(total // bs):
        stamp(buf, k)
        t = ticks_us()
        n = f.write(buf)
        busy += ticks_diff(ticks_us(), t)
        if n != bs:
            bad += 1
            break
        ops += 1
    t = ticks_us()
    f.flush()       # as the Linux helper's fsync: the device's cache flushed too
    f.close()
    busy += ticks_diff(ticks_us(), t)
    return ops, busy, bad


def fs_write(name, path, bs, total):
    ops, busy, bad = _write(path, bs, total)
    result(name, 'fswrite', bs, ops, ops * bs, busy, bad)


def fs_read(name, path, bs, total, drop=None):
    try:
        os.stat(path)
    except OSError:
        _write(path, bs, total)         # fs_read alone: the file first, untimed
    if drop is not None:
        drop()
    buf = bytearray(bs)
    want = chunk(bs)
    t = ticks_us()
    f = open(path, 'rb')
    busy = ticks_diff(ticks_us(), t)
    ops = bad = 0
    for k in range(total // bs):
        t = ticks_us()
        n = f.readinto(buf)
        busy += ticks_diff(ticks_us(), t)
        stamp(want, k)
        if n != bs or buf != want:
            bad += 1
            if n != bs:
                break
        ops += 1
    f.close()
    result(name, 'fsread', bs, ops, ops * bs, busy, bad)


def fs_files(name, root, count, size):
    body = bytes([97 + i % 26 for i in range(size)])     # as bhelper: 'abc...'
    made = bad = 0
    t = ticks_us()
    os.mkdir(root)
    for d in range(10):
        os.mkdir('%s/d%d' % (root, d))
    for i in range(count):
        f = open('%s/d%d/f%04d' % (root, i % 10, i), 'wb')
        f.write(body)
        f.close()
        made += 1
    os.sync()
    busy = ticks_diff(ticks_us(), t)
    found = sum(len(os.listdir('%s/d%d' % (root, d))) for d in range(10))
    if found != count:
        bad += 1
    result(name, 'fsfiles', size, made, made * size, busy, bad)
