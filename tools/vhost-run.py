#!/usr/bin/env python3
"""Run QEMU with a Python vhost-user device in place of QEMU's own one.

    tools/vhost-run.py rng|blk|net [--seed N] [--misbehave X] [--after N] -- QEMU ARGS...

Takes the whole QEMU command line (as `make run` or tools/run builds it),
starts the back-end (python -m vhost), rewrites the command line:
  rng: drops `-device virtio-rng-pci...`, adds vhost-user-rng-pci;
  blk: drops `-device virtio-blk-pci...` and its `-drive`, serves that
       drive's file= from Python through vhost-user-blk-pci;
  net: drops `-device virtio-net-pci...` and its `-netdev`: the guest's cable
       leads to a Python host at 10.0.2.2 (ARP, ping) through -netdev vhost-user;
  and backs guest RAM (-m) with a shared memfd. Then runs QEMU on this
terminal and stops the back-end when QEMU ends, whatever happened. Exits
with QEMU's status.
"""

import argparse
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vhost.launch import Backend, BackendError, memory_args  # noqa: E402

BUILTIN = {'rng': 'virtio-rng-pci', 'blk': 'virtio-blk-pci', 'net': 'virtio-net-pci'}


def option_value(opts, key):
    for part in opts.split(','):
        if part.startswith(key + '='):
            return part[len(key) + 1:]
    return None


def rewrite(device, qemu):
    """(QEMU args without the built-in device, the blk image or None, -m in MiB)."""
    out, image, mem, drive_id, netdev_id = [], None, 128, None, None
    i = 0
    while i < len(qemu):
        a = qemu[i]
        val = qemu[i + 1] if i + 1 < len(qemu) else ''
        if a == '-device' and val.split(',')[0] == BUILTIN[device]:
            drive_id = option_value(val, 'drive')
            netdev_id = option_value(val, 'netdev')
            i += 2
            continue
        if a == '-m':
            mem = int(val.rstrip('M'))
        out.append(a)
        i += 1
    if device == 'net' and netdev_id is not None:
        out = [a for k, a in enumerate(out)
               if not (a == '-netdev' and option_value(out[k + 1], 'id') == netdev_id)
               and not (k and out[k - 1] == '-netdev'
                        and option_value(a, 'id') == netdev_id)]
    if device == 'blk':
        if drive_id is None:
            raise SystemExit('vhost-run: no -device virtio-blk-pci,drive=... to replace')
        kept = []
        i = 0
        while i < len(out):
            if out[i] == '-drive' and option_value(out[i + 1], 'id') == drive_id:
                image = option_value(out[i + 1], 'file')
                i += 2
                continue
            kept.append(out[i])
            i += 1
        out = kept
        if image is None:
            raise SystemExit('vhost-run: drive %s has no file= to serve' % drive_id)
    return out, image, mem


def main():
    argv = sys.argv[1:]
    if '--' not in argv:
        raise SystemExit(__doc__)
    cut = argv.index('--')
    p = argparse.ArgumentParser(prog='tools/vhost-run.py')
    p.add_argument('device', choices=sorted(BUILTIN))
    args, backend_args = p.parse_known_args(argv[:cut])
    qemu, image, mem = rewrite(args.device, argv[cut + 1:])
    if image is not None:
        backend_args += ['--image', image]
    try:
        backend = Backend(args.device, backend_args).start()
    except BackendError as e:
        print('vhost-run: %s' % e, file=sys.stderr)
        return 1
    # Ctrl-C belongs to the guest (QEMU's terminal is raw) or to QEMU: not
    # to us, so the clean-up below always runs. SIGTERM/SIGHUP: stop QEMU.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proc = None

    def stop(signum, frame):
        if proc is not None and proc.poll() is None:
            proc.terminate()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        cmd = qemu + memory_args(mem) + backend.qemu_args()
        print('vhost-run: Python %s device on %s (its errors are shown when QEMU ends)'
              % (args.device, backend.socket), file=sys.stderr)
        proc = subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                       signal.SIG_DFL))
        status = proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        backend.close()
        # Only what went wrong: errors the back-end saw, rings it stopped.
        for line in backend.log.splitlines():
            if 'error' in line or 'stopped' in line or 'Traceback' in line:
                sys.stderr.write('vhost-run: back-end said: %s\n' % line)
    return status


if __name__ == '__main__':
    sys.exit(main())
