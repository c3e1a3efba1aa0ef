# The disk at boot (docs/files.md). boot.py (at power-on, before a SCRIPT)
# and main.c (after every reset) call mount_root(); it acts once per reset:
#
# 1. The first virtio-blk disk is mounted at / when it holds a FAT or a
#    littlefs file system (os.mount of a block device tries both); a blank
#    or foreign disk is left alone, untouched.
# 2. True is returned when main.c should then run /boot.py and /main.py
#    from it, as every MicroPython board does, unless the machine was
#    started in safe mode (make run SAFE=1: the fw_cfg item opt/safe-mode),
#    the way back in when a main.py locks the REPL out.
#
# The disk stays the driver's: virtio.find('blk') returns the same device.
# (A new virtio.probe() would take the device from under the mount.)
import os
import x86
import fwcfg

SAFE_MODE_FILE = "opt/safe-mode"
ENODEV = 19

_result = []    # mount_root()'s answer, once per reset (modules are reloaded)


def safe_mode():
    return fwcfg.read_file(x86, SAFE_MODE_FILE) is not None


def first_disk():
    """The first virtio-blk device, or None."""
    try:
        import virtio
        return virtio.find("blk")
    except Exception:
        return None


def mount_root():
    if not _result:
        _result.append(_mount_root())
    return _result[0]


def _mount_root():
    disk = first_disk()
    if disk is None:
        return False
    try:
        os.mount(disk, "/")
    except OSError as e:
        if e.errno != ENODEV:
            print("fsboot: the disk was not mounted: %r" % e)
        return False
    if safe_mode():
        print("fsboot: safe mode: boot.py and main.py not run")
        return False
    return True
