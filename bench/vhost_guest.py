"""One boot of our image with virtio-blk served by the Python device (vhost/blk.py) over
vhost-user instead of QEMU's built-in one: the same read workloads, so the table shows the
cost of a device written in Python beside the built-in device's rows of the same run.

The machine is the bench's (qemu.MACHINE_FLAGS), with guest RAM in a shared memfd of the
same size (the back-end maps it) and `vhost-user-blk-pci` where `virtio-blk-pci` was. The
back-end reports where its time went: requests served and microseconds per request spent
in Python (ring walk, preadv into guest memory, used ring), kept in each figure's detail.
"""
import os
import re
import shutil
import sys

import ours_guest
import qemu
import workloads as W

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vhost.launch import Backend, memory_args  # noqa: E402

def machine_mem_mb(flags):
    """The -m of the bench machine, in MiB ('512M' -> 512)."""
    return int(flags[flags.index('-m') + 1].rstrip('M'))


def qemu_args(backend, image, udp_port, flags=None):
    """The bench machine with the built-in virtio-blk (and its -drive) replaced by the
    vhost-user one, and RAM shared."""
    flags = list(qemu.MACHINE_FLAGS if flags is None else flags)
    devs = qemu.devices('UNUSED', udp_port)
    i = devs.index('-drive')
    del devs[i:i + 2]
    i = [k for k, a in enumerate(devs) if a.startswith('virtio-blk-pci')][0]
    del devs[i - 1:i + 1]
    return (flags + memory_args(machine_mem_mb(flags)) + backend.qemu_args() + devs
            + ['-kernel', image])


def as_read(w):
    """The built-in workload's guest call for a vhost_read workload."""
    p = dict(w.params)
    p.pop('builtin')
    return W.Workload(w.name, w.title, w.unit, w.better, 'read', **p)


def device_cost(before, after):
    """{'device_requests', 'device_us_per_request'} between two Backend.stats(), or {}."""
    n = after[0] - before[0]
    if n <= 0:
        return {}
    return {'device_requests': n, 'device_us_per_request': (after[1] - before[1]) * 1e6 / n}


def run(image, master_disk, work_dir, selected, timeout=240, log=print):
    """{name: {'value', 'error', 'detail'}} for the selected vhost_read workloads."""
    todo = [as_read(w) for w in selected if w.kind == 'vhost_read']
    if not todo:
        return {}
    disk = os.path.join(work_dir, 'vhost-disk.img')
    shutil.copyfile(master_disk, disk)
    texts = []
    costs = {}
    try:
        with Backend('blk', ['--image', disk, '--serial', 'benchdisk', '--quiet'],
                     python=sys.executable) as be:
            with qemu.Qemu(qemu_args(be, image, qemu.free_udp_port()), timeout) as q:
                q.expect(re.escape(ours_guest.READY), 60)
                repl = ours_guest.RawRepl(q)
                repl.enter()
                out, err = repl.run(ours_guest.guest_source('ours_blk.py') + '\nblk = find_blk()\n')
                if err:
                    raise RuntimeError('guest bench code failed: %s' % err.strip().splitlines()[-1])
                for w in todo:
                    before = be.stats()
                    texts.append(ours_guest.run_workload(repl, w))
                    costs[w.name] = device_cost(before, be.stats())
                repl.start('import x86\nx86.poweroff()\n')
                try:
                    q.wait_exit(10)
                except qemu.Timeout:
                    pass
    finally:
        os.remove(disk)
    parsed = W.parse_output('\n'.join(texts))
    results = {}
    for w in todo:
        entry = parsed.get(w.name)
        if entry is not None and entry.get('error'):
            results[w.name] = {'value': None, 'error': entry['error']}
            continue
        value, err = W.disk_figure(w, entry and entry['result'])
        detail = dict(entry['result']) if entry and entry['result'] else {}
        detail.update(costs.get(w.name, {}))
        results[w.name] = {'value': value, 'error': err, 'detail': detail}
    return results


def merge(res, vres, selected):
    """Put one vhost boot's results (from run.guarded) into the same repetition's 'ours'."""
    for k, v in vres.items():
        if not k.startswith('_'):
            res[k] = v
    if '_failed' in vres:
        for w in selected:
            if w.kind == 'vhost_read':
                res[w.name] = {'value': None, 'error': 'boot failed: ' + vres['_failed']}
    return res
