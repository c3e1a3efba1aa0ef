# select: MicroPython's select module (poll, ipoll; select) for the sockets of
# inet/sockets.py.
from inet.sockets import POLLERR, POLLHUP, POLLIN, POLLOUT, poll  # noqa: F401


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
