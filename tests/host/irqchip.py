"""The interrupt part of the hardware interface (docs/hardware-interface.md, "Interrupts")
for the host implementations: the device-model Machine and QtestMachine share it.

It plays what ports/x86_virt/irq.c does on the target: vectors (INTx line n at
VECTOR_BASE + n, MSI vectors from MSI_FIRST), counts, pending and held sets, masking,
handlers run outside the "interrupt" (here: inside irq_wait, before it returns), and a
wait that ends at the first interrupt or at its deadline. A backend feeds it events:

    _irq_line(line, level)   an INTx line's level changed (level triggered, shared)
    _irq_vector(vector)      an MSI message for `vector` arrived
and provides:
    _irq_msi_address()       where a device writes an MSI message
    _irq_poll()              let the machine run and deliver its events
    _irq_nap()               pass a little real time while nothing happens
"""

import errno

VECTOR_BASE = 32                # line n -> vector 32 + n, as the port's PIC/I/O APIC
LINES = 24                      # I/O APIC inputs
MSI_FIRST = 64
MSI_LAST = 239
RESERVED_LINES = (0, 2, 4)      # the timer, the cascade (GSI 2: the PIT) and the console
MSI_ADDRESS = 0xFEE00000        # the local APIC's MSI window, APIC ID 0


class IrqChip:
    """Mixed into a machine; call _irq_setup() from its __init__."""

    def _irq_setup(self):
        self._irq_kind = {}         # vector -> 'intx' | 'msi'
        self._irq_count = {}
        self._irq_pending = set()
        self._irq_masked = set()    # by irq_mask()
        self._irq_held = set()      # fired while masked by irq_mask()
        self._irq_line_off = set()  # INTx lines masked after firing, until served
        self._irq_levels = {}       # line -> level
        self._irq_handlers = {}
        self._irq_to_run = []

    # -- events from the backend -------------------------------------------------------
    def _irq_line(self, line, level):
        old = self._irq_levels.get(line, 0)
        self._irq_levels[line] = level
        if level and not old:
            self._irq_line_check(line)

    def _irq_line_check(self, line):
        """A level-triggered line fires while high and unmasked, then masks itself."""
        v = VECTOR_BASE + line
        if (self._irq_kind.get(v) == 'intx' and self._irq_levels.get(line, 0)
                and line not in self._irq_line_off and v not in self._irq_masked):
            self._irq_line_off.add(line)
            self._irq_fire(v)

    def _irq_vector(self, vector):
        if self._irq_kind.get(vector) != 'msi':
            return                  # a stray message: nothing is allocated there
        self._irq_fire(vector)

    def _irq_fire(self, v):
        self._irq_count[v] = self._irq_count.get(v, 0) + 1
        if v in self._irq_masked:
            self._irq_held.add(v)
            return
        self._irq_pending.add(v)
        if self._irq_handlers.get(v) and v not in self._irq_to_run:
            self._irq_to_run.append(v)

    # -- the interface -------------------------------------------------------------------
    def _vector(self, v):
        if v not in self._irq_kind:
            raise ValueError('vector %r is neither an allocated MSI vector nor a routed '
                             'INTx line' % (v,))
        return v

    def _msi_vector(self, v):
        if self._irq_kind.get(self._vector(v)) != 'msi':
            raise ValueError('vector %d is an INTx line, not MSI' % v)
        return v

    def msi_alloc(self):
        for v in range(MSI_FIRST, MSI_LAST + 1):
            if v not in self._irq_kind:
                self._irq_kind[v] = 'msi'
                self._irq_count[v] = 0
                for s in (self._irq_pending, self._irq_masked, self._irq_held):
                    s.discard(v)
                return v
        raise OSError(errno.ENOSPC, 'no free MSI vector')

    def msi_free(self, v):
        self._msi_vector(v)
        del self._irq_kind[v]
        self._irq_pending.discard(v)
        self._irq_handlers.pop(v, None)

    def msi_message(self, v):
        self._msi_vector(v)
        return self._irq_msi_address(v), v

    def intx_vector(self, line):
        if not isinstance(line, int) or not 0 <= line < LINES or line in RESERVED_LINES:
            raise ValueError('no INTx line %r here (lines 0-%d, less the timer, cascade and '
                             'console)' % (line, LINES - 1))
        v = VECTOR_BASE + line
        if v not in self._irq_kind:
            self._irq_kind[v] = 'intx'
            self._irq_count.setdefault(v, 0)
        self._irq_line_check(line)
        return v

    def irq_attach(self, v, handler):
        self._vector(v)
        if not callable(handler):
            raise TypeError('handler must be callable')
        self._irq_handlers.setdefault(v, []).append(handler)

    def irq_detach(self, v, handler):
        self._vector(v)
        handlers = self._irq_handlers.get(v)
        if not handlers or handler not in handlers:
            raise ValueError('handler not attached')
        handlers.remove(handler)
        if not handlers:
            del self._irq_handlers[v]

    def irq_mask(self, v):
        self._vector(v)
        self._irq_masked.add(v)

    def irq_unmask(self, v):
        self._vector(v)
        self._irq_masked.discard(v)
        if v in self._irq_held:
            self._irq_held.discard(v)
            self._irq_fire(v)
        if self._irq_kind[v] == 'intx':
            line = v - VECTOR_BASE
            self._irq_line_off.discard(line)
            self._irq_line_check(line)

    def irq_count(self, v):
        return self._irq_count[self._vector(v)]

    def irq_wait(self, timeout_ms):
        start = self.ticks_ms()
        while True:
            self._irq_poll()
            self._irq_run_handlers()
            if self._irq_pending:
                got = tuple(sorted(self._irq_pending))
                self._irq_pending.clear()
                return got
            if timeout_ms >= 0 and self.ticks_diff(self.ticks_ms(), start) >= timeout_ms:
                return ()
            self._irq_nap()

    def _irq_run_handlers(self):
        # One pass over what was due (as MicroPython runs one scheduled callback per
        # look): an interrupt raised meanwhile, or a line still asserted, is for the
        # next pass, so a storm cannot keep the wait from its deadline.
        todo, self._irq_to_run = self._irq_to_run, []
        for v in todo:
            for h in list(self._irq_handlers.get(v, ())):
                h(v)
            if self._irq_kind.get(v) == 'intx' and v not in self._irq_masked:
                line = v - VECTOR_BASE
                self._irq_line_off.discard(line)
                self._irq_poll()        # the handlers' ISR reads may have lowered it
                self._irq_line_check(line)
