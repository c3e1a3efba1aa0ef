# Packed virtqueues (spec 2.8, negotiated with RING_PACKED): one descriptor
# ring that both sides write, plus two event suppression structures.
#
# The driver writes available descriptors in ring order, marking them with
# its wrap counter in the AVAIL/USED flag bits; the device overwrites them
# with used descriptors, in completion order, each carrying the buffer ID.
# Same interface as SplitVirtqueue: add / kick / pop / collect / wait / dump.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct

from virtio.errors import DeviceError, VirtioError, VirtqueueFull
from virtio.virtqueue import (DEFAULT_INDIRECT_MAX, DESC_SIZE, VIRTQ_DESC_F_INDIRECT,
                              VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, Virtqueue,
                              desc_flag_names, desc_table)

VIRTQ_DESC_F_AVAIL = const(0x80)
VIRTQ_DESC_F_USED = const(0x8000)
# Event suppression (2.8.10).
RING_EVENT_FLAGS_ENABLE = const(0)
RING_EVENT_FLAGS_DISABLE = const(1)
RING_EVENT_FLAGS_DESC = const(2)
EVENT_FLAG_NAMES = ('ENABLE', 'DISABLE', 'DESC', 'reserved')
MAX_PACKED_SIZE = const(32768)
# Offsets inside a descriptor (struct pvirtq_desc).
D_ADDR = const(0)
D_LEN = const(8)
D_ID = const(12)
D_FLAGS = const(14)


class PackedVirtqueue(Virtqueue):
    kind = 'packed'

    def __init__(self, hw, transport, index, size, negotiated=0,
                 indirect_max=DEFAULT_INDIRECT_MAX, name=None, check=None):
        if transport.legacy_interface:
            raise VirtioError('queue %d: packed rings need the modern interface' % index)
        if size < 1 or size > MAX_PACKED_SIZE:
            raise VirtioError('queue %d: packed ring size %d is not in 1..%d'
                              % (index, size, MAX_PACKED_SIZE))
        self._init_common(hw, transport, index, size, negotiated, indirect_max, name, check)
        # Descriptor ring (16-aligned), driver and device event suppression
        # structures (4-aligned), 2.8.10.1.
        self.desc = hw.dma_alloc(DESC_SIZE * size, 16)
        self.driver_event = hw.dma_alloc(4, 4)
        self.device_event = hw.dma_alloc(4, 4)
        self._next_avail = 0
        self._avail_wrap = 1          # Driver Ring Wrap Counter (2.8.1)
        self._next_used = 0
        self._used_wrap = 1           # where we expect the device's wrap counter
        self.num_free = size          # free ring slots
        self._id_next = list(range(1, size + 1))     # free buffer IDs
        self._id_free = 0
        self._ndesc = [0] * size      # per buffer ID: ring slots held (0 = free)
        self._wlen = [0] * size
        self._tokens = [None] * size
        self.in_flight = 0
        self._added = 0               # descriptors made available since the last kick
        self._kick_pos = 0            # ring position at the last kick
        self.notifications = 0
        self._ring = desc_table(hw, self.desc, DESC_SIZE * size)
        self._alloc_indirect()
        self.suppress_interrupts()

    def enable(self):
        self.transport.enable_queue(self.index, self.size, self.desc,
                                    self.driver_event, self.device_event)

    def _pos(self, idx, wrap):
        # (index, wrap counter) as one position modulo twice the ring size.
        return idx if wrap else idx + self.size

    # -- used buffer notifications ----------------------------------------------------
    def suppress_interrupts(self):
        """We poll: Driver Event Suppression flags = DISABLE (2.8.10)."""
        self.hw.write16(self.driver_event + 2, RING_EVENT_FLAGS_DISABLE)

    def enable_interrupts(self):
        self.hw.write16(self.driver_event + 2, RING_EVENT_FLAGS_ENABLE)

    # -- supplying buffers (2.8.13) ------------------------------------------------------
    def _avail_flags(self):
        return VIRTQ_DESC_F_AVAIL if self._avail_wrap else VIRTQ_DESC_F_USED

    def _put(self, addr, length, bid, flags, first):
        off = DESC_SIZE * self._next_avail
        if first:
            # The first descriptor's flags are written last: they publish
            # the whole list (2.8.6).
            self._ring.put_head(off, addr, length, bid)
        else:
            self._ring.put(off, addr, length, bid, flags)
        self._next_avail += 1
        if self._next_avail == self.size:
            self._next_avail = 0
            self._avail_wrap ^= 1

    def add(self, readable, writable, token=None):
        """Offer one request (see SplitVirtqueue.add). Returns its buffer ID."""
        nr = len(readable)
        n = nr + len(writable)
        use_indirect = self._fits(n)
        need = 1 if use_indirect else n
        bid = self._id_free
        self._id_free = self._id_next[bid]
        first_at = self.desc + DESC_SIZE * self._next_avail
        first_flags = self._avail_flags()
        wlen = 0
        if use_indirect:
            toff = bid * self.indirect_max * DESC_SIZE
            tables = self._tables
            i = 0
            for addr, length in readable:
                tables.put(toff + DESC_SIZE * i, addr, length, 0, 0)
                i += 1
            for addr, length in writable:
                tables.put(toff + DESC_SIZE * i, addr, length, 0, VIRTQ_DESC_F_WRITE)
                wlen += length
                i += 1
            first_flags |= VIRTQ_DESC_F_INDIRECT
            self._put(self.indirect + toff, n * DESC_SIZE, bid, 0, True)
        else:
            k = 0
            for addr, length in readable:
                k += 1
                if k == 1:
                    if k < n:
                        first_flags |= VIRTQ_DESC_F_NEXT
                    self._put(addr, length, bid, 0, True)
                else:
                    self._put(addr, length, bid, self._avail_flags()
                              | (VIRTQ_DESC_F_NEXT if k < n else 0), False)
            for addr, length in writable:
                k += 1
                wlen += length
                f = VIRTQ_DESC_F_WRITE | (VIRTQ_DESC_F_NEXT if k < n else 0)
                if k == 1:
                    first_flags |= f
                    self._put(addr, length, bid, 0, True)
                else:
                    self._put(addr, length, bid, self._avail_flags() | f, False)
        self.num_free -= need
        self._ndesc[bid] = need
        self._wlen[bid] = wlen
        self._tokens[bid] = token
        self.in_flight += 1
        self._added += need
        self.hw.barrier()
        self.hw.write16(first_at + D_FLAGS, first_flags)
        return bid

    def kick(self):
        """Notify the device unless its event suppression structure says it
        does not need it (2.8.10; with EVENT_IDX, a descriptor position)."""
        if self._added == 0:
            return False
        hw = self.hw
        old = self._kick_pos
        new = self._pos(self._next_avail, self._avail_wrap)
        added = self._added
        hw.barrier()        # flags visible before we read the device's wish
        flags = hw.read16(self.device_event + 2) & 3
        if flags == RING_EVENT_FLAGS_DISABLE:
            need = False
        elif flags == RING_EVENT_FLAGS_DESC and self.event_idx and added < self.size:
            off_wrap = hw.read16(self.device_event)
            event = self._pos(off_wrap & 0x7FFF, off_wrap >> 15)
            span = 2 * self.size
            need = (event - old) % span < (new - old) % span
        else:
            need = True
        if need:
            self.transport.notify(self.index)
            self.notifications += 1
        # Only now: a notification lost to an exception is sent by the next kick.
        self._kick_pos = new
        self._added = 0
        return need

    # -- receiving used buffers (2.8.14) -------------------------------------------------
    def pop(self):
        """One completion as (token, written length), or None."""
        hw = self.hw
        at = self.desc + DESC_SIZE * self._next_used
        flags = hw.read16(at + D_FLAGS)
        used = 1 if flags & VIRTQ_DESC_F_USED else 0
        avail = 1 if flags & VIRTQ_DESC_F_AVAIL else 0
        if used != self._used_wrap or avail != used:
            return None
        hw.barrier()        # the descriptor is read after its flags
        bid = hw.read16(at + D_ID)
        # Spec 2.8.5 calls the length reserved without VIRTQ_DESC_F_WRITE, but
        # QEMU 7.2 never sets that flag on used descriptors: like Linux, read
        # the length always (it is checked against the writable bytes below).
        length = hw.read32(at + D_LEN)
        if bid >= self.size or self._ndesc[bid] == 0:
            raise DeviceError('%s: used buffer id %d at slot %d is not a request in flight'
                              % (self.name, bid, self._next_used))
        n = self._ndesc[bid]
        self._next_used += n
        if self._next_used >= self.size:
            self._next_used -= self.size
            self._used_wrap ^= 1
        token = self._tokens[bid]
        wlen = self._wlen[bid]
        self._ndesc[bid] = 0
        self._tokens[bid] = None
        self._id_next[bid] = self._id_free
        self._id_free = bid
        self.num_free += n
        self.in_flight -= 1
        if length > wlen:
            raise DeviceError('%s: used length %d for buffer id %d exceeds its %d writable bytes'
                              % (self.name, length, bid, wlen), token)
        return token, length

    # -- learning aid ----------------------------------------------------------------------
    def dump(self, write=print):
        hw = self.hw
        write('%s: packed ring, size %d, %d in flight, %d free slots'
              % (self.name, self.size, self.in_flight, self.num_free))
        write('  desc 0x%x  driver event 0x%x  device event 0x%x'
              % (self.desc, self.driver_event, self.device_event))
        write('  slot  addr                len       id    flags')
        hidden = 0
        for i in range(self.size):
            addr, length, bid, flags = struct.unpack('<QIHH', hw.read(self.desc + DESC_SIZE * i,
                                                                     DESC_SIZE))
            if addr == 0 and length == 0 and flags == 0:
                hidden += 1
                continue
            write('  %4d  0x%016x %-9d %-5d %s' % (i, addr, length, bid, packed_flag_names(flags)))
            pending = bool(flags & VIRTQ_DESC_F_AVAIL) != bool(flags & VIRTQ_DESC_F_USED)
            if flags & VIRTQ_DESC_F_INDIRECT and pending:
                for k in range(length // DESC_SIZE):
                    a, l, _b, f = struct.unpack('<QIHH', hw.read(addr + DESC_SIZE * k, DESC_SIZE))
                    write('     [%d] 0x%016x %-9d %s' % (k, a, l, desc_flag_names(f)))
        if hidden:
            write('  (%d slots never used)' % hidden)
        for label, at in (('driver event', self.driver_event), ('device event', self.device_event)):
            off_wrap = hw.read16(at)
            flags = hw.read16(at + 2)
            write('  %s: flags %s off %d wrap %d' % (label, EVENT_FLAG_NAMES[flags & 3],
                                                   off_wrap & 0x7FFF, off_wrap >> 15))
        write('  driver: next avail %d wrap %d, next used %d wrap %d, %d notifications'
              % (self._next_avail, self._avail_wrap, self._next_used, self._used_wrap,
                 self.notifications))


def packed_flag_names(flags):
    out = []
    base = desc_flag_names(flags & 7)
    if base != '-':
        out.append(base)
    if flags & VIRTQ_DESC_F_AVAIL:
        out.append('AVAIL')
    if flags & VIRTQ_DESC_F_USED:
        out.append('USED')
    return '|'.join(out) or '-'
