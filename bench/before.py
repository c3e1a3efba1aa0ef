"""BENCH_BEFORE: the image a run compares ours with ("before"), in the same run.

The machine's speed drifts within the hour, so an old image's figures from another run say
nothing about a change; the before image is booted beside ours and Linux and runs every
paired step in every pair (bench/pairs.py). BENCH_BEFORE is either a firmware.elf or a git
revision of this repository. A revision is built once: `git worktree add --detach` under
build/bench/before-<sha>/src (never a stash: the checkout being measured stays as it is),
`make build` there, the ELF kept as build/bench/before-<sha>/firmware.elf and the worktree
removed. A later run with the same revision uses that ELF without building.
"""
import glob
import os
import re
import shutil
import subprocess

SHORT = 12                        # hex digits of the revision in the cache folder's name
ELF_MAGIC = b'\x7fELF'
# make's own variables from the `make bench` that runs us: the inner `make build` of the
# old revision must not inherit its job server or its command-line variables.
MAKE_ENV = ('MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES')
# make's own "make: *** [Makefile:2: build] Error 2": the line before it says why.
DEBUG_ELF = 'firmware.debug.elf'
MAKE_STOP = re.compile(r'^make(\[\d+\])?: \*\*\* ')


class BeforeUnavailable(Exception):
    pass


def resolve(spec, root, out_dir, log=print, build=None):
    """(path of the before image, full revision or None for a file). build(src, log_path)
    builds a checked-out revision and returns its ELF (default: make_build)."""
    if os.path.isfile(spec):
        with open(spec, 'rb') as f:
            if f.read(4) != ELF_MAGIC:
                raise BeforeUnavailable('BENCH_BEFORE=%s is not an ELF file' % spec)
        return os.path.abspath(spec), None
    sha = revision(spec, root)
    return cached_build(sha, root, out_dir, log, build or make_build), sha


def revision(spec, root):
    p = subprocess.run(['git', '-C', root, 'rev-parse', '--verify', '--quiet',
                        spec + '^{commit}'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode or not spec:
        raise BeforeUnavailable('BENCH_BEFORE=%s is neither a file nor a git revision of %s'
                                % (spec, root))
    return p.stdout.decode().strip()


def cache_dir(out_dir, sha):
    return os.path.join(out_dir, 'before-' + sha[:SHORT])


def cached_build(sha, root, out_dir, log, build):
    """The ELF of revision sha, built in a worktree the first time."""
    d = cache_dir(out_dir, sha)
    elf = os.path.join(d, 'firmware.elf')
    if os.path.exists(elf):
        log('bench: before image %s (revision %s, cached)' % (os.path.relpath(elf, root), sha[:SHORT]))
        return elf
    os.makedirs(d, exist_ok=True)
    src = os.path.join(d, 'src')
    remove_worktree(root, src)            # what an interrupted build left
    # -f: a worktree still registered there whose folder is gone is replaced.
    git(root, 'worktree', 'add', '-f', '--detach', src, sha)
    log('bench: building the before image (revision %s) in %s' % (sha[:SHORT],
                                                                   os.path.relpath(src, root)))
    try:
        built = build(src, os.path.join(d, 'build.log'))
        # The unstripped twin too, when the build made one: tools/guest-profile.py
        # --image/--elf profiles the before image with it.
        debug = os.path.join(os.path.dirname(built), DEBUG_ELF)
        if os.path.exists(debug):
            shutil.copyfile(debug, os.path.join(d, DEBUG_ELF))
        tmp = elf + '.part'
        shutil.copyfile(built, tmp)
        os.replace(tmp, elf)              # a build cut short leaves no cached ELF
    except BeforeUnavailable as e:
        raise BeforeUnavailable('revision %s does not build: %s' % (sha[:SHORT], e))
    finally:
        remove_worktree(root, src)
    return elf


def make_build(src, log_path):
    """`make build` in the checked-out revision; the ELF it made."""
    env = dict((k, v) for k, v in os.environ.items() if k not in MAKE_ENV)
    with open(log_path, 'w') as f:
        p = subprocess.run(['make', 'build'], cwd=src, stdout=f, stderr=subprocess.STDOUT,
                           env=env)
    if p.returncode:
        with open(log_path, errors='replace') as f:
            lines = [l.strip() for l in f if l.strip() and not MAKE_STOP.match(l)]
        last = (lines or ['(no output)'])[-1]
        raise BeforeUnavailable('make build failed (exit %d): %s (the whole log: %s)'
                                % (p.returncode, last[:200], log_path))
    found = sorted(glob.glob(os.path.join(src, 'build', '**', 'firmware.elf'), recursive=True),
                   key=os.path.getmtime)
    if not found:
        raise BeforeUnavailable('make build made no build/**/firmware.elf (log: %s)' % log_path)
    return found[-1]


def git(root, *args):
    p = subprocess.run(['git', '-C', root] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    if p.returncode:
        raise BeforeUnavailable('git %s failed: %s' % (' '.join(args),
                                                       p.stderr.decode(errors='replace').strip()))
    return p.stdout.decode()


def remove_worktree(root, src):
    """Unregister and delete the build worktree (its .venv and build/ with it)."""
    subprocess.run(['git', '-C', root, 'worktree', 'remove', '--force', src],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.path.exists(src):
        shutil.rmtree(src)
