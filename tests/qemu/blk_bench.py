"""Speed of the virtio-blk driver in the booted image under TCG (not a test: run it).

    .venv/bin/python -m tests.qemu.blk_bench [--image build/x86_virt/firmware.elf] [--runs 3]

On a 256 MiB disk image whose every sector carries a stamp (its number and a magic
word), it measures in the guest, timing only the driver calls:
  - sequential read with large requests (readinto of 8 MiB DMA buffers: one request
    each) and with 1 MiB requests (as make bench and Linux's figure), MB/s
  - 4 KiB and 512 B random reads one at a time (readinto), IOPS
  - 4 KiB and 512 B random reads batched (submit_batch/poll_batch at depth 32..128), IOPS
  - sequential write (8 MiB writes) with a final flush, MB/s
Every request's data is checked against the stamps after its timing (a fast wrong
answer does not count: the figure is reported as BAD), and the written disk (a second
drive) is checked from the host after the guest powers off. In the same run the host's
page-cache copy speed of the image (1 MiB reads into one buffer, warm) gives the
ceiling. Figures are medians of --runs boots.
"""
import argparse
import os
import statistics
import struct
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.qemu.harness import IMAGE, Guest  # noqa: E402

SECTOR = 512
DISK_BYTES = 256 << 20
MAGIC = 0x424C4B53                  # b'SKLB'
WRITE_MAGIC = 0x57524954            # b'TIRW'
WRITE_BYTES = 64 << 20              # the write workload's own disk (a second drive): the
                                    # read disk never gets dirty pages to write back

GUEST = r'''
import struct, time, virtio, x86, micropython
from array import array
from virtio import blk as B
blk = virtio.find('blk', 0)
wblk = virtio.find('blk', 1)
tu = time.ticks_us
td = time.ticks_diff
SECTOR = 512
MAGIC = %(magic)d
WRITE_MAGIC = %(write_magic)d

@micropython.viper
def bad_stamps(buf, nbytes: int, sector: int, magic: int) -> int:
    p = ptr32(buf)
    i = 0
    bad = 0
    s = sector
    while i < (nbytes >> 2):
        if p[i] != s or p[i + 1] != magic:
            bad += 1
        s += 1
        i += 128
    return bad

@micropython.viper
def put_stamps(buf, nbytes: int, sector: int, magic: int):
    p = ptr32(buf)
    i = 0
    s = sector
    while i < (nbytes >> 2):
        p[i] = s
        p[i + 1] = magic
        s += 1
        i += 128

def dma(n):
    return x86.bytearray_at(x86.dma_alloc(n, 4096), n)

def lcg(n, count, seed):
    x = seed
    out = array('I', [0] * count)
    for i in range(count):
        x = (x * 1103515 + 12345) & 0x7fffffff
        out[i] = (x >> 4) %% n
    return out

def seq_read(chunk):
    buf = dma(chunk)
    busy = bad = 0
    for s in range(0, blk.capacity, chunk // SECTOR):
        t0 = tu()
        blk.readinto(s, buf)
        busy += td(tu(), t0)
        bad += bad_stamps(buf, chunk, s, MAGIC)
    print('RESULT seq_read_%%dk %%d %%d %%d' %% (chunk >> 10, blk.capacity * SECTOR, busy, bad))

def rand_d1(bs, count):
    buf = dma(bs)
    per = bs // SECTOR
    blocks = lcg(blk.capacity // per, count, 7)
    busy = bad = 0
    readinto = blk.readinto
    for i in range(count):
        s = blocks[i] * per
        t0 = tu()
        readinto(s, buf)
        busy += td(tu(), t0)
        bad += bad_stamps(buf, bs, s, MAGIC)
    print('RESULT rand_d1_%%d %%d %%d %%d' %% (bs, count, busy, bad))

def rand_batched(bs, depth, count):
    per = bs // SECTOR
    blocks = lcg(blk.capacity // per, count, 11)
    bufs = [dma(bs) for i in range(depth)]
    sectors = array('I', [0] * depth)
    tags = array('I', range(depth))
    out = array('I', [0] * depth)
    nxt = done = bad = busy = 0
    for t in range(depth):
        sectors[t] = blocks[nxt] * per
        nxt += 1
    t0 = tu()
    blk.submit_batch(B.VIRTIO_BLK_T_IN, tags, depth, sectors, bufs)
    busy += td(tu(), t0)
    submit_batch = blk.submit_batch
    poll_batch = blk.poll_batch
    while done < count:
        t0 = tu()
        n = poll_batch(out)
        busy += td(tu(), t0)
        k = 0
        for j in range(n):
            t = out[j]
            bad += bad_stamps(bufs[t], bs, sectors[t], MAGIC)
            done += 1
            if nxt < count:
                sectors[t] = blocks[nxt] * per
                nxt += 1
                tags[k] = t
                k += 1
        if k:
            t0 = tu()
            submit_batch(B.VIRTIO_BLK_T_IN, tags, k, sectors, bufs)
            busy += td(tu(), t0)
    print('RESULT rand_d%%d_%%d %%d %%d %%d' %% (depth, bs, count, busy, bad))

def seq_write(chunk):
    buf = dma(chunk)
    busy = 0
    for s in range(0, wblk.capacity, chunk // SECTOR):
        put_stamps(buf, chunk, s, WRITE_MAGIC)
        t0 = tu()
        wblk.write(s, buf)
        busy += td(tu(), t0)
    t0 = tu()
    wblk.flush()
    busy += td(tu(), t0)
    print('RESULT seq_write %%d %%d 0' %% (wblk.capacity * SECTOR, busy))
'''


def make_disk(path):
    """256 MiB, every sector: (its number, MAGIC), then a byte pattern; on the host's
    disk before the runs (no writeback competing with them)."""
    body = bytes((i * 7) & 0xFF for i in range(SECTOR - 8))
    chunk_sectors = 2048
    with open(path, 'wb') as f:
        for base in range(0, DISK_BYTES // SECTOR, chunk_sectors):
            f.write(b''.join(struct.pack('<II', base + i, MAGIC) + body
                             for i in range(chunk_sectors)))
        f.flush()
        os.fsync(f.fileno())


def host_copy_speed(path, rounds=3):
    """MB/s of reading the image from page cache into one 1 MiB buffer (like dd bs=1M)."""
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    speeds = []
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        n = 0
        with open(path, 'rb', buffering=0) as f:
            while True:
                k = f.readinto(mv)
                if not k:
                    break
                n += k
        dt = time.perf_counter() - t0
        if r:                       # the first round warms the page cache
            speeds.append(n / dt / 1e6)
    return statistics.median(speeds)


def check_written(path):
    bad = 0
    with open(path, 'rb') as f:
        for s in range(WRITE_BYTES // SECTOR):
            n, m = struct.unpack('<II', f.read(SECTOR)[:8])
            if n != s or m != WRITE_MAGIC:
                bad += 1
    return bad


WORKLOADS = [
    ('seq_read(8 << 20)', 60),
    ('seq_read(1 << 20)', 60),
    ('rand_d1(4096, 5000)', 60),
    ('rand_d1(512, 5000)', 60),
    ('rand_batched(4096, 32, 20000)', 60),
    ('rand_batched(4096, 64, 20000)', 60),
    ('rand_batched(4096, 128, 20000)', 60),
    ('rand_batched(512, 32, 20000)', 60),
    ('rand_batched(512, 64, 20000)', 60),
    ('rand_batched(512, 128, 20000)', 60),
    ('seq_write(8 << 20)', 60),
]


def one_run(image, path, wpath):
    """Boot, run every workload; returns {name: (figure, unit, bad)}."""
    results = {}
    with open(wpath, 'wb') as f:
        f.truncate(WRITE_BYTES)
    devices = ['-drive', 'file=%s,format=raw,if=none,id=d0' % path,
               '-device', 'virtio-blk-pci,drive=d0,serial=bench',
               '-drive', 'file=%s,format=raw,if=none,id=d1' % wpath,
               '-device', 'virtio-blk-pci,drive=d1,serial=bench-write']
    with Guest(image=image, devices=devices, mem=512) as g:
        g.start()
        g.exec(GUEST % {'magic': MAGIC, 'write_magic': WRITE_MAGIC})
        for call, timeout in WORKLOADS:
            out = g.exec(call, timeout=timeout)
            for line in out.splitlines():
                if not line.startswith('RESULT '):
                    continue
                _, name, amount, us, bad = line.split()
                amount, us, bad = int(amount), int(us), int(bad)
                if name.startswith('seq'):
                    results[name] = (amount / us, 'MB/s', bad)
                else:
                    results[name] = (amount * 1e6 / us, 'IOPS', bad)
        status = g.exec_until_exit('x86.poweroff(0)', timeout=30)
        if status != 0:
            raise SystemExit('guest power-off failed: status %r' % status)
    bad = check_written(wpath)
    name = 'seq_write'
    fig, unit, b = results[name]
    results[name] = (fig, unit, b + bad)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--image', default=IMAGE)
    ap.add_argument('--runs', type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='blkbench-')
    path = os.path.join(tmp, 'disk.img')
    wpath = os.path.join(tmp, 'write.img')
    try:
        make_disk(path)
        runs = []
        ceilings = []
        for r in range(args.runs):
            ceilings.append(host_copy_speed(path))
            runs.append(one_run(args.image, path, wpath))
        ceiling = statistics.median(ceilings)
        print('host page-cache copy of the image: %.0f MB/s (median of %d; runs %s)'
              % (ceiling, len(ceilings), ' '.join('%.0f' % c for c in ceilings)))
        print('%-20s %12s %6s  %s' % ('workload', 'median', 'unit', 'runs'))
        for name in runs[0]:
            figs = [r[name][0] for r in runs]
            bad = sum(r[name][2] for r in runs)
            med = statistics.median(figs)
            extra = ''
            if name.startswith('seq_read'):
                extra = '  (%.0f%% of the host copy)' % (100 * med / ceiling)
            print('%-20s %12.0f %6s  %s%s%s' % (name, med, runs[0][name][1],
                                               ' '.join('%.0f' % f for f in figs),
                                               '  BAD %d' % bad if bad else '', extra))
    finally:
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)


if __name__ == '__main__':
    main()
