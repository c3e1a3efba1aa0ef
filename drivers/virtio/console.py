# virtio-console (spec 5.3): ports carrying byte streams between the guest
# and the host, each over a receiveq (host to guest) and a transmitq.
#
#     con = virtio.find('console')
#     con.write(b'hello\n')                  # the console port (or port 0)
#     line = con.readline(timeout_ms=5000)
#     p = con.port('org.example.0')          # a named port (by name or by id)
#     p.write(b'ping'); p.read(4, timeout_ms=1000)
#
# Without MULTIPORT there is one port, 0, on queues 0/1. With MULTIPORT
# (5.3.6.1) the device announces its ports over the control queues: the
# driver sends DEVICE_READY, the device sends DEVICE_ADD per port, the
# driver sets the port up and answers PORT_READY, the device then says
# CONSOLE_PORT, PORT_NAME and PORT_OPEN as they apply. Every port keeps
# preallocated receive buffers posted; data the program has not read stays
# in them, so a guest that does not read holds the host back instead of
# losing bytes.
#
# Events (with interrupts, virtio.probe()'s default on PCI): the control
# receiveq's interrupt runs a handler that takes the device's messages in at
# once, not only when the program next reads or writes; each updates the
# port's attributes, then calls con.on_event(port, what): 'add' (hot-plug,
# QMP device_add), 'remove' (device_del), 'open' / 'close' (port.host_connected:
# the host side connected or not), 'name', 'resize' (port.size). With F_SIZE
# a configuration change updates con.cols / con.rows and calls
# con.on_event(con, 'size'). QEMU 7.2 offers no F_SIZE and sends no RESIZE.
#
# The spec (5.3.5 step 3) has the driver create the queues of all
# max_nr_ports ports at initialization, as Linux does; QEMU's default
# virtio-serial has 31 ports, 64 queues of up to 128 entries. We set up
# port 0's pair (without MULTIPORT) or the control pair before DRIVER_OK
# and a port's pair when DEVICE_ADD announces it: QEMU accepts a queue set
# up after DRIVER_OK, and ports that do not exist cost no DMA memory.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct

from virtio.consoleport import (DEFAULT_TIMEOUT_MS, Port, free_buffer,  # noqa: F401
                                 RX_BUFFERS, RX_BUFFER_SIZE, TX_BUFFERS, TX_BUFFER_SIZE)
from virtio.wait import Deadline
from virtio.device import VirtioDevice
from virtio.errors import DeviceError, NegotiationError, VirtioError, VirtioTimeout

VIRTIO_ID_CONSOLE = const(3)

# Feature bits (5.3.3).
VIRTIO_CONSOLE_F_SIZE = const(0)
VIRTIO_CONSOLE_F_MULTIPORT = const(1)
VIRTIO_CONSOLE_F_EMERG_WRITE = const(2)

# struct virtio_console_config (5.3.4). The spec's listing puts rows first;
# Linux and QEMU put cols first, and so do we.
CONFIG_COLS = const(0)
CONFIG_ROWS = const(2)
CONFIG_MAX_NR_PORTS = const(4)
CONFIG_EMERG_WR = const(8)

# Virtqueues (5.3.2): port 0, the control pair, then a pair per port.
PORT0_RECEIVEQ = const(0)
PORT0_TRANSMITQ = const(1)
CONTROL_RECEIVEQ = const(2)
CONTROL_TRANSMITQ = const(3)

# struct virtio_console_control (5.3.6.2): le32 id, le16 event, le16 value.
CONTROL_FORMAT = '<IHH'
CONTROL_SIZE = const(8)
VIRTIO_CONSOLE_BAD_ID = 0xFFFFFFFF      # the id of messages about no port
# Control events (5.3.6.2); Linux calls DEVICE_ADD/REMOVE PORT_ADD/REMOVE.
VIRTIO_CONSOLE_DEVICE_READY = const(0)
VIRTIO_CONSOLE_DEVICE_ADD = const(1)
VIRTIO_CONSOLE_DEVICE_REMOVE = const(2)
VIRTIO_CONSOLE_PORT_READY = const(3)
VIRTIO_CONSOLE_CONSOLE_PORT = const(4)
VIRTIO_CONSOLE_RESIZE = const(5)
VIRTIO_CONSOLE_PORT_OPEN = const(6)
VIRTIO_CONSOLE_PORT_NAME = const(7)
EVENT_NAMES = ('DEVICE_READY', 'DEVICE_ADD', 'DEVICE_REMOVE', 'PORT_READY',
               'CONSOLE_PORT', 'RESIZE', 'PORT_OPEN', 'PORT_NAME')

# Buffers, all preallocated DMA memory (a port's: virtio.consoleport).
CONTROL_RX_BUFFERS = const(32)  # QEMU drops a control message it has no buffer for
CONTROL_RX_SIZE = const(256)    # a header and a port name
CONTROL_TX_BUFFERS = const(8)
PORT_QUEUE_SIZE = const(32)     # modern only; legacy queue sizes are fixed

# QEMU answers a control message from its I/O thread, often at once but
# sometimes milliseconds later: init() waits until the device has been
# quiet for SETTLE_QUIET_MS (at most SETTLE_MAX_MS) so the ports are known.
SETTLE_QUIET_MS = const(10)
SETTLE_MAX_MS = const(200)


def event_name(event):
    if event < len(EVENT_NAMES):
        return EVENT_NAMES[event]
    return 'event %d' % event


def receiveq(port_id):
    """The receiveq index of a port (5.3.2)."""
    return PORT0_RECEIVEQ if port_id == 0 else 2 + 2 * port_id


def transmitq(port_id):
    return PORT0_TRANSMITQ if port_id == 0 else 3 + 2 * port_id


class ConsoleDevice(VirtioDevice):
    KIND = 'console'
    DEVICE_TYPE = VIRTIO_ID_CONSOLE
    NAME = 'virtio-console'
    PORT_OPEN = VIRTIO_CONSOLE_PORT_OPEN     # for its ports (virtio.consoleport)
    SUPPORTED_FEATURES = ((1 << VIRTIO_CONSOLE_F_SIZE) | (1 << VIRTIO_CONSOLE_F_MULTIPORT)
                          | (1 << VIRTIO_CONSOLE_F_EMERG_WRITE))
    FEATURE_NAMES = {VIRTIO_CONSOLE_F_SIZE: 'SIZE', VIRTIO_CONSOLE_F_MULTIPORT: 'MULTIPORT',
                     VIRTIO_CONSOLE_F_EMERG_WRITE: 'EMERG_WRITE'}

    def label(self):
        return '%s %s' % (self.address, self.NAME)

    # -- initialization (5.3.5) --------------------------------------------------------
    def setup(self):
        self.ports = {}             # port id -> Port
        self.errors = []            # what the device did wrong, in words
        self.multiport = self.has(VIRTIO_CONSOLE_F_MULTIPORT)
        self.max_nr_ports = 1
        self._control = []          # control messages received, not yet handled
        self._handling = False
        self._pumping = False
        self._missed = False        # the control interrupt came while we were busy
        self._irq_on = False        # the control receiveq interrupts (_control_irq)
        self.cols = self.rows = None
        if self.has(VIRTIO_CONSOLE_F_SIZE):
            self.cols, self.rows = self.size()
        if not self.multiport:
            self._add_port(0)
            return
        t = self.transport
        limit = (t.num_queues() - 2) // 2
        self.max_nr_ports = self.check_config(
            'max_nr_ports', self.read_config(lambda: t.config_read32(CONFIG_MAX_NR_PORTS)),
            1, max(limit, 1))
        hw = self.hw
        self.ctl_rxq = self.setup_queue(CONTROL_RECEIVEQ, indirect_max=0)
        self.ctl_txq = self.setup_queue(CONTROL_TRANSMITQ, indirect_max=0)
        n = min(CONTROL_RX_BUFFERS, self.ctl_rxq.size)
        self._ctl_rx = hw.dma_alloc(n * CONTROL_RX_SIZE, 16)
        for slot in range(n):
            self._ctl_post(slot)
        self._ctl_tx = hw.dma_alloc(CONTROL_TX_BUFFERS * CONTROL_SIZE, 16)
        self._ctl_tx_count = min(CONTROL_TX_BUFFERS, self.ctl_txq.size)
        self._scratch = bytearray(CONTROL_SIZE)

    def init(self):
        """The generic initialization (3.1.1), then, with MULTIPORT,
        DEVICE_READY and the port announcements it brings."""
        VirtioDevice.init(self)
        if not self.multiport:
            self.ports[0].rxq.kick()
            return self
        try:
            self.ctl_rxq.kick()
            self.send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1)
            self._settle()
            if self.interrupts is not None:
                # Nobody waits on this ring: its interrupt runs _control_irq.
                self.ctl_rxq.sleeper = None
                self.interrupts.on_queue(CONTROL_RECEIVEQ, self._control_irq)
                self._irq_on = True
                self._control_irq()
        except Exception as e:
            self._fail()
            raise NegotiationError('%s: DEVICE_READY step: %s' % (self.label(), e),
                                   'DEVICE_READY', e)
        return self

    def __str__(self):
        s = VirtioDevice.__str__(self)
        ports = getattr(self, 'ports', None)
        if ports:
            s += ' ports=' + ','.join([self._port_str(ports[i]) for i in sorted(ports)])
        return s

    @staticmethod
    def _port_str(p):
        s = str(p.id)
        if p.is_console:
            s += ':console'
        if p.name:
            s += ':' + p.name
        return s

    def _add_port(self, port_id):
        t = self.transport
        size = None if t.fixed_queue_size else min(PORT_QUEUE_SIZE,
                                                t.queue_max_size(receiveq(port_id)))
        rxq = self.setup_queue(receiveq(port_id), size, indirect_max=0)
        if not t.fixed_queue_size:
            size = min(PORT_QUEUE_SIZE, t.queue_max_size(transmitq(port_id)))
        txq = self.setup_queue(transmitq(port_id), size, indirect_max=0)
        port = Port(self, port_id, rxq, txq, self.multiport)
        self.ports[port_id] = port
        return port

    # -- the control queues (5.3.6.2) ---------------------------------------------------
    def _ctl_post(self, slot):
        self.ctl_rxq.add((), [(self._ctl_rx + slot * CONTROL_RX_SIZE, CONTROL_RX_SIZE)], slot)

    def _control_pump(self):
        """Copy every control message the device sent into self._control
        and give its buffer straight back, so the device always has some."""
        self._pumping = True
        try:
            return self._pump()
        finally:
            self._pumping = False

    def _pump(self):
        # With interrupts, the ring asks for the next notification once it
        # looks empty (2.7.7: with EVENT_IDX, the next used entry), then is
        # looked at once more: a message used in between raises none.
        q = self.ctl_rxq
        hw = self.hw
        got = False
        armed = not self._irq_on
        while True:
            try:
                r = q.pop()
            except DeviceError as e:
                if e.token is None:
                    raise
                # QEMU reports a message's full length even when it had to
                # cut it to our buffer.
                self._error('a control message longer than its %d-byte buffer was cut'
                            % CONTROL_RX_SIZE)
                r = (e.token, CONTROL_RX_SIZE)
            if r is None:
                if armed:
                    break
                q.enable_interrupts()
                armed = True
                continue
            armed = not self._irq_on
            slot, length = r
            self._control.append(hw.read(self._ctl_rx + slot * CONTROL_RX_SIZE, length))
            self._ctl_post(slot)
            got = True
        if got:
            q.kick()
        return got

    def send_control(self, port_id, event, value):
        """Send one control message (driver to device) and take in what the
        device answered at once."""
        q = self.ctl_txq
        deadline = Deadline(self.hw, DEFAULT_TIMEOUT_MS)
        while True:
            slot = free_buffer(self, q, self._ctl_tx_count)
            if slot is not None:
                break
            if deadline.expired():
                raise VirtioTimeout('%s: the device took no control message for %d ms'
                                    % (self.label(), DEFAULT_TIMEOUT_MS))
        addr = self._ctl_tx + slot * CONTROL_SIZE
        struct.pack_into(CONTROL_FORMAT, self._scratch, 0, port_id, event, value)
        self.hw.write(addr, self._scratch)
        q.add([(addr, CONTROL_SIZE)], (), slot)
        q.kick()
        self._control_pump()
        if self._missed and not self._handling:
            self._control_irq()

    def poll(self):
        """Handle the control messages that arrived (port added, removed,
        named, opened or closed by the host); True if any came. Reads and
        writes call it."""
        if not self.multiport or self._handling:
            return False
        self._handling = True
        try:
            got = self._control_pump()
            while self._control:
                self._handle(self._control.pop(0))
        finally:
            self._handling = False
        if self._missed:
            self._control_irq()
        return got

    def _control_irq(self):
        # The control receiveq's interrupt (a handler, between two bytecodes of
        # whatever runs): take the messages in (which re-arms the ring). If it
        # cut into our own use of the queue, that code calls us again when it
        # is done.
        if self._handling or self._pumping:
            self._missed = True
            return
        self._missed = False
        self.poll()

    def _settle(self):
        hw = self.hw
        start = last = hw.ticks_ms()
        while True:
            if self.poll():
                last = hw.ticks_ms()
            now = hw.ticks_ms()
            if (hw.ticks_diff(now, last) >= SETTLE_QUIET_MS
                    or hw.ticks_diff(now, start) >= SETTLE_MAX_MS):
                return

    def _error(self, msg):
        self.errors.append(msg)

    def _handle(self, msg):
        if len(msg) < CONTROL_SIZE:
            self._error('control message of %d bytes, shorter than its %d-byte header'
                        % (len(msg), CONTROL_SIZE))
            return
        port_id, event, value = struct.unpack_from(CONTROL_FORMAT, msg, 0)
        if event == VIRTIO_CONSOLE_DEVICE_ADD:
            self._device_add(port_id)
            return
        port = self.ports.get(port_id)
        if port is None or port.removed:
            self._error('%s for port %d, which the device has not added'
                        % (event_name(event), port_id))
            return
        what = None
        if event == VIRTIO_CONSOLE_DEVICE_REMOVE:
            port.removed = True
            port.host_connected = False
            port.guest_open = False
            what = 'remove'
        elif event == VIRTIO_CONSOLE_CONSOLE_PORT:
            # 5.3.6.2.2: a console port is opened at once.
            port.is_console = True
            self.send_control(port_id, VIRTIO_CONSOLE_PORT_OPEN, 1)
            port.guest_open = True
        elif event == VIRTIO_CONSOLE_RESIZE:
            if len(msg) < CONTROL_SIZE + 4:
                self._error('RESIZE for port %d without its cols and rows' % port_id)
            else:
                port.size = struct.unpack_from('<HH', msg, CONTROL_SIZE)
                what = 'resize'
        elif event == VIRTIO_CONSOLE_PORT_OPEN:
            port.host_connected = value != 0
            what = 'open' if value else 'close'
        elif event == VIRTIO_CONSOLE_PORT_NAME:
            # The spec says no NUL terminator; QEMU sends one.
            name = bytes(msg[CONTROL_SIZE:])
            end = name.find(b'\x00')
            if end >= 0:
                name = name[:end]
            try:
                port.name = name.decode('utf-8')
                what = 'name'
            except UnicodeError:
                self._error('PORT_NAME for port %d is not UTF-8: %r' % (port_id, name))
        else:
            self._error('unknown control event %d (value %d) for port %d'
                        % (event, value, port_id))
        if what is not None:
            self.emit(port, what)

    def _device_add(self, port_id):
        if port_id >= self.max_nr_ports:
            self._error('DEVICE_ADD for port %d, beyond max_nr_ports %d'
                        % (port_id, self.max_nr_ports))
            return
        port = self.ports.get(port_id)
        if port is not None and not port.removed:
            self._error('DEVICE_ADD for port %d, which exists' % port_id)
            return
        try:
            if port is None:
                port = self._add_port(port_id)
            else:
                port.reset()        # hot-plugged again: queues and buffers remain
            port.rxq.kick()
        except (VirtioError, MemoryError) as e:
            self._error('port %d could not be set up: %s' % (port_id, e))
            self.ports.pop(port_id, None)
            self.send_control(port_id, VIRTIO_CONSOLE_PORT_READY, 0)
            return
        self.send_control(port_id, VIRTIO_CONSOLE_PORT_READY, 1)
        self.emit(port, 'add')

    # -- ports ----------------------------------------------------------------------------
    def port(self, key, timeout_ms=DEFAULT_TIMEOUT_MS):
        """A port by id (int) or by name (str), waiting up to timeout_ms for
        the device to announce it."""
        deadline = Deadline(self.hw, timeout_ms)
        while True:
            self.poll()
            for p in self.ports.values():
                if p.removed:
                    continue
                if (p.id == key) if isinstance(key, int) else (p.name == key):
                    return p
            if deadline.expired():
                raise VirtioError('%s: no port %r (ports: %s)'
                                  % (self.label(), key,
                                     ', '.join([self._port_str(self.ports[i])
                                                for i in sorted(self.ports)
                                                if not self.ports[i].removed]) or 'none'))

    def port_list(self):
        """The ports the device has announced, by id."""
        self.poll()
        return [self.ports[i] for i in sorted(self.ports) if not self.ports[i].removed]

    def console(self):
        """The port the console methods use: the first console port, else
        port 0, else the first port."""
        ports = self.port_list()
        for p in ports:
            if p.is_console:
                return p
        for p in ports:
            if p.id == 0:
                return p
        if ports:
            return ports[0]
        raise VirtioError('%s: the device has no ports' % self.label())

    def write(self, data, timeout_ms=DEFAULT_TIMEOUT_MS):
        return self.console().write(data, timeout_ms)

    def read(self, n, timeout_ms=DEFAULT_TIMEOUT_MS):
        return self.console().read(n, timeout_ms)

    def readline(self, timeout_ms=DEFAULT_TIMEOUT_MS):
        return self.console().readline(timeout_ms)

    def readinto(self, buf):
        return self.console().readinto(buf)

    def any(self):
        return self.console().any()

    # -- console size and emergency write (5.3.4, 5.3.5) ----------------------------------------
    def size(self):
        """(cols, rows) of port 0 when F_SIZE was negotiated, else None."""
        if not self.has(VIRTIO_CONSOLE_F_SIZE):
            return None
        t = self.transport
        return self.read_config(lambda: (t.config_read16(CONFIG_COLS),
                                         t.config_read16(CONFIG_ROWS)))

    def config_changed(self):
        # The console size is the only configuration that changes (5.3.4).
        if self.has(VIRTIO_CONSOLE_F_SIZE):
            size = self.size()
            if size != (self.cols, self.rows):
                self.cols, self.rows = size
                return 'size'

    def emerg_write(self, data):
        """Write bytes through emerg_wr, one config write each: no queues
        involved, so it works even with broken rings (5.3.5)."""
        if not (self.offered >> VIRTIO_CONSOLE_F_EMERG_WRITE) & 1:
            raise VirtioError('%s: the device does not offer EMERG_WRITE' % self.label())
        if isinstance(data, str):
            data = data.encode()
        for b in data:
            self.transport.config_write32(CONFIG_EMERG_WR, b)
        return len(data)


DRIVER = ConsoleDevice
