"""The interrupt side of the VirtIO PCI function models (virtio.py): how an event whose
ISR bit is set reaches the CPU (VirtIO 1.2, 4.1.4.5 and 4.1.4.8; PCI 3.0, 6.8 MSI-X).

With MSI-X enabled an event sends the message of the table entry its vector register
names (none for NO_VECTOR); a masked entry, or the function mask, sets the entry's
pending bit instead, and unmasking sends it. Without MSI-X, INTx is asserted (unless the
command register's INTx disable bit is set) until the driver reads the ISR status. The
machine (machine.py) turns both into interrupts: set_intx() and msi_write().
"""

from tests.host.models.pci import RamBacked

NO_VECTOR = 0xFFFF
IRQ_STORM = 100                 # messages per event with misbehave='irq_storm'
COMMAND_INTX_DISABLE = 0x400
MSIX_TABLE_OFF, MSIX_PBA_OFF = 0x000, 0x800     # in BAR1, as QEMU
MSIX_ENTRY = 16
MSIX_CONTROL_HI = 3             # message control's high byte, in the capability
MSIX_FUNCTION_MASK = 0x40       # ... its function mask bit


class MsixTable(RamBacked):
    """BAR1: the MSI-X table and PBA; unmasking an entry sends what it held."""

    def __init__(self, model):
        RamBacked.__init__(self, 0x1000)
        self.model = model

    def write(self, off, size, value):
        if off >= MSIX_PBA_OFF:
            return                  # the PBA is read-only
        RamBacked.write(self, off, size, value)
        if off % MSIX_ENTRY == 12 and not value & 1:
            self.model.msix_unmasked(off // MSIX_ENTRY)


class Interrupting:
    """Mixed into VirtioPciModel: needs .machine, .misbehave, .msix (MsixTable),
    .msix_cap, .msix_vectors, .isr, command() and _msix_enabled()."""

    def interrupt(self, entry):
        """Signal an event whose ISR bit is already set: an MSI-X message through
        table entry `entry`, or INTx."""
        if self.misbehave == 'no_irq' or self.machine is None:
            return
        if self._msix_enabled():
            if entry == NO_VECTOR or entry >= self.msix_vectors:
                return
            for _ in range(IRQ_STORM if self.misbehave == 'irq_storm' else 1):
                self._msix_send(entry)
        elif not self.command() & COMMAND_INTX_DISABLE:
            self.machine.set_intx(self, True)

    def _msix_send(self, entry):
        base = MSIX_TABLE_OFF + MSIX_ENTRY * entry
        t = self.msix
        function_masked = self.config[self.msix_cap + MSIX_CONTROL_HI] & MSIX_FUNCTION_MASK
        if function_masked or t.read(base + 12, 4) & 1:
            bit = MSIX_PBA_OFF + entry // 8
            t.data[bit] = t.data.get(bit, 0) | 1 << (entry % 8)
            return
        address = t.read(base, 4) | t.read(base + 4, 4) << 32
        self.machine.msi_write(address, t.read(base + 8, 4))

    def msix_unmasked(self, entry):
        """A table entry was unmasked: a message held in its pending bit goes out."""
        t = self.msix
        bit = MSIX_PBA_OFF + entry // 8
        if t.data.get(bit, 0) & 1 << (entry % 8) and not self.config[self.msix_cap + MSIX_CONTROL_HI] & MSIX_FUNCTION_MASK:
            t.data[bit] &= ~(1 << (entry % 8))
            self._msix_send(entry)

    def _read_isr(self):
        """Reading ISR status clears it and lowers INTx (4.1.4.5)."""
        v = self.isr
        self.isr = 0
        if self.machine is not None and self.misbehave != 'irq_storm':
            self.machine.set_intx(self, False)
        return v

    def _vector_written(self, value):
        return NO_VECTOR if self.misbehave == 'refuse_msix' else value
