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
# interrupt; so does a queue a driver watches (on_queue: the console's
# control receiveq, whose messages nobody waits for). With INTx the handler
# reads this device's ISR status, which acknowledges it and lowers its line
# (the hardware interface then unmasks the line); each device on a shared
# line reads its own. With virtio.trace(True) every interrupt prints a line:
#     00:04.0 interrupt msix vector 65 entry 0 (config)
#     00:04.0 interrupt intx line 11 vector 43 isr 0x02 CONFIG

from virtio import msix
from virtio.errors import VirtioError
# Not `from virtio import trace`: once virtio is imported that name is virtio.trace().
from virtio.trace import emit, enabled as tracing, register, unregister
from virtio.transport import ISR_CONFIG, ISR_QUEUE, isr_names

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
        self._queues = queues
        self.config_events = 0
        self.mode = None
        self.vectors = []
        self._msix = None
        self._intx = None
        self._queue_handlers = []   # (vector, handler) from on_queue
        self._traced = []           # vectors with _trace_event attached
        if not hasattr(hw, 'irq_wait') or getattr(transport, 'pci', None) is None:
            return                      # no interrupt calls, or not PCI (virtio-mmio): poll
        if use_msix and msix.find(transport.pci) is not None and self._try_msix(queues):
            self.mode = 'msix'
        elif self._try_intx():
            self.mode = 'intx'
        if self.mode is not None:
            register(self)

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
        isr = self.transport.isr()
        if tracing():
            self._emit('intx line %d vector %d isr 0x%02x %s'
                       % (self.transport.pci.interrupt_line, vector, isr,
                          isr_names(isr) or '(not this device)'))
        if isr & ISR_QUEUE:
            for v, handler in self._queue_handlers:
                handler()
        if isr & ISR_CONFIG:
            self._config(vector)

    # -- events ----------------------------------------------------------------------------
    def _config_event(self, vector):
        # MSI-X: the configuration vector is this device's alone, no ISR to read.
        if tracing():
            self._emit('msix vector %d entry %d (config)' % (vector, CONFIG_ENTRY))
        self._config(vector)

    def _config(self, vector):
        self.config_events += 1
        if self.on_config is not None:
            self.on_config()

    def queue_vector(self, q):
        """The CPU vector queue q raises (MSI-X: its table entry's; INTx: the line's)."""
        if self._msix is None:
            return self.vectors[0]
        return self.vectors[min(q + 1, len(self.vectors) - 1)]

    def on_queue(self, q, handler):
        """Call handler() from a handler (never inside the interrupt) when queue q
        may have used buffers. The ring must ask for notifications
        (vq.enable_interrupts) and the handler re-arm it; with MSI-X it may also
        run for other queues sharing the vector."""
        if self.mode is None:
            return
        v = self.queue_vector(q)
        attached = [w for w, h in self._queue_handlers]
        self._queue_handlers.append((v, handler))
        if self._msix is not None and v not in attached:
            self.hw.irq_attach(v, self._queue_event)

    def _queue_event(self, vector):
        for v, handler in self._queue_handlers:
            if v == vector:
                handler()

    # -- virtio.trace(True) ------------------------------------------------------------------
    def _emit(self, text):
        emit('%s interrupt %s' % (self.transport.address, text))

    def set_trace(self, on):
        """With MSI-X, queue vectors have no handler of their own (a wait just
        wakes): while tracing, one that prints the interrupt."""
        hw = self.hw
        try:
            for v in self._traced:
                hw.irq_detach(v, self._trace_event)
            self._traced = []
            if on and self._msix is not None:
                for v in self.vectors[CONFIG_ENTRY + 1:]:
                    hw.irq_attach(v, self._trace_event)
                    self._traced.append(v)
        except VirtioError:
            # Its device's memory was retired (a probe() replaced it): trace no more.
            self._traced = []
            unregister(self)

    def _trace_event(self, vector):
        entry = self.vectors.index(vector)
        first = last = entry - 1
        if entry == len(self.vectors) - 1:
            last = self._queues - 1         # the last entry: every queue left
        self._emit('msix vector %d entry %d (queue %s)'
                   % (vector, entry, first if first == last else '%d-%d' % (first, last)))

    def close(self):
        """Give the vectors back (a device being reset or removed); MSI-X off."""
        hw = self.hw
        self.set_trace(False)
        unregister(self)
        if self._intx is not None:
            hw.irq_detach(self._intx, self._intx_event)
        elif self._msix is not None:
            hw.irq_detach(self.vectors[CONFIG_ENTRY], self._config_event)
            for v in set([v for v, h in self._queue_handlers]):
                hw.irq_detach(v, self._queue_event)
            self._undo_msix(self._msix)
        self._queue_handlers = []
        self._msix = self._intx = None
        self.vectors = []
        self.mode = None
