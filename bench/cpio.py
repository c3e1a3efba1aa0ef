"""A writer (and a reader, for tests) of the cpio "newc" format the kernel unpacks as initramfs.

The host has no `cpio` tool, and the format is small: a 110-byte ASCII header, the name, the
data, each padded to 4 bytes; the archive ends with an entry named TRAILER!!!. The kernel
accepts several archives laid end to end, which is how a run's workload script is appended
to the cached base archive (see linuxref.with_script).
"""
import stat

MAGIC = b'070701'
TRAILER = 'TRAILER!!!'


def _pad(n):
    return b'\0' * (-n % 4)


class Writer:
    """Collects entries; bytes() gives the archive. Paths are given without a leading '/'."""

    def __init__(self):
        self._out = []
        self._ino = 1
        self.names = set()

    def _entry(self, name, mode, data=b'', rdev=(0, 0)):
        if name in self.names:
            raise ValueError('cpio: %s added twice' % name)
        self.names.add(name)
        nameb = name.encode() + b'\0'
        fields = (self._ino, mode, 0, 0, 1 if not stat.S_ISDIR(mode) else 2, 0, len(data),
                  0, 0, rdev[0], rdev[1], len(nameb), 0)
        self._ino += 1
        head = MAGIC + b''.join(b'%08X' % f for f in fields)
        self._out.append(head + nameb + _pad(len(head) + len(nameb)))
        self._out.append(data + _pad(len(data)))

    def dir(self, name, perm=0o755):
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name, data, perm=0o644):
        self._entry(name, stat.S_IFREG | perm, bytes(data))

    def symlink(self, name, target):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def bytes(self):
        trailer = Writer()
        trailer._entry(TRAILER, 0)
        return b''.join(self._out) + b''.join(trailer._out)


def read(data):
    """[(name, mode, data, (rdevmajor, rdevminor))] from one or more concatenated archives."""
    entries = []
    pos = 0
    while pos + 110 <= len(data):
        if data[pos:pos + 6] != MAGIC:
            if data[pos:pos + 4] == b'\0\0\0\0':  # padding between archives
                pos += 4
                continue
            raise ValueError('cpio: bad magic at offset %d' % pos)
        f = [int(data[pos + 6 + 8 * k:pos + 14 + 8 * k], 16) for k in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        npos = pos + 110
        name = data[npos:npos + namesize - 1].decode()
        dpos = npos + namesize
        dpos += -dpos % 4
        body = data[dpos:dpos + size]
        pos = dpos + size
        pos += -pos % 4
        if name != TRAILER:
            entries.append((name, mode, body, (rmaj, rmin)))
    return entries
