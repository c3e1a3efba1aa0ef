"""The disk pattern both guests read and write, so every figure is checked.

Sector s (512 bytes) holds:
    bytes 0-3   s, little-endian (low 32 bits)
    bytes 4-7   a magic word: b'BNCH' in the image the host makes, b'WRIT' where the
                write workload has written
    bytes 8-511 byte i is (s * 131 + salt + i) & 0xff  (salt 0 for BNCH, 0x5a for WRIT)

A reader checks the stamp of every sector and the first sector of each request in full;
a sector from the wrong place or a half-done transfer fails the check. The same rule is
written in C (bench/helper/bhelper.c) and in MicroPython (bench/guest/ours_blk.py).
"""
import os
import struct

SECTOR = 512
STAMP = 8
READ_MAGIC = b'BNCH'
WRITE_MAGIC = b'WRIT'
READ_SALT = 0
WRITE_SALT = 0x5a

# Every body is a 504-byte slice of this wheel: byte k is k & 0xff.
_WHEEL = bytes(k & 0xff for k in range(256 + SECTOR))


def _base(sector, salt):
    return (sector * 131 + salt) & 0xff


def body(sector, salt):
    """Bytes 8-511 of the given sector."""
    b = _base(sector, salt) + STAMP
    return _WHEEL[b:b + SECTOR - STAMP]


def sector_bytes(sector, magic=READ_MAGIC, salt=READ_SALT):
    return struct.pack('<I', sector & 0xffffffff) + magic + body(sector, salt)


def make_bytes(first_sector, count, magic=READ_MAGIC, salt=READ_SALT):
    """count sectors of the pattern starting at first_sector."""
    bodies = [_WHEEL[b + STAMP:b + SECTOR] for b in range(256)]  # indexed by base
    out = []
    for s in range(first_sector, first_sector + count):
        out.append(struct.pack('<I', s & 0xffffffff))
        out.append(magic)
        out.append(bodies[_base(s, salt)])
    return b''.join(out)


def make_image(path, size):
    """Write the BNCH pattern to path (size a multiple of 1 MiB), unless it is already there."""
    if size % (1 << 20):
        raise ValueError('disk image size %d is not a multiple of 1 MiB' % size)
    if os.path.exists(path) and os.path.getsize(path) == size and verify_file(
            path, 0, SECTOR * 4, READ_MAGIC, READ_SALT) == [] and verify_file(
            path, size - (1 << 20), 1 << 20, READ_MAGIC, READ_SALT) == []:
        return False
    chunk = (1 << 20) // SECTOR
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        for first in range(0, size // SECTOR, chunk):
            f.write(make_bytes(first, chunk))
    os.replace(tmp, path)
    return True


def bad_sectors(data, first_sector, magic=READ_MAGIC, salt=READ_SALT):
    """Sector numbers in data (starting at first_sector) that do not hold the pattern."""
    want = make_bytes(first_sector, len(data) // SECTOR, magic, salt)
    if len(data) % SECTOR:
        raise ValueError('%d bytes is not a whole number of sectors' % len(data))
    if data == want:
        return []
    bad = []
    for k in range(len(data) // SECTOR):
        o = k * SECTOR
        if data[o:o + SECTOR] != want[o:o + SECTOR]:
            bad.append(first_sector + k)
    return bad


def verify_file(path, offset, length, magic, salt):
    """Bad sector numbers in path[offset:offset+length], read 4 MiB at a time."""
    bad = []
    step = 4 << 20
    with open(path, 'rb') as f:
        f.seek(offset)
        done = 0
        while done < length:
            n = min(step, length - done)
            data = f.read(n)
            if len(data) != n:
                raise ValueError('%s is shorter than %d bytes' % (path, offset + length))
            bad.extend(bad_sectors(data, (offset + done) // SECTOR, magic, salt))
            done += n
    return bad
