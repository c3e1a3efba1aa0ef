"""make bench's before image (BENCH_BEFORE; bench/before.py, the third side in bench/pairs.py,
now/before in bench/report.py). No QEMU, no timing: fake sessions and guests, a tiny git
repository whose `make build` writes a fake ELF."""
import os
import re
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), '..', '..', 'bench')
sys.path.insert(0, os.path.abspath(BENCH))

import before  # noqa: E402
import ours_guest  # noqa: E402
import pairs  # noqa: E402
import qemu  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import workloads as W  # noqa: E402


# -- the order of runs within pairs ------------------------------------------------------

def test_before_alternates_with_ours_and_linux_stays_last():
    assert pairs.variants(0, True, True) == ['ours', 'poll', 'before', 'linux']
    assert pairs.variants(1, True, True) == ['before', 'poll', 'ours', 'linux']
    assert pairs.variants(2, False, True) == ['ours', 'before', 'linux']
    assert pairs.variants(3, False, True) == ['before', 'ours', 'linux']
    # Without a before image the order is today's.
    assert pairs.variants(1, True) == ['poll', 'ours', 'linux']
    # Ours' mode still changes once per pair with the before image between.
    seq = [v for k in range(4) for v in pairs.variants(k, True, True) if v in ('ours', 'poll')]
    assert sum(1 for a, b in zip(seq, seq[1:]) if a != b) == 4


class FakeSession:
    """Stands for a booted guest: records each run in a shared log, gives a figure."""
    log = []
    fail_on = {}              # side -> workload name whose run is a guest error

    def __init__(self, side, *args):
        self.side, self.q, self.failed, self.closed = side, None, None, False

    def start(self):
        return self

    def run(self, step, poll=False):
        names = pairs.step_names(step)
        FakeSession.log.append((self.side, poll, names[0]))
        suffix = W.POLL_SUFFIX if poll else ''
        bad = FakeSession.fail_on.get(self.side)
        return dict((n + suffix, {'value': None, 'error': 'guest raised AttributeError: x'}
                     if n == bad else {'value': 100.0, 'error': None}) for n in names)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_sessions(monkeypatch):
    FakeSession.log = []
    FakeSession.fail_on = {}
    made = []

    def maker(side):
        def make(*args):
            s = FakeSession(side, *args)
            made.append(s)
            return s
        return make
    monkeypatch.setattr(pairs, 'OursSession', maker('ours'))
    monkeypatch.setattr(pairs, 'BeforeSession', maker('before'))
    monkeypatch.setattr(pairs, 'LinuxSession', maker('linux'))
    return made


def test_session_runs_every_step_of_every_pair_on_the_three_sides(fake_sessions, tmp_path):
    sel = run.select(['read_4k_d1', 'udp_rate'])
    out, notes = pairs.session('ours.elf', {'kernel': 'k'}, 'disk.img', str(tmp_path), sel,
                               'pc', pairs=2, log=lambda m: None, before='before.elf')
    assert FakeSession.log == [
        ('ours', False, 'read_4k_d1'), ('ours', True, 'read_4k_d1'),
        ('before', False, 'read_4k_d1'), ('linux', False, 'read_4k_d1'),
        ('before', False, 'read_4k_d1'), ('ours', True, 'read_4k_d1'),
        ('ours', False, 'read_4k_d1'), ('linux', False, 'read_4k_d1'),
        ('ours', False, 'udp_rtt'), ('ours', True, 'udp_rtt'),
        ('before', False, 'udp_rtt'), ('linux', False, 'udp_rtt'),
        ('before', False, 'udp_rtt'), ('ours', True, 'udp_rtt'),
        ('ours', False, 'udp_rtt'), ('linux', False, 'udp_rtt')]
    for k in range(2):
        assert set(out[k]['before']) == {'read_4k_d1', 'udp_rtt', 'udp_rtt_p99', 'udp_rate'}
        assert 'read_4k_d1_poll' in out[k]['ours'] and 'read_4k_d1_poll' not in out[k]['before']
    assert all(s.closed for s in fake_sessions) and len(fake_sessions) == 3


def test_without_a_before_image_nothing_changes(fake_sessions, tmp_path):
    sel = run.select(['read_4k_d1'])
    out, _ = pairs.session('ours.elf', {'kernel': 'k'}, 'disk.img', str(tmp_path), sel, 'pc',
                           pairs=2, log=lambda m: None)
    assert [s for s, _, _ in FakeSession.log] == ['ours', 'ours', 'linux'] * 2
    assert [sorted(pair) for pair in out] == [['linux', 'ours']] * 2


def test_boot_pairs_boot_the_before_image_in_each_pair():
    calls = []

    def guarded(side, fn, image, disk, work_dir, sel, poll=False):
        calls.append((side, image, poll, [w.name for w in sel]))
        return dict((w.name, {'value': 1.0, 'error': None}) for w in sel)
    sel = run.select(['boot', 'fs_write'])
    out = pairs.boot_pairs('ours.elf', {'kernel': 'k'}, 'disk.img', '/tmp', sel, guarded,
                           pairs=2, log=lambda m: None, before='before.elf')
    assert [(c[0], c[1], c[2]) for c in calls] == [
        ('ours', 'ours.elf', False), ('ours', 'ours.elf', True), ('before', 'before.elf', False),
        ('linux', {'kernel': 'k'}, False),
        ('before', 'before.elf', False), ('ours', 'ours.elf', False), ('ours', 'ours.elf', True),
        ('linux', {'kernel': 'k'}, False)]
    assert calls[2][3] == ['boot', 'fs_write']      # the before image: no polling twin
    for k in range(2):
        assert set(out[k]['before']) == {'boot', 'fs_write'}
        assert 'fs_write_poll' in out[k]['ours']


# -- a before image that errors on one workload -------------------------------------------

class FakeRepl:
    """The raw REPL of an old image: one workload's call raises in the guest."""

    def __init__(self, raising):
        self.raising = raising

    def run(self, code, timeout=300):
        name = re.search(r"'(\w+)'", code).group(1)
        if name == self.raising:
            return '', 'Traceback (most recent call last):\nAttributeError: no batch\n'
        return ('@@ %s\nRESULT op=read bs=4096 depth=1 mode=rand ops=1000 bytes=4096000 '
                'ns=1000000000 bad=0\n' % name), ''


class FakeQemu:
    class proc:
        pid = os.getpid()


def test_a_guest_error_of_the_before_image_is_that_row_s_error_only():
    s = object.__new__(pairs.BeforeSession)
    s.disk, s.failed, s.polling, s.irq_mode = '/nonexistent', None, False, None
    s.q, s.repl = FakeQemu(), FakeRepl('read_4k_d32')
    d1, d32 = [W.BY_NAME['read_4k_d1']], [W.BY_NAME['read_4k_d32']]
    bad = s.run(d32)
    assert bad['read_4k_d32']['value'] is None
    assert bad['read_4k_d32']['error'] == 'guest raised AttributeError: no batch'
    assert s.failed is None                       # the session goes on
    assert s.run(d1)['read_4k_d1']['value'] == pytest.approx(1000)
    # In the report: that row has no now/before figure and says why; the other has one.
    runs = {'ours': [], 'linux': [], 'host': [], 'before': []}
    for k in range(3):
        runs['ours'].append({'read_4k_d1': {'value': 1100.0}, 'read_4k_d32': {'value': 9.0}})
        runs['linux'].append({})
        runs['before'].append(dict(s.run(d1), **s.run(d32)))
    rows = report.summarize(runs, d1 + d32, paired={'read_4k_d1', 'read_4k_d32'})
    assert rows[0]['before_ratio'] == pytest.approx(1.1)
    assert rows[1]['before_ratio'] is None
    assert report.cell(rows[1]['before'], 'IOPS', 3) == (
        'failed: guest raised AttributeError: no batch')
    assert report.before_verdict(rows) == ('no row worse than before beyond the spread '
                                           '(no now/before figure: read_4k_d32)')


# -- now/before: orientation, spread, verdict, table --------------------------------------

def runs_of(name, ours, before, linux=None, cpu=None):
    out = {'ours': [], 'linux': [], 'host': [], 'before': []}
    for side, values in (('ours', ours), ('before', before), ('linux', linux or [])):
        for k, v in enumerate(values):
            e = {'value': v, 'error': None}
            if cpu and side in cpu:
                e.update(cpu_s=cpu[side][k], requests=1000)
            out[side].append({name: e})
    return out


def test_now_before_higher_is_better():
    w = W.BY_NAME['read_4k_d32']
    runs = runs_of(w.name, [110, 80, 120], [100, 100, 100])
    row = report.summarize(runs, [w], paired={w.name})[0]
    assert row['before_pairs']['ratios'] == pytest.approx([1.1, 0.8, 1.2])
    assert (row['before_ratio'], row['before_ratio_min'], row['before_ratio_max']) == \
        pytest.approx((1.1, 0.8, 1.2))
    assert report.before_cell(row) == '1.10 [0.80-1.20]'


def test_now_before_lower_is_better_is_turned_around():
    w = W.BY_NAME['udp_rtt']
    # now's round trips are half of before's in two pairs, equal in one: now is better.
    runs = runs_of(w.name, [1.0, 2.0, 1.0], [2.0, 2.0, 4.0])
    row = report.summarize(runs, [w], paired={w.name})[0]
    assert (row['before_ratio'], row['before_ratio_min'], row['before_ratio_max']) == (2, 1, 4)
    boot = W.BY_NAME['boot']
    runs = runs_of('boot', [3.0, 3.3, 3.6], [3.0, 3.0, 3.0])   # booting got slower
    row = report.summarize(runs, [boot], paired={'boot'})[0]
    assert row['before_ratio_max'] == 1 and row['before_ratio'] == pytest.approx(1 / 1.1)
    assert report.before_cell(row) == '0.91 [0.83-1.00]'


def test_a_polling_twin_is_compared_with_the_before_run_of_its_base():
    twin = W.BY_NAME['read_4k_d1_poll']
    runs = runs_of('read_4k_d1', [10, 10], [5, 10])
    for k, v in enumerate([10, 20]):
        runs['ours'][k]['read_4k_d1_poll'] = {'value': v, 'error': None}
    row = report.summarize(runs, [twin], paired={twin.name})[0]
    assert row['before_pairs']['ratios'] == [2, 2]
    assert report.cell(row['before'], 'IOPS', 2) == 'n/a (no polling variant)'


def test_unpaired_rows_compare_the_medians():
    w = W.BY_NAME['boot_microvm']
    runs = runs_of(w.name, [0.2, 0.3, 0.25], [0.5, 0.5, 0.5])
    row = report.summarize(runs, [w])[0]
    assert row['before_ratio'] == pytest.approx(2)
    assert report.before_cell(row) == '2.00 [1.67-2.50] unpaired'


def test_verdict_names_only_rows_whose_whole_spread_is_below_one():
    sel = [W.BY_NAME[n] for n in ('read_4k_d1', 'read_4k_d32', 'udp_rtt')]
    runs = runs_of('read_4k_d1', [80, 85, 90], [100, 100, 100])          # worse
    for k, (o, b) in enumerate([(90, 100), (110, 100), (100, 100)]):    # within the spread
        runs['ours'][k]['read_4k_d32'] = {'value': o}
        runs['before'][k]['read_4k_d32'] = {'value': b}
    for k, (o, b) in enumerate([(2.0, 1.0), (2.2, 2.0), (3.0, 2.0)]):   # rtt up: worse
        runs['ours'][k]['udp_rtt'] = {'value': o}
        runs['before'][k]['udp_rtt'] = {'value': b}
    rows = report.summarize(runs, sel, paired=set(w.name for w in sel))
    assert report.before_verdict(rows) == (
        'worse than before beyond the spread: read_4k_d1 0.85 [0.80-0.90], '
        'udp_rtt 0.67 [0.50-0.91]')
    runs['ours'][0]['read_4k_d1']['value'] = 120
    runs['ours'][1]['udp_rtt']['value'] = 1.9
    rows = report.summarize(runs, sel, paired=set(w.name for w in sel))
    assert report.before_verdict(rows) == 'no row worse than before beyond the spread'


def test_table_with_a_before_image():
    cpu = {'ours': [0.5, 0.3, 0.4], 'before': [0.6, 0.7, 0.8]}
    runs = runs_of('read_4k_d1', [110, 80, 120], [100, 100, 100], [50, 50, 50], cpu)
    for k, v in enumerate([100, 110, 90]):
        runs['ours'][k]['read_4k_d1_poll'] = {'value': v, 'error': None}
    sel = [W.BY_NAME['read_4k_d1'], W.BY_NAME['read_4k_d1_poll']]
    rows = report.summarize(runs, sel, paired=set(w.name for w in sel))
    lines = report.table(rows, 3).splitlines()
    head = re.split(r'\s{2,}', lines[0])
    assert head == list(report.HEAD_BEFORE)
    cols = [m.start() for m in re.finditer(r'-+', lines[1])]
    cells = lambda line: dict(zip(head, [line[a:b].strip()
                                         for a, b in zip(cols, cols[1:] + [None])]))
    first, twin = cells(lines[2]), cells(lines[3])
    assert first['before'] == '100 [100-100]'
    assert first['now/before'] == '1.10 [0.80-1.20]'
    assert first['ours/Linux'] == '2.2 [1.6-2.4] 3/3 pairs'
    assert first['CPU s/1k before'] == '0.700 [0.600-0.800]'
    assert twin['before'] == 'n/a (no polling variant)'
    assert twin['now/before'] == '1.00 [0.90-1.10]'
    assert lines[-2:] == ['', 'no row worse than before beyond the spread']
    # Without a before image: today's table, no verdict line.
    del runs['before']
    rows = report.summarize(runs, sel, paired=set(w.name for w in sel))
    assert 'before_ratio' not in rows[0] and 'before' not in rows[0]
    text = report.table(rows, 3)
    assert re.split(r'\s{2,}', text.splitlines()[0]) == list(report.HEAD)
    assert 'before' not in text


# -- BENCH_BEFORE: a file or a revision built once in a worktree --------------------------

def git(repo, *args):
    return subprocess.run(['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t']
                          + list(args), check=True, stdout=subprocess.PIPE).stdout.decode()


MAKEFILE = ('build:\n\tmkdir -p build/x86_virt\n'
            '\tprintf "\\177ELF " > build/x86_virt/firmware.elf\n'
            '\tcat version >> build/x86_virt/firmware.elf\n'
            '\tprintf "debug " > build/x86_virt/firmware.debug.elf\n'
            '\tcat version >> build/x86_virt/firmware.debug.elf\n')


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / 'repo'
    r.mkdir()
    git(r, 'init', '-q')
    (r / 'Makefile').write_text(MAKEFILE)
    (r / 'version').write_text('one\n')
    git(r, 'add', '.')
    git(r, 'commit', '-qm', 'one')
    (r / 'version').write_text('two\n')
    git(r, 'commit', '-qam', 'two')
    return r


def test_a_revision_is_built_once_in_a_worktree_and_cached(repo, tmp_path):
    out = tmp_path / 'out'
    builds = []

    def build(src, log_path):
        builds.append(src)
        return before.make_build(src, log_path)
    (repo / 'version').write_text('uncommitted\n')     # the checkout is left as it is
    sha = git(repo, 'rev-parse', 'HEAD~1').strip()
    path, rev = before.resolve('HEAD~1', str(repo), str(out), lambda m: None, build)
    assert rev == sha
    assert path == os.path.join(str(out), 'before-' + sha[:12], 'firmware.elf')
    with open(path, 'rb') as f:
        assert f.read() == b'\x7fELF one\n'
    with open(os.path.join(os.path.dirname(path), 'firmware.debug.elf'), 'rb') as f:
        assert f.read() == b'debug one\n'          # kept for tools/guest-profile.py
    assert builds == [os.path.join(str(out), 'before-' + sha[:12], 'src')]
    assert not os.path.exists(builds[0])                 # the worktree is gone again
    assert len(git(repo, 'worktree', 'list').splitlines()) == 1
    assert (repo / 'version').read_text() == 'uncommitted\n'
    # Asked again: the cached ELF, no build.
    assert before.resolve(sha[:7], str(repo), str(out), lambda m: None, build) == (path, sha)
    assert len(builds) == 1


def test_a_revision_that_does_not_build_is_a_clear_error(repo, tmp_path):
    (repo / 'Makefile').write_text('build:\n\t@echo "ports/x86_virt/main.c:1: error: boom"'
                                   '; exit 2\n')
    git(repo, 'commit', '-qam', 'broken')
    with pytest.raises(before.BeforeUnavailable) as e:
        before.resolve('HEAD', str(repo), str(tmp_path / 'out'), lambda m: None)
    msg = str(e.value)
    assert msg.startswith('revision %s does not build: make build failed (exit 2)'
                          % git(repo, 'rev-parse', 'HEAD')[:12])
    assert 'main.c:1: error: boom' in msg
    assert len(git(repo, 'worktree', 'list').splitlines()) == 1
    assert not [p for p in (tmp_path / 'out').rglob('firmware.elf')]


def test_bench_before_names_a_file_or_a_revision(repo, tmp_path):
    elf = tmp_path / 'old.elf'
    elf.write_bytes(b'\x7fELF old')
    assert before.resolve(str(elf), str(repo), str(tmp_path)) == (str(elf), None)
    txt = tmp_path / 'notes.txt'
    txt.write_text('hello')
    with pytest.raises(before.BeforeUnavailable, match='is not an ELF file'):
        before.resolve(str(txt), str(repo), str(tmp_path))
    with pytest.raises(before.BeforeUnavailable, match='neither a file nor a git revision'):
        before.resolve('no-such-rev', str(repo), str(tmp_path))


def test_run_stops_before_measuring_when_the_before_image_cannot_be_had():
    assert run.find_before('') == (None, None)
    with pytest.raises(SystemExit) as e:
        run.find_before('/nonexistent/firmware.elf')
    assert 'neither a file nor a git revision' in str(e.value)


def test_unpaired_rows_boot_the_before_image(monkeypatch):
    calls = []

    def ours_run(image, disk, work_dir, sel, machine='pc'):
        calls.append((image, machine, [w.name for w in sel]))
        return dict((w.name, {'value': 0.5, 'error': None}) for w in sel)

    def vhost_run(image, disk, work_dir, sel):
        calls.append((image, 'vhost', [w.name for w in sel]))
        raise RuntimeError('guest bench code failed: ImportError: no module named vhost')
    monkeypatch.setattr(run.ours_guest, 'run', ours_run)
    monkeypatch.setattr(run.vhost_guest, 'run', vhost_run)
    monkeypatch.setattr(run, 'OUT', '/nonexistent-bench-out')
    monkeypatch.setattr(run.traceback, 'print_exc', lambda file=None: None)
    monkeypatch.setattr(run, 'open', lambda *a: None, raising=False)
    micro = [W.BY_NAME['boot_microvm'], W.BY_NAME['read_4k_d1_microvm']]
    vhost = [W.BY_NAME['py_read_4k_d1']]
    res = {}
    run.unpaired('before', res, 'before.elf', 'disk.img', micro, vhost)
    assert calls == [('before.elf', 'microvm', ['boot_microvm', 'read_4k_d1_microvm']),
                     ('before.elf', 'vhost', ['py_read_4k_d1'])]
    assert res['boot_microvm']['value'] == 0.5
    # The old image failing the Python-device boot: that row's error, no crash.
    assert res['py_read_4k_d1']['value'] is None
    assert 'ImportError: no module named vhost' in res['py_read_4k_d1']['error']


class Stream:
    """A Qemu's expect() over bytes the guest "printed" already."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def expect(self, pattern, timeout=None):
        m = re.compile(pattern).search(self.data, self.pos)
        if m is None:
            raise qemu.Timeout('no %r' % pattern)
        self.pos = m.end()
        return m, 0.0


@pytest.mark.parametrize('printed, want', [
    (b'@@ udp_server\r\nUDPECHO READY\r\n', (True, None, False)),
    (b'@@ udp_server\r\nNA driver missing\r\n\x04\x04>',
     (False, {'value': None, 'error': 'driver missing', 'na': True}, False)),
    # An image without the server's module: the code raises before READY. The wait ends
    # at once (not after its timeout) and the REPL is left at its prompt.
    (b'@@ tcp_server\r\n\x04Traceback (most recent call last):\r\n  File "<stdin>", line 18\r\n'
     b"ImportError: no module named 'inet.tcp'\r\n\x04>",
     (False, {'value': None, 'error': "guest raised ImportError: no module named 'inet.tcp'"},
      True)),
])
def test_a_servers_ready_line_an_na_or_its_traceback_end_the_wait(printed, want):
    q = Stream(printed)
    ready = b'TCP READY' if b'tcp' in printed else b'UDPECHO READY'
    assert ours_guest.RawRepl(q).wait_ready(ready) == want
    if want[2]:
        assert q.pos == len(printed)            # the error and the prompt were read


class ScriptQemu(Stream):
    """A microvm boot whose image runs the bench script and then does not power off (an
    image from before `make run SCRIPT=` powered off on microvm)."""
    printed = (b'  mmio@0xfeb00000 virtio-blk ...\r\nBENCH READY\r\n@@ read_4k_d1_microvm\r\n'
               b'NA driver missing\r\nBENCH DONE\r\n')

    def __init__(self, args, timeout):
        Stream.__init__(self, self.printed)
        self.waited = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait_exit(self, timeout=None):
        self.waited.append(timeout)
        raise qemu.Timeout('QEMU did not exit')

    def output(self):
        return self.printed.decode()


def test_a_script_that_ends_without_powering_off_still_gives_its_figures(monkeypatch, tmp_path):
    boots = []
    monkeypatch.setattr(qemu, 'Qemu', lambda args, timeout: boots.append(ScriptQemu(args, timeout))
                        or boots[-1])
    sel = [W.BY_NAME['read_4k_d1_microvm']]
    assert ours_guest.script(sel).rstrip().endswith("print('BENCH DONE')")
    results, text = ours_guest.run_script('fw.elf', str(tmp_path / 'd.img'), str(tmp_path), sel,
                                          'microvm', 240)
    assert 'NA driver missing' in text and 'boot_microvm' in results
    assert boots[0].waited == [ours_guest.EXIT_AFTER_SCRIPT_S]   # not the run's whole timeout
