# MSI-X (PCI Local Bus Specification 3.0, 6.8.2; VirtIO 1.2, 4.1.4.8 for
# how a VirtIO device names its vectors): the capability in configuration
# space, and the table and pending-bit array (PBA) that it places in a
# memory BAR. One table entry per vector the device can send: a message
# address, message data and a mask bit. The CPU side of a vector (its
# message, a handler) comes from the hardware interface: hw.msi_alloc(),
# hw.msi_message(v) (docs/hardware-interface.md, "Interrupts").
#
#     m = msix.Msix(hw, fn)
#     v = hw.msi_alloc()
#     m.set_entry(0, *hw.msi_message(v))
#     m.enable()
#     transport.set_queue_msix_vector(0, 0)     # queue 0 raises entry 0

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import pci
from virtio.errors import VirtioError

# The capability (6.8.2.1-6.8.2.4), relative to its offset.
MESSAGE_CONTROL = const(2)
TABLE_OFFSET = const(4)             # BIR in bits 0-2, offset in the rest
PBA_OFFSET = const(8)
CONTROL_TABLE_SIZE = const(0x07FF)  # N - 1
CONTROL_FUNCTION_MASK = const(0x4000)
CONTROL_ENABLE = const(0x8000)
BIR_MASK = const(7)

# A table entry (6.8.2.6-6.8.2.9).
ENTRY_SIZE = const(16)
ENTRY_ADDRESS_LO = const(0)
ENTRY_ADDRESS_HI = const(4)
ENTRY_DATA = const(8)
ENTRY_VECTOR_CONTROL = const(12)
VECTOR_MASKED = const(1)

# VirtIO's "no vector" (4.1.4.3, 4.1.4.8): written to unmap an event; read back
# after a write, it means the device refused the mapping (fall back to INTx).
NO_VECTOR = const(0xFFFF)


def find(fn):
    """The configuration-space offset of the function's MSI-X capability, or None."""
    return fn.find_capability(pci.CAP_ID_MSIX)


class Msix:
    """A function's MSI-X capability with its table and PBA mapped."""

    def __init__(self, hw, fn):
        cap = find(fn)
        if cap is None:
            raise VirtioError('%s: no MSI-X capability' % fn.address)
        self.hw = hw
        self.fn = fn
        self.cap = cap
        self.size = (fn.read16(cap + MESSAGE_CONTROL) & CONTROL_TABLE_SIZE) + 1
        self.table = self._locate(fn.read32(cap + TABLE_OFFSET), ENTRY_SIZE * self.size, 'table')
        self.pba = self._locate(fn.read32(cap + PBA_OFFSET), 8 * ((self.size + 63) // 64), 'PBA')
        fn.enable(memory=True)

    def _locate(self, word, length, what):
        fn = self.fn
        bar = fn.bar(word & BIR_MASK)
        offset = word & ~BIR_MASK
        if bar is None or bar.io:
            raise VirtioError('%s: MSI-X %s in BAR%d, which is not a memory BAR'
                              % (fn.address, what, word & BIR_MASK))
        if bar.base == 0:
            raise VirtioError('%s: MSI-X %s: BAR%d has no address (run '
                              'virtio.pci.assign_resources)' % (fn.address, what, bar.index))
        if offset + length > bar.size or bar.base + offset + length > pci.FOUR_GIB:
            raise VirtioError('%s: MSI-X %s at BAR%d+0x%x (%d bytes) is outside the BAR or '
                              'beyond 4 GiB' % (fn.address, what, bar.index, offset, length))
        return bar.base + offset

    # -- the capability: enable and function mask (6.8.2.3) ---------------------------
    def _control(self, set_bits, clear_bits):
        off = self.cap + MESSAGE_CONTROL
        c = self.fn.read16(off)
        self.fn.write16(off, (c | set_bits) & ~clear_bits)

    def enable(self, on=True):
        """MSI-X on (INTx off: a function sends messages instead) or off. With it on,
        a legacy VirtIO device's configuration moves from 0x14 to 0x18 (4.1.4.8)."""
        if on:
            self._control(CONTROL_ENABLE, CONTROL_FUNCTION_MASK)
        else:
            self._control(0, CONTROL_ENABLE)

    def enabled(self):
        return bool(self.fn.read16(self.cap + MESSAGE_CONTROL) & CONTROL_ENABLE)

    def function_mask(self, on=True):
        """Mask (hold as pending) or unmask every vector of the function at once."""
        if on:
            self._control(CONTROL_FUNCTION_MASK, 0)
        else:
            self._control(0, CONTROL_FUNCTION_MASK)

    # -- table entries ------------------------------------------------------------------
    def _entry(self, i):
        if not 0 <= i < self.size:
            raise VirtioError('%s: MSI-X entry %d out of range (table of %d)'
                              % (self.fn.address, i, self.size))
        return self.table + ENTRY_SIZE * i

    def set_entry(self, i, address, data, masked=False):
        """Program entry i with a message (from hw.msi_message) and its mask bit. The
        entry is masked while it changes, so no half-written message goes out."""
        hw = self.hw
        e = self._entry(i)
        hw.write32(e + ENTRY_VECTOR_CONTROL, VECTOR_MASKED)
        hw.write32(e + ENTRY_ADDRESS_LO, address & 0xFFFFFFFF)
        hw.write32(e + ENTRY_ADDRESS_HI, address >> 32)
        hw.write32(e + ENTRY_DATA, data)
        if not masked:
            hw.write32(e + ENTRY_VECTOR_CONTROL, 0)

    def entry(self, i):
        """(address, data, masked) of entry i."""
        hw = self.hw
        e = self._entry(i)
        address = hw.read32(e + ENTRY_ADDRESS_LO) | (hw.read32(e + ENTRY_ADDRESS_HI) << 32)
        return (address, hw.read32(e + ENTRY_DATA),
                bool(hw.read32(e + ENTRY_VECTOR_CONTROL) & VECTOR_MASKED))

    def mask(self, i, on=True):
        """Mask entry i: the device holds its message as a pending bit (6.8.3.4) and
        sends it when unmasked."""
        e = self._entry(i) + ENTRY_VECTOR_CONTROL
        self.hw.write32(e, VECTOR_MASKED if on else 0)

    def pending(self, i):
        """Entry i's pending bit: a message held back by a mask."""
        self._entry(i)
        word = self.hw.read32(self.pba + 4 * (i // 32))
        return bool(word >> (i % 32) & 1)
