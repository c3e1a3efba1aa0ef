"""`make bench`: our drivers against a Linux guest on the same QEMU, side by side (issue #7).

    .venv/bin/python bench/run.py

In this order: the host's page-cache ceiling (BENCH_REPS times); the paired workloads
(bench/pairs.py: both guests booted side by side, ours with interrupts, ours polling and
Linux in turn per workload, BENCH_PAIRS pairs; on pc, then on the packed-ring machine);
the workloads paired by whole boots (boot, the file rows, TCP); then the unpaired ones
(microvm, the Python vhost-user-blk rows), BENCH_REPS boots each. All use the same 256 MiB
pattern image (a fresh copy per boot). Then the table is printed and written with every
run to build/bench/results.json, and the ratios are drawn in build/bench/ratios.png.

Environment:
    BENCH_PAIRS=5           pairs per paired workload
    BENCH_REPS=3            repetitions of the host ceiling and the unpaired boots
    BENCH_ONLY=a,b          only these workloads (names from bench/workloads.py; a name
                            brings its polling twin NAME_poll unless BENCH_POLL=0)
    BENCH_SIDES=ours,linux  which guests to boot
    BENCH_SECONDS=2         length of each request-rate workload
    BENCH_FIRMWARE=path     our image (default: the newest build/**/firmware.elf)
    BENCH_BEFORE=rev|path   an older image of ours measured in the same run, a third side
                            in every pair (bench/before.py): a firmware.elf, or a git
                            revision built once under build/bench/before-<sha>/
"""
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import before as before_image  # noqa: E402
import linux_guest  # noqa: E402
import linuxref  # noqa: E402
import ours_guest  # noqa: E402
import pairs  # noqa: E402
import pattern  # noqa: E402
import qemu  # noqa: E402
import report  # noqa: E402
import vhost_guest  # noqa: E402
import workloads as W  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'build', 'bench')
REF = os.path.join(ROOT, 'build', 'linux-ref')
MACHINES = ('pc', qemu.PC_PACKED, qemu.MICROVM)   # a boot per machine its workloads need


def log(msg):
    print(msg, flush=True)


def host_helper():
    out = os.path.join(OUT, 'bhelper-host')
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(linuxref.HELPER_SRC):
        linuxref.build_helper(out)
    return out


def dd_ceiling(disk):
    """The host copying the image from page cache with dd bs=1M (second, warm pass)."""
    best = None
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run(['dd', 'if=' + disk, 'of=/dev/null', 'bs=1M'], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = os.path.getsize(disk) / (time.perf_counter() - t0) / 1e6
    return best


def host_run(helper, disk, selected):
    """The physical ceiling: the same helper on the host, buffered reads of the image."""
    results = {}
    dd = dd_ceiling(disk)  # also warms the page cache for the helper
    for w in selected:
        if w.kind != 'read' or W.poll_base(w):
            continue
        p = w.params
        out = subprocess.run([helper, 'read', disk, str(p['bs']), str(p['depth']), p['mode'],
                              str(p['region']), str(p['max_ops']), str(min(p['max_ms'], 1000)),
                              'buffered'], stdout=subprocess.PIPE, timeout=120).stdout.decode()
        parsed = W.parse_output('@@ %s\n%s' % (w.name, out))
        value, err = W.disk_figure(w, parsed[w.name]['result'])
        results[w.name] = {'value': value, 'error': err, 'detail': parsed[w.name]['result']}
    if any(w.name == 'seq_read' for w in selected):
        results['seq_read']['detail']['dd_MBps'] = dd
    return results


def guarded(side, fn, *args, **kw):
    """Run one boot; an exception becomes an error entry for every workload, not a crash."""
    t0 = time.time()
    try:
        res = fn(*args, **kw)
    except Exception as e:  # a failed boot must not hide the other side's figures
        why = '%s: %s' % (type(e).__name__, str(e).splitlines()[0][:200] if str(e) else '')
        log('  %s: failed: %s' % (side, why))
        traceback.print_exc(file=open(os.path.join(OUT, '%s-error.log' % side), 'a'))
        res = {'_failed': why}
    res['_seconds'] = round(time.time() - t0, 1)
    return res


def by_machine(side, fn, first, disk, selected):
    """One boot per machine the selected workloads need (pc, then microvm), merged."""
    merged = {'_seconds': 0}
    for machine in MACHINES:
        sel = W.on_machine(selected, machine)
        if not sel:
            continue
        res = guarded(side, fn, first, disk, OUT, sel, machine=machine)
        if '_failed' in res:
            for w in sel:
                res.setdefault(w.name, {'value': None, 'error': 'boot failed: ' + res['_failed']})
            del res['_failed']
        merged['_seconds'] += res.pop('_seconds')
        merged.update(res)
    return merged


def select(only, poll=True):
    """The workloads to run, in table order: BENCH_ONLY's names (each with its polling
    twin when poll), or all (without the twins when not poll)."""
    want = set(only)
    if poll:
        want |= set(n + W.POLL_SUFFIX for n in only)
    return [w for w in W.WORKLOADS if (not only or w.name in want)
            and (poll or not W.poll_base(w))]


def find_before(spec):
    """The before image's private copy and what it is, or (None, None) without
    BENCH_BEFORE; exits with the reason when it cannot be had (before anything is
    measured: a comparison asked for must not silently become a run without it)."""
    if not spec:
        return None, None
    try:
        path, sha = before_image.resolve(spec, ROOT, OUT, log)
    except before_image.BeforeUnavailable as e:
        sys.exit('bench: ' + str(e))
    used = os.path.join(OUT, 'before-under-test.elf')
    shutil.copyfile(path, used)
    log('bench: before image %s%s' % (path, ' (revision %s)' % sha if sha else ''))
    return used, {'spec': spec, 'path': path, 'revision': sha}


def merge_pairs(runs, out):
    """Pair k's entries into runs[side][k]."""
    for k, pair in enumerate(out):
        for side, res in pair.items():
            runs[side][k].update(res)


def unpaired(side, res, image, disk, micro, vhost):
    """One image's boots of an unpaired repetition (microvm, Python vhost-user-blk) into
    res: ours' or the before image's."""
    if micro:
        res.update(by_machine(side, ours_guest.run, image, disk, micro))
    if vhost:
        vres = guarded(side + '-vhost', vhost_guest.run, image, disk, OUT, vhost)
        log('  %s, Python vhost-user-blk: %.1f s' % (side, vres['_seconds']))
        vhost_guest.merge(res, vres, vhost)


def main():
    t_start = time.time()
    load_start = os.getloadavg()
    os.makedirs(OUT, exist_ok=True)
    reps = int(os.environ.get('BENCH_REPS', '3'))
    npairs = pairs.PAIRS
    only = [x for x in os.environ.get('BENCH_ONLY', '').split(',') if x]
    poll = os.environ.get('BENCH_POLL', '1') != '0'
    selected = select(only, poll)
    sides = os.environ.get('BENCH_SIDES', 'ours,linux').split(',')
    unknown = [x for x in only if x not in W.BY_NAME]
    if unknown:
        sys.exit('bench: unknown workload(s) %s; known: %s'
                 % (','.join(unknown), ','.join(W.BY_NAME)))

    before, before_info = find_before(os.environ.get('BENCH_BEFORE', ''))

    disk = os.path.join(OUT, 'disk.img')
    if pattern.make_image(disk, W.DISK_BYTES):
        log('bench: wrote the %d MiB pattern image %s' % (W.DISK_BYTES >> 20, disk))
    helper = host_helper()

    ref = None
    ref_error = None
    if 'linux' in sides:
        t0 = time.time()
        try:
            ref = linuxref.build(REF, log=log)
            log('bench: Linux reference %s (%s, %s)' % (
                ref['kernel_package'], 'cached' if ref['cached'] else
                'built in %.1f s, %.1f MB downloaded' % (time.time() - t0, ref['download_bytes'] / 1e6),
                os.path.relpath(REF, ROOT)))
        except linuxref.ReferenceUnavailable as e:
            ref_error = 'Linux reference unavailable: %s' % e
            log('bench: ' + ref_error)

    image = ours_guest.find_image() if 'ours' in sides else None
    if 'ours' in sides and image is None:
        log('bench: our image (build/**/firmware.elf) is missing: build it with make')
    image_used = None
    if image is not None:
        # A private copy: a rebuild during the run must not change what is measured.
        image_used = os.path.join(OUT, 'firmware-under-test.elf')
        shutil.copyfile(image, image_used)

    n = max(reps, npairs)
    runs = {'ours': [{} for _ in range(n)], 'linux': [{} for _ in range(n)], 'host': []}
    if before is not None:
        runs['before'] = [{} for _ in range(n)]
    for rep in range(reps):
        runs['host'].append(host_run(helper, disk, selected))
    notes = []
    paired = set()
    for machine in ('pc', qemu.PC_PACKED):
        sel = [w for w in W.on_machine(selected, machine)
               if w.kind in pairs.SESSION_KINDS]
        if sel:
            log('bench: %d pairs of %s on %s, %s guests up side by side' % (
                npairs, ','.join(w.name for w in sel), machine,
                'both' if before is None else 'the three'))
            out, why = pairs.session(image_used, ref, disk, OUT, sel, machine, npairs, log,
                                     before)
            merge_pairs(runs, out)
            notes += why
            paired.update(w.name for w in sel)
    boot_sel = [w for w in selected if pairs.boot_kinds(w)]
    if boot_sel:
        log('bench: %d pairs of boots for %s' % (npairs, ','.join(w.name for w in boot_sel)))
        merge_pairs(runs, pairs.boot_pairs(image_used, ref, disk, OUT, boot_sel, guarded,
                                           npairs, log, before))
        paired.update(w.name for w in boot_sel)
    micro = W.on_machine(selected, qemu.MICROVM)
    vhost = [w for w in selected if w.kind == 'vhost_read']
    for rep in range(reps if micro or vhost else 0):
        log('bench: unpaired repetition %d of %d (microvm, Python vhost-user-blk)'
            % (rep + 1, reps))
        if ref is not None and micro:
            runs['linux'][rep].update(by_machine('linux', linux_guest.run, ref, disk, micro))
        if image_used is not None:
            unpaired('ours', runs['ours'][rep], image_used, disk, micro, vhost)
        if before is not None:
            unpaired('before', runs['before'][rep], before, disk, micro, vhost)
    if 'ours' in sides and image is None:
        runs['ours'] = [ours_guest.na_all(selected, 'image missing')]
    if ref_error:
        runs['linux'] = [{w.name: {'value': None, 'error': 'reference unavailable', 'na': True}
                          for w in selected}]

    rows = report.summarize(runs, selected, paired)
    text = report.table(rows, reps)
    print()
    print(text)
    if ref_error:
        print(ref_error)
    for note in notes:
        print('bench: note: ' + note)
    load = os.getloadavg()
    if load[1] > 1.5:
        print('bench: note: load average %.1f on %d CPUs while measuring; other work '
              'slows both guests' % (load[1], os.cpu_count()))
    elapsed = time.time() - t_start
    doc = {
        'when': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'host': {'machine': platform.machine(), 'cpus': os.cpu_count(),
                 'python': platform.python_version(),
                 'loadavg_start': load_start, 'loadavg_end': os.getloadavg()},
        'qemu': {'binary': qemu.QEMU, 'flags': qemu.MACHINE_FLAGS,
                 'devices': qemu.devices('DISK', 0)},
        'repetitions': reps, 'pairs': npairs, 'paired': sorted(paired), 'notes': notes,
        'seconds_per_rate_workload': W.SECONDS,
        'workloads': [dict(name=w.name, title=w.title, unit=w.unit, better=w.better,
                           kind=w.kind, **w.params) for w in selected],
        'linux_reference': ref if ref is not None else {'error': ref_error},
        'linux_kernel_cmdline': linux_guest.KERNEL_CMDLINE,
        'linux_scheduler': linux_guest.SCHEDULER,
        'ours_image': image,
        'before_image': before_info,
        'runs': runs, 'rows': rows, 'table': text, 'total_seconds': round(elapsed, 1),
    }
    json_path = os.path.join(OUT, 'results.json')
    report.write_json(json_path, doc)
    png = report.chart(rows, os.path.join(OUT, 'ratios.png'))
    print('\nbench: %s%s; %.0f s in all' % (
        os.path.relpath(json_path, ROOT),
        ', ' + os.path.relpath(png, ROOT) if png else ' (no chart: matplotlib missing)', elapsed))


if __name__ == '__main__':
    main()
