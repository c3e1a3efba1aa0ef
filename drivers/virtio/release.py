# What virtio.probe() does with the devices an earlier probe() bound, before it
# binds drivers again: each device is reset (spec 2.4; after that it touches no
# memory of ours), its rings and buffers go back to the DMA allocator, and the
# old objects are retired: the device, its transport and its virtqueues raise a
# VirtioError naming what replaced them from every public method, instead of
# driving a device that another driver now owns, or writing into memory that
# now belongs to another device (the drivers' fast paths write rings directly).

from virtio.errors import VirtioError
from virtio.trace import unregister as untrace

# Methods that read only the object's own attributes: still answer once retired,
# so that printing an old device says what it was.
HARMLESS = ('feature_names', 'has')

_public = {}        # class -> names of its public methods (dir() is slow on MicroPython)


class Replaced:
    """Why a device object was retired: by which probe(), when, and (once that
    probe has bound its drivers) what drives the device now."""

    def __init__(self, dev, probe_number, ticks_ms):
        self.what = '%s %s' % (dev.address, dev.NAME)
        self.address = dev.address
        self.probe_number = probe_number
        self.ticks_ms = ticks_ms
        self.now = None

    def name_successor(self, devices):
        """Record what probe() found at the same address: as text, so that an old
        object someone keeps does not keep the new one (and its successors) alive."""
        self.now = False
        for d in devices:
            if d.address == self.address:
                self.now = (d.KIND, str(d))
                return

    def __str__(self):
        s = '%s was replaced by probe() #%d at ticks_ms %d' % (
            self.what, self.probe_number, self.ticks_ms)
        if self.now is False:
            return s + '; that probe did not find the device again'
        if self.now is None:
            return s
        kind, now = self.now
        if kind is None:
            return s + ', which left it %s' % now
        return "%s: use the new object, virtio.find(%r): %s" % (s, kind, now)


def public_methods(cls):
    names = _public.get(cls)
    if names is None:
        names = []
        for name in dir(cls):
            if name[0] == '_' or name in HARMLESS:
                continue
            v = getattr(cls, name)
            if callable(v) and not isinstance(v, property) and not isinstance(v, type):
                names.append(name)
        _public[cls] = names
    return names


def retire(obj, why):
    """Make every public method of obj raise VirtioError(str(why))."""
    def refuse(*args, **kw):
        raise VirtioError(str(why))

    for name in public_methods(type(obj)):
        setattr(obj, name, refuse)


def release(dev, why):
    """Reset dev, give its DMA memory back and retire it with its transport and
    queues. -> bytes given back. Never raises: a device that does not complete its
    reset keeps its memory (it may still write there), and is retired all the same."""
    if dev.retired is not None:
        return 0
    parts = [dev, dev.transport]
    for q in dev.queues:
        if q is not None:
            parts.append(q)
    freed = 0
    irqs = dev.interrupts           # reset() closes them, unless the reset fails
    try:
        dev.reset()
        freed = dev.memory.free_all()
    except Exception:
        pass
    dev.retired = why
    dev.memory.retire(why)
    for obj in parts:
        retire(obj, why)
    untrace(dev.transport)
    if irqs is not None:
        untrace(irqs)
    return freed
