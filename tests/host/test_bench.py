"""make bench's own code: parsing guest output, figures, statistics, the table, the cpio
writer, the disk pattern and the reference build's module resolution. No QEMU, no timing."""
import os
import shutil
import stat
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), '..', '..', 'bench')
sys.path.insert(0, os.path.abspath(BENCH))

import cpio  # noqa: E402
import linux_guest  # noqa: E402
import linuxref  # noqa: E402
import pattern  # noqa: E402
import report  # noqa: E402
import workloads as W  # noqa: E402

LINUX_OUTPUT = '''\
[    3.1] some kernel line
BENCH READY uptime=5.13 virtio=4/4\r
@@ seq_read\r
RESULT op=read bs=1048576 depth=1 mode=seq ops=256 bytes=268435456 ns=188215827 bad=0\r
@@ read_4k_d1
RESULT op=read bs=4096 depth=1 mode=rand ops=8000 bytes=32768000 ns=2000000000 bad=0
@@ read_4k_d32
RESULT op=read bs=4096 depth=32 mode=rand ops=100 bytes=409600 ns=1000000 bad=3
@@ ping_rtt
PING 10.0.2.2 (10.0.2.2): 56 data bytes
64 bytes from 10.0.2.2: seq=0 ttl=255 time=10.349 ms
64 bytes from 10.0.2.2: seq=1 ttl=255 time=1.186 ms
64 bytes from 10.0.2.2: seq=2 ttl=255 time=1.141 ms
round-trip min/avg/max = 1.141/4.225/10.349 ms
@@ read_512_d32
NA no batch interface in the driver
'''


def test_parse_output_reads_results_pings_and_na_lines():
    p = W.parse_output(LINUX_OUTPUT)
    assert p['seq_read']['result'] == {'op': 'read', 'bs': 1048576, 'depth': 1, 'mode': 'seq',
                                       'ops': 256, 'bytes': 268435456, 'ns': 188215827, 'bad': 0}
    assert p['ping_rtt']['ping_ms'] == [10.349, 1.186, 1.141]
    assert p['read_512_d32']['na'] == 'no batch interface in the driver'
    assert p['read_512_d32']['result'] is None
    assert 'boot' not in p  # lines before the first marker belong to no workload


def test_disk_figures_in_their_units():
    p = W.parse_output(LINUX_OUTPUT)
    mbps, err = W.disk_figure(W.BY_NAME['seq_read'], p['seq_read']['result'])
    assert err is None and mbps == pytest.approx(268435456 / 0.188215827 / 1e6)
    iops, err = W.disk_figure(W.BY_NAME['read_4k_d1'], p['read_4k_d1']['result'])
    assert err is None and iops == pytest.approx(4000)


def test_a_fast_wrong_answer_gives_no_figure():
    p = W.parse_output(LINUX_OUTPUT)
    value, err = W.disk_figure(W.BY_NAME['read_4k_d32'], p['read_4k_d32']['result'])
    assert value is None and 'wrong data' in err


@pytest.mark.parametrize('change, words', [
    ({'bs': 512}, 'request size'),
    ({'depth': 1}, 'depth'),
    ({'bytes': 1 << 20, 'ops': 1}, 'read 1048576 of'),
    ({'ns': 0}, 'nothing measured'),
])
def test_unlike_runs_are_refused(change, words):
    r = {'op': 'read', 'bs': 4096, 'depth': 32, 'mode': 'rand', 'ops': 10, 'bytes': 40960,
         'ns': 1000, 'bad': 0}
    w = W.BY_NAME['read_4k_d32']
    if 'bytes' in change:
        r.update(bs=1 << 20, depth=1, mode='seq')
        w = W.BY_NAME['seq_read']
    r.update(change)
    value, err = W.disk_figure(w, r)
    assert value is None and words in err


def test_short_write_is_refused():
    w = W.BY_NAME['seq_write']
    r = {'op': 'write', 'bs': w.params['bs'], 'depth': 1, 'ops': 1, 'bytes': w.params['bs'],
         'ns': 10, 'bad': 0}
    assert W.disk_figure(w, r)[1].startswith('wrote')


def test_median_and_percentile():
    assert W.median([3, 1, 2]) == 2
    assert W.median([4, 1, 3, 2]) == 2.5
    xs = list(range(1, 101))
    assert W.percentile(xs, 99) == 99 and W.percentile(xs, 50) == 50
    assert W.percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        W.median([])


def _rep(**values):
    return {k: ({'value': v, 'error': None} if not isinstance(v, dict) else v)
            for k, v in values.items()}


def _rows():
    runs = {
        'ours': [_rep(boot=0.3, seq_read=3000.0,
                      read_4k_d32={'value': None, 'error': 'driver missing', 'na': True}),
                 _rep(boot=0.5, seq_read=2000.0,
                      read_4k_d32={'value': None, 'error': 'driver missing', 'na': True}),
                 _rep(boot=0.4, seq_read=2500.0,
                      read_4k_d32={'value': None, 'error': 'driver missing', 'na': True})],
        'linux': [_rep(boot=8.0, seq_read=1000.0, read_4k_d32=20000.0),
                  _rep(boot=9.0, seq_read=1500.0, read_4k_d32=22000.0),
                  _rep(boot=10.0, seq_read=1250.0, read_4k_d32=21000.0)],
        'host': [_rep(seq_read=5000.0), _rep(seq_read=5000.0), _rep(seq_read=5000.0)],
    }
    sel = [W.BY_NAME[n] for n in ('boot', 'seq_read', 'read_4k_d32')]
    return report.summarize(runs, sel)


def test_summary_takes_medians_and_turns_lower_is_better_around():
    boot, seq, deep = _rows()
    assert boot['ours']['stats'] == {'median': 0.4, 'min': 0.3, 'max': 0.5, 'n': 3}
    assert boot['ratio'] == pytest.approx(0.4 / 9.0)
    assert boot['advantage'] == pytest.approx(9.0 / 0.4)  # lower is better: ours ahead
    assert boot['advantage_min'] == pytest.approx(8.0 / 0.5)
    assert boot['advantage_max'] == pytest.approx(10.0 / 0.3)
    assert seq['advantage'] == pytest.approx(2500 / 1250)
    assert seq['ours']['of_ceiling'] == pytest.approx(0.5)
    assert seq['linux']['of_ceiling'] == pytest.approx(0.25)
    assert deep['ratio'] is None and deep['ours']['na']


def test_table_marks_direction_and_missing_drivers():
    text = report.table(_rows(), reps=3)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ['workload', 'unit', 'better']
    boot = [l for l in lines if l.startswith('boot')][0]
    assert 'lower' in boot and '0.400 [0.300-0.500]' in boot and 'ours 22.50x' in boot
    seq = [l for l in lines if l.startswith('sequential read')][0]
    assert '2,500 [2,000-3,000]' in seq and 'ours 2.00x' in seq and '5,000 (ours 50%, Linux 25%)' in seq
    deep = [l for l in lines if l.startswith('4 KiB')][0]
    assert 'n/a (driver missing)' in deep and '21,000' in deep


def test_table_says_linux_ahead_when_it_is():
    runs = {'ours': [_rep(read_4k_d1=2000.0)], 'linux': [_rep(read_4k_d1=5000.0)]}
    row = report.summarize(runs, [W.BY_NAME['read_4k_d1']])
    assert report.verdict(row[0]) == 'Linux 2.50x'


def test_failed_runs_are_counted_not_hidden():
    runs = {'ours': [_rep(boot=0.3), _rep(boot={'value': None, 'error': 'Timeout: no prompt'})],
            'linux': [_rep(boot=8.0)]}
    row = report.summarize(runs, [W.BY_NAME['boot']])[0]
    assert row['ours']['stats']['n'] == 1
    assert '(1 failed)' in report.cell(row['ours'], 's', 2)


def test_chart_is_a_png(tmp_path):
    pytest.importorskip('matplotlib')
    path = report.chart(_rows(), str(tmp_path / 'r.png'))
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_cpio_round_trip_and_concatenation():
    w = cpio.Writer()
    w.dir('bin')
    w.file('bin/tool', b'\x7fELF..', 0o755)
    w.symlink('bin/sh', 'busybox')
    w.chardev('dev/console', 5, 1)
    extra = cpio.Writer()
    extra.file('etc/bench.sh', b'echo hi\n')
    data = w.bytes() + extra.bytes()
    assert len(w.bytes()) % 4 == 0
    got = {name: (mode, body, rdev) for name, mode, body, rdev in cpio.read(data)}
    assert stat.S_ISDIR(got['bin'][0])
    assert got['bin/tool'][1] == b'\x7fELF..' and got['bin/tool'][0] & 0o777 == 0o755
    assert stat.S_ISLNK(got['bin/sh'][0]) and got['bin/sh'][1] == b'busybox'
    assert stat.S_ISCHR(got['dev/console'][0]) and got['dev/console'][2] == (5, 1)
    assert got['etc/bench.sh'][1] == b'echo hi\n'


def test_cpio_refuses_a_duplicate_path():
    w = cpio.Writer()
    w.file('init', b'a')
    with pytest.raises(ValueError, match='init added twice'):
        w.file('init', b'b')


def test_cpio_matches_the_system_tool(tmp_path):
    tool = shutil.which('cpio')
    if tool is None:
        pytest.skip('no cpio tool here')
    w = cpio.Writer()
    w.dir('d')
    w.file('d/f', b'hello')
    (tmp_path / 'a.cpio').write_bytes(w.bytes())
    out = subprocess.run([tool, '-it', '-F', str(tmp_path / 'a.cpio')], capture_output=True)
    assert out.stdout.split() == [b'd', b'd/f']


def test_pattern_stamps_and_detects_misplaced_sectors():
    data = bytearray(pattern.make_bytes(100, 8))
    assert data[:8] == (100).to_bytes(4, 'little') + b'BNCH'
    assert data[512:520] == (101).to_bytes(4, 'little') + b'BNCH'
    assert bytes(data[8:16]) == bytes(((100 * 131 + i) & 0xff) for i in range(8, 16))
    assert pattern.bad_sectors(bytes(data), 100) == []
    assert pattern.bad_sectors(bytes(data), 101) != []  # the right data at the wrong place
    data[3 * 512 + 300] ^= 1
    assert pattern.bad_sectors(bytes(data), 100) == [103]
    w = pattern.make_bytes(5, 2, pattern.WRITE_MAGIC, pattern.WRITE_SALT)
    assert pattern.bad_sectors(w, 5) == [5, 6]
    assert pattern.bad_sectors(w, 5, pattern.WRITE_MAGIC, pattern.WRITE_SALT) == []


def test_pattern_image_file(tmp_path):
    path = str(tmp_path / 'd.img')
    assert pattern.make_image(path, 1 << 20) is True
    assert pattern.make_image(path, 1 << 20) is False  # already there
    assert pattern.verify_file(path, 0, 1 << 20, pattern.READ_MAGIC, pattern.READ_SALT) == []
    with open(path, 'r+b') as f:
        f.seek(512 * 7)
        f.write(b'\0' * 512)
    assert pattern.verify_file(path, 0, 1 << 20, pattern.READ_MAGIC, pattern.READ_SALT) == [7]
    with pytest.raises(ValueError, match='multiple of 1 MiB'):
        pattern.make_image(path, 1000)


def test_kernel_package_from_apt_cache_output():
    out = 'linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n'
    assert linuxref.parse_apt_depends(out) == 'linux-image-6.1.0-56-amd64'
    assert linuxref.parse_apt_depends('linux-image-amd64\n') is None
    assert linuxref.parse_apt_depends('  Depends: linux-image-amd64-signed\n') is None


def test_modules_load_after_their_dependencies():
    deps = {'virtio_net': ['virtio_ring', 'virtio', 'net_failover'], 'net_failover': ['failover'],
            'failover': [], 'virtio': [], 'virtio_ring': [], 'virtio_blk': ['virtio', 'virtio_ring']}
    order = linuxref.module_order(['virtio_blk', 'virtio_net'], deps)
    assert sorted(order) == sorted(deps)
    for m, ds in deps.items():
        for d in ds:
            assert order.index(d) < order.index(m)
    with pytest.raises(ValueError, match='virtio_foo not found'):
        linuxref.module_order(['virtio_foo'], deps)
    with pytest.raises(ValueError, match='cycle'):
        linuxref.module_order(['a'], {'a': ['b'], 'b': ['a']})


def test_modinfo_reads_the_section_of_an_elf_object(tmp_path):
    if shutil.which('gcc') is None:
        pytest.skip('no gcc')
    src = tmp_path / 'm.c'
    src.write_text('__attribute__((section(".modinfo"), used)) static const char a[] = '
                   '"license=GPL";\n__attribute__((section(".modinfo"), used)) static const char'
                   ' b[] = "depends=virtio,virtio_ring";\nint x;\n')
    subprocess.run(['gcc', '-c', '-o', str(tmp_path / 'm.ko'), str(src)], check=True)
    info = linuxref.modinfo(str(tmp_path / 'm.ko'))
    assert info['depends'] == 'virtio,virtio_ring' and info['license'] == 'GPL'


def test_linux_script_runs_the_helper_with_the_workload_parameters():
    sel = [W.BY_NAME[n] for n in ('read_512_d32', 'seq_write', 'ping_rtt', 'udp_rtt')]
    s = linux_guest.script(sel)
    assert 'echo "@@ read_512_d32"\nbhelper read /dev/vda 512 32 rand %d ' % W.DISK_BYTES in s
    assert 'bhelper write /dev/vda 1048576 0 %d' % W.WRITE_BYTES in s
    assert 'ping -c %d ' % W.PING_COUNT in s
    assert s.rstrip().endswith('bhelper udpecho 7')


def test_reference_build_stops_with_one_clear_line_when_packages_cannot_be_fetched(
        tmp_path, monkeypatch):
    fake = tmp_path / 'bin'
    fake.mkdir()
    for tool in ('apt-cache', 'apt-get'):
        (fake / tool).write_text('#!/bin/sh\necho "E: Could not resolve deb.example" >&2\nexit 100\n')
        (fake / tool).chmod(0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (fake, os.environ['PATH']))
    with pytest.raises(linuxref.ReferenceUnavailable) as e:
        linuxref.build(str(tmp_path / 'ref'), log=lambda m: None)
    msg = str(e.value)
    assert '\n' not in msg and ('apt' in msg) and ('Could not resolve' in msg or 'knows no' in msg)
