"""virtio-console (spec 5.3) as QEMU 7.2's virtio-serial behaves, with a host
side the tests drive: what a chardev would send and receive, its opening and
closing, port hot-plug.

    model = ConsoleModel(ports=[HostPort(console=True),
                                 HostPort(name='org.example.0', host_connected=False)])
    ... the driver initializes ...
    model.host_send(1, b'hello')          # the host writes to port 1
    model.port(1).received                # what the guest wrote to port 1
    model.host_open(1); model.host_close(1)

Like QEMU (hw/char/virtio-serial-bus.c): queues are port 0's pair, the
control pair, then a pair per port up to max_ports (128 entries, control
32); port 0 goes to the first console port; DEVICE_READY brings one
DEVICE_ADD per port; PORT_READY brings CONSOLE_PORT, PORT_NAME (with a NUL,
which the spec says there is not) and PORT_OPEN as they apply; a control
message with no receive buffer posted is dropped (recorded in `dropped`);
host data waits in `pending` until the guest has opened the port and posted
buffers; data written while the host side is closed is discarded.

Misbehaviours (`misbehave=`, besides those of VirtioPciModel):
  'add_out_of_range'   DEVICE_READY also announces port max_ports
  'add_twice'          every DEVICE_ADD is sent twice
  'remove_unknown'     DEVICE_READY also removes a port never added
  'short_control'      a 4-byte control message after the DEVICE_ADDs
  'unknown_event'      an event 99 for the first port after PORT_READY
  'long_name'          the name message is reported at its full length even
                       when cut to the buffer (as QEMU does)
  'tx_used_len'        used lengths of the transmitqs and the control transmitq
                       carry the buffer length (some legacy devices did)
A HostPort with `throttled` set holds what the guest writes, like QEMU when the
chardev is full, until release() passes it on.
"""

import struct

from tests.host.models.virtio import VirtioPciModel

# Feature bits and config (5.3.3, 5.3.4; cols before rows, as QEMU).
VIRTIO_CONSOLE_F_SIZE = 0
VIRTIO_CONSOLE_F_MULTIPORT = 1
VIRTIO_CONSOLE_F_EMERG_WRITE = 2
CONFIG_EMERG_WR = 8
# Queues (5.3.2).
CONTROL_RECEIVEQ = 2
CONTROL_TRANSMITQ = 3
PORT_QUEUE_SIZE = 128
CONTROL_QUEUE_SIZE = 32
# Control events (5.3.6.2).
DEVICE_READY = 0
DEVICE_ADD = 1
DEVICE_REMOVE = 2
PORT_READY = 3
CONSOLE_PORT = 4
RESIZE = 5
PORT_OPEN = 6
PORT_NAME = 7


def port_of_queue(index):
    """(port id, is receiveq) of a data queue index; None for control."""
    if index in (CONTROL_RECEIVEQ, CONTROL_TRANSMITQ):
        return None
    if index < 2:
        return 0, index == 0
    return (index - 2) // 2, index % 2 == 0


class HostPort:
    """One port and its host side (a chardev)."""

    def __init__(self, port_id=None, name=None, console=False, host_connected=True):
        self.id = port_id
        self.name = name
        self.console = console
        self.host_connected = host_connected
        self.guest_connected = False
        self.ready = False            # the driver said PORT_READY
        self.received = bytearray()   # what the guest wrote: the host read it
        self.pending = bytearray()    # what the host sent, not yet in guest buffers
        self.throttled = False        # the host takes no data (transmit buffers held)
        self.held = []                # transmit buffers held while throttled

    def __repr__(self):
        return '<HostPort %s %r>' % (self.id, self.name)


class ConsoleModel(VirtioPciModel):
    DEVICE_TYPE = 3
    NAME = 'virtio-console'

    def __init__(self, mode='transitional', ports=(), max_ports=31, multiport=True,
                 emerg_write=True, size=None, **kw):
        """ports: HostPort objects (ids assigned as QEMU does when None).
        multiport: offer MULTIPORT (QEMU does when max_ports > 1).
        size: (cols, rows) to offer F_SIZE with."""
        features = 0
        if multiport:
            features |= 1 << VIRTIO_CONSOLE_F_MULTIPORT
        if emerg_write:
            features |= 1 << VIRTIO_CONSOLE_F_EMERG_WRITE
        if size is not None:
            features |= 1 << VIRTIO_CONSOLE_F_SIZE
        cols, rows = size or (0, 0)
        self.max_ports = max_ports
        kw.setdefault('queue_sizes', [PORT_QUEUE_SIZE, PORT_QUEUE_SIZE, CONTROL_QUEUE_SIZE,
                                      CONTROL_QUEUE_SIZE]
                      + [PORT_QUEUE_SIZE] * (2 * (max_ports - 1)))
        self.ports = []
        self.rx = {}                  # receiveq index -> buffers the device holds
        self.ctl_rx = []              # control receive buffers the device holds
        self.control_log = []         # (id, event, value) the driver sent
        self.dropped = []             # (id, event, value) sent with no buffer posted
        self.emerg = bytearray()      # bytes written to emerg_wr
        self.ready_status = None      # device status when DEVICE_READY came
        VirtioPciModel.__init__(self, mode=mode, features=features,
                                config=struct.pack('<HHII', cols, rows, max_ports, 0), **kw)
        for p in ports:
            self._place(p)

    # -- ports -----------------------------------------------------------------
    def _place(self, p):
        # QEMU: the first console goes to id 0, others to the lowest free id
        # from 1 (0 stays reserved for a console).
        if p.id is None:
            used = set(q.id for q in self.ports)
            if p.console and 0 not in used:
                p.id = 0
            else:
                p.id = min(i for i in range(1, self.max_ports + 1) if i not in used)
        if p.id >= self.max_ports:
            raise ValueError('port id %d beyond max_ports %d' % (p.id, self.max_ports))
        self.ports.append(p)
        return p

    def port(self, port_id):
        for p in self.ports:
            if p.id == port_id:
                return p
        return None

    def multiport(self):
        return self.negotiated(1 << VIRTIO_CONSOLE_F_MULTIPORT)

    # -- reset and status ----------------------------------------------------------
    def _state_reset(self):
        VirtioPciModel._state_reset(self)
        self.ctl_rx = []
        self.rx = {}
        for p in getattr(self, 'ports', ()):
            p.held = []
            p.ready = False
            p.guest_connected = False

    def write_status(self, v):
        VirtioPciModel.write_status(self, v)
        # QEMU: without MULTIPORT the guest side of port 0 is open from DRIVER_OK.
        if v & 4 and not self.multiport():
            p = self.port(0)
            if p is not None:
                p.guest_connected = True
                self._deliver(p)

    # -- queues ---------------------------------------------------------------------
    def process(self, q):
        index = q.index
        from tests.host.models.rings import RingError
        try:
            while True:
                req = q.ring.pop(index)
                if req is None:
                    break
                if self.misbehave == 'never_complete':
                    continue
                self._take(q, req)
        except RingError as e:
            self._error('queue %d: %s' % (index, e))

    def _take(self, q, req):
        index = q.index
        if index == CONTROL_RECEIVEQ:
            if req.readable or len(req.writable) != 1:
                self.errors.append('control receive buffer must be one device-writable buffer')
            self.ctl_rx.append(req)
            return
        if index == CONTROL_TRANSMITQ:
            if req.writable:
                self.errors.append('device-writable buffer in the control transmitq')
            self._control_from_driver(req.data())
            self._push(q, req, b'')
            return
        port_id, is_rx = port_of_queue(index)
        p = self.port(port_id)
        if is_rx:
            if req.readable:
                self.errors.append('device-readable buffer in receiveq %d' % index)
            # Buffers stay with the queue (QEMU leaves them in the ring), even
            # for a port not plugged in yet.
            self.rx.setdefault(index, []).append(req)
            if p is not None:
                self._deliver(p)
        else:
            if req.writable:
                self.errors.append('device-writable buffer in transmitq %d' % index)
            if p is not None and p.host_connected and p.throttled:
                p.held.append(req)
                return
            if p is not None and p.host_connected:
                p.received += req.data()
            self._push(q, req, b'')      # QEMU: discarded when nobody listens

    def release(self, port_id):
        """The host reads again: held transmit buffers reach it."""
        p = self.port(port_id)
        p.throttled = False
        q = self.queues[1 if p.id == 0 else 3 + 2 * p.id]
        while p.held:
            req = p.held.pop(0)
            p.received += req.data()
            self._push(q, req, b'')

    def _push(self, q, req, payload, full_length=False):
        req.payload = payload
        req.full_length = full_length
        self._complete(q, req)

    def handle(self, queue, req):
        n = req.write(req.payload)
        if req.full_length and n < len(req.payload):
            req.written = len(req.payload)
        if self.misbehave == 'tx_used_len' and not req.writable:
            req.written = req.readable_size

    def _deliver(self, p):
        """Host data into the guest's receive buffers, as far as QEMU would."""
        if not (self.status & 4) or not p.host_connected:
            return
        if self.multiport() and not p.guest_connected:
            return
        q = self.queues[0 if p.id == 0 else 2 + 2 * p.id]
        held = self.rx.get(q.index)
        while p.pending and held:
            req = held.pop(0)
            n = min(len(p.pending), req.writable_size)
            chunk = bytes(p.pending[:n])
            del p.pending[:n]
            self._push(q, req, chunk)

    # -- the control protocol (5.3.6.2) --------------------------------------------------
    def send_control(self, port_id, event, value, extra=b''):
        """A message from the device; dropped (and recorded) without a buffer."""
        msg = struct.pack('<IHH', port_id, event, value) + extra
        if not self.ctl_rx:
            self.dropped.append((port_id, event, value))
            return False
        req = self.ctl_rx.pop(0)
        self._push(self.queues[CONTROL_RECEIVEQ], req, msg,
                   full_length=self.misbehave == 'long_name')
        return True

    def _control_from_driver(self, data):
        if len(data) < 8:
            self.errors.append('control message of %d bytes' % len(data))
            return
        port_id, event, value = struct.unpack_from('<IHH', data, 0)
        self.control_log.append((port_id, event, value))
        mis = self.misbehave
        if event == DEVICE_READY:
            self.ready_status = self.status
            if not value:
                self.errors.append('driver reported DEVICE_READY failure')
                return
            for p in self.ports:
                self.send_control(p.id, DEVICE_ADD, 1)
                if mis == 'add_twice':
                    self.send_control(p.id, DEVICE_ADD, 1)
            if mis == 'add_out_of_range':
                self.send_control(self.max_ports, DEVICE_ADD, 1)
            if mis == 'remove_unknown':
                self.send_control(self.max_ports - 1, DEVICE_REMOVE, 1)
            if mis == 'short_control' and self.ctl_rx:
                req = self.ctl_rx.pop(0)
                self._push(self.queues[CONTROL_RECEIVEQ], req, b'\x01\x00\x00\x00')
            return
        p = self.port(port_id)
        if p is None:
            self.errors.append('control event %d for unknown port %d' % (event, port_id))
            return
        if event == PORT_READY:
            if not value:
                self.errors.append('driver failed to add port %d' % port_id)
                return
            p.ready = True
            if p.console:
                self.send_control(p.id, CONSOLE_PORT, 1)
            if p.name:
                self.send_control(p.id, PORT_NAME, 1, p.name.encode() + b'\x00')
            if p.host_connected:
                self.send_control(p.id, PORT_OPEN, 1)
            if mis == 'unknown_event':
                self.send_control(p.id, 99, 1)
        elif event == PORT_OPEN:
            p.guest_connected = bool(value)
            self._deliver(p)
        else:
            self.errors.append('driver sent device-only event %d' % event)

    # -- the host side ------------------------------------------------------------------
    def host_send(self, port_id, data):
        p = self.port(port_id)
        p.pending += data
        self._deliver(p)

    def host_open(self, port_id):
        p = self.port(port_id)
        if not p.host_connected:
            p.host_connected = True
            self.send_control(port_id, PORT_OPEN, 1)
            self._deliver(p)

    def host_close(self, port_id):
        p = self.port(port_id)
        p.host_connected = False
        self.send_control(port_id, PORT_OPEN, 0)

    def hotplug(self, p):
        self._place(p)
        self.send_control(p.id, DEVICE_ADD, 1)
        return p

    def unplug(self, port_id):
        p = self.port(port_id)
        self.ports.remove(p)
        self.send_control(port_id, DEVICE_REMOVE, 1)

    def resize(self, port_id, cols, rows):
        self.send_control(port_id, RESIZE, 0, struct.pack('<HH', cols, rows))

    def set_size(self, cols, rows):
        """The console's size changes (5.3.4, F_SIZE): config, then a config change
        notification. QEMU 7.2 never does this."""
        self.set_config(0, struct.pack('<HH', cols, rows))

    def config_written(self, off, size, value):
        # Emergency write (5.3.5): the low byte goes to the first connected
        # console port, as in QEMU.
        if off == CONFIG_EMERG_WR and value:
            b = bytes([value & 0xFF])
            self.emerg += b
            for p in self.ports:
                if p.console and p.host_connected:
                    p.received += b
                    break
            self.cfg[CONFIG_EMERG_WR:CONFIG_EMERG_WR + 4] = bytes(4)
