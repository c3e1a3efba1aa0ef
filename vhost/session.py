"""One vhost-user connection from the front-end's side of the socket to a
Device: every front-end message we accept, in the order QEMU sends them
(vhost-user.rst, "Front-end message types"):

  connect:   GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES,
             GET_QUEUE_NUM, SET_OWNER, GET_CONFIG ...
  DRIVER_OK: SET_FEATURES, SET_MEM_TABLE, then per queue SET_VRING_NUM,
             SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK (starts it),
             SET_VRING_CALL, SET_VRING_ENABLE
  reset:     GET_VRING_BASE (stops the ring) per queue, RESET_DEVICE ...

Anything else, or a message out of place, is a ProtocolError naming it.
"""

import os
import time

from vhost import message as m
from vhost.device import F_EVENT_IDX, F_INDIRECT_DESC, F_RING_PACKED, STORM
from vhost.memory import GuestMemory, Region
from vhost.message import ProtocolError
from vhost.ring import RingError
from vhost.vring import Vring

MAX_REGIONS = 8


def _bufs(bufs):
    return '[%s]' % ', '.join('0x%x+%d' % b for b in bufs)


class Session:
    PROTOCOL_FEATURES = ((1 << m.PROTOCOL_F_MQ) | (1 << m.PROTOCOL_F_REPLY_ACK)
                         | (1 << m.PROTOCOL_F_RESET_DEVICE))

    def __init__(self, device, log=print):
        self.device = device
        self.log = log
        self.vrings = [Vring(i, n) for i, n in enumerate(device.QUEUES)]
        self.mem = GuestMemory()
        self.protocol_features = 0
        self.protocol_set = False
        self.features = 0
        self.owner = False
        self.served = 0             # requests completed, and the time spent serving
        self.busy_ns = 0            # them (ring walk, device, used ring, interrupt)
        self.trace = False          # log every request (python -m vhost --verbose)
        self.watch = None       # callback(vring, fd or None) when a kick fd changes
        self.offered_protocol = self.PROTOCOL_FEATURES
        if device.config() is not None:
            self.offered_protocol |= 1 << m.PROTOCOL_F_CONFIG
        device.session = self          # for complete() of requests it keeps
        self.handlers = {
            m.GET_FEATURES: self.get_features, m.SET_FEATURES: self.set_features,
            m.GET_PROTOCOL_FEATURES: self.get_protocol_features,
            m.SET_PROTOCOL_FEATURES: self.set_protocol_features,
            m.GET_QUEUE_NUM: self.get_queue_num,
            m.SET_OWNER: self.set_owner, m.RESET_OWNER: self.reset_device,
            m.RESET_DEVICE: self.reset_device,
            m.SET_MEM_TABLE: self.set_mem_table,
            m.SET_VRING_NUM: self.set_vring_num, m.SET_VRING_ADDR: self.set_vring_addr,
            m.SET_VRING_BASE: self.set_vring_base, m.GET_VRING_BASE: self.get_vring_base,
            m.SET_VRING_KICK: self.set_vring_kick, m.SET_VRING_CALL: self.set_vring_call,
            m.SET_VRING_ERR: self.set_vring_err, m.SET_VRING_ENABLE: self.set_vring_enable,
            m.GET_CONFIG: self.get_config, m.SET_CONFIG: self.set_config,
        }

    # -- dispatch -------------------------------------------------------------------
    def handle(self, msg):
        """Serve one message; returns the reply payload (bytes) or None.
        A REPLY_ACK ack is the caller's business (see server.py)."""
        fn = self.handlers.get(msg.request)
        if fn is None:
            msg.close_fds()
            raise ProtocolError('%s is not supported by this back-end' % msg.name)
        try:
            return fn(msg)
        except Exception:
            msg.close_fds()
            raise

    def reply_ack(self):
        return bool(self.protocol_features >> m.PROTOCOL_F_REPLY_ACK & 1)

    def _protocol_enabled(self):
        return bool(self.features >> m.F_PROTOCOL_FEATURES & 1)

    def _vring(self, msg, index):
        if index >= len(self.vrings):
            raise ProtocolError('%s: queue %d does not exist (%s has %d)'
                                % (msg.name, index, self.device.NAME, len(self.vrings)))
        return self.vrings[index]

    # -- features ------------------------------------------------------------------
    def offered(self):
        return self.device.offered_features() | (1 << m.F_PROTOCOL_FEATURES)

    def get_features(self, msg):
        return m.U64.pack(self.offered())

    def set_features(self, msg):
        value = msg.u64()
        extra = value & ~self.offered()
        if extra:
            raise ProtocolError('SET_FEATURES 0x%x: bits 0x%x were never offered (offered 0x%x)'
                                % (value, extra, self.offered()))
        if any(v.started for v in self.vrings) and (value ^ self.features) & ~(1 << m.F_LOG_ALL):
            raise ProtocolError('SET_FEATURES while rings run (0x%x -> 0x%x)'
                                % (self.features, value))
        self.features = value
        self.device.set_features(value & ~(1 << m.F_PROTOCOL_FEATURES))
        if not self._protocol_enabled():
            for v in self.vrings:          # no SET_VRING_ENABLE will come
                v.enabled = True

    def get_protocol_features(self, msg):
        return m.U64.pack(self.offered_protocol)

    def set_protocol_features(self, msg):
        value = msg.u64()
        extra = value & ~self.offered_protocol
        if extra:
            raise ProtocolError('SET_PROTOCOL_FEATURES 0x%x: bits 0x%x were never offered'
                                % (value, extra))
        self.protocol_features = value
        self.protocol_set = True

    def get_queue_num(self, msg):
        return m.U64.pack(len(self.vrings))

    def set_owner(self, msg):
        if self.owner:
            raise ProtocolError('SET_OWNER sent twice without RESET_OWNER')
        self.owner = True

    def reset_device(self, msg):
        for v in self.vrings:
            self._set_kick_watch(v, None)
            v.reset()
        self.features = 0
        self.device.reset()
        if msg.request == m.RESET_OWNER:
            self.owner = False

    # -- memory ----------------------------------------------------------------------
    def set_mem_table(self, msg):
        msg.expect_size(m.MEM_HEADER.size, at_least=True)
        n = m.MEM_HEADER.unpack_from(msg.payload)[0]
        if n == 0 or n > MAX_REGIONS:
            raise ProtocolError('SET_MEM_TABLE with %d regions (1 to %d)' % (n, MAX_REGIONS))
        msg.expect_size(m.MEM_HEADER.size + n * m.MEM_REGION.size)
        msg.expect_fds(n)
        regions = []
        for i in range(n):
            gpa, size, uaddr, off = m.MEM_REGION.unpack_from(msg.payload, 8 + 32 * i)
            regions.append(Region(gpa, size, uaddr, off, msg.fds[i]))
        msg.fds = []
        # A new table while rings run (memory hotplug): the rings' views
        # point into the old maps, so stop them and start them again.
        bases = [v.stop() if v.started else None for v in self.vrings]
        self.mem.close()
        self.mem = GuestMemory(regions)
        self.log('memory: %s' % ', '.join(repr(r) for r in regions))
        for v, base in zip(self.vrings, bases):
            if base is not None:
                self._start(v)

    # -- rings --------------------------------------------------------------------------
    def _state(self, msg):
        msg.expect_size(m.VRING_STATE.size)
        index, num = m.VRING_STATE.unpack(msg.payload)
        return self._vring(msg, index), num

    def set_vring_num(self, msg):
        v, num = self._state(msg)
        v.set_num(num, self._packed())

    def set_vring_addr(self, msg):
        msg.expect_size(m.VRING_ADDR.size)
        index, flags, desc, used, avail, _log = m.VRING_ADDR.unpack(msg.payload)
        self._vring(msg, index).set_addr(flags, desc, used, avail)

    def set_vring_base(self, msg):
        v, num = self._state(msg)
        if v.started:
            raise ProtocolError('SET_VRING_BASE: queue %d is running' % v.index)
        v.base = num

    def get_vring_base(self, msg):
        v, _num = self._state(msg)
        self._set_kick_watch(v, None)
        base = v.stop()
        v.set_fd('kick', None)      # a new SET_VRING_KICK starts it again
        self.device.stopped(v.index)
        return m.VRING_STATE.pack(v.index, base)

    def _fd_message(self, msg):
        value = msg.u64()
        v = self._vring(msg, value & m.VRING_INDEX_MASK)
        if value & m.VRING_NOFD_MASK:
            msg.expect_fds(0)
            return v, None
        msg.expect_fds(1)
        fd = msg.fds.pop()
        os.set_blocking(fd, False)
        return v, fd

    def set_vring_kick(self, msg):
        v, fd = self._fd_message(msg)
        if fd is None:
            raise ProtocolError('SET_VRING_KICK without an fd: this back-end needs kick '
                                'eventfds (no VRING_KICK messages)')
        self._set_kick_watch(v, None)
        if v.started:
            v.stop()
        v.set_fd('kick', fd)
        self._start(v)

    def _start(self, v):
        if not self.mem.regions:
            raise ProtocolError('SET_VRING_KICK: queue %d started before SET_MEM_TABLE' % v.index)
        v.start(self.mem, self.device.has(F_EVENT_IDX), self.device.has(F_INDIRECT_DESC),
                self._packed())
        self._set_kick_watch(v, v.kick)
        self.log('queue %d started: %d entries%s' % (v.index, v.num,
                                                     ' packed' if self._packed() else ''))
        self.process(v)      # buffers made available before the ring started

    def _set_kick_watch(self, v, fd):
        if self.watch is not None:
            self.watch(v, fd)

    def set_vring_call(self, msg):
        v, fd = self._fd_message(msg)
        v.set_fd('call', fd)

    def set_vring_err(self, msg):
        v, fd = self._fd_message(msg)
        v.set_fd('err', fd)

    def set_vring_enable(self, msg):
        v, num = self._state(msg)
        # QEMU's net front-end sends it before SET_FEATURES: what counts is
        # that the protocol features were set up (GET/SET_PROTOCOL_FEATURES).
        if not self.protocol_set:
            raise ProtocolError('SET_VRING_ENABLE before SET_PROTOCOL_FEATURES '
                                '(VHOST_USER_F_PROTOCOL_FEATURES not negotiated)')
        if num not in (0, 1):
            raise ProtocolError('SET_VRING_ENABLE: queue %d, value %d (0 or 1)' % (v.index, num))
        v.enabled = bool(num)
        if v.enabled and v.started:
            self.process(v)

    def _packed(self):
        return self.device.has(F_RING_PACKED)

    # -- configuration ----------------------------------------------------------------
    def _config_header(self, msg):
        msg.expect_size(m.CONFIG_HEADER.size, at_least=True)
        offset, size, flags = m.CONFIG_HEADER.unpack_from(msg.payload)
        cfg = self.device.config()
        if cfg is None:
            raise ProtocolError('%s: %s has no configuration space' % (msg.name, self.device.NAME))
        if offset + size > len(cfg) and msg.request == m.SET_CONFIG:
            raise ProtocolError('%s: bytes %d..%d beyond the %d-byte configuration'
                                % (msg.name, offset, offset + size, len(cfg)))
        return offset, size, flags

    def get_config(self, msg):
        offset, size, flags = self._config_header(msg)
        return m.CONFIG_HEADER.pack(offset, size, flags) + self.device.read_config(offset, size)

    def set_config(self, msg):
        offset, size, _flags = self._config_header(msg)
        msg.expect_size(m.CONFIG_HEADER.size + size)
        self.device.write_config(offset, msg.payload[m.CONFIG_HEADER.size:])

    # -- serving ------------------------------------------------------------------------
    def kicked(self, v):
        v.drain_kick()
        self.process(v)

    def process(self, v):
        """Serve every available chain of an enabled, started ring; then
        interrupt the guest once if a completion asked for it."""
        if not (v.started and v.enabled):
            return
        ring, dev = v.ring, self.device
        notify = False
        t0 = time.perf_counter_ns()
        try:
            while True:
                req = ring.pop()
                if req is None:
                    break
                if dev.misbehaving('never_complete'):
                    continue
                if dev.handle(v.index, req) is False:
                    continue        # the device keeps it, to complete() it later
                notify |= self._push(v, req)
        except (RingError, m.ProtocolError, ValueError) as e:
            # A driver bug: stop serving this ring (QEMU's virtio_error).
            self.log('queue %d: %s: ring stopped' % (v.index, e))
            self._set_kick_watch(v, None)
            v.stop()
            v.signal_error()
        self._interrupt(v, notify)
        self.busy_ns += time.perf_counter_ns() - t0

    def _push(self, v, req):
        """Return a served request through the used ring (as the misbehaviour
        switch says); True when the driver wants an interrupt."""
        dev = self.device
        rid, length, jump = dev.used_entry(v.ring, req)
        wants = v.ring.push(rid, length, req.ndesc, jump)
        dev.completed += 1
        self.served += 1
        if self.trace:
            self.log('queue %d: chain at head %d, readable %s, writable %s -> used '
                     'id %d len %d%s' % (v.index, req.id, _bufs(req.readable),
                                         _bufs(req.writable), rid, length,
                                         ', driver wants an interrupt' if wants else ''))
        return wants

    def complete(self, queue, req):
        """A device completes a request it kept (handle() returned False)."""
        v = self.vrings[queue]
        if not (v.started and v.enabled):
            return False        # the ring was stopped meanwhile: the request is void
        self._interrupt(v, self._push(v, req))
        return True

    def _interrupt(self, v, wanted):
        """Signal the call eventfd if the driver wants it, unless a
        misbehaviour switch says never or far too often."""
        dev = self.device
        if dev.misbehave == 'missing_interrupt':
            return
        if dev.misbehave == 'interrupt_storm' and dev.completed > dev.after:
            for _ in range(STORM):
                v.interrupt()
        elif wanted:
            v.interrupt()

    def close(self):
        for v in self.vrings:
            v.reset()
        self.mem.close()
