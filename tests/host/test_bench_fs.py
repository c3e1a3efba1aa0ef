"""make bench's file workloads (docs/files.md): figures and their refusals, the Linux
script, our guest code under CPython on a folder, and the same file format on both
sides (our writer's file read by the Linux helper's reader, compiled for the host).
No QEMU, no timing."""
import contextlib
import io
import os
import shutil
import subprocess
import sys

import pytest

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'bench'))
sys.path.insert(0, BENCH)

import linux_guest  # noqa: E402
import workloads as W  # noqa: E402

OURS_FS = os.path.join(BENCH, 'guest', 'ours_fs.py')


def ours_fs():
    env = {'__name__': 'ours_fs'}
    exec(compile(open(OURS_FS).read(), OURS_FS, 'exec'), env)
    return env


def run(fn, *args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn(*args)
    return W.parse_output(out.getvalue())


def test_fs_figures_in_their_units_and_refusals():
    w, r, f = W.BY_NAME['fs_write'], W.BY_NAME['fs_read'], W.BY_NAME['fs_files']
    total = w.params['total']
    assert W.fs_figure(w, dict(ops=64, bytes=total, ns=10 ** 9, bad=0)) == (total / 1e6, None)
    assert W.fs_figure(f, dict(ops=1000, bytes=10 ** 5, ns=2 * 10 ** 9, bad=0)) == (500.0, None)
    assert W.fs_figure(r, dict(ops=64, bytes=total, ns=10 ** 9, bad=1))[1].startswith('wrong data')
    assert W.fs_figure(r, dict(ops=6, bytes=total // 2, ns=10 ** 9, bad=0))[1].startswith('moved')
    assert W.fs_figure(f, dict(ops=999, bytes=0, ns=10 ** 9, bad=0))[1].startswith('made 999')
    assert W.fs_figure(w, None) == (None, 'no result')


def test_linux_script_mounts_vfat_and_drops_caches_before_the_read():
    s = linux_guest.script(W.FS_WORKLOADS)
    assert 'mount -t vfat /dev/vdb /tmp' in s
    assert s.index('echo 3 > /proc/sys/vm/drop_caches') < s.index('bhelper fsread')
    assert 'bhelper fswrite /tmp/big.bin 1048576 %d' % W.FS_FILE_BYTES in s
    assert 'bhelper fsfiles /tmp 1000 100' in s
    # fs_read alone writes the file first, outside its figure.
    alone = linux_guest.script([W.BY_NAME['fs_read']])
    assert alone.index('bhelper fswrite') < alone.index('echo "@@ fs_read"')


def test_our_guest_code_writes_reads_and_counts_files(tmp_path):
    g = ours_fs()
    big = str(tmp_path / 'big.bin')
    out = run(g['fs_write'], 'fs_write', big, 65536, 1 << 20)
    assert W.fs_figure(W.Workload('x', '', 'MB/s', W.HIGHER, 'fs', op='fswrite', total=1 << 20),
                       out['fs_write']['result'])[0] > 0
    out = run(g['fs_read'], 'fs_read', big, 65536, 1 << 20)
    assert out['fs_read']['result']['bad'] == 0 and out['fs_read']['result']['bytes'] == 1 << 20
    # A corrupted chunk is caught.
    with open(big, 'r+b') as f:
        f.seek(3 * 65536 + 100)
        f.write(b'\0')
    assert run(g['fs_read'], 'fs_read', big, 65536, 1 << 20)['fs_read']['result']['bad'] == 1
    out = run(g['fs_files'], 'fs_files', str(tmp_path / 'files'), 50, 100)
    assert out['fs_files']['result']['ops'] == 50 and out['fs_files']['result']['bad'] == 0
    assert len(os.listdir(tmp_path / 'files' / 'd3')) == 5


@pytest.mark.skipif(shutil.which('gcc') is None, reason='no gcc')
def test_both_sides_write_the_same_file(tmp_path):
    helper = str(tmp_path / 'bhelper')
    subprocess.run(['gcc', '-O2', '-Wall', '-Werror', '-o', helper,
                    os.path.join(BENCH, 'helper', 'bhelper.c')], check=True)
    g = ours_fs()
    ours = str(tmp_path / 'ours.bin')
    run(g['fs_write'], 'fs_write', ours, 1 << 20, 4 << 20)
    out = subprocess.run([helper, 'fsread', ours, str(1 << 20), str(4 << 20)],
                         capture_output=True, text=True).stdout
    assert 'bad=0' in out and 'bytes=%d' % (4 << 20) in out
    theirs = str(tmp_path / 'theirs.bin')
    subprocess.run([helper, 'fswrite', theirs, str(1 << 20), str(4 << 20)], check=True,
                   capture_output=True)
    assert open(theirs, 'rb').read() == open(ours, 'rb').read()
