# select: MicroPython's select module (poll, ipoll; select). inet's sockets are
# polled by inet/sockets.py (which runs the network stack while it waits);
# streams such as sys.stdin.buffer (mpremote mount waits on the console) by the
# port's C poller, _select.
from inet.sockets import POLLERR, POLLHUP, POLLIN, POLLOUT  # noqa: F401
from inet import sockets

try:
    import _select
except ImportError:             # the host: sockets only
    _select = None


class poll:
    """select.poll(): register objects with an event mask, then poll(timeout_ms) or
    ipoll(timeout_ms, flags)."""

    def __init__(self):
        self._sockets = sockets.poll()
        self._streams = None
        self._nsockets = 0
        self._nstreams = 0

    def _of(self, obj):
        if isinstance(obj, sockets.socket):
            return self._sockets
        if self._streams is None:
            if _select is None:
                raise TypeError('select.poll: %s is not a socket' % type(obj).__name__)
            self._streams = _select.poll()
        return self._streams

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        p = self._of(obj)
        p.register(obj, eventmask)
        if p is self._sockets:
            self._nsockets = len(p._map)
        else:
            self._nstreams += 1

    def modify(self, obj, eventmask):
        self._of(obj).modify(obj, eventmask)

    def unregister(self, obj):
        p = self._of(obj)
        p.unregister(obj)
        if p is self._sockets:
            self._nsockets = len(p._map)
        elif self._nstreams:
            self._nstreams -= 1

    def poll(self, timeout=-1):
        if not self._nstreams:
            return self._sockets.poll(timeout)
        if not self._nsockets:
            return self._streams.poll(timeout)
        # Both kinds: look at each in turn, the sockets' stack run while waiting.
        waited = 0
        while True:
            found = self._sockets.poll(0) + self._streams.poll(0)
            if found or (timeout is not None and 0 <= timeout <= waited):
                return found
            self._streams.poll(1)
            waited += 1

    def ipoll(self, timeout=-1, flags=0):
        for obj, ev in self.poll(timeout):
            if flags & 1:
                self.modify(obj, 0)
            yield (obj, ev)


def select(rlist, wlist, xlist, timeout=None):
    """The classic form, built on poll. -> (readable, writable, in error)."""
    p = poll()
    for o in rlist:
        p.register(o, POLLIN)
    for o in wlist:
        p.register(o, POLLOUT | (POLLIN if o in rlist else 0))
    ms = -1 if timeout is None else int(timeout * 1000)
    r, w, x = [], [], []
    for o, ev in p.poll(ms):
        if ev & (POLLIN | POLLHUP | POLLERR) and o in rlist:
            r.append(o)
        if ev & POLLOUT and o in wlist:
            w.append(o)
        if ev & POLLERR and o in xlist:
            x.append(o)
    return r, w, x
