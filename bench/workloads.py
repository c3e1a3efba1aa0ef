"""What is measured, the same for both guests, and how a run's output becomes figures.

A workload's output, from the C helper (Linux) and from bench/guest/*.py (ours) alike:
    @@ NAME
    RESULT op=read bs=4096 depth=32 mode=rand ops=N bytes=N ns=N bad=N
`bad` counts failed pattern checks: a run with bad != 0 gives no figure ("wrong data").
"""
import os
import re

MiB = 1 << 20
DISK_BYTES = 256 * MiB
SECONDS = float(os.environ.get('BENCH_SECONDS', '2'))  # per request-rate workload
WRITE_OFFSET = 0
WRITE_BYTES = int(os.environ.get('BENCH_WRITE_MIB', '64')) * MiB
PING_COUNT = int(os.environ.get('BENCH_PING_COUNT', '20'))
UDP_RTT_COUNT = int(os.environ.get('BENCH_UDP_COUNT', '200'))
UDP_RATE_COUNT = int(os.environ.get('BENCH_UDP_RATE_COUNT', '2000'))
UDP_WINDOW = 16
UDP_SIZES = (16, 64, 256, 512, 1024, 1400)
TCP_BYTES = int(os.environ.get('BENCH_TCP_MIB', '8')) * MiB

# The file workloads (docs/files.md): a fresh FAT disk of its own (mformat on the host,
# the same for both guests), ours through VfsFat, Linux's through vfat.
FS_DISK_BYTES = 256 * MiB
FS_FILE_BYTES = int(os.environ.get('BENCH_FS_MIB', '64')) * MiB
FS_FILES = 1000
FS_FILE_SIZE = 100

HIGHER, LOWER = 'higher', 'lower'


class Workload:
    def __init__(self, name, title, unit, better, kind, **params):
        self.name, self.title, self.unit, self.better, self.kind = name, title, unit, better, kind
        self.params = params

    def __repr__(self):
        return 'Workload(%s)' % self.name


def _read(name, title, bs, depth, mode, unit):
    ops = DISK_BYTES // bs if mode == 'seq' else 10 ** 9
    ms = 60000 if mode == 'seq' else int(SECONDS * 1000)
    return Workload(name, title, unit, HIGHER, 'read', bs=bs, depth=depth, mode=mode,
                    region=DISK_BYTES, max_ops=ops, max_ms=ms)


WORKLOADS = [
    Workload('boot', 'boot: QEMU start to devices ready', 's', LOWER, 'boot'),
    _read('seq_read', 'sequential read, 1 MiB requests', MiB, 1, 'seq', 'MB/s'),
    # Larger requests: fewer notifications, closer to the host's copy speed (issue #4's
    # "large requests"; Linux splits them at its max_sectors_kb, which is its choice).
    _read('seq_read_8m', 'sequential read, 8 MiB requests', 8 * MiB, 1, 'seq', 'MB/s'),
    _read('read_4k_d1', '4 KiB random reads, depth 1', 4096, 1, 'rand', 'IOPS'),
    _read('read_4k_d32', '4 KiB random reads, depth 32', 4096, 32, 'rand', 'IOPS'),
    _read('read_512_d1', '512 B random reads, depth 1', 512, 1, 'rand', 'IOPS'),
    _read('read_512_d32', '512 B random reads, depth 32', 512, 32, 'rand', 'IOPS'),
    Workload('seq_write', 'sequential write 1 MiB + flush', 'MB/s', HIGHER, 'write',
             bs=MiB, offset=WRITE_OFFSET, total=WRITE_BYTES),
    Workload('fs_write', 'FAT: write a 64 MiB file, 1 MiB writes, close', 'MB/s', HIGHER, 'fs',
             op='fswrite', bs=MiB, total=FS_FILE_BYTES),
    Workload('fs_read', 'FAT: read it back, caches dropped', 'MB/s', HIGHER, 'fs',
             op='fsread', bs=MiB, total=FS_FILE_BYTES),
    Workload('fs_files', 'FAT: create 1,000 files of 100 B, then sync', 'files/s', HIGHER, 'fs',
             op='fsfiles', count=FS_FILES, size=FS_FILE_SIZE),
    Workload('ping_rtt', 'ping 10.0.2.2, median RTT', 'ms', LOWER, 'ping', count=PING_COUNT),
    Workload('udp_rtt', 'UDP echo via hostfwd, median RTT', 'ms', LOWER, 'udp'),
    Workload('udp_rtt_p99', 'UDP echo via hostfwd, p99 RTT', 'ms', LOWER, 'udp'),
    Workload('udp_rate', 'UDP echo via hostfwd, window 16', 'dgram/s', HIGHER, 'udp'),
    Workload('tcp_rx', 'TCP bulk host->guest via hostfwd', 'MB/s', HIGHER, 'tcp',
             bytes=TCP_BYTES),
    Workload('tcp_tx', 'TCP bulk guest->host (10.0.2.2)', 'MB/s', HIGHER, 'tcp',
             bytes=TCP_BYTES),
    Workload('http_rps', 'HTTP GET 1 KiB, new connection each', 'req/s', HIGHER, 'tcp'),
]


def _vhost(builtin, title):
    # The built-in device's workload, run against the Python device (bench/vhost_guest.py).
    w = [x for x in WORKLOADS if x.name == builtin][0]
    return Workload('py_' + builtin, title, w.unit, w.better, 'vhost_read', builtin=builtin,
                    **w.params)


WORKLOADS += [
    _vhost('seq_read', 'sequential read 1 MiB, Python vhost-user-blk'),
    _vhost('read_4k_d1', '4 KiB random reads d1, Python vhost-user-blk'),
    _vhost('read_4k_d32', '4 KiB random reads d32, Python vhost-user-blk'),
]


def _on_machine(w, name, title, machine):
    return Workload(name, title, w.unit, w.better, w.kind, machine=machine, **w.params)


# The same workloads on QEMU's microvm (virtio-mmio), from a second boot of each guest,
# so the transports compare in one run. Ours runs them as a fw_cfg script there.
MICROVM_WORKLOADS = [
    Workload('boot_microvm', 'boot on microvm: QEMU start to devices ready', 's', LOWER,
             'boot', machine='microvm'),
]
for _w in WORKLOADS:
    if _w.name in ('seq_read', 'read_4k_d1', 'read_4k_d32', 'seq_write', 'ping_rtt'):
        MICROVM_WORKLOADS.append(_on_machine(_w, _w.name + '_microvm', _w.title + ' (microvm)',
                                             'microvm'))
# The 4 KiB reads again with the devices started packed=on (RING_PACKED, spec 2.8): both
# guests drive packed rings there, so the two ring formats compare in one run.
PACKED_WORKLOADS = [_on_machine(_w, _w.name + '_packed', _w.title + ' (packed ring)',
                                'pc-packed')
                    for _w in WORKLOADS if _w.name in ('read_4k_d1', 'read_4k_d32')]
WORKLOADS = WORKLOADS + MICROVM_WORKLOADS + PACKED_WORKLOADS

# Every blk and net row of ours again with polling: virtio.probe(interrupts=False) in the
# same boot (docs/hardware-interface.md, "A second probe"). Linux has no such variant.
# Not on microvm: virtio-mmio devices poll there either way (no interrupt route yet).
POLL_KINDS = ('read', 'write', 'fs', 'ping', 'udp', 'tcp')
POLL_SUFFIX = '_poll'


def _poll_twin(w):
    return Workload(w.name + POLL_SUFFIX, w.title + ' (polling)', w.unit, w.better, w.kind,
                    base=w.name, poll=True, **w.params)


def poll_base(w):
    """The interrupt-driven workload a polling twin repeats, or None for any other."""
    return w.params.get('base') if w.params.get('poll') else None


def _with_twins(ws):
    out = []
    for w in ws:
        out.append(w)
        if w.kind in POLL_KINDS and w.params.get('machine', 'pc') != 'microvm':
            out.append(_poll_twin(w))
    return out


WORKLOADS = _with_twins(WORKLOADS)


def machine_of(w):
    return w.params.get('machine', 'pc')


def boot_name(machine):
    return 'boot' if machine == 'pc' else 'boot_' + machine


def on_machine(selected, machine):
    """The selected workloads that run in a boot on `machine`."""
    return [w for w in selected if machine_of(w) == machine]

BY_NAME = {w.name: w for w in WORKLOADS}
DISK_WORKLOADS = [w for w in WORKLOADS if w.kind in ('read', 'write')]
FS_WORKLOADS = [w for w in WORKLOADS if w.kind == 'fs']

_MARK = re.compile(r'^@@ (\S+)')
_RESULT = re.compile(r'^RESULT ((?:\w+=\S+ ?)+)')
_PING = re.compile(r'bytes from [\d.]+: .*time=([\d.]+) ms')


def parse_kv(text):
    out = {}
    for item in text.split():
        k, v = item.split('=', 1)
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def parse_output(text):
    """{name: {'result', 'ping_ms', 'na', 'lines'}} from a guest's serial output.

    result: the RESULT line's fields or None; ping_ms: busybox-style reply times; na: the
    reason a guest gave for not running the workload (NA line) or None; error: why the
    workload failed in the guest (ERROR line) or None.
    """
    out = {}
    cur = None
    for raw in text.splitlines():
        line = raw.strip('\r\x00 ')
        m = _MARK.match(line)
        if m:
            cur = out.setdefault(m.group(1), {'result': None, 'ping_ms': [], 'lines': [],
                                              'na': None, 'error': None})
            continue
        if cur is None:
            continue
        cur['lines'].append(line)
        m = _RESULT.match(line)
        if m:
            cur['result'] = parse_kv(m.group(1))
            continue
        if line.startswith('NA '):
            cur['na'] = line[3:].strip()
            continue
        if line.startswith('ERROR '):
            cur['error'] = line[6:].strip()
            continue
        m = _PING.search(line)
        if m:
            cur['ping_ms'].append(float(m.group(1)))
    return out


def _result_problem(result):
    """Why a RESULT dict gives no figure (missing, incomplete, failed checks), or None."""
    if result is None:
        return 'no result'
    for k in ('ops', 'bytes', 'ns', 'bad'):
        if k not in result:
            return 'result lacks %s' % k
    if result['bad']:
        return 'wrong data (%d failed checks)' % result['bad']
    return None


def disk_figure(w, result):
    """(value, error) for a read/write workload's RESULT dict; value None when unusable."""
    err = _result_problem(result)
    if err:
        return None, err
    if result['ns'] <= 0 or result['ops'] <= 0:
        return None, 'nothing measured'
    if result.get('bs') not in (None, w.params['bs']):
        return None, 'request size %s, expected %d' % (result.get('bs'), w.params['bs'])
    if result.get('depth') not in (None, w.params.get('depth', 1)):
        return None, 'depth %s, expected %d' % (result.get('depth'), w.params.get('depth', 1))
    if w.kind == 'read' and w.params['mode'] == 'seq' and result['bytes'] < w.params['region']:
        return None, 'read %d of %d bytes' % (result['bytes'], w.params['region'])
    if w.kind == 'write' and result['bytes'] != w.params['total']:
        return None, 'wrote %d of %d bytes' % (result['bytes'], w.params['total'])
    seconds = result['ns'] / 1e9
    if w.unit == 'MB/s':
        return result['bytes'] / seconds / 1e6, None
    return result['ops'] / seconds, None


def fs_figure(w, result):
    """(value, error) for a file workload's RESULT dict (bhelper fs* and ours_fs.py)."""
    err = _result_problem(result)
    if err:
        return None, err
    if result['ns'] <= 0:
        return None, 'nothing measured'
    p = w.params
    if p['op'] == 'fsfiles':
        if result['ops'] != p['count']:
            return None, 'made %d of %d files' % (result['ops'], p['count'])
        return result['ops'] / (result['ns'] / 1e9), None
    if result['bytes'] != p['total']:
        return None, 'moved %d of %d bytes' % (result['bytes'], p['total'])
    return result['bytes'] / (result['ns'] / 1e9) / 1e6, None


def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        raise ValueError('median of nothing')
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2.0


def percentile(xs, p):
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(xs)
    if not s:
        raise ValueError('percentile of nothing')
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]
