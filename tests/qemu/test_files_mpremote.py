"""mpremote's file commands, unchanged, against the image on a pty with a FAT
disk: fs ls/cat/cp (both ways, -r)/rm/mkdir/rmdir/touch/sha256sum, df, run of
a script importing a module from the disk, mount . (a host folder, importable),
and a main.py copied with fs cp running at the next boot."""
import hashlib
import subprocess
import time

import pytest

from tests.qemu.fsimages import disk, fat_image, fat_read
from tests.qemu.test_mpremote import MPREMOTE, mpremote

pytestmark = pytest.mark.qemu

MiB = 1024 * 1024


@pytest.fixture
def fat_guest(boot, tmp_path):
    img = fat_image(str(tmp_path / 'fat.img'), 8 * MiB)
    g = boot(devices=disk(img), serial='pty')
    g.img = img
    wait_ready(g.pty)
    return g


def wait_ready(pty, tries=10):
    """Right after QEMU creates the pty, opening it can fail with EIO (seen
    once under load): wait until a first mpremote command gets through."""
    for _ in range(tries):
        p = subprocess.run([MPREMOTE, 'connect', pty, 'exec', 'pass'], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail('mpremote could not connect to %s: %s' % (pty, p.stderr[-500:]))


def test_mpremote_fs_commands_on_the_disk(fat_guest, tmp_path):
    pty = fat_guest.pty
    tree = tmp_path / 'tree'
    (tree / 'sub').mkdir(parents=True)
    (tree / 'mod_a.py').write_text('A = "module on the disk"\n')
    (tree / 'sub' / 'b.bin').write_bytes(bytes(range(256)) * 20)
    mpremote(pty, 'fs', 'cp', '-r', str(tree), ':')
    mpremote(pty, 'fs', 'mkdir', ':newdir')
    mpremote(pty, 'fs', 'touch', ':newdir/empty')
    listing = mpremote(pty, 'fs', 'ls', ':')
    assert 'tree/' in listing and 'newdir/' in listing
    assert '5120 b.bin' in mpremote(pty, 'fs', 'ls', ':tree/sub')
    assert mpremote(pty, 'fs', 'cat', ':tree/mod_a.py') == 'A = "module on the disk"\n'
    digest = hashlib.sha256(bytes(range(256)) * 20).hexdigest()
    assert digest in mpremote(pty, 'fs', 'sha256sum', ':tree/sub/b.bin')
    back = tmp_path / 'back'
    mpremote(pty, 'fs', 'cp', '-r', ':tree', str(back))
    assert (back / 'sub' / 'b.bin').read_bytes() == bytes(range(256)) * 20
    mpremote(pty, 'fs', 'rm', ':newdir/empty')
    mpremote(pty, 'fs', 'rmdir', ':newdir')
    assert 'newdir' not in mpremote(pty, 'fs', 'ls', ':')
    df = mpremote(pty, 'df').splitlines()
    assert df[0].split()[-2:] == ['mounted', 'on'] and df[1].split()[-1] == '/'
    assert int(df[1].split()[1]) > 7 * MiB
    script = tmp_path / 'use_disk.py'
    script.write_text('import sys\nsys.path.append("/tree")\nimport mod_a\nprint(mod_a.A)\n')
    assert mpremote(pty, 'run', str(script)) == 'module on the disk\n'
    # What the guest holds, read with mtools after all that.
    assert fat_read(fat_guest.img, 'tree/mod_a.py') == b'A = "module on the disk"\n'


def test_mpremote_mount_makes_a_host_folder_importable(fat_guest, tmp_path, monkeypatch):
    (tmp_path / 'hostmod.py').write_text('H = "from the host folder"\n')
    monkeypatch.chdir(tmp_path)
    out = mpremote(fat_guest.pty, 'mount', '.', 'exec',
                   'import os, hostmod; print(hostmod.H); print(sorted(os.listdir()))')
    assert 'from the host folder' in out
    assert "'hostmod.py'" in out


def test_main_py_copied_with_mpremote_runs_at_next_boot(boot, fat_guest, tmp_path):
    main = tmp_path / 'main.py'
    main.write_text('print("MAIN FROM THE DISK", 6 * 7)\n')
    mpremote(fat_guest.pty, 'fs', 'cp', str(main), ':main.py')
    fat_guest.close()
    g = boot(devices=disk(fat_guest.img))
    assert 'MAIN FROM THE DISK 42' in g.output
