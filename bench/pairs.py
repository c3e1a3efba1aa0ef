"""Paired measurements (issue 11): ours and Linux take turns per workload, A B A B.

Both guests are booted once and stay up side by side (Linux first, then ours); an idle
guest halts (ours in its REPL, Linux in its shell's `read`), so it takes little from the
one that runs, and each run records the idle QEMU's CPU time to show it. Then, per
workload, pair k runs ours (with interrupts, then polling, or the other way round on odd
pairs) and then Linux, BENCH_PAIRS times, in the same boots. A run's figure carries its
QEMU's CPU seconds over the run (hostcpu) and the requests it stands for.

Workloads that cannot repeat in one boot (the boot itself, the file rows with their fresh
FAT disk, the TCP rows whose Linux servers run once) are paired by boots instead:
boot_pairs() boots ours, ours polling, then Linux, per pair.

With BENCH_BEFORE (bench/before.py) a third side, `before`, is an older image of ours,
booted beside the other two: it runs every step of every pair too, in its default mode
only (an old image may have no interrupts, nor probe(interrupts=...)), so that a change's
before and after come from the same moments of the same run.
"""
import os
import re
import shutil
import time

import figures
import hostcpu
import linux_guest
import linuxref
import netclient
import ours_guest
import pattern
import qemu
import workloads as W

PAIRS = int(os.environ.get('BENCH_PAIRS', '5'))
SESSION_KINDS = ('read', 'write', 'ping', 'udp')    # repeatable in one boot
UDP_NAMES = ('udp_rtt', 'udp_rtt_p99', 'udp_rate')
SESSION_TIMEOUT = 4 * 3600     # the QEMU object's overall deadline; each step has its own
STEP_TIMEOUT = 300


class SessionFailed(Exception):
    pass


def steps(selected):
    """The session's steps in order: each read, write and ping workload alone, the UDP
    workloads together (one echo server run gives all three figures). Each step is a list
    of base workloads (no polling twins)."""
    out, udp, seen = [], [], set()
    for w in selected:
        if W.poll_base(w):
            w = W.BY_NAME[W.poll_base(w)]   # a twin alone still needs its base's runs
        if w.kind not in SESSION_KINDS or w.name in seen:
            continue
        seen.add(w.name)
        if w.kind == 'udp':
            if not udp:
                out.append(udp)
            udp.append(w)
        else:
            out.append([w])
    return out


def variants(k, poll, before=False):
    """The order of runs in pair k: ours' variants (interrupts 'ours', polling 'poll'),
    the before image ('before', when there is one), then Linux. All but Linux turn around
    on odd pairs, so ours' mode changes once per pair, not twice, and neither ours nor
    before always runs first."""
    ours = ['ours', 'poll'] if poll else ['ours']
    if before:
        ours.append('before')
    if k % 2:
        ours.reverse()
    return ours + ['linux']


def side_of(variant):
    return 'ours' if variant == 'poll' else variant


def restore_written(disk, w):
    """Put the read pattern back over the range a write workload wrote, so the next run's
    check after it sees only what that run wrote."""
    p = w.params
    first = p['offset'] // pattern.SECTOR
    step = 16 * W.MiB // pattern.SECTOR
    with open(disk, 'r+b') as f:
        f.seek(p['offset'])
        s = first
        end = first + p['total'] // pattern.SECTOR
        while s < end:
            n = min(step, end - s)
            f.write(pattern.make_bytes(s, n))
            s += n


def check_and_restore(disk, w, results):
    """The per-run version of the after-power-off check (figures.check_written): QEMU
    writes straight into the image file (raw, no cache of its own), so after the guest's
    flush the host reads what the guest wrote."""
    if results[w.name]['value'] is not None:
        figures.check_written(disk, w, results)
    restore_written(disk, w)


class Session:
    """One booted guest that runs steps on demand."""
    side = None

    def __init__(self, disk):
        self.disk = disk
        self.q = None
        self.failed = None

    def _machine_args(self, master_disk, machine):
        """The guest's disk made a private copy of the master; the QEMU arguments of
        the machine with the bench's devices (the guest's own -kernel etc. follow)."""
        shutil.copyfile(master_disk, self.disk)
        self.port = qemu.free_udp_port()
        return qemu.machine_flags(machine) + qemu.devices(self.disk, self.port, machine)

    @property
    def pid(self):
        return self.q.proc.pid

    def meter(self):
        return hostcpu.Meter(self.pid)

    def close(self):
        if self.q is not None:
            self.q.__exit__(None, None, None)
            self.q = None
        if os.path.exists(self.disk):
            os.remove(self.disk)

    def run(self, step, poll=False):
        """{name: entry} for the step's workloads (polling twins' names when poll)."""
        if self.failed:
            return self._all(step, poll, 'session failed earlier: ' + self.failed)
        try:
            return self._run(step, poll)
        except Exception as e:   # a stuck guest: its later runs say so, the other side goes on
            self.failed = '%s: %s' % (type(e).__name__, (str(e).splitlines() or [''])[0][:160])
            return self._all(step, poll, self.failed)

    def _all(self, step, poll, why):
        names = [n + (W.POLL_SUFFIX if poll else '') for n in step_names(step)]
        return dict((n, {'value': None, 'error': why}) for n in names)


def step_names(step):
    if step[0].kind == 'udp':
        return list(UDP_NAMES)
    return [w.name for w in step]


def with_cpu(entry, cpu, kind):
    entry['cpu_s'] = cpu
    entry['requests'] = hostcpu.requests_of(kind, entry.get('detail'))
    return entry


class OursSession(Session):
    side = 'ours'

    def __init__(self, image, master_disk, work_dir, machine, net):
        Session.__init__(self, os.path.join(work_dir, self.side + '-session.img'))
        self.args = self._machine_args(master_disk, machine) + ['-kernel', image]
        self.net = net
        self.polling = False

    def start(self):
        self.q = qemu.Qemu(self.args, SESSION_TIMEOUT).__enter__()
        self.q.expect(re.escape(ours_guest.READY), 60)
        self.repl = ours_guest.RawRepl(self.q)
        self.repl.enter()
        code = ours_guest.guest_source('ours_blk.py')
        if self.net:
            code += '\n' + ours_guest.guest_source('ours_net.py')
        self._note_mode(self._exec(code + '\n' + self._bind()))
        return self

    def _bind(self):
        # MODE: how blk's waits end now ('msix', 'intx', or None: polling), for the JSON.
        return ('blk = find_blk()\n' + ('st = make_stack()\n' if self.net else '')
                + "print('MODE', getattr(getattr(blk, 'interrupts', None), 'mode', None))\n")

    def _note_mode(self, out):
        m = re.search(r'MODE (\S+)', out)
        self.irq_mode = m.group(1) if m and m.group(1) != 'None' else None

    def _exec(self, code, timeout=60):
        out, err = self.repl.run(code, timeout)
        if err:
            raise SessionFailed('guest raised %s' % err.strip().splitlines()[-1])
        return out

    def mode(self, poll):
        """Probe again with interrupts on or off (virtio.probe releases the old devices),
        and find blk (and net's stack) afresh."""
        if poll == self.polling:
            return
        self._note_mode(self._exec(ours_guest.PROBE % (not poll) + self._bind()))
        self.polling = poll

    def _run(self, step, poll):
        res = self._run_step(step, poll)
        for e in res.values():
            e['irq_mode'] = self.irq_mode
        return res

    def _run_step(self, step, poll):
        self.mode(poll)
        suffix = W.POLL_SUFFIX if poll else ''
        if step[0].kind == 'udp':
            res = {}
            self.repl.start('udp_server(st, %d, %d)' % (qemu.UDP_GUEST_PORT,
                                                        W.UDP_RTT_COUNT + W.UDP_RATE_COUNT))
            ready, why, ended = self.repl.wait_ready(b'UDPECHO READY')
            if ready:
                figures.udp(self.port, res, self.meter)
            else:
                res = dict((n, dict(why)) for n in UDP_NAMES)
                if ended:
                    return dict((n + suffix, e) for n, e in res.items())
            self.repl.finish(60)
            return dict((n + suffix, e) for n, e in res.items())
        w = step[0]
        twin = W.BY_NAME[w.name + suffix] if poll else w
        m = self.meter()
        text = ours_guest.run_workload(self.repl, twin)
        cpu = m.stop()
        res = ours_guest.collect_parsed(text, [twin])
        entry = with_cpu(res[twin.name], cpu, w.kind)
        if w.kind == 'ping':
            entry['requests'] = w.params['count']
        if w.kind == 'write':
            check_and_restore(self.disk, twin, res)
        return res


class BeforeSession(OursSession):
    """The before image (BENCH_BEFORE): the same guest code, its default mode only (no
    polling twin). A guest error in a workload is that run's error (run_workload)."""
    side = 'before'

    def mode(self, poll):
        assert not poll, 'the before image runs its default mode only'


class LinuxSession(Session):
    side = 'linux'

    def __init__(self, info, master_disk, work_dir, machine, step_list):
        Session.__init__(self, os.path.join(work_dir, 'linux-session.img'))
        self.seq = 0
        initrd = linuxref.with_script(info['initramfs'], session_script(step_list),
                                      os.path.join(work_dir, 'linux-session-initrd.cpio'))
        self.args = self._machine_args(master_disk, machine) + [
            '-kernel', info['kernel'], '-initrd', initrd, '-append', linux_guest.KERNEL_CMDLINE]

    def start(self):
        self.q = qemu.Qemu(self.args, SESSION_TIMEOUT).__enter__()
        self.q.expect(rb'BENCH READY[^\n]*\n', 120)
        self.q.expect(rb'BENCH SESSION', 60)
        return self

    def _run(self, step, poll):
        assert not poll, 'Linux has no polling variant'
        self.seq += 1
        end = re.escape(b'BENCH END %d' % self.seq)
        m = self.meter()
        self.q.send(b'%d %s\n' % (self.seq, function_name(step).encode()))
        if step[0].kind == 'udp':
            res = {}
            self.q.expect(rb'UDPECHO READY', 60)
            figures.udp(self.port, res, self.meter)
            netclient.quit(self.port)
            self.q.expect(rb'(?m)^' + end + rb'\r?$', STEP_TIMEOUT)
            return res
        match, _ = self.q.expect(rb'(?sm)(.*?)^' + end + rb'\r?$', STEP_TIMEOUT)
        cpu = m.stop()
        w = step[0]
        parsed = W.parse_output(match.group(1).decode(errors='replace'))
        entry = parsed.get(w.name)
        if w.kind == 'ping':
            res = {w.name: figures.ping(entry)}
            with_cpu(res[w.name], cpu, w.kind)['requests'] = w.params['count']
            return res
        value, err = W.disk_figure(w, entry and entry['result'])
        res = {w.name: with_cpu({'value': value, 'error': err,
                                 'detail': entry and entry['result']}, cpu, w.kind)}
        if w.kind == 'write':
            check_and_restore(self.disk, w, res)
        return res

    def close(self):
        if self.q is not None and not self.failed:
            try:
                self.q.send(b'0 quit\n')
                self.q.wait_exit(10)
            except Exception:
                pass
        Session.close(self)


def function_name(step):
    return 's_udp' if step[0].kind == 'udp' else 's_' + step[0].name


def session_script(step_list):
    """/etc/bench.sh for a Linux session: a shell function per step, then a loop that
    reads "SEQ FUNCTION" lines from the serial console, runs the function and prints
    BENCH END SEQ (the console echoes the line it read: the marker is matched at the start
    of a line, which the echo never has)."""
    lines = [linux_guest.SCHEDULER_LINE]
    for step in step_list:
        body = (linux_guest.UDP_SERVER if step[0].kind == 'udp'
                else linux_guest.workload_lines(step[0]))
        lines += ['%s() {' % function_name(step)] + body + ['}']
    lines += ['echo "BENCH SESSION"',
              'while read -r seq cmd; do',
              '  [ "$cmd" = quit ] && break',
              '  $cmd',
              '  echo "BENCH END $seq"',
              'done']
    return '\n'.join(lines) + '\n'


def pair_sides(before):
    return ('ours', 'linux', 'before') if before is not None else ('ours', 'linux')


def session(image, ref, disk, work_dir, selected, machine, pairs=PAIRS, log=print,
            before=None):
    """Both guests (and the before image, when given) booted on `machine`, every session
    workload run in pairs. Returns ([{'ours': {name: entry}, 'linux': {...},
    'before'?: {...}} per pair], notes)."""
    sel = [w for w in W.on_machine(selected, machine)]
    step_list = steps(sel)
    out = [dict((side, {}) for side in pair_sides(before)) for _ in range(pairs)]
    if not step_list:
        return out, []
    poll = any(W.poll_base(w) for w in sel)
    want_ours = image is not None
    net = any(s[0].kind in ('ping', 'udp') for s in step_list)
    sessions = {}
    notes = []
    try:
        if ref is not None:
            sessions['linux'] = _start(LinuxSession(ref, disk, work_dir, machine, step_list), log)
        if want_ours:
            sessions['ours'] = _start(OursSession(image, disk, work_dir, machine, net), log)
        if before is not None:
            sessions['before'] = _start(BeforeSession(before, disk, work_dir, machine, net), log)
        for step in step_list:
            names = step_names(step)
            t0 = time.time()
            for k in range(pairs):
                for v in variants(k, poll and want_ours, before is not None):
                    s = sessions.get(side_of(v))
                    if s is None:
                        continue
                    res = _timed_run(s, sessions, step, v == 'poll')
                    cpu, wall = _idle_share(res)
                    if cpu is not None and wall > 0 and cpu > 0.1 * wall:
                        notes.append('%s pair %d (%s): the idle guest%s used %.0f%% of a '
                                     'core' % ('+'.join(names), k + 1, v,
                                               's' if len(sessions) > 2 else '',
                                               100 * cpu / wall))
                    out[k][side_of(v)].update(res)
            log('  pairs %s: %.1f s' % (','.join(names), time.time() - t0))
    finally:
        for s in sessions.values():
            s.close()
    for side, s in sessions.items():
        if s.failed:
            notes.append('%s session: %s' % (side, s.failed))
    return out, notes


def _timed_run(s, sessions, step, poll):
    """s runs the step; each entry records the run's wall time and the CPU time the idle
    guests' QEMUs used meanwhile (summed; None when one of them could not be read)."""
    idle = [x.meter() for x in sessions.values() if x is not s and x.q is not None]
    t = time.time()
    res = s.run(step, poll)
    wall = time.time() - t
    if idle:
        cpus = [m.stop() for m in idle]
        cpu = None if None in cpus else sum(cpus)
        for e in res.values():
            e['idle_other_cpu_s'] = cpu
            e['wall_s'] = wall
    return res


def _idle_share(res):
    for e in res.values():
        return e.get('idle_other_cpu_s'), e.get('wall_s', 0)
    return None, 0


def _start(s, log):
    try:
        return s.start()
    except Exception as e:
        s.failed = 'boot failed: %s: %s' % (type(e).__name__, (str(e).splitlines() or [''])[0][:160])
        log('  %s session: %s' % (s.side, s.failed))
        s.close()
        return s


def rename_poll(res):
    """A polling boot's results under the polling twins' names (its boot figure dropped)."""
    return dict((k + W.POLL_SUFFIX, v) for k, v in res.items()
                if not k.startswith('_') and (k + W.POLL_SUFFIX) in W.BY_NAME)


def boot_kinds(w):
    return w.kind in ('boot', 'fs', 'tcp') and W.machine_of(w) == 'pc'


def boot_order(k, before):
    """The boots of pair k: ours ('ours': with interrupts, then polling) and the before
    image, the two turned around on odd pairs, then Linux."""
    order = ['ours', 'before'] if before else ['ours']
    if k % 2:
        order.reverse()
    return order + ['linux']


def boot_pairs(image, ref, disk, work_dir, selected, guarded, pairs=PAIRS, log=print,
               before=None):
    """Pairs of whole boots for the workloads that need one each (boot, fs, tcp on pc):
    per pair, ours, ours polling (when polling twins are selected), the before image
    (boot_order), then Linux. Returns [{'ours': {...}, 'linux': {...}, 'before'?: {...}}
    per pair]."""
    base = [w for w in selected if boot_kinds(w) and not W.poll_base(w)]
    poll = [W.BY_NAME[W.poll_base(w)] for w in selected if boot_kinds(w) and W.poll_base(w)]
    out = [dict((side, {}) for side in pair_sides(before)) for _ in range(pairs)]
    if not base and not poll:
        return out
    every = base + [w for w in poll if w not in base]   # the twins' ratios need their base
    for k in range(pairs):
        for side in boot_order(k, before is not None):
            if side == 'ours' and image is not None:
                if base:
                    res = guarded('ours', ours_guest.run, image, disk, work_dir, base)
                    out[k]['ours'].update(_fail_all(res, base))
                if poll:
                    res = guarded('ours', ours_guest.run, image, disk, work_dir, poll, poll=True)
                    out[k]['ours'].update(rename_poll(_fail_all(res, poll)))
            elif side == 'before':
                res = guarded('before', ours_guest.run, before, disk, work_dir, every)
                out[k]['before'].update(_fail_all(res, every))
            elif side == 'linux' and ref is not None:
                res = guarded('linux', linux_guest.run, ref, disk, work_dir, every)
                out[k]['linux'].update(_fail_all(res, every))
        log('  boot pair %d of %d' % (k + 1, pairs))
    return out


def _fail_all(res, sel):
    if '_failed' in res:
        for w in sel:
            res.setdefault(w.name, {'value': None, 'error': 'boot failed: ' + res['_failed']})
        del res['_failed']
    res.pop('_seconds', None)
    return res
