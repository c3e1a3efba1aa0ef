"""The Linux reference guest: built once from Debian packages, cached in build/linux-ref/.

    kernel      linux-image-<abi>-amd64 (the package linux-image-amd64 depends on), fetched
                with `apt-get download`, unpacked with `dpkg-deb -x`, never installed
    initramfs   busybox-static, the virtio modules with their dependencies (read from each
                module's .modinfo, since the package ships no modules.dep), the static
                helper bench/helper/bhelper.c, and /init (below)

/init mounts proc/sys/dev, loads the modules, waits until every virtio PCI function has a
driver bound, brings eth0 up as 10.0.2.15, prints `BENCH READY`, runs /etc/bench.sh (a
per-run script appended as a second cpio archive: with_script), and powers off.

A missing package or tool stops the build with one line (ReferenceUnavailable); run.py
then prints our own figures without the Linux column.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time

import cpio

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
HELPER_SRC = os.path.join(BENCH_DIR, 'helper', 'bhelper.c')

# What the four bench devices need; their dependencies are added from .modinfo.
WANTED_MODULES = ['virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'virtio_rng']
OPTIONAL_MODULES = ['virtio_mmio']       # for microvm, when the kernel has it as a module

# For the file workloads (vfat on the second disk), loaded when the kernel package has
# them as modules; a kernel without vfat gives those workloads an error, not a failed build.
FS_MODULES = ['vfat', 'nls_cp437', 'nls_utf8', 'nls_iso8859_1', 'nls_ascii']

# busybox applets the scripts call, linked into /bin.
APPLETS = ['sh', 'mount', 'insmod', 'ip', 'ping', 'poweroff', 'cat', 'echo', 'cut', 'sleep',
           'usleep', 'ls', 'grep', 'dd', 'sync', 'uname', 'head', 'sed', 'nc', 'true',
           'wc', 'mkdir', 'printf', 'httpd']

INIT = r'''#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read up idle < /proc/uptime
echo "BENCH INIT uptime=$up"
# Each module with its parameters from the kernel command line, as modprobe would
# (virtio_mmio.device=... on microvm).
while read m; do
  args=""
  for w in $(cat /proc/cmdline); do case $w in $m.*) args="$args ${w#$m.}";; esac; done
  insmod /lib/modules/$m.ko $args || echo "BENCH ERROR insmod $m"
done < /etc/modules
ip link set lo up
# Ready: every virtio PCI function (vendor 0x1af4) and virtio-mmio device has a
# virtio driver bound.
want=0
for v in /sys/bus/pci/devices/*/vendor; do [ "$(cat $v)" = 0x1af4 ] && want=$((want+1)); done
# virtio-mmio windows the driver took (LNRO0005:nn from ACPI, virtio-mmio.n from the
# command line; empty slots are refused by its probe).
for d in /sys/bus/platform/drivers/virtio-mmio/*[:.]*; do [ -e $d ] && want=$((want+1)); done
n=0
while :; do
  bound=0
  for d in /sys/bus/virtio/devices/*; do [ -e $d/driver ] && bound=$((bound+1)); done
  [ $bound -ge $want ] && [ -b /dev/vda ] && [ -e /sys/class/net/eth0 ] && break
  n=$((n+1))
  if [ $n -gt 5000 ]; then echo "BENCH ERROR devices not ready: $bound of $want"; break; fi
  usleep 1000
done
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
read up idle < /proc/uptime
echo "BENCH READY uptime=$up virtio=$bound/$want"
[ -f /etc/bench.sh ] && . /etc/bench.sh
echo "BENCH DONE"
poweroff -f
'''


class ReferenceUnavailable(Exception):
    """The reference guest cannot be built here; str() is one line saying why."""


def _run(cmd, cwd=None):
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=600)
    except FileNotFoundError:
        raise ReferenceUnavailable('%s is not installed' % cmd[0])
    except subprocess.TimeoutExpired:
        raise ReferenceUnavailable('%s took more than 10 minutes' % ' '.join(cmd[:2]))
    if p.returncode != 0:
        last = (p.stderr or p.stdout).decode(errors='replace').strip().splitlines()
        raise ReferenceUnavailable('%s failed: %s' % (' '.join(cmd[:3]),
                                                      last[-1] if last else 'exit %d' % p.returncode))
    return p.stdout.decode(errors='replace')


def parse_apt_depends(text, prefix='linux-image-'):
    """The versioned kernel package from `apt-cache depends linux-image-amd64` output."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('Depends:'):
            name = line.split(':', 1)[1].strip()
            if name.startswith(prefix) and name[len(prefix):len(prefix) + 1].isdigit():
                return name
    return None


def resolve_kernel_package():
    try:
        name = parse_apt_depends(_run(['apt-cache', 'depends', 'linux-image-amd64']))
    except ReferenceUnavailable:
        name = None
    if name is None and os.geteuid() == 0:
        # A fresh machine may have no package lists yet.
        _run(['apt-get', 'update', '-qq'])
        name = parse_apt_depends(_run(['apt-cache', 'depends', 'linux-image-amd64']))
    if name is None:
        raise ReferenceUnavailable('apt-cache knows no linux-image-amd64 dependency '
                                   '(run apt-get update?)')
    return name


def modinfo(path):
    """The .modinfo strings of a kernel module (ELF64 little-endian) as a dict."""
    with open(path, 'rb') as f:
        elf = f.read()
    if elf[:4] != b'\x7fELF' or elf[4] != 2 or elf[5] != 1:
        raise ValueError('%s is not an ELF64 little-endian module' % path)
    shoff, = struct.unpack_from('<Q', elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', elf, 0x3a)

    def section(i):
        off = shoff + i * shentsize
        name, _type, _flags, _addr, offset, size = struct.unpack_from('<IIQQQQ', elf, off)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = elf.index(b'\0', stroff + name)
        if elf[stroff + name:end] == b'.modinfo':
            info = {}
            for item in elf[offset:offset + size].split(b'\0'):
                if b'=' in item:
                    k, v = item.decode(errors='replace').split('=', 1)
                    info.setdefault(k, v)
            return info
    raise ValueError('%s has no .modinfo section' % path)


def module_order(wanted, depends):
    """Load order: each module after its dependencies. depends: name -> [names]."""
    order, state = [], {}

    def visit(m, chain):
        if state.get(m) == 'done':
            return
        if state.get(m) == 'visiting':
            raise ValueError('module dependency cycle: %s' % ' -> '.join(chain + [m]))
        if m not in depends:
            raise ValueError('module %s not found (needed by %s)' % (m, chain[-1] if chain else 'bench'))
        state[m] = 'visiting'
        for d in depends[m]:
            visit(d, chain + [m])
        state[m] = 'done'
        order.append(m)

    for m in wanted:
        visit(m, [])
    return order


def find_modules(root):
    """name -> path of every .ko under root (names with '-' as '_', as the kernel does)."""
    found = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith('.ko'):
                found[f[:-3].replace('-', '_')] = os.path.join(d, f)
    return found


def builtin_modules(modroot):
    path = os.path.join(modroot, 'modules.builtin')
    names = set()
    if os.path.exists(path):
        for line in open(path):
            names.add(os.path.basename(line.strip())[:-3].replace('-', '_'))
    return names


def recipe_hash():
    h = hashlib.sha256()
    for part in (INIT, ' '.join(WANTED_MODULES + OPTIONAL_MODULES), ' '.join(FS_MODULES),
                 ' '.join(APPLETS)):
        h.update(part.encode())
    with open(HELPER_SRC, 'rb') as f:
        h.update(f.read())
    return h.hexdigest()[:16]


def build_helper(out):
    _run(['gcc', '-static', '-O2', '-Wall', '-o', out, HELPER_SRC])
    return out


def build(cache_dir, log=print):
    """Build (or reuse) the reference guest; return its info dict (paths, versions, sizes)."""
    info_path = os.path.join(cache_dir, 'info.json')
    recipe = recipe_hash()
    if os.path.exists(info_path):
        info = json.load(open(info_path))
        if info.get('recipe') == recipe and all(
                os.path.exists(info[k]) for k in ('kernel', 'initramfs', 'helper')):
            info['cached'] = True
            return info
    t0 = time.time()
    os.makedirs(cache_dir, exist_ok=True)
    debs = os.path.join(cache_dir, 'debs')
    os.makedirs(debs, exist_ok=True)
    os.chmod(debs, 0o755)  # apt's _apt user writes the download there
    kpkg = resolve_kernel_package()
    have = os.listdir(debs)
    download = 0
    need = [p for p in (kpkg, 'busybox-static')
            if not any(f.startswith(p.replace('+', '%2b') + '_') or f.startswith(p + '_') for f in have)]
    if need:
        log('linux-ref: apt-get download %s' % ' '.join(need))
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            os.chmod(tmp, 0o755)
            _run(['apt-get', 'download'] + need, cwd=tmp)
            for f in os.listdir(tmp):
                download += os.path.getsize(os.path.join(tmp, f))
                shutil.move(os.path.join(tmp, f), os.path.join(debs, f))
    root = os.path.join(cache_dir, 'root')
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    versions = {}
    for f in sorted(os.listdir(debs)):
        if f.startswith(kpkg + '_') or f.startswith('busybox-static_'):
            _run(['dpkg-deb', '-x', os.path.join(debs, f), root])
            versions[f.split('_')[0]] = f.split('_')[1].replace('%3a', ':')
    abi = kpkg[len('linux-image-'):]
    vmlinuz = os.path.join(root, 'boot', 'vmlinuz-' + abi)
    modroot = os.path.join(root, 'lib', 'modules', abi)
    busybox = os.path.join(root, 'bin', 'busybox')
    for p in (vmlinuz, modroot, busybox):
        if not os.path.exists(p):
            raise ReferenceUnavailable('the packages lack %s' % os.path.relpath(p, root))

    # virtio_mmio.device= on the command line (how QEMU's microvm with acpi=off lists
    # its devices) needs CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES; Debian's 6.1 kernel lacks it.
    config = os.path.join(root, 'boot', 'config-' + abi)
    mmio_cmdline = (os.path.exists(config)
                    and 'CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y' in open(config).read())
    kos = find_modules(modroot)
    builtin = builtin_modules(modroot)
    depends = {}
    for name, path in kos.items():
        if name.startswith('virtio') or 'failover' in name or name == 'fat' or name in FS_MODULES:
            dep = modinfo(path).get('depends', '')
            depends[name] = [d.replace('-', '_') for d in dep.split(',') if d and d not in builtin]
    wanted = [m for m in WANTED_MODULES if m not in builtin]
    wanted += [m for m in OPTIONAL_MODULES if m not in builtin and m in kos]
    wanted += [m for m in FS_MODULES if m in kos and m not in builtin]
    order = module_order(wanted, depends)

    helper = build_helper(os.path.join(cache_dir, 'bhelper'))
    w = cpio.Writer()
    for d in ('bin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'lib', 'lib/modules'):
        w.dir(d)
    w.chardev('dev/console', 5, 1)
    w.file('bin/busybox', open(busybox, 'rb').read(), 0o755)
    for a in APPLETS:
        w.symlink('bin/' + a, 'busybox')
    w.file('bin/bhelper', open(helper, 'rb').read(), 0o755)
    for m in order:
        w.file('lib/modules/%s.ko' % m, open(kos[m], 'rb').read())
    w.file('etc/modules', ''.join(m + '\n' for m in order).encode())
    w.file('init', INIT.encode(), 0o755)
    initramfs = os.path.join(cache_dir, 'initramfs.cpio')
    with open(initramfs, 'wb') as f:
        f.write(w.bytes())
    kernel = os.path.join(cache_dir, 'vmlinuz')
    shutil.copyfile(vmlinuz, kernel)
    info = {
        'recipe': recipe, 'kernel': kernel, 'initramfs': initramfs, 'helper': helper,
        'kernel_package': kpkg, 'versions': versions, 'modules': order,
        'virtio_mmio_cmdline': mmio_cmdline,
        'download_bytes': download or sum(os.path.getsize(os.path.join(debs, f)) for f in os.listdir(debs)),
        'downloaded_now': bool(need), 'initramfs_bytes': os.path.getsize(initramfs),
        'build_seconds': round(time.time() - t0, 2),
    }
    shutil.rmtree(root, ignore_errors=True)
    with open(info_path, 'w') as f:
        json.dump(info, f, indent=1)
    info['cached'] = False
    return info


def with_script(base_initramfs, script, out):
    """Write out = the base archive followed by one holding /etc/bench.sh."""
    w = cpio.Writer()
    w.file('etc/bench.sh', script.encode(), 0o755)
    with open(base_initramfs, 'rb') as f:
        base = f.read()
    with open(out, 'wb') as f:
        f.write(base)
        f.write(w.bytes())
    return out
