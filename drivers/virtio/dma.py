# The DMA memory one device holds: DeviceMemory is the hardware interface
# (docs/hardware-interface.md) as a device's code sees it, the transport, its
# virtqueues and its driver alike. It passes every call through to the real `hw`
# and records each dma_alloc, so that when the device is released (virtio.probe()
# again, after resetting it) its rings and buffers go back to the allocator
# with hw.dma_free. Once retired it refuses every call with the reason, so an
# object from an earlier probe can neither touch memory that now belongs to
# another device nor drive the device another driver now owns.
#
# The interface functions are copied onto the instance: a call costs one
# attribute lookup, as on the module itself, not a Python-level forward.

from virtio.errors import VirtioError

# The names of the hardware interface besides dma_alloc/dma_free, optional ones
# included (copied when `hw` has them).
INTERFACE = ('inb', 'inw', 'inl', 'outb', 'outw', 'outl',
             'read8', 'read16', 'read32', 'read64', 'write8', 'write16', 'write32', 'write64',
             'read', 'write', 'bytearray_at', 'addressof', 'barrier',
             'ticks_ms', 'ticks_us', 'ticks_diff')


class DeviceMemory:
    def __init__(self, hw):
        self.hw = hw
        self.blocks = {}            # address -> size of each block allocated and not freed
        self.retired = None         # why it refuses every call, once it does
        for name in INTERFACE:
            f = getattr(hw, name, None)
            if f is not None:
                setattr(self, name, f)
        name = getattr(hw, '__name__', None)
        if name is not None:
            self.__name__ = name    # drivers pick their native paths by it ('x86')

    def __getattr__(self, name):
        # Whatever else `hw` offers (a host model's extras), and the absence of an
        # optional name (hasattr(hw, 'bytearray_at') stays false where it was).
        if self.retired is not None:
            raise VirtioError(str(self.retired))
        return getattr(self.hw, name)

    def __repr__(self):
        return '<DMA memory of %d blocks, %d bytes%s>' % (
            len(self.blocks), self.held(), ' retired' if self.retired is not None else '')

    def dma_alloc(self, size, align=4096):
        addr = self.hw.dma_alloc(size, align)
        self.blocks[addr] = size
        return addr

    def dma_free(self, addr):
        """Give one block back now (ValueError if this device did not allocate it)."""
        if addr not in self.blocks:
            raise ValueError('dma_free: 0x%x is not DMA memory this device holds' % addr)
        free = getattr(self.hw, 'dma_free', None)
        if free is not None:
            free(addr)
        del self.blocks[addr]

    def held(self):
        """Bytes allocated and not given back."""
        n = 0
        for size in self.blocks.values():
            n += size
        return n

    def free_all(self):
        """Give every block back, once the device touches none of it any more (it was
        reset). -> bytes given back; 0 when `hw` cannot free (dma_free is optional),
        the blocks are then only forgotten."""
        free = getattr(self.hw, 'dma_free', None)
        n = 0
        while self.blocks:
            addr, size = self.blocks.popitem()
            if free is not None:
                free(addr)
                n += size
        return n

    def retire(self, why):
        """From now on every call raises VirtioError(str(why))."""
        self.retired = why

        def refuse(*args, **kw):
            raise VirtioError(str(why))

        for name in INTERFACE + ('dma_alloc', 'dma_free'):
            setattr(self, name, refuse)
