# MicroPython's `socket` and `select` APIs (docs.micropython.org, library/socket.html and
# library/select.html) over this stack: SOCK_STREAM on tcp.py, SOCK_DGRAM on udp.py.
# The image's `socket` and `select` modules re-export this module (firmware/socket.py,
# firmware/select.py); there the stack comes up by itself on first use (DHCP on the first
# virtio-net) unless set_stack() gave one.
#
# Blocking calls poll the stack while they wait: the stack has no thread or interrupt of
# its own, so TCP timers and retransmissions run only while some socket call (or
# stack.poll) runs. Errors are OSError with Linux errno values, as MicroPython's are.

from inet import dns
from inet.addr import ip_addr, ip_aton, ip_ntoa
from inet import tcb

AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 1
SO_REUSEADDR = 2

POLLIN = 0x0001
POLLOUT = 0x0004
POLLERR = 0x0008
POLLHUP = 0x0010

EPERM = 1
ENOENT = 2
EBADF = 9
EAGAIN = 11
EINVAL = 22
EPIPE = 32
EAFNOSUPPORT = 97
EADDRINUSE = 98
ECONNABORTED = 103
ECONNRESET = 104
EISCONN = 106
ENOTCONN = 107
ETIMEDOUT = 110
ECONNREFUSED = 111
EALREADY = 114
EINPROGRESS = 115

WAIT_SLICE_MS = 10           # a blocked call polls this long at most, so timers still run
DEFAULT_BACKLOG = 2
CLOSE_LINGER_MS = 3000       # close() waits this long at most for its data to be acknowledged

_state = {"stack": None, "factory": None}


def set_stack(stack):
    """Use this inet.Stack for every socket (instead of bringing one up on first use)."""
    _state["stack"] = stack


def set_factory(fn):
    """fn() -> a configured inet.Stack, called on the first socket call if none was set."""
    _state["factory"] = fn


def get_stack():
    s = _state["stack"]
    if s is None:
        fn = _state["factory"]
        if fn is None:
            raise OSError(ENOENT, "no network stack: call set_stack(inet.Stack(...)) first")
        s = _state["stack"] = fn()
    return s


def _wait(stack, ready, timeout_ms):
    """Poll the stack until ready() or timeout_ms pass (None: no limit). -> ready()."""
    if ready():
        return True
    if timeout_ms == 0:
        stack.poll(0)
        return ready()
    clock = stack.clock
    start = clock.ticks_ms()
    while True:
        left = WAIT_SLICE_MS
        if timeout_ms is not None:
            left = timeout_ms - clock.ticks_diff(clock.ticks_ms(), start)
            if left <= 0:
                return ready()
            if left > WAIT_SLICE_MS:
                left = WAIT_SLICE_MS
        stack.poll(left)
        if ready():
            return True


def _host(stack, host):
    """An address as the user gives it ('10.0.2.2', '', a name) -> 4 bytes."""
    if not host or host == "0.0.0.0":
        return b"\x00\x00\x00\x00"
    try:
        return ip_aton(host)
    except ValueError:
        pass
    return dns.resolve(stack, host)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """-> [(AF_INET, type, proto, '', (address string, port))]: numeric addresses as they
    are, names through the DNS server that DHCP gave."""
    if af not in (0, AF_INET):
        raise OSError(EAFNOSUPPORT, "only AF_INET")
    if isinstance(host, bytes):
        host = host.decode()
    try:
        addr = ip_aton(host)
    except ValueError:
        addr = _host(get_stack(), host)
    return [(AF_INET, type or SOCK_STREAM, proto, "", (ip_ntoa(addr), port))]


def _timeout_error(what):
    return OSError(ETIMEDOUT, "%s timed out" % what)


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        if af != AF_INET:
            raise OSError(EAFNOSUPPORT, "only AF_INET sockets")
        if type not in (SOCK_STREAM, SOCK_DGRAM):
            raise OSError(EINVAL, "only SOCK_STREAM and SOCK_DGRAM sockets")
        self._stack = get_stack()
        self.type = type
        self._timeout = None          # None: block; 0: non-blocking; else seconds
        self._reuse = False
        self._port = 0                # bound local port (TCP)
        self._conn = None             # tcb.Connection
        self._listener = None
        self._udp = None              # udp.Socket
        self._peer = None             # UDP default destination (connect)
        self._closed = False

    def __repr__(self):
        what = self._conn or self._listener or self._udp
        return "<socket %s %r>" % ("stream" if self.type == SOCK_STREAM else "dgram", what)

    # ---- options -----------------------------------------------------------------------

    def settimeout(self, value):
        if value is not None and value < 0:
            raise ValueError("timeout must be None or >= 0")
        self._timeout = value

    def setblocking(self, flag):
        self._timeout = None if flag else 0

    def setsockopt(self, level, optname, value):
        if level == SOL_SOCKET and optname == SO_REUSEADDR:
            self._reuse = bool(value)
            return
        raise OSError(EINVAL, "unsupported socket option %d/%d" % (level, optname))

    def _ms(self):
        t = self._timeout
        return None if t is None else int(t * 1000)

    def _check_open(self):
        if self._closed:
            raise OSError(EBADF, "socket is closed")

    # ---- addresses ---------------------------------------------------------------------

    def bind(self, address):
        self._check_open()
        host, port = address
        ip = _host(self._stack, host)
        if ip != b"\x00\x00\x00\x00" and ip != self._stack.ip:
            raise OSError(EINVAL, "%s is not this host's address" % ip_ntoa(ip))
        if self.type == SOCK_DGRAM:
            if self._udp is not None:
                raise OSError(EINVAL, "socket is already bound")
            self._udp = self._stack.socket(port)
            return
        tcp = self._stack.tcp
        if self._port:
            raise OSError(EINVAL, "socket is already bound")
        if port == 0:
            port = tcp.free_port()
        elif port in tcp.bound or tcp.port_in_use(port, self._reuse):
            raise OSError(EADDRINUSE, "TCP port %d is in use" % port)
        tcp.bound.add(port)
        self._port = port

    def getsockname(self):
        s = self._stack
        port = self._udp.port if self._udp is not None else self._port
        return (ip_ntoa(s.ip) if s.ip else "0.0.0.0", port)

    def getpeername(self):
        c = self._conn
        if c is None:
            raise OSError(ENOTCONN, "not connected")
        return (ip_ntoa(c.rip), c.rport)

    # ---- TCP: passive open -------------------------------------------------------------

    def listen(self, backlog=DEFAULT_BACKLOG):
        self._check_open()
        if self.type != SOCK_STREAM:
            raise OSError(EINVAL, "listen() on a datagram socket")
        if not self._port:
            self.bind(("", 0))
        self._listener = self._stack.tcp.listen(self._port, backlog)

    def accept(self):
        lst = self._listener
        if lst is None:
            raise OSError(EINVAL, "accept() before listen()")
        if not _wait(self._stack, lambda: lst.ready, self._ms()):
            if self._timeout == 0:
                raise OSError(EAGAIN, "no connection waiting")
            raise _timeout_error("accept")
        c = lst.accept()
        s = socket(AF_INET, SOCK_STREAM)
        s._conn = c
        s._timeout = self._timeout
        return s, (ip_ntoa(c.rip), c.rport)

    # ---- TCP: active open --------------------------------------------------------------

    def connect(self, address):
        self._check_open()
        host, port = address
        ip = _host(self._stack, host)
        if self.type == SOCK_DGRAM:
            self._peer = (ip, port)
            return
        if self._conn is not None:
            raise OSError(EISCONN if self._conn.state != tcb.SYN_SENT else EALREADY,
                          "already connected")
        tcp = self._stack.tcp
        c = self._conn = tcp.connect(ip, port, self._port)
        if self._port:
            tcp.bound.discard(self._port)
        self._port = c.lport
        if self._timeout == 0:
            raise OSError(EINPROGRESS, "connecting")
        ok = _wait(self._stack, lambda: c.state != tcb.SYN_SENT, self._ms())
        if c.error is not None:
            self._conn = None
            raise OSError(c.error, "connect to %s:%d: %s" % (
                ip_ntoa(ip), port, "refused" if c.error == ECONNREFUSED else "no answer"))
        if not ok:
            c.abort()
            self._conn = None
            raise _timeout_error("connect")

    # ---- TCP: data ---------------------------------------------------------------------

    def _connection(self):
        self._check_open()
        c = self._conn
        if c is None:
            raise OSError(ENOTCONN, "socket is not connected")
        return c

    def send(self, data):
        if self.type == SOCK_DGRAM:
            if self._peer is None:
                raise OSError(ENOTCONN, "datagram socket has no peer: use sendto")
            return self.sendto(data, self._peer)
        c = self._connection()
        if not _wait(self._stack, lambda: c.writable() or c.state not in
                     (tcb.ESTABLISHED, tcb.CLOSE_WAIT, tcb.SYN_SENT, tcb.SYN_RECEIVED),
                     self._ms()):
            if self._timeout == 0:
                raise OSError(EAGAIN, "send buffer full")
            raise _timeout_error("send")
        if not c.writable():
            if c.error is not None:
                raise OSError(c.error, "connection reset" if c.error == ECONNRESET
                              else "connection failed")
            raise OSError(EPIPE, "connection is closed for sending")
        return c.send(data)

    def sendall(self, data):
        mv = memoryview(data)
        sent = 0
        while sent < len(mv):
            sent += self.send(mv[sent:])

    def write(self, data):
        self.sendall(data)
        return len(data)

    def _wait_readable(self, c):
        if not _wait(self._stack, c.readable, self._ms()):
            if self._timeout == 0:
                return False
            raise _timeout_error("recv")
        if c.error is not None and not (c.rcvq is not None and len(c.rcvq)):
            raise OSError(c.error, "connection reset" if c.error == ECONNRESET
                          else "connection failed")
        return True

    def recv(self, bufsize):
        if self.type == SOCK_DGRAM:
            return self.recvfrom(bufsize)[0]
        c = self._connection()
        if not self._wait_readable(c):
            raise OSError(EAGAIN, "no data")
        if c.rcvq is None:
            return b""
        return c.recv_take(bufsize)

    def read(self, size=-1):
        """Stream read: size bytes, fewer only at the end of the stream; all with size<0.
        None on a non-blocking socket with no data (MicroPython's stream convention)."""
        c = self._connection()
        out = bytearray()
        while size < 0 or len(out) < size:
            if not self._wait_readable(c):
                return bytes(out) if out else None
            if c.rcvq is None or not len(c.rcvq):
                break                         # end of stream
            out += c.recv_take(65536 if size < 0 else size - len(out))
        return bytes(out)

    def readinto(self, buf, nbytes=None):
        n = len(buf) if nbytes is None else nbytes
        data = self.read(n) if self.type == SOCK_STREAM else self.recv(n)
        if data is None:
            return None
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        c = self._connection()
        out = bytearray()
        while True:
            if not self._wait_readable(c):
                return bytes(out)
            q = c.rcvq
            if q is None or not len(q):
                return bytes(out)
            i = q.find(10, len(q))
            if i >= 0:
                out += c.recv_take(i + 1)
                return bytes(out)
            out += c.recv_take(len(q))

    def makefile(self, mode="rb", buffering=0):
        return self                           # as MicroPython: the socket is the stream

    def shutdown(self, how=1):
        """Half-close (SHUT_WR = 1; 2 both): a FIN, reading goes on."""
        c = self._connection()
        if how in (1, 2):
            c.shutdown_write()

    def close(self):
        if self._closed:
            return
        self._closed = True
        c = self._conn
        if c is not None:
            c.close()
            # Nothing runs the stack in the background: linger (polling) until the data
            # and the FIN are acknowledged, or CLOSE_LINGER_MS pass, so that they do not
            # wait in the send buffer for a poll that may never come.
            _wait(self._stack, lambda: c.state in (tcb.FIN_WAIT_2, tcb.TIME_WAIT, tcb.CLOSED),
                  CLOSE_LINGER_MS)
        if self._listener is not None:
            self._listener.close()
        if self._udp is not None:
            self._udp.close()
        if self._port:
            self._stack.tcp.bound.discard(self._port)

    def __del__(self):
        pass

    # ---- UDP ---------------------------------------------------------------------------

    def sendto(self, data, address):
        self._check_open()
        if self.type != SOCK_DGRAM:
            raise OSError(EINVAL, "sendto() on a stream socket")
        if self._udp is None:
            self._udp = self._stack.socket(0)
        host, port = address
        ip = _host(self._stack, host) if isinstance(host, str) else ip_addr(host)
        self._udp.sendto(data, (ip, port))
        return len(data)

    def recvfrom(self, bufsize):
        self._check_open()
        if self.type != SOCK_DGRAM:
            c = self._connection()
            return self.recv(bufsize), (ip_ntoa(c.rip), c.rport)
        if self._udp is None:
            raise OSError(EINVAL, "recvfrom() on an unbound datagram socket")
        q = self._udp._queue
        if not _wait(self._stack, lambda: q, self._ms()):
            if self._timeout == 0:
                raise OSError(EAGAIN, "no datagram")
            raise _timeout_error("recvfrom")
        e = q.pop(0)
        return bytes(e[0][:bufsize]), (ip_ntoa(e[1]), e[2])

    # ---- readiness for select.poll -----------------------------------------------------

    def _events(self):
        if self._closed:
            return POLLHUP
        if self._listener is not None:
            return POLLIN if self._listener.ready else 0
        if self.type == SOCK_DGRAM:
            return (POLLIN if self._udp is not None and self._udp._queue else 0) | POLLOUT
        c = self._conn
        if c is None:
            return 0
        ev = 0
        if c.readable():
            ev |= POLLIN
        if c.writable():
            ev |= POLLOUT
        if c.error is not None:
            ev |= POLLERR
        if c.state == tcb.CLOSED or (c.fin_received and c.fin_pending):
            ev |= POLLHUP
        return ev


class poll:
    """select.poll(): register sockets with an event mask, then poll(timeout_ms) or
    ipoll(timeout_ms, flags) for those that are ready. POLLERR and POLLHUP are reported
    whether asked for or not."""

    def __init__(self):
        self._map = {}

    def register(self, obj, eventmask=POLLIN | POLLOUT):
        self._map[id(obj)] = [obj, eventmask]

    def modify(self, obj, eventmask):
        e = self._map.get(id(obj))
        if e is None:
            raise OSError(ENOENT, "object not registered")
        e[1] = eventmask

    def unregister(self, obj):
        self._map.pop(id(obj), None)

    def _ready(self):
        out = []
        for obj, mask in self._map.values():
            ev = obj._events() & (mask | POLLERR | POLLHUP)
            if ev:
                out.append((obj, ev))
        return out

    def poll(self, timeout=-1):
        """-> [(obj, events)] of the ready objects, waiting up to timeout ms (-1: no
        limit) for one."""
        found = []
        stack = get_stack()

        def ready():
            found[:] = self._ready()
            return bool(found)
        _wait(stack, ready, None if timeout is None or timeout < 0 else timeout)
        return found

    def ipoll(self, timeout=-1, flags=0):
        """Like poll, as an iterator; flags=1 (one-shot) sets each reported object's mask
        to 0 until modify() re-arms it."""
        for obj, ev in self.poll(timeout):
            if flags & 1:
                self._map[id(obj)][1] = 0
            yield (obj, ev)
