# Register windows: how a transport reaches one block of device registers.
# Each window offers r8/r16/r32(off) and w8/w16/w32(off, value) relative to
# the start of the block, whatever carries the access: I/O ports, memory
# (MMIO), or the VIRTIO_PCI_CAP_PCI_CFG window in configuration space.
# w16_at/w32_at(off) give one register's write as (write, where), so that
# write(where, v) is w16/w32(off, v) with nothing looked up on the way: how a
# queue's notification is sent on every kick (Transport.notifier).


class PortWindow:
    """Registers in I/O space (the legacy BAR0, or a modern I/O BAR)."""

    def __init__(self, hw, base):
        self.hw = hw
        self.base = base

    def r8(self, off):
        return self.hw.inb(self.base + off)

    def r16(self, off):
        return self.hw.inw(self.base + off)

    def r32(self, off):
        return self.hw.inl(self.base + off)

    def w8(self, off, v):
        self.hw.outb(self.base + off, v)

    def w16(self, off, v):
        self.hw.outw(self.base + off, v)

    def w32(self, off, v):
        self.hw.outl(self.base + off, v)

    def w16_at(self, off):
        return self.hw.outw, self.base + off

    def w32_at(self, off):
        return self.hw.outl, self.base + off


class MemWindow:
    """Registers in memory space (a modern BAR below 4 GiB)."""

    def __init__(self, hw, base):
        self.hw = hw
        self.base = base

    def r8(self, off):
        return self.hw.read8(self.base + off)

    def r16(self, off):
        return self.hw.read16(self.base + off)

    def r32(self, off):
        return self.hw.read32(self.base + off)

    def w8(self, off, v):
        self.hw.write8(self.base + off, v)

    def w16(self, off, v):
        self.hw.write16(self.base + off, v)

    def w32(self, off, v):
        self.hw.write32(self.base + off, v)

    def w16_at(self, off):
        return self.hw.write16, self.base + off

    def w32_at(self, off):
        return self.hw.write32, self.base + off


# Fields of struct virtio_pci_cfg_cap, relative to the capability.
CFG_CAP_BAR = 4
CFG_CAP_OFFSET = 8
CFG_CAP_LENGTH = 12
CFG_CAP_DATA = 16


class CfgWindow:
    """Registers reached through the VIRTIO_PCI_CAP_PCI_CFG capability
    (spec 4.1.4, "PCI configuration access capability"): choose the BAR,
    the access length and the offset, then move the data through
    pci_cfg_data. Slow, but it reaches a BAR a 32-bit CPU cannot address."""

    def __init__(self, fn, cap, bar, base):
        self.fn = fn
        self.cap = cap
        self.bar = bar
        self.base = base

    def _aim(self, off, length):
        fn = self.fn
        fn.write8(self.cap + CFG_CAP_BAR, self.bar)
        fn.write32(self.cap + CFG_CAP_LENGTH, length)
        fn.write32(self.cap + CFG_CAP_OFFSET, self.base + off)

    def r8(self, off):
        self._aim(off, 1)
        return self.fn.read8(self.cap + CFG_CAP_DATA)

    def r16(self, off):
        self._aim(off, 2)
        return self.fn.read16(self.cap + CFG_CAP_DATA)

    def r32(self, off):
        self._aim(off, 4)
        return self.fn.read32(self.cap + CFG_CAP_DATA)

    def w8(self, off, v):
        self._aim(off, 1)
        self.fn.write8(self.cap + CFG_CAP_DATA, v)

    def w16(self, off, v):
        self._aim(off, 2)
        self.fn.write16(self.cap + CFG_CAP_DATA, v)

    def w32(self, off, v):
        self._aim(off, 4)
        self.fn.write32(self.cap + CFG_CAP_DATA, v)

    def w16_at(self, off):
        return self.w16, off        # (three writes to aim, then the data)

    def w32_at(self, off):
        return self.w32, off
