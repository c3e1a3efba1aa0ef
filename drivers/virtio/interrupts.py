# How one VirtIO PCI device's events reach the CPU (VirtIO 1.2, 4.1.4.5 and
# 4.1.4.8; the hardware interface's "Interrupts" in docs/hardware-interface.md):
# MSI-X when the function has the capability and the device takes the vectors,
# else its INTx line, which other devices may share.
#
#     irqs = Interrupts(hw, transport, queues=2, on_config=changed)
#     irqs.mode            'msix', 'intx' or None (no way: poll)
#     irqs.vectors         the CPU vectors this device raises (for hw.irq_wait)
#
# Used-buffer events need no handler: a wait calls hw.irq_wait(left) and looks
# at its ring again (the ring's flags or used_event decide whether the device
# interrupts at all: Virtqueue.enable_interrupts / suppress_interrupts).
# Configuration changes call on_config() from a handler, never inside the
# interrupt. With INTx the handler reads this device's ISR status, which
# acknowledges it and lowers its line (the hardware interface then unmasks
# the line); each device on a shared line reads its own.

from virtio import msix
from virtio.transport import ISR_CONFIG

CONFIG_ENTRY = 0                # MSI-X table entry 0: configuration changes
NO_LINE = (0, 0xFF)             # interrupt_line values that mean "not connected"


class Interrupts:
    """One device's interrupts. queues: how many virtqueues get a vector (each its
    own table entry while the table has room, then they share the last one).
    use_msix=False: INTx even when the function has MSI-X."""

    def __init__(self, hw, transport, queues, on_config=None, use_msix=True):
        self.hw = hw
        self.transport = transport
        self.on_config = on_config
        self.config_events = 0
        self.mode = None
        self.vectors = []
        self._msix = None
        self._intx = None
        if not hasattr(hw, 'irq_wait') or getattr(transport, 'pci', None) is None:
            return                      # no interrupt calls, or not PCI (virtio-mmio): poll
        if use_msix and msix.find(transport.pci) is not None and self._try_msix(queues):
            self.mode = 'msix'
        elif self._try_intx():
            self.mode = 'intx'

    def __repr__(self):
        return '<interrupts %s %s vectors %r>' % (self.transport.pci.address, self.mode,
                                                   self.vectors)

    # -- MSI-X ---------------------------------------------------------------------------
    def _try_msix(self, queues):
        hw, t = self.hw, self.transport
        m = msix.Msix(hw, t.pci)
        entries = min(m.size, queues + 1)
        try:
            for i in range(entries):
                v = hw.msi_alloc()
                self.vectors.append(v)
                m.set_entry(i, *hw.msi_message(v))
        except OSError:
            self._undo_msix(m)          # out of CPU vectors: INTx instead
            return False
        m.enable()
        t.follow_msix()
        taken = t.set_config_msix_vector(CONFIG_ENTRY) == CONFIG_ENTRY
        for q in range(queues):
            entry = min(q + 1, entries - 1)
            taken = taken and t.set_queue_msix_vector(q, entry) == entry
        if not taken:
            self._undo_msix(m)          # a refused vector (NO_VECTOR read back)
            return False
        self._msix = m
        hw.irq_attach(self.vectors[CONFIG_ENTRY], self._config_event)
        return True

    def _undo_msix(self, m):
        if m.enabled():
            m.enable(False)
            self.transport.follow_msix()
        for v in self.vectors:
            self.hw.msi_free(v)
        self.vectors = []

    # -- INTx ------------------------------------------------------------------------------
    def _try_intx(self):
        line = self.transport.pci.interrupt_line
        if line in NO_LINE:
            return False
        try:
            v = self.hw.intx_vector(line)
        except ValueError:
            return False
        self._intx = v
        self.vectors = [v]
        self.hw.irq_attach(v, self._intx_event)
        return True

    def _intx_event(self, vector):
        if self.transport.isr() & ISR_CONFIG:
            self._config_event(vector)

    # -- events ----------------------------------------------------------------------------
    def _config_event(self, vector):
        self.config_events += 1
        if self.on_config is not None:
            self.on_config()

    def close(self):
        """Give the vectors back (a device being reset or removed); MSI-X off."""
        hw = self.hw
        if self._intx is not None:
            hw.irq_detach(self._intx, self._intx_event)
        elif self._msix is not None:
            hw.irq_detach(self.vectors[CONFIG_ENTRY], self._config_event)
            self._undo_msix(self._msix)
        self._msix = self._intx = None
        self.vectors = []
        self.mode = None
