"""The DMA area's allocator as the host implementations of the hardware interface run it
(the model Machine and QtestMachine): the same rules as the target's (ports/x86_virt/dma.c),
so a driver that leaks or frees twice fails on the host as it would on the target.

First fit over free extents sorted by address; a freed block is merged with the free
extents it touches. Blocks and extents are multiples of GRANULE bytes at GRANULE-aligned
addresses. The caller zeroes what it hands out (RAM is the caller's)."""

GRANULE = 16


class DmaArea:
    def __init__(self, start, end):
        start = (start + GRANULE - 1) & ~(GRANULE - 1)
        self.start = start
        self.end = end
        self._free = [[start, (end - start) & ~(GRANULE - 1)]] if end > start else []
        self.blocks = {}            # address -> size of each block in use

    def alloc(self, size, align=4096):
        """The address of a block of `size` bytes aligned to `align` (a power of two).
        ValueError for a bad size or alignment, MemoryError when nothing fits."""
        if size <= 0:
            raise ValueError('dma_alloc: size must be positive (got %d)' % size)
        if align <= 0 or align & (align - 1):
            raise ValueError('dma_alloc: align %d is not a power of two' % align)
        align = max(align, GRANULE)
        need = (size + GRANULE - 1) & ~(GRANULE - 1)
        for i, (start, n) in enumerate(self._free):
            addr = (start + align - 1) & ~(align - 1)
            if addr + need <= start + n:
                pieces = [[start, addr - start], [addr + need, start + n - addr - need]]
                self._free[i:i + 1] = [p for p in pieces if p[1]]
                self.blocks[addr] = need
                return addr
        raise MemoryError('DMA area exhausted: %d bytes aligned to %d asked, %d bytes free, '
                          'largest piece %d' % (size, align, self.free_bytes(),
                                                max([n for _, n in self._free] or [0])))

    def free(self, addr):
        """Give the block at addr back. ValueError if addr is not a block in use."""
        size = self.blocks.pop(addr, None)
        if size is None:
            raise ValueError('dma_free: 0x%x is not a DMA block in use (not from dma_alloc, '
                             'or freed already)' % addr)
        i = 0
        while i < len(self._free) and self._free[i][0] < addr:
            i += 1
        self._free.insert(i, [addr, size])
        if i + 1 < len(self._free) and addr + size == self._free[i + 1][0]:
            self._free[i][1] += self._free.pop(i + 1)[1]
        if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == addr:
            self._free[i - 1][1] += self._free.pop(i)[1]
        return size

    def free_bytes(self):
        return sum(n for _, n in self._free)

    def in_use(self):
        """Bytes in blocks handed out and not freed."""
        return sum(self.blocks.values())
