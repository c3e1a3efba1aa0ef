"""make bench's pairing (bench/pairs.py), QEMU CPU accounting (bench/hostcpu.py) and the
paired report (bench/report.py). No QEMU, no timing: fake /proc files, fake runs, the Linux
session's shell loop under the host's /bin/sh with a fake bhelper."""
import os
import re
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), '..', '..', 'bench')
sys.path.insert(0, os.path.abspath(BENCH))

import hostcpu  # noqa: E402
import pairs  # noqa: E402
import pattern  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import workloads as W  # noqa: E402


# -- /proc/PID/stat --------------------------------------------------------------------

def stat_line(utime, stime, comm='qemu-system-x86'):
    # proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime ...
    return ('4242 (%s) S 1 4242 4242 0 -1 4194560 5000 0 3 0 %d %d 7 9 20 0 5 0 100 '
            '1000000 2000 18446744073709551615\n' % (comm, utime, stime))


def test_stat_gives_utime_plus_stime_in_seconds():
    assert hostcpu.parse_stat(stat_line(250, 50), tick=100) == pytest.approx(3.0)
    # Not the children's times (cutime 7, cstime 9) nor any other field.
    assert hostcpu.parse_stat(stat_line(0, 0), tick=100) == 0


def test_stat_command_name_with_spaces_and_parentheses():
    line = stat_line(120, 30, comm='qemu (x) 1 2 3')
    assert hostcpu.parse_stat(line, tick=100) == pytest.approx(1.5)


@pytest.mark.parametrize('text', ['', 'garbage', '1 (qemu) S 1 2'])
def test_stat_refuses_what_is_not_a_stat_line(text):
    with pytest.raises(ValueError):
        hostcpu.parse_stat(text)


def test_meter_counts_cpu_between_start_and_stop(tmp_path):
    d = tmp_path / '4242'
    d.mkdir()
    (d / 'stat').write_text(stat_line(100, 20))
    m = hostcpu.Meter(4242, proc=str(tmp_path))
    (d / 'stat').write_text(stat_line(100 + 3 * hostcpu.TICK, 20 + hostcpu.TICK))
    assert m.stop() == pytest.approx(4.0)


def test_meter_of_a_process_that_is_gone_gives_none(tmp_path):
    d = tmp_path / '4242'
    d.mkdir()
    (d / 'stat').write_text(stat_line(100, 20))
    m = hostcpu.Meter(4242, proc=str(tmp_path))
    (d / 'stat').unlink()
    assert m.stop() is None
    assert hostcpu.Meter(99999, proc=str(tmp_path)).stop() is None


def test_cpu_per_1000_requests():
    assert hostcpu.per_1000(2.0, 8000) == pytest.approx(0.25)
    assert hostcpu.per_1000(None, 8000) is None
    assert hostcpu.per_1000(2.0, 0) is None
    # A write run's requests: its writes and the flush after them.
    assert hostcpu.requests_of('write', {'ops': 64}) == 65
    assert hostcpu.requests_of('read', {'ops': 7000}) == 7000
    assert hostcpu.requests_of('read', None) is None


# -- pairing arithmetic ----------------------------------------------------------------

def runs_of(name, ours, linux, cpu=None):
    out = {'ours': [], 'linux': [], 'host': []}
    for side, values in (('ours', ours), ('linux', linux)):
        for k, v in enumerate(values):
            e = {'value': v, 'error': None if v is not None else 'lost 1'}
            if cpu is not None:
                e.update(cpu_s=cpu[side][k], requests=1000)
            out[side].append({name: e})
    return out


def test_paired_ratio_is_the_median_of_per_pair_ratios():
    w = W.BY_NAME['read_4k_d1']
    runs = runs_of('read_4k_d1', [10, 20, 30], [5, 10, 60])
    row = report.summarize(runs, [w], paired={'read_4k_d1'})[0]
    assert report.pair_ratios(runs, w) == [2, 2, 0.5]
    assert (row['ratio'], row['ratio_min'], row['ratio_max']) == (2, 0.5, 2)
    assert row['advantage'] == 2
    # The per-side medians are kept beside it.
    assert row['ours']['stats']['median'] == 20 and row['linux']['stats']['median'] == 10


def test_a_slow_moment_that_hits_both_runs_of_a_pair_does_not_move_the_ratio():
    w = W.BY_NAME['read_4k_d1']
    runs = runs_of('read_4k_d1', [100, 10, 100, 100, 100], [50, 5, 50, 50, 50])
    paired = report.summarize(runs, [w], paired={'read_4k_d1'})[0]
    assert (paired['ratio'], paired['ratio_min'], paired['ratio_max']) == (2, 2, 2)
    unpaired = report.summarize(runs, [w])[0]
    assert unpaired['ratio'] == 2 and unpaired['ratio_min'] == pytest.approx(0.2)


def test_run_indices_without_a_pair_are_not_counted_as_pairs():
    # BENCH_PAIRS=2 with BENCH_REPS=3: the run lists have three slots, the third holds
    # only unpaired boots' rows.
    w = W.BY_NAME['read_4k_d1']
    runs = runs_of('read_4k_d1', [10, 20], [5, 10])
    runs['ours'].append({'boot_microvm': {'value': 0.2, 'error': None}})
    runs['linux'].append({})
    row = report.summarize(runs, [w], paired={'read_4k_d1'})[0]
    assert row['pairs']['n'] == 2 and report.ratio_cell(row) == '2 [2-2] 2/2 pairs'


def test_lower_is_better_turns_each_pair_around():
    w = W.BY_NAME['udp_rtt']
    runs = runs_of('udp_rtt', [1.0, 3.0, 1.0], [2.0, 2.0, 4.0])
    row = report.summarize(runs, [w], paired={'udp_rtt'})[0]
    assert row['ratio'] == 0.5
    assert (row['advantage'], row['advantage_min'], row['advantage_max']) == (2, 2 / 3.0, 4)
    assert report.verdict(row) == 'ours 2.00x'
    # Two pairs: the verdict is the ratio column's median turned around.
    runs = runs_of('udp_rtt', [1.0, 3.0], [1.0, 2.0])
    row = report.summarize(runs, [w], paired={'udp_rtt'})[0]
    assert row['ratio'] == 1.25 and row['advantage'] == 0.8
    assert report.verdict(row) == 'Linux 1.25x'


def test_a_pair_with_a_failed_run_is_left_out():
    w = W.BY_NAME['read_4k_d1']
    runs = runs_of('read_4k_d1', [10, None, 30], [5, 10, None])
    row = report.summarize(runs, [w], paired={'read_4k_d1'})[0]
    assert report.pair_ratios(runs, w) == [2, None, None]
    assert row['pairs']['n_used'] == 1 and row['ratio'] == 2
    assert '1/3 pairs' in report.ratio_cell(row)


def test_polling_twin_pairs_with_the_linux_run_of_its_pair():
    twin = W.BY_NAME['read_4k_d1_poll']
    assert W.poll_base(twin) == 'read_4k_d1' and twin.kind == 'read'
    runs = runs_of('read_4k_d1', [10, 10, 10], [4, 5, 8])
    for k, v in enumerate([8, 10, 16]):
        runs['ours'][k]['read_4k_d1_poll'] = {'value': v, 'error': None}
    row = report.summarize(runs, [twin], paired={'read_4k_d1_poll'})[0]
    assert report.pair_ratios(runs, twin) == [2, 2, 2]
    assert row['linux']['stats'] is None
    assert report.cell(row['linux'], 'IOPS', 3) == 'n/a (no polling variant)'


def test_cpu_per_1000_requests_per_side_in_the_row():
    w = W.BY_NAME['read_4k_d1']
    cpu = {'ours': [0.5, 0.3, 0.4], 'linux': [1.0, 1.2, 0.9]}
    runs = runs_of('read_4k_d1', [10, 20, 30], [5, 10, 60], cpu)
    row = report.summarize(runs, [w], paired={'read_4k_d1'})[0]
    assert row['ours']['cpu_per_1000']['median'] == pytest.approx(0.4)
    assert row['linux']['cpu_per_1000']['max'] == pytest.approx(1.2)


# -- the table ---------------------------------------------------------------------------

def test_table_columns_paired_unpaired_and_polling_rows():
    cpu = {'ours': [0.5, 0.3, 0.4], 'linux': [1.0, 1.2, 0.9]}
    runs = runs_of('read_4k_d1', [10, 20, 30], [5, 10, 60], cpu)
    for k, v in enumerate([8, 10, 16]):
        runs['ours'][k]['read_4k_d1_poll'] = {'value': v, 'error': None}
    for k, v in enumerate([0.2, 0.3, 0.25]):
        runs['ours'][k]['boot_microvm'] = {'value': v, 'error': None}
        runs['linux'][k]['boot_microvm'] = {'value': 1.0, 'error': None}
    sel = [W.BY_NAME[n] for n in ('read_4k_d1', 'read_4k_d1_poll', 'boot_microvm')]
    rows = report.summarize(runs, sel, paired={'read_4k_d1', 'read_4k_d1_poll'})
    lines = report.table(rows, 3).splitlines()
    head = re.split(r'\s{2,}', lines[0])
    assert head == list(report.HEAD)
    assert 'ours/Linux' in head and 'CPU s/1k ours' in head and 'CPU s/1k Linux' in head
    cols = [m.start() for m in re.finditer(r'-+', lines[1])]
    cells = lambda line: [line[a:b].strip() for a, b in zip(cols, cols[1:] + [None])]
    first, twin, micro = (cells(l) for l in lines[2:5])
    assert first[0] == '4 KiB random reads, depth 1'
    assert first[5] == '2 [0.5-2] 3/3 pairs'
    assert first[7] == '0.400 [0.300-0.500]' and first[8] == '1.000 [0.900-1.200]'
    assert twin[0].endswith('(polling)') and twin[4] == 'n/a (no polling variant)'
    assert twin[5] == '1 [0.267-1.6] 3/3 pairs' and twin[8] == '-'
    assert micro[5] == '0.25 unpaired'


# -- the session's plan ------------------------------------------------------------------

def test_session_steps_group_the_udp_rows_and_leave_out_twins_and_boot_rows():
    sel = run.select(['read_4k_d1', 'udp_rtt', 'udp_rate', 'fs_write', 'boot', 'ping_rtt'])
    st = pairs.steps(sel)
    assert [[w.name for w in s] for s in st] == [
        ['read_4k_d1'], ['ping_rtt'], ['udp_rtt', 'udp_rate']]
    assert pairs.step_names(st[2]) == list(pairs.UDP_NAMES)


def test_a_polling_twin_selected_alone_still_runs_with_its_base():
    st = pairs.steps([W.BY_NAME['read_4k_d1_poll'], W.BY_NAME['udp_rate_poll'],
                      W.BY_NAME['read_4k_d1']])
    assert [[w.name for w in s] for s in st] == [['read_4k_d1'], ['udp_rate']]


def test_bench_only_brings_each_workload_s_polling_twin():
    names = [w.name for w in run.select(['read_4k_d1', 'boot'])]
    assert names == ['boot', 'read_4k_d1', 'read_4k_d1_poll']
    assert [w.name for w in run.select(['read_4k_d1'], poll=False)] == ['read_4k_d1']
    every = run.select([])
    assert 'udp_rate_poll' in [w.name for w in every]
    assert not any(W.poll_base(w) for w in run.select([], poll=False))
    # No twin for the boot, the microvm rows (MMIO polls there) or the Python device.
    assert 'boot_poll' not in W.BY_NAME and 'read_4k_d1_microvm_poll' not in W.BY_NAME
    assert 'py_read_4k_d1_poll' not in W.BY_NAME


def test_pairs_alternate_ours_and_linux_and_swap_ours_two_modes():
    assert pairs.variants(0, True) == ['ours', 'poll', 'linux']
    assert pairs.variants(1, True) == ['poll', 'ours', 'linux']
    assert pairs.variants(2, False) == ['ours', 'linux']
    seq = [v for k in range(4) for v in pairs.variants(k, True)]
    # One mode change per pair: ours' last mode of pair k is the first of pair k + 1.
    changes = sum(1 for a, b in zip([v for v in seq if v != 'linux'],
                                    [v for v in seq if v != 'linux'][1:]) if a != b)
    assert changes == 4


def test_a_session_that_fails_voids_its_later_runs_only():
    class Broken(pairs.Session):
        side = 'ours'
        calls = 0

        def _run(self, step, poll):
            Broken.calls += 1
            raise pairs.qemu.Timeout('timed out waiting for BENCH END 3')

    s = Broken('/nonexistent')
    step = [W.BY_NAME['read_4k_d1']]
    first = s.run(step, poll=True)
    assert first == {'read_4k_d1_poll': {'value': None,
                                         'error': 'Timeout: timed out waiting for BENCH END 3'}}
    later = s.run([W.BY_NAME['udp_rtt']])
    assert set(later) == set(pairs.UDP_NAMES)
    assert later['udp_rate']['error'].startswith('session failed earlier: Timeout')
    assert Broken.calls == 1


# -- the Linux session's shell loop, under the host's sh with a fake bhelper -------------

def test_linux_session_loop_runs_each_step_on_demand(tmp_path):
    fake = tmp_path / 'bhelper'
    fake.write_text('#!/bin/sh\necho "RESULT op=$1 bs=$3 depth=$4 mode=$5 ops=7 bytes=28672 '
                    'ns=1000 bad=0"\n')
    fake.chmod(0o755)
    st = pairs.steps(run.select(['read_4k_d1', 'seq_write'], poll=False))
    script = pairs.session_script(st)
    feed = '3 s_read_4k_d1\n4 s_seq_write\n5 s_read_4k_d1\n0 quit\n9 s_seq_write\n'
    env = dict(os.environ, PATH='%s:%s' % (tmp_path, os.environ['PATH']))
    p = subprocess.run(['sh', '-c', script], input=feed.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=20)
    out = p.stdout.decode()
    assert out.startswith('BENCH SESSION\n')
    # Each step's output sits between the end markers, and quit ends the loop.
    parts = re.split(r'(?m)^BENCH END \d+$', out)
    assert re.findall(r'(?m)^BENCH END (\d+)$', out) == ['3', '4', '5']
    p3 = W.parse_output(parts[0])
    assert p3['read_4k_d1']['result']['ops'] == 7 and p3['read_4k_d1']['result']['bs'] == 4096
    assert 'seq_write' in W.parse_output(parts[1])
    # The serial console echoes each command line: the echo never reads as an end marker.
    assert not re.search(rb'(?m)^BENCH END 3\r?$', b'3 s_read_4k_d1\r\n')


# -- the written range, checked per run --------------------------------------------------

def test_each_write_run_is_checked_and_the_range_restored(tmp_path):
    w = W.Workload('seq_write', 't', 'MB/s', W.HIGHER, 'write', bs=4096, offset=8192,
                   total=16384)
    disk = str(tmp_path / 'd.img')
    with open(disk, 'wb') as f:
        f.write(pattern.make_bytes(0, 256))
    with open(disk, 'r+b') as f:            # the guest's write, as QEMU leaves it
        f.seek(8192)
        f.write(pattern.make_bytes(16, 32, pattern.WRITE_MAGIC, pattern.WRITE_SALT))
    res = {'seq_write': {'value': 100.0, 'error': None}}
    pairs.check_and_restore(disk, w, res)
    assert res['seq_write']['value'] == 100.0
    assert pattern.verify_file(disk, 0, 256 * 512, pattern.READ_MAGIC, pattern.READ_SALT) == []
    # A later run that claims a figure but wrote nothing is caught by its own check.
    res = {'seq_write': {'value': 100.0, 'error': None}}
    pairs.check_and_restore(disk, w, res)
    assert res['seq_write']['value'] is None
    assert 'image check' in res['seq_write']['error']


def test_chart_draws_paired_unpaired_and_polling_rows(tmp_path):
    pytest.importorskip('matplotlib')
    runs = runs_of('read_4k_d1', [10, 20, 30], [5, 10, 60])
    for k, v in enumerate([8, 10, 16]):
        runs['ours'][k]['read_4k_d1_poll'] = {'value': v, 'error': None}
        runs['ours'][k]['boot_microvm'] = {'value': 0.2, 'error': None}
    sel = [W.BY_NAME[n] for n in ('read_4k_d1', 'read_4k_d1_poll', 'boot_microvm')]
    rows = report.summarize(runs, sel, paired={'read_4k_d1', 'read_4k_d1_poll'})
    path = report.chart(rows, str(tmp_path / 'r.png'))
    assert os.path.getsize(path) > 1000
