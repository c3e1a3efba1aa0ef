#!/usr/bin/env python3
"""Where the guest's instructions go while it runs one Python statement: a flat profile
of the image's C functions (the bytecode interpreter, map lookups, the allocator, ...)
and of native (viper) code, per run of the statement.

    .venv/bin/python tools/guest-profile.py [--setup FILE] [-n RUNS] [--top K]
                                            [--callers FUNC]... STATEMENT

It boots the image with make run's devices (a scratch disk), runs the setup code, runs
STATEMENT RUNS times once to warm up, then again with QEMU logging every translation
block it executes (`log exec,nochain` through the monitor, only around that loop). Each
block is counted as the instructions from its start to the first jump, call or return
(objdump of build/x86_virt/firmware.debug.elf), and given to the function of the symbol
table it lies in; code outside the image is native code the guest compiled (viper).
--callers names the functions that called FUNC and how many times, per run.

An estimate, good for "where does it go" and for before/after comparisons of the same
statement; the instruction counts of docs/performance.md (-icount) are the measure.
Example (docs/performance.md has more):

    .venv/bin/python tools/guest-profile.py --setup tools/profiles/blk_read.py -n 50 'rd()'
"""
import argparse
import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEBUG_ELF = os.path.join(ROOT, 'build', 'x86_virt', 'firmware.debug.elf')
NATIVE = 'native code (viper)'
BLOCK_LIMIT = 512               # QEMU ends a translation block after this many instructions
TRACE = re.compile(r'Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/')
INSN = re.compile(r'\s+([0-9a-f]+):\s+(\S+)')


# Logging every translation block slows the guest down ~50x: a whole probe() takes
# tens of seconds.
RUN_TIMEOUT_S = 600

def block_pcs(lines):
    """The guest addresses of the blocks in a `-d exec` log, in order."""
    out = []
    for line in lines:
        m = TRACE.match(line)
        if m:
            out.append(int(m.group(1), 16))
    return out


def ends_block(op):
    return (op.startswith(('j', 'call', 'ret', 'lret', 'iret', 'loop', 'rep'))
            or op in ('hlt', 'int', 'int3', 'sysenter', 'syscall'))


class Image:
    """Functions and instruction boundaries of the image, from `nm -n` and `objdump -d`."""

    def __init__(self, nm_text, objdump_text):
        self.syms = []
        for line in nm_text.splitlines():
            p = line.split()
            if len(p) == 3 and p[1] in 'tTwW':
                self.syms.append((int(p[0], 16), p[2]))
        self.syms.sort()
        self.addrs = [a for a, _ in self.syms]
        self.entries = dict(self.syms)
        self.insns = []
        for line in objdump_text.splitlines():
            m = INSN.match(line)
            if m:
                self.insns.append((int(m.group(1), 16), ends_block(m.group(2))))
        self.insn_addrs = [a for a, _ in self.insns]
        self._sizes = {}

    @classmethod
    def load(cls, elf):
        run = lambda *a: subprocess.run(a, capture_output=True, text=True, check=True).stdout
        return cls(run('nm', '-n', elf), run('objdump', '-d', '--no-show-raw-insn', elf))

    def block_size(self, pc):
        """Instructions in the block that starts at pc, or None outside the image."""
        if pc in self._sizes:
            return self._sizes[pc]
        i = bisect.bisect_left(self.insn_addrs, pc)
        n = None
        if i < len(self.insns) and self.insns[i][0] == pc:
            n = 0
            while i < len(self.insns) and n < BLOCK_LIMIT:
                n += 1
                if self.insns[i][1]:
                    break
                i += 1
        self._sizes[pc] = n
        return n

    def function(self, pc):
        if self.block_size(pc) is None:
            return NATIVE
        i = bisect.bisect_right(self.addrs, pc) - 1
        return self.syms[i][1] if i >= 0 else '?'


def flat(image, pcs, runs, native_block=6):
    """[(instructions per run, function)], most first. A native block counts as
    native_block instructions (its code is not in the image to measure)."""
    per = collections.Counter()
    for pc in pcs:
        per[image.function(pc)] += image.block_size(pc) or native_block
    return sorted(((n / runs, f) for f, n in per.items()), reverse=True)


def callers(image, pcs, func, runs):
    """[(calls per run, calling function)] of func: the function of the block that ran
    just before each entry into func."""
    per = collections.Counter()
    for k in range(1, len(pcs)):
        if image.entries.get(pcs[k]) == func:
            per[image.function(pcs[k - 1])] += 1
    return sorted(((n / runs, f) for f, n in per.items()), reverse=True)


def record(setup, statement, runs, log, image_path=None, packed=False):
    """Boot, run setup, then statement `runs` times twice (warm, then logged).
    packed: every device started with packed=on (packed rings, spec 2.8)."""
    from tests.qemu.harness import Guest, default_devices
    disk = os.path.join(os.path.dirname(log), 'disk.img')
    with open(disk, 'wb') as f:
        f.truncate(64 << 20)
    devices = default_devices(disk)
    if packed:
        devices = [d + ',packed=on' if d.startswith('virtio-') else d for d in devices]
    g = Guest(image=image_path, mem=256, qmp=True, extra_args=['-D', log], devices=devices)
    try:
        g.start()
        g.exec(setup)
        g.exec('def _profile_runs():\n    for _ in range(%d):\n        %s\n' % (runs, statement))
        g.exec('_profile_runs()', timeout=RUN_TIMEOUT_S)
        monitor = lambda line: g.qmp('human-monitor-command', **{'command-line': line})
        monitor('log exec,nochain')
        g.exec('_profile_runs()', timeout=RUN_TIMEOUT_S)
        monitor('log none')
    finally:
        g.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('statement')
    ap.add_argument('--setup', help='a file of guest code to run first')
    ap.add_argument('-n', '--runs', type=int, default=20)
    ap.add_argument('--top', type=int, default=25)
    ap.add_argument('--callers', action='append', default=[], metavar='FUNC')
    ap.add_argument('--packed', action='store_true', help='devices with packed=on')
    ap.add_argument('--image', help='the image to boot (default: the build\'s)')
    ap.add_argument('--elf', default=DEBUG_ELF, help='its unstripped ELF')
    a = ap.parse_args(argv)
    if not os.path.exists(a.elf):
        sys.exit('no %s: run `make build`' % a.elf)
    setup = open(a.setup).read() if a.setup else ''
    with tempfile.TemporaryDirectory(prefix='profile-') as tmp:
        log = os.path.join(tmp, 'exec.log')
        record(setup, a.statement, a.runs, log, a.image, a.packed)
        with open(log, errors='replace') as f:
            pcs = block_pcs(f)
    image = Image.load(a.elf)
    rows = flat(image, pcs, a.runs)
    total = sum(n for n, _ in rows)
    print('%d runs of %s: ~%.0f guest instructions each' % (a.runs, a.statement, total))
    for n, f in rows[:a.top]:
        print('%9.0f %5.1f%%  %s' % (n, 100 * n / total, f))
    for func in a.callers:
        print('\ncalls of %s per run, by caller:' % func)
        for n, f in callers(image, pcs, func, a.runs)[:12]:
            print('%9.1f  %s' % (n, f))


if __name__ == '__main__':
    main()
