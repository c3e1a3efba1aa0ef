"""`make bench`: our drivers against a Linux guest on the same QEMU, side by side (issue #7).

    .venv/bin/python bench/run.py

Each repetition measures, in this order: the host's page-cache ceiling, one boot of the Linux
reference guest, one boot of our image; all three use the same 256 MiB pattern image (a
fresh copy per boot). Then the table is printed and written with every run to
build/bench/results.json, and the ratios are drawn in build/bench/ratios.png.

Environment:
    BENCH_REPS=3            repetitions (boots per guest)
    BENCH_ONLY=a,b          only these workloads (names from bench/workloads.py)
    BENCH_SIDES=ours,linux  which guests to boot
    BENCH_SECONDS=2         length of each request-rate workload
    BENCH_FIRMWARE=path     our image (default: the newest build/**/firmware.elf)
"""
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import linux_guest  # noqa: E402
import linuxref  # noqa: E402
import ours_guest  # noqa: E402
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
        if w.kind != 'read':
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


def main():
    t_start = time.time()
    load_start = os.getloadavg()
    os.makedirs(OUT, exist_ok=True)
    reps = int(os.environ.get('BENCH_REPS', '3'))
    only = [x for x in os.environ.get('BENCH_ONLY', '').split(',') if x]
    selected = [w for w in W.WORKLOADS if not only or w.name in only]
    sides = os.environ.get('BENCH_SIDES', 'ours,linux').split(',')
    unknown = [x for x in only if x not in W.BY_NAME]
    if unknown:
        sys.exit('bench: unknown workload(s) %s; known: %s'
                 % (','.join(unknown), ','.join(W.BY_NAME)))

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

    runs = {'ours': [], 'linux': [], 'host': []}
    for rep in range(reps):
        log('bench: repetition %d of %d' % (rep + 1, reps))
        runs['host'].append(host_run(helper, disk, selected))
        if ref is not None:
            res = by_machine('linux', linux_guest.run, ref, disk, selected)
            runs['linux'].append(res)
            log('  linux: %.1f s' % res['_seconds'])
        if 'ours' in sides:
            if image is None:
                res = ours_guest.na_all(selected, 'image missing')
            else:
                res = by_machine('ours', ours_guest.run, image_used, disk, selected)
                log('  ours: %.1f s' % res['_seconds'])
                if any(w.kind == 'vhost_read' for w in selected):
                    # The same image, blk served by the Python device (vhost-user).
                    vres = guarded('ours-vhost', vhost_guest.run, image_used, disk, OUT, selected)
                    log('  ours, Python vhost-user-blk: %.1f s' % vres['_seconds'])
                    vhost_guest.merge(res, vres, selected)
            runs['ours'].append(res)
    for side in ('linux', 'ours'):
        for res in runs[side]:
            if '_failed' in res:
                for w in selected:
                    res.setdefault(w.name, {'value': None, 'error': 'boot failed: ' + res['_failed']})
    if ref_error:
        runs['linux'] = [{w.name: {'value': None, 'error': 'reference unavailable', 'na': True}
                          for w in selected}]

    rows = report.summarize(runs, selected)
    text = report.table(rows, reps)
    print()
    print(text)
    if ref_error:
        print(ref_error)
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
        'repetitions': reps, 'seconds_per_rate_workload': W.SECONDS,
        'workloads': [dict(name=w.name, title=w.title, unit=w.unit, better=w.better,
                           kind=w.kind, **w.params) for w in selected],
        'linux_reference': ref if ref is not None else {'error': ref_error},
        'linux_kernel_cmdline': linux_guest.KERNEL_CMDLINE,
        'linux_scheduler': linux_guest.SCHEDULER,
        'ours_image': image,
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
