# Register tracing: virtio.trace(True) makes every transport register access
# print one line naming the device, the transport, the register (by its spec
# name), the direction and the value decoded:
#     00:03.0 legacy device_status <- 0x03 ACKNOWLEDGE|DRIVER
# Off, it costs nothing: a transport swaps its register windows for traced
# wrappers when tracing turns on, and back when it turns off, instead of
# testing a flag on every access.

try:
    import weakref
    _live = weakref.WeakSet()
except ImportError:          # MicroPython: few transports, keep them all
    _live = None
    _live_list = []

_on = False
_out = [print]


def enabled():
    return _on


def enable(on, write=None):
    """Turn tracing on or off for every transport, existing and future.
    `write` receives each line (default: print)."""
    global _on
    _on = bool(on)
    if write is not None:
        _out[0] = write
    for t in _transports():
        t.set_trace(_on)


def register(transport):
    if _live is not None:
        _live.add(transport)
    else:
        _live_list.append(transport)
    if _on:
        transport.set_trace(True)


def unregister(transport):
    """Forget a transport nobody drives any more (virtio.release)."""
    if _live is not None:
        _live.discard(transport)
    elif transport in _live_list:
        _live_list.remove(transport)


def _transports():
    if _live is not None:
        return list(_live)
    return _live_list


def emit(line):
    _out[0](line)


def hexval(value, width):
    return ('0x%0' + str(2 * width) + 'x') % value


class Traced:
    """A register window that reports each access through its transport's
    describe(region, off, width, value) -> (register name, decoded text)."""

    def __init__(self, inner, transport, region):
        self.inner = inner
        self.transport = transport
        self.region = region

    def _show(self, off, width, value, arrow):
        name, text = self.transport.describe(self.region, off, width, value)
        line = '%s %s %s %s %s' % (self.transport.address, self.transport.name,
                                   name, arrow, hexval(value, width))
        if text:
            line += ' ' + text
        emit(line)

    def r8(self, off):
        v = self.inner.r8(off)
        self._show(off, 1, v, '->')
        return v

    def r16(self, off):
        v = self.inner.r16(off)
        self._show(off, 2, v, '->')
        return v

    def r32(self, off):
        v = self.inner.r32(off)
        self._show(off, 4, v, '->')
        return v

    def w8(self, off, v):
        self._show(off, 1, v, '<-')
        self.inner.w8(off, v)

    def w16(self, off, v):
        self._show(off, 2, v, '<-')
        self.inner.w16(off, v)

    def w32(self, off, v):
        self._show(off, 4, v, '<-')
        self.inner.w32(off, v)

    def w16_at(self, off):
        return self.w16, off

    def w32_at(self, off):
        return self.w32, off
