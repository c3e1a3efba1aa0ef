"""Guest memory as the back-end sees it: the regions of SET_MEM_TABLE, each
an fd (the memfd behind QEMU's `memory-backend-memfd,share=on`) mapped here
with mmap, so the back-end reads and writes the very bytes the guest does.

Two address spaces name those bytes (vhost-user.rst, "Memory region
description"): guest physical addresses (what descriptors hold) and the
front-end's own user addresses (what SET_VRING_ADDR sends for the rings).
A region maps both: [gpa, gpa + size) == [uaddr, uaddr + size) == the fd's
bytes [mmap_offset, mmap_offset + size).
"""

import mmap
import os

from vhost.message import ProtocolError


class AddressError(ProtocolError):
    """An address outside every region (a driver or front-end bug)."""


class Region:
    def __init__(self, gpa, size, uaddr, mmap_offset, fd):
        self.gpa = gpa
        self.size = size
        self.uaddr = uaddr
        self.mmap_offset = mmap_offset
        # Map from the fd's start, as libvhost-user does: mmap_offset need
        # not be page aligned then.
        try:
            self.map = mmap.mmap(fd, mmap_offset + size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.view = memoryview(self.map)[mmap_offset:mmap_offset + size]

    def close(self):
        self.view.release()
        try:
            self.map.close()
        except BufferError:
            pass     # a view is still held somewhere: the GC unmaps it later

    def __repr__(self):
        return 'Region(gpa=0x%x size=0x%x uaddr=0x%x offset=0x%x)' % (
            self.gpa, self.size, self.uaddr, self.mmap_offset)


class GuestMemory:
    """The regions of one SET_MEM_TABLE, with address translation."""

    def __init__(self, regions=()):
        self.regions = list(regions)

    def close(self):
        for r in self.regions:
            r.close()
        self.regions = []

    def _find(self, addr, n, key):
        for r in self.regions:
            base = getattr(r, key)
            if base <= addr and addr + n <= base + r.size:
                return r, addr - base
        return None, 0

    def view(self, gpa, n):
        """A writable memoryview of n guest bytes at guest physical `gpa`."""
        r, off = self._find(gpa, n, 'gpa')
        if r is None:
            raise AddressError('guest range 0x%x+%d is outside guest memory (%s)'
                               % (gpa, n, self.describe()))
        return r.view[off:off + n]

    def uaddr_to_gpa(self, uaddr, n=1):
        """The front-end's user address -> guest physical (ring addresses)."""
        r, off = self._find(uaddr, n, 'uaddr')
        if r is None:
            raise AddressError('front-end address 0x%x+%d is in no memory region (%s)'
                               % (uaddr, n, self.describe()))
        return r.gpa + off

    def describe(self):
        return ', '.join('0x%x-0x%x' % (r.gpa, r.gpa + r.size) for r in self.regions) or 'none'
