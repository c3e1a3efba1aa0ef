"""One virtqueue as the vhost-user session sets it up (vhost-user.rst,
"Ring states"): its size (SET_VRING_NUM), the front-end addresses of its
three parts (SET_VRING_ADDR), where to start (SET_VRING_BASE), the kick
eventfd the front-end signals when the driver notifies (SET_VRING_KICK,
which starts the ring), the call eventfd we signal to interrupt the guest
(SET_VRING_CALL), and the err eventfd (SET_VRING_ERR). GET_VRING_BASE stops
the ring and answers where it stopped.

A ring is stopped, started-but-disabled or started-and-enabled; only an
enabled ring passes buffers. Without VHOST_USER_F_PROTOCOL_FEATURES a ring
is enabled as soon as it starts.
"""

import os
import struct

from vhost.message import ProtocolError
from vhost.packed import PackedRing
from vhost.ring import SplitRing

EVENTFD_VALUE = struct.Struct('<Q')
VHOST_VRING_F_LOG = 0


class Vring:
    def __init__(self, index, max_size):
        self.index = index
        self.max_size = max_size
        self.kick = self.call = self.err = None
        self.ring = None
        self._watched = None         # the fd the server's selector watches
        self._clear()

    def _clear(self):
        self.num = 0
        self.addr = None                 # (desc, used, avail) front-end addresses
        self.base = 0
        self.enabled = False
        self.ring = None
        self.interrupts = 0
        self.kicks = 0

    # -- the set-up messages ----------------------------------------------------
    def set_num(self, num, packed):
        if num == 0 or num > self.max_size or (not packed and num & (num - 1)):
            raise ProtocolError('SET_VRING_NUM: queue %d size %d (maximum %d%s)'
                                % (self.index, num, self.max_size,
                                   '' if packed else ', a power of 2'))
        self.num = num

    def set_addr(self, flags, desc, used, avail):
        if flags & (1 << VHOST_VRING_F_LOG):
            raise ProtocolError('SET_VRING_ADDR: queue %d asks for dirty logging, '
                                'which this back-end does not offer' % self.index)
        self.addr = (desc, used, avail)

    def set_fd(self, which, fd):
        """Replace the kick, call or err eventfd (None: no fd, polling)."""
        old = getattr(self, which)
        if old is not None and old != fd:
            os.close(old)
        setattr(self, which, fd)

    # -- state ---------------------------------------------------------------------
    @property
    def started(self):
        return self.ring is not None

    def start(self, mem, event_idx, indirect, packed):
        """Map the ring (at SET_VRING_KICK): the three parts are translated
        from front-end addresses to guest physical ones."""
        if self.num == 0 or self.addr is None:
            raise ProtocolError('SET_VRING_KICK: queue %d started before SET_VRING_NUM and '
                                'SET_VRING_ADDR' % self.index)
        desc, used, avail = (mem.uaddr_to_gpa(a) for a in self.addr)
        if packed:
            self.ring = PackedRing(mem, self.num, desc, avail, used, event_idx, indirect,
                                   self.base)
        else:
            self.ring = SplitRing(mem, self.num, desc, avail, used, event_idx, indirect,
                                  self.base)

    def stop(self):
        """Stop (GET_VRING_BASE); returns where the next request would be."""
        if self.ring is not None:
            self.base = self.ring.base()
            self.ring.release()
            self.ring = None
        return self.base

    def reset(self):
        self.stop()
        for which in ('kick', 'call', 'err'):
            self.set_fd(which, None)
        self._clear()

    # -- eventfds -------------------------------------------------------------------
    def drain_kick(self):
        """Read the kick eventfd (its counter: kicks since the last read)."""
        try:
            n = EVENTFD_VALUE.unpack(os.read(self.kick, 8))[0]
        except BlockingIOError:
            n = 0
        self.kicks += n
        return n

    def interrupt(self):
        """Signal the call eventfd: the front-end raises the guest's
        interrupt for this queue (MSI-X vector or INTx + ISR)."""
        self.interrupts += 1
        if self.call is not None:
            os.write(self.call, EVENTFD_VALUE.pack(1))

    def signal_error(self):
        if self.err is not None:
            os.write(self.err, EVENTFD_VALUE.pack(1))
