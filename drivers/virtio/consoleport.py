# One virtio-console port (spec 5.3): a byte stream each way over its
# receiveq and transmitq, with preallocated DMA buffers (receive buffers kept
# posted, transmit buffers taken when free). virtio.console's ConsoleDevice
# sets ports up and tells them what the device says about them.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.errors import DeviceError, VirtioError, VirtioTimeout
from virtio.wait import Deadline

# Buffers, all preallocated DMA memory.
RX_BUFFERS = const(8)           # per port, kept posted in its receiveq
RX_BUFFER_SIZE = const(4096)    # what QEMU's socket chardev reads at a time
TX_BUFFERS = const(4)           # per port: writes in flight at once
TX_BUFFER_SIZE = const(4096)
DEFAULT_TIMEOUT_MS = const(1000)


def free_buffer(dev, q, n):
    """A transmit buffer (0..n-1) the device is not holding, or None: every
    finished one taken off the ring first. Which are free is read from the
    queue itself (the tokens of its requests in flight), so a call cut short
    by a Ctrl-C can lose none. On the legacy interface the used length of a
    transmitq or the control transmitq is ignored (5.3.6 "Legacy Interface:
    Device Operation": some devices put the buffer's length there)."""
    while True:
        try:
            if q.pop() is None:
                break
        except DeviceError as e:
            if e.token is None or not dev.transport.legacy_interface:
                raise
    busy = q.tokens()
    for k in range(n):
        if k not in busy:
            return k
    return None


class Port:
    """One console port: a byte stream each way. Reads and writes move data
    through the port's preallocated DMA buffers; the state the device told
    us is in `name`, `is_console`, `host_connected`, `size`."""

    def __init__(self, dev, port_id, rxq, txq, multiport):
        self.dev = dev
        self.hw = dev.hw
        self.id = port_id
        self.rxq = rxq
        self.txq = txq
        self.name = None            # from PORT_NAME
        self.is_console = False     # from CONSOLE_PORT
        self.size = None            # (cols, rows) from RESIZE
        # Without MULTIPORT nobody says: the host side counts as open, and
        # QEMU counts the guest side open from DRIVER_OK.
        self.host_connected = not multiport
        self.guest_open = not multiport
        self.removed = False
        hw = self.hw
        self._rx = hw.dma_alloc(RX_BUFFERS * RX_BUFFER_SIZE, 16)
        self._tx = hw.dma_alloc(TX_BUFFERS * TX_BUFFER_SIZE, 16)
        self._ready = []            # [slot, offset, length] received, not yet read
        for slot in range(RX_BUFFERS):
            self._post(slot)        # kicked once the device may be notified

    def __repr__(self):
        return '<virtio-console port %d%s%s%s>' % (
            self.id, ' %r' % self.name if self.name else '',
            ' console' if self.is_console else '',
            ' removed' if self.removed else (' host open' if self.host_connected
                                             else ' host closed'))

    # -- receiving (5.3.6 step 2) ------------------------------------------------
    def _post(self, slot):
        self.rxq.add((), [(self._rx + slot * RX_BUFFER_SIZE, RX_BUFFER_SIZE)], slot)

    def _fill(self):
        """Take completed receive buffers off the used ring; True if any."""
        got = False
        while True:
            r = self.rxq.pop()
            if r is None:
                return got
            slot, length = r
            if length:
                self._ready.append([slot, 0, length])
                got = True
            else:
                self._post(slot)        # an empty buffer goes straight back

    def _consume(self, k):
        """The first k unread bytes are read: a buffer read to its end goes
        back to the device (kicked by the caller)."""
        ent = self._ready[0]
        if ent[1] + k >= ent[2]:
            self._ready.pop(0)
            self._post(ent[0])
        else:
            ent[1] += k

    def _take(self, out, want):
        """Move up to `want` received bytes into bytearray `out`."""
        hw = self.hw
        ready = self._ready
        while want > 0 and ready:
            slot, off, length = ready[0]
            k = min(want, length - off)
            out.extend(hw.read(self._rx + slot * RX_BUFFER_SIZE + off, k))
            want -= k
            self._consume(k)

    def reset(self):
        """Forget the port's state (it was removed and is added again);
        unread data goes, its buffers back to the device."""
        while self._ready:
            self._consume(self._ready[0][2])
        self.removed = False
        self.name = None
        self.is_console = False
        self.size = None
        self.host_connected = False
        self.guest_open = False

    def _start(self):
        # Entry to read/write: news from the device first (was the port
        # removed?), then open the guest side if nobody did.
        self.dev.poll()
        self._usable()
        if not self.guest_open:
            self.open()

    def _usable(self):
        if self.removed:
            raise VirtioError('%s port %d: the device removed this port'
                              % (self.dev.label(), self.id))

    def any(self):
        """How many received bytes can be read without waiting."""
        self._usable()
        self.dev.poll()
        self._fill()
        n = 0
        for slot, off, length in self._ready:
            n += length - off
        return n

    def read(self, n, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Up to n bytes: waits until n bytes have arrived or timeout_ms has
        passed, and returns what arrived (b'' if nothing). timeout_ms=0
        takes what is there; None waits for all n."""
        if n < 0:
            raise ValueError('read: negative size %d' % n)
        self._start()
        out = bytearray()
        if n == 0:
            return b''
        deadline = Deadline(self.hw, timeout_ms)
        while True:
            self._take(out, n - len(out))
            if len(out) >= n:
                break
            if not self._more(deadline):
                break
        self.rxq.kick()
        return bytes(out)

    def readline(self, timeout_ms=DEFAULT_TIMEOUT_MS, limit=65536):
        """One line, up to and including b'\\n' (at most `limit` bytes);
        what arrived if timeout_ms passes first."""
        self._start()
        hw = self.hw
        out = bytearray()
        deadline = Deadline(hw, timeout_ms)
        while len(out) < limit:
            if self._ready:
                slot, off, length = self._ready[0]
                k = min(length - off, limit - len(out))
                chunk = hw.read(self._rx + slot * RX_BUFFER_SIZE + off, k)
                i = chunk.find(b'\n')
                if i >= 0:
                    k = i + 1
                    chunk = chunk[:k]
                out.extend(chunk)
                self._consume(k)
                if i >= 0:
                    break
                continue
            if not self._more(deadline):
                break
        self.rxq.kick()
        return bytes(out)

    def _more(self, deadline):
        """Nothing left to take: give emptied buffers back (before we wait),
        take what arrived, serve the control queue. False once the deadline
        has passed with nothing new."""
        self.rxq.kick()
        if self._fill():
            return True
        self.dev.poll()
        self._usable()
        return not deadline.expired()

    def readinto(self, buf):
        """The stream protocol, non-blocking: bytes copied into buf, or None
        when nothing has arrived."""
        if self.removed:
            return None
        if not self.guest_open:
            self.open()
        self._fill()
        if not self._ready:
            self.dev.poll()
            self._fill()
            if not self._ready:
                return None
        out = bytearray()
        self._take(out, len(buf))
        self.rxq.kick()
        buf[:len(out)] = out
        return len(out)

    # -- transmitting (5.3.6 step 1) ----------------------------------------------
    def _tx_slot(self, timeout_ms, done, total):
        """A free transmit buffer, waiting up to timeout_ms for the device
        to finish with one."""
        slot = free_buffer(self.dev, self.txq, TX_BUFFERS)
        if slot is not None:
            return slot
        deadline = Deadline(self.hw, timeout_ms)
        while True:
            self.dev.poll()
            self._usable()
            slot = free_buffer(self.dev, self.txq, TX_BUFFERS)
            if slot is not None:
                return slot
            if deadline.expired():
                raise VirtioTimeout('%s port %d: the host took no data for %d ms '
                                    '(%d of %d bytes written)'
                                    % (self.dev.label(), self.id, timeout_ms, done, total))

    def write(self, data, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Send data (bytes-like or str); returns its length once all of it
        is in transmit buffers. Waits while TX_BUFFERS writes are in flight,
        VirtioTimeout if the host takes none for timeout_ms. With the host
        side closed the device discards what is written."""
        self._start()
        if isinstance(data, str):
            data = data.encode()
        mv = memoryview(data)
        total = len(mv)
        hw = self.hw
        pos = 0
        while pos < total:
            slot = self._tx_slot(timeout_ms, pos, total)
            k = min(TX_BUFFER_SIZE, total - pos)
            addr = self._tx + slot * TX_BUFFER_SIZE
            hw.write(addr, mv[pos:pos + k])
            self.txq.add([(addr, k)], (), slot)
            self.txq.kick()
            pos += k
        return total

    def flush(self, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Wait until the device has taken every buffer written."""
        deadline = Deadline(self.hw, timeout_ms)
        free_buffer(self.dev, self.txq, TX_BUFFERS)
        while self.txq.in_flight:
            self.dev.poll()
            if deadline.expired():
                raise VirtioTimeout('%s port %d: %d writes still in flight after %d ms'
                                    % (self.dev.label(), self.id, self.txq.in_flight,
                                       timeout_ms))
            free_buffer(self.dev, self.txq, TX_BUFFERS)

    # -- open and close (5.3.6.2, PORT_OPEN) -------------------------------------
    def open(self):
        """Tell the device the guest side of this port is open: QEMU passes
        host data to a MULTIPORT port only then."""
        self._usable()
        if self.dev.multiport:
            self.dev.send_control(self.id, self.dev.PORT_OPEN, 1)
            # A notify on the receiveq makes QEMU look at the chardev again.
            self.dev.transport.notify(self.rxq.index)
        self.guest_open = True

    def close(self):
        """Tell the device the guest side is closed (the host sees it)."""
        if self.dev.multiport and self.guest_open and not self.removed:
            self.dev.send_control(self.id, self.dev.PORT_OPEN, 0)
        self.guest_open = False

    def wait_host(self, timeout_ms=DEFAULT_TIMEOUT_MS, connected=True):
        """Wait until the host side is open (closed with connected=False);
        VirtioTimeout if it does not happen within timeout_ms."""
        deadline = Deadline(self.hw, timeout_ms)
        while True:
            self.dev.poll()
            self._usable()
            if self.host_connected == connected:
                return
            if deadline.expired():
                raise VirtioTimeout('%s port %d: the host side did not %s within %d ms'
                                    % (self.dev.label(), self.id,
                                       'open' if connected else 'close', timeout_ms))
