"""Disk images with file systems, built and read on the host: FAT with Debian's
mtools (mformat, mmd, mcopy), checked with dosfstools' fsck.fat; littlefs with
littlefs-python (the same littlefs v2 the image carries). Used by test_files*.py."""
import os
import shutil
import subprocess

import pytest

LFS_BLOCK = 512     # the guest's VfsLfs2 uses the disk's block size


def need(tool):
    path = shutil.which(tool) or ('/usr/sbin/' + tool if os.path.exists('/usr/sbin/' + tool) else None)
    if path is None:
        pytest.fail('%s is missing: run `make setup` (Debian packages mtools, dosfstools)' % tool,
                    pytrace=False)
    return path


def fat_image(path, size, files=(), dirs=()):
    """A FAT image of `size` bytes with dirs (names) and files {name: bytes}."""
    with open(path, 'wb') as f:
        f.truncate(size)
    subprocess.run([need('mformat'), '-i', path, '::'], check=True)
    for d in dirs:
        subprocess.run([need('mmd'), '-i', path, '::/' + d], check=True)
    tmp = path + '.file'
    for name, data in dict(files).items():
        with open(tmp, 'wb') as f:
            f.write(data)
        subprocess.run([need('mcopy'), '-i', path, tmp, '::/' + name], check=True)
    if files:
        os.remove(tmp)
    return path


def fat_read(path, name):
    """A file's bytes, as mcopy gives them back."""
    return subprocess.run([need('mcopy'), '-n', '-i', path, '::/' + name, '-'],
                          check=True, capture_output=True).stdout


def fat_fsck(path):
    """(exit status, report) of `fsck.fat -n` (check only, change nothing)."""
    p = subprocess.run([need('fsck.fat'), '-n', path], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def lfs(path=None, blocks=None):
    """A littlefs-python LittleFS on the image at path (or a new one of `blocks`)."""
    import littlefs
    if path is not None:
        with open(path, 'rb') as f:
            data = bytearray(f.read())
        ctx = littlefs.UserContext(buffer=data)
        return littlefs.LittleFS(context=ctx, block_size=LFS_BLOCK, block_count=len(data) // LFS_BLOCK)
    return littlefs.LittleFS(block_size=LFS_BLOCK, block_count=blocks)


def lfs_image(path, size, files=(), dirs=()):
    fs = lfs(blocks=size // LFS_BLOCK)
    for d in dirs:
        fs.makedirs(d, exist_ok=True)
    for name, data in dict(files).items():
        with fs.open(name, 'wb') as f:
            f.write(data)
    with open(path, 'wb') as f:
        f.write(fs.context.buffer)
    return path


def disk(path, readonly=False):
    """QEMU arguments for one virtio-blk disk on a raw image."""
    return ['-drive', 'file=%s,format=raw,if=none,id=disk0%s' % (path, ',readonly=on' if readonly else ''),
            '-device', 'virtio-blk-pci,drive=disk0']
