"""One boot of our image running every workload over the raw REPL; returns its figures.

Boot time is QEMU start to the first REPL prompt, which the firmware prints after its boot
report (every device probed). The workload code is bench/guest/*.py, sent as source; its
output has the same form as the Linux helper's, so one parser reads both.
"""
import glob
import os
import re
import shutil

import figures
import qemu
import tcpclient
import workloads as W

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
GUEST_DIR = os.path.join(BENCH_DIR, 'guest')
READY = os.environ.get('BENCH_OURS_READY', r'>>> ').encode()

RAW_BANNER = rb'raw REPL; CTRL-B to exit\r?\n>'


def find_image():
    """Our firmware image, or None. BENCH_FIRMWARE overrides the search under build/."""
    env = os.environ.get('BENCH_FIRMWARE')
    if env:
        return env if os.path.exists(env) else None
    # Not the bench's own copies under build/bench (a before image built or copied there
    # is newer than our build, and is not ours).
    bench_out = os.path.join(ROOT, 'build', 'bench') + os.sep
    found = sorted((p for p in glob.glob(os.path.join(ROOT, 'build', '**', 'firmware.elf'),
                                         recursive=True) if not p.startswith(bench_out)),
                   key=os.path.getmtime)
    return found[-1] if found else None


class RawRepl:
    """MicroPython's raw REPL over a Qemu serial stream."""

    def __init__(self, q):
        self.q = q

    def enter(self, timeout=20):
        self.q.send(b'\r\x03\x03')
        self.q.send(b'\x01')
        self.q.expect(RAW_BANNER, timeout)

    def start(self, code):
        """Send code and start it; finish() collects its output."""
        self.q.send(code.encode() + b'\x04')
        self.q.expect(rb'OK', 30)

    def finish(self, timeout=300):
        """(stdout, stderr) of the code started last; back at the raw prompt after."""
        out, _ = self.q.expect(rb'(?s)(.*?)\x04', timeout)
        err, _ = self.q.expect(rb'(?s)(.*?)\x04', 30)
        self.q.expect(rb'>', 30)
        return (out.group(1).decode(errors='replace'), err.group(1).decode(errors='replace'))

    def run(self, code, timeout=300):
        self.start(code)
        return self.finish(timeout)

    def wait_ready(self, ready, timeout=60):
        """After start() of a server: wait until it prints `ready` (bytes), or "NA why",
        or ends without either (it raised: an image without the feature, say).
        -> (ready, entry, ended): entry (when not ready) a row's {'value': None, 'error':
        ...}; ended: the code raised and the REPL is back at its prompt (else, after an
        NA as after ready, the caller still finish()es it)."""
        m, _ = self.q.expect(re.escape(ready) + rb'|NA ([^\r\n]*)\r?\n|\x04', timeout)
        if m.group(0) == ready:
            return True, None, False
        if m.group(0) != b'\x04':
            return False, {'value': None, 'error': m.group(1).decode().strip(), 'na': True}, False
        err, _ = self.q.expect(rb'(?s)(.*?)\x04', 30)
        self.q.expect(rb'>', 30)
        lines = err.group(1).decode(errors='replace').strip().splitlines() or ['nothing']
        return False, {'value': None, 'error': 'guest raised %s' % lines[-1]}, True


DEVICE_KINDS = ('blk', 'net', 'console', 'rng')
_DEVICE_LINE = re.compile(r'^\s*(?:[0-9a-f]{2}:[0-9a-f]{2}\.\d|mmio@0x[0-9a-f]+) virtio-(\w+)(.*)$',
                          re.M)
SCRIPT_READY = 'BENCH READY'
SCRIPT_DONE = 'BENCH DONE'
# The script's end: its last line, or a traceback (the image then powers off).
SCRIPT_END = re.compile(re.escape(SCRIPT_DONE.encode()) + rb'|Traceback \(most recent call last\)')
EXIT_AFTER_SCRIPT_S = 10   # an image that does not power off after its script (an old one) is killed


def boot_figure(report, t_prompt):
    """Boot time: QEMU start to the prompt that follows the boot report, counted only when
    the report lists all four devices initialized by our drivers."""
    # "00:04.0 virtio-net 1af4:1000 unbound: ..." is a device no driver took.
    found = set(kind for kind, rest in _DEVICE_LINE.findall(report) if 'unbound' not in rest)
    missing = [k for k in DEVICE_KINDS if k not in found]
    detail = {'to_prompt_s': t_prompt, 'devices': sorted(found), 'report': report[-2000:]}
    if not missing:
        return {'value': t_prompt, 'error': None, 'detail': detail}
    why = 'drivers missing' if 'drivers not available' in report else 'no driver for %s' % (
        ','.join(missing))
    return {'value': None, 'error': why, 'na': True, 'detail': detail}


def guest_source(name):
    with open(os.path.join(GUEST_DIR, name)) as f:
        return f.read()


def call_line(w):
    p = w.params
    if w.kind == 'read':
        return "read(blk, '%s', %d, %d, '%s', %d, %d, %d)" % (
            w.name, p['bs'], p['depth'], p['mode'], p['region'], p['max_ops'], p['max_ms'])
    if w.kind == 'write':
        return "write(blk, '%s', %d, %d, %d)" % (w.name, p['bs'], p['offset'], p['total'])
    if w.kind == 'ping':
        return "ping(st, '%s', %d)" % (w.name, p['count'])
    if w.kind == 'fs':
        if p['op'] == 'fswrite':
            return "fs_write('%s', root + '/big.bin', %d, %d)" % (w.name, p['bs'], p['total'])
        if p['op'] == 'fsread':
            return "fs_read('%s', root + '/big.bin', %d, %d, remount)" % (w.name, p['bs'], p['total'])
        return "fs_files('%s', root + '/files', %d, %d)" % (w.name, p['count'], p['size'])
    raise ValueError('no guest call for %s' % w.name)


def run_workload(repl, w):
    """The workload's output; a guest exception becomes an ERROR line (a failure, not n/a)."""
    out, err = repl.run(call_line(w))
    if err:
        out = '@@ %s\nERROR guest raised %s\n' % (w.name, err.strip().splitlines()[-1])
    return out


def na_all(selected, why):
    return {w.name: {'value': None, 'error': why, 'na': True} for w in selected}


def script(selected):
    """The workloads as one script (fw_cfg opt/script, as `make run SCRIPT=`), for a
    machine where the serial line takes no input yet (microvm): the boot report is
    printed before it runs, so its first line marks "all devices ready"."""
    parts = ['print(%r)' % SCRIPT_READY]
    disk = [w for w in selected if w.kind in ('read', 'write')]
    if disk:
        parts += [guest_source('ours_blk.py'), 'blk = find_blk()'] + [call_line(w) for w in disk]
    pings = [w for w in selected if w.kind == 'ping']
    if pings:
        parts += [guest_source('ours_net.py'), 'st = make_stack()'] + [call_line(w) for w in pings]
    parts.append('print(%r)' % SCRIPT_DONE)
    return '\n'.join(parts) + '\n'


def run_script(image, disk, work_dir, selected, machine, timeout):
    """One boot on `machine` running script(selected): (results with the boot figure,
    output text)."""
    path = os.path.join(work_dir, 'ours-script.py')
    with open(path, 'w') as f:
        f.write(script(selected))
    args = (qemu.machine_flags(machine) + qemu.devices(disk, qemu.free_udp_port(), machine)
            + ['-kernel', image, '-fw_cfg', 'name=opt/script,file=%s' % path])
    with qemu.Qemu(args, timeout) as q:
        _, t_ready = q.expect(re.escape(SCRIPT_READY.encode()), 60)
        results = {W.boot_name(machine): boot_figure(q.output(), t_ready)}
        try:
            q.expect(SCRIPT_END, timeout)
            q.wait_exit(EXIT_AFTER_SCRIPT_S)
        except qemu.Timeout:
            pass        # it ended early, or does not power off: what it printed is all there is
        return results, q.output()


def run(image, master_disk, work_dir, selected, timeout=240, log=print, machine='pc',
        poll=False):
    """Boot once, run the selected workloads; {name: {'value', 'error', ...}}. On a
    machine other than pc the workloads run as a script (run_script). poll: the devices
    probed again with virtio.probe(interrupts=False) before the workloads."""
    disk = os.path.join(work_dir, 'ours-disk.img')
    shutil.copyfile(master_disk, disk)
    if machine == qemu.MICROVM:
        results, text = run_script(image, disk, work_dir, selected, machine, timeout)
        return collect(results, text, selected, disk)
    port = qemu.free_udp_port()
    fs_selected = [w for w in selected if w.kind == 'fs']
    fs_disk = fs_selected and qemu.make_fs_disk(os.path.join(work_dir, 'ours-fs.img'), W.FS_DISK_BYTES)
    tcp = any(w.kind == 'tcp' for w in selected)
    ports = qemu.tcp_forwards() if tcp else None
    sink = tcpclient.Sink() if tcp else None
    args = (qemu.machine_flags(machine) +
            qemu.devices(disk, port, machine, fs_disk or None, ports and qemu.tcp_fwd_map(ports)) +
            ['-kernel', image])
    results = {}
    if fs_selected and not fs_disk:
        results.update(na_all(fs_selected, 'no FAT disk (mformat missing)'))
        fs_selected = []
    texts = []
    try:
        _run_guest(args, timeout, selected, machine, port, ports, sink, results, texts,
                   fs_selected, poll)
    finally:
        if sink is not None:
            sink.close()
    return collect(results, '\n'.join(texts), selected, disk, fs_disk)


def _tcp(repl, q, ports, sink, results, texts):
    out, err = repl.run(guest_source('ours_tcp.py'))
    texts.append(out)
    repl.start('tcp_server(st, %d, %d, %d, %d)' % (tcpclient.RX_GUEST_PORT, sink.port,
                                                    W.TCP_BYTES, tcpclient.HTTP_GUEST_PORT))
    ready, why, ended = repl.wait_ready(b'TCP READY')
    if ready:
        try:
            figures.tcp(q, ports, sink, results)
        except (OSError, qemu.Timeout) as e:
            for name in figures.TCP_NAMES:
                results.setdefault(name, {'value': None, 'error': 'TCP run failed: %s' % e})
            return                        # the guest may be stuck: QEMU is killed anyway
    else:
        for name in figures.TCP_NAMES:
            results[name] = dict(why)
        if ended:
            return
    out, err = repl.finish(120)
    if err:
        why = 'guest raised %s' % err.strip().splitlines()[-1]
        for name in figures.TCP_NAMES:
            results.setdefault(name, {'value': None, 'error': why})


PROBE = 'import virtio\nvirtio.probe(interrupts=%s)\n'


def _run_guest(args, timeout, selected, machine, port, ports, sink, results, texts, fs_selected,
               poll=False):
    with qemu.Qemu(args, timeout) as q:
        _, t_ready = q.expect(re.escape(READY), 60)
        results[W.boot_name(machine)] = boot_figure(q.output(), t_ready)
        repl = RawRepl(q)
        repl.enter()
        if poll:
            out, err = repl.run(PROBE % False)
            if err:
                raise RuntimeError('probe(interrupts=False) failed: %s'
                                   % err.strip().splitlines()[-1])
        out, err = repl.run(guest_source('ours_blk.py') + '\nblk = find_blk()\n')
        texts.append(out)
        if err:
            raise RuntimeError('guest bench code failed: %s' % err.strip().splitlines()[-1])
        for w in selected:
            if w.kind in ('read', 'write'):
                texts.append(run_workload(repl, w))
        if fs_selected:
            out, err = repl.run(guest_source('ours_fs.py') + '\nroot = fs_mount()\n')
            texts.append(out)
            if err:
                why = 'file system not mounted: %s' % err.strip().splitlines()[-1]
                results.update({w.name: {'value': None, 'error': why} for w in fs_selected})
            else:
                for w in fs_selected:
                    texts.append(run_workload(repl, w))
        needs_net = [w for w in selected if w.kind in ('ping', 'udp', 'tcp')]
        if needs_net:
            out, err = repl.run(guest_source('ours_net.py') + '\nst = make_stack()\n')
            texts.append(out)
            for w in selected:
                if w.kind == 'ping':
                    texts.append(run_workload(repl, w))
            if any(w.kind == 'udp' for w in selected):
                total = W.UDP_RTT_COUNT + W.UDP_RATE_COUNT
                repl.start('udp_server(st, %d, %d)' % (qemu.UDP_GUEST_PORT, total))
                ready, why, ended = repl.wait_ready(b'UDPECHO READY')
                if ready:
                    figures.udp(port, results)
                else:
                    for name in ('udp_rtt', 'udp_rtt_p99', 'udp_rate'):
                        results[name] = dict(why)
                out = '' if ended else repl.finish(60)[0]
                # The server's own "@@ udp_server" line was read by the expect above:
                # put it back, or its RESULT would land in the workload before it.
                texts.append('@@ udp_server\n' + out)
            if ports is not None:
                _tcp(repl, q, ports, sink, results, texts)
        repl.start('import x86\nx86.poweroff()\n')
        try:
            q.wait_exit(10)
        except qemu.Timeout:
            pass


def collect(results, text, selected, disk, fs_disk=None):
    """Figures from the workloads' output text; the written disk checked, then removed."""
    collect_parsed(text, selected, results)
    for w in selected:
        if w.kind == 'write' and results[w.name]['value'] is not None:
            figures.check_written(disk, w, results)
    notes = [l for l in text.splitlines() if l.startswith('NOTE ')]
    if notes:
        results['_notes'] = notes
    os.remove(disk)
    if fs_disk:
        os.remove(fs_disk)
    return results


def collect_parsed(text, selected, results=None):
    """{name: entry} for the selected workloads found in the output text (those not in
    results already)."""
    results = {} if results is None else results
    parsed = W.parse_output(text)
    for w in selected:
        if w.name in results:
            continue
        entry = parsed.get(w.name)
        if entry is not None and entry.get('error'):
            results[w.name] = {'value': None, 'error': entry['error']}
        elif entry is not None and entry.get('na'):
            results[w.name] = {'value': None, 'error': entry['na'], 'na': True}
        elif w.kind in ('read', 'write'):
            value, err = W.disk_figure(w, entry and entry['result'])
            results[w.name] = {'value': value, 'error': err, 'detail': entry and entry['result']}
        elif w.kind == 'fs':
            value, err = W.fs_figure(w, entry and entry['result'])
            results[w.name] = {'value': value, 'error': err, 'detail': entry and entry['result']}
        elif w.kind == 'ping':
            results[w.name] = figures.ping(entry)
    return results
