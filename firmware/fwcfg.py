# QEMU's firmware configuration device (fw_cfg), read through its I/O ports.
#
# QEMU hands the guest named blobs with it; `make run SCRIPT=x.py` uses it to
# deliver a user's script: -fw_cfg name=opt/script,file=x.py. The interface
# (QEMU docs/specs/fw_cfg.rst): write a 16-bit key to the selector port, then
# read the item's bytes one at a time from the data port. Multi-byte fields
# of the file directory are big-endian.
#
# Runs on the target with hw = the x86 module, or on the host with any object
# that has inb/outw (see docs/hardware-interface.md).

FW_CFG_PORT_SEL = 0x510
FW_CFG_PORT_DATA = 0x511

FW_CFG_SIGNATURE = 0x0000
FW_CFG_FILE_DIR = 0x0019

FILE_ENTRY_SIZE = 64        # be32 size, be16 select, be16 reserved, char name[56]
FILE_NAME_SIZE = 56


def _read(hw, key, n):
    # Selecting a key rewinds its data to offset 0.
    hw.outw(FW_CFG_PORT_SEL, key)
    data = bytearray(n)
    for i in range(n):
        data[i] = hw.inb(FW_CFG_PORT_DATA)
    return data


def present(hw):
    """True when the machine has a fw_cfg device (its signature reads 'QEMU')."""
    return bytes(_read(hw, FW_CFG_SIGNATURE, 4)) == b"QEMU"


def files(hw):
    """The file directory: {name: (key, size)}."""
    count = int.from_bytes(_read(hw, FW_CFG_FILE_DIR, 4), "big")
    # The directory is one item: re-read it whole, count included.
    raw = _read(hw, FW_CFG_FILE_DIR, 4 + count * FILE_ENTRY_SIZE)
    result = {}
    for i in range(count):
        entry = raw[4 + i * FILE_ENTRY_SIZE:4 + (i + 1) * FILE_ENTRY_SIZE]
        size = int.from_bytes(entry[0:4], "big")
        key = int.from_bytes(entry[4:6], "big")
        name = bytes(entry[8:8 + FILE_NAME_SIZE])
        end = name.find(b"\0")
        if end >= 0:
            name = name[:end]
        result[name.decode()] = (key, size)
    return result


def read_file(hw, name):
    """The contents of file `name` as bytes, or None when there is no such file."""
    if not present(hw):
        return None
    entry = files(hw).get(name)
    if entry is None:
        return None
    key, size = entry
    return bytes(_read(hw, key, size))
