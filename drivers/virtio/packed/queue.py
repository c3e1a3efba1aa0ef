# The packed virtqueue as a queue for the general path (spec 2.8): add a
# request of any buffers with a token, kick, pop its completion, plus dump()
# to show the ring. Every step on the ring itself is one of
# virtio.packed.ring's, the same ones blk and net use after take_over().

import struct

from virtio.errors import DeviceError, VirtioError
from virtio.packed import ring
from virtio.packed.ring import (EVENT_FLAGS, EVENT_FLAG_NAMES, EVENT_OFF_WRAP, MAX_PACKED_SIZE,
                                RING_ADDED, RING_AVAIL_WRAP, RING_CHAINS, RING_FREED,
                                RING_INDIRECT, RING_IN_FLIGHT, RING_LEN, RING_NEXT_AVAIL,
                                RING_NEXT_USED, RING_NOTIFIED, RING_NSLOTS, RING_PER,
                                RING_USED_WRAP, VIRTQ_DESC_F_AVAIL, VIRTQ_DESC_F_USED, avail_flags,
                                make_available, new_state, pop, put, used_ready)
from virtio.virtqueue import (DEFAULT_INDIRECT_MAX, DESC_SIZE, VIRTQ_DESC_F_INDIRECT,
                              VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, Virtqueue, desc_flag_names,
                              desc_table)


class PackedVirtqueue(Virtqueue):
    """A packed virtqueue with the interface of SplitVirtqueue: add / kick /
    pop / collect / wait / dump."""

    kind = 'packed'
    steps = ring                  # the ring's step functions (virtio.packed.ring)

    def __init__(self, hw, transport, index, size, negotiated=0,
                 indirect_max=DEFAULT_INDIRECT_MAX, name=None, check=None):
        if transport.legacy_interface:
            raise VirtioError('queue %d: packed rings need the modern interface' % index)
        if size < 1 or size > MAX_PACKED_SIZE:
            raise VirtioError('queue %d: packed ring size %d is not in 1..%d'
                              % (index, size, MAX_PACKED_SIZE))
        self._init_common(hw, transport, index, size, negotiated, indirect_max, name, check)
        self._init_bookkeeping()
        # Descriptor ring (16-aligned), driver and device event suppression
        # structures (4-aligned), 2.8.10.1.
        self.desc = hw.dma_alloc(DESC_SIZE * size, 16)
        self.driver_event = hw.dma_alloc(4, 4)
        self.device_event = hw.dma_alloc(4, 4)
        self.st = new_state(self.desc, self.driver_event, self.device_event, size,
                            self.event_idx)
        self.num_free = size          # free ring slots
        self._id_next = list(range(1, size + 1))     # free buffer IDs
        self._id_free = 0
        self._wlen = [0] * size
        self._tokens = [None] * size
        self._ring = desc_table(hw, self.desc, DESC_SIZE * size)
        self._alloc_indirect()
        self.suppress_interrupts()

    def areas(self):
        return self.desc, self.driver_event, self.device_event

    # -- supplying buffers (2.8.13) ------------------------------------------------------
    def add(self, readable, writable, token=None):
        """Offer one request (see SplitVirtqueue.add). Returns its buffer ID."""
        n = len(readable) + len(writable)
        use_indirect = self._fits(n)
        hw, st = self.hw, self.st
        bid = self._id_free
        first_flags = avail_flags(st)
        before = (st[RING_NEXT_AVAIL], st[RING_AVAIL_WRAP], st[RING_ADDED])
        wlen = 0
        parts = ((readable, 0), (writable, VIRTQ_DESC_F_WRITE))
        if use_indirect:
            toff = bid * self.indirect_max * DESC_SIZE
            i = 0
            for part, flags in parts:
                for addr, length in part:
                    self._tables.put(toff + DESC_SIZE * i, addr, length, 0, flags)
                    if flags:
                        wlen += length
                    i += 1
            first_flags |= VIRTQ_DESC_F_INDIRECT
            first = put(hw, st, self._ring, self.indirect + toff, n * DESC_SIZE, bid, None)
            held = 1
        else:
            k = 0
            for part, flags in parts:
                for addr, length in part:
                    k += 1
                    f = flags | (VIRTQ_DESC_F_NEXT if k < n else 0)
                    if flags:
                        wlen += length
                    if k == 1:
                        first_flags |= f
                        first = put(hw, st, self._ring, addr, length, bid, None)
                    else:
                        put(hw, st, self._ring, addr, length, bid, f)
            held = n
        self._id_free = self._id_next[bid]
        self._wlen[bid] = wlen
        self._tokens[bid] = token
        self.num_free -= held
        try:
            make_available(hw, st, bid, held, first, first_flags, before)
        except BaseException:
            self._id_free = bid
            self._tokens[bid] = None
            self.num_free += held
            raise
        return bid

    # -- receiving used buffers (2.8.14) -------------------------------------------------
    def pop(self):
        """One completion as (token, written length), or None."""
        if self.owner is not None:
            self._owned('pop')
        st = self.st
        if not used_ready(self.hw, st):
            return None
        # From here on no jump until the books are right (a Ctrl-C arrives at
        # a jump): the descriptor taken, its ID back on the free list.
        bid = pop(self.hw, st, self.name)
        length = st[RING_LEN]
        token = self._tokens[bid]
        wlen = self._wlen[bid]
        self._tokens[bid] = None
        self._id_next[bid] = self._id_free
        self._id_free = bid
        self.num_free += st[RING_FREED]
        if length > wlen:
            raise DeviceError('%s: used length %d for buffer id %d exceeds its %d writable bytes'
                              % (self.name, length, bid, wlen), token)
        return token, length

    # -- learning aid ----------------------------------------------------------------------
    def dump(self, write=print):
        hw = self.hw
        st = self.st
        if self.owner is not None:
            who = 'driven by %s' % self.owner
        else:
            who = '%d free slots' % self.num_free
        write('%s: packed ring, size %d, %d in flight, %s'
              % (self.name, self.size, st[RING_IN_FLIGHT], who))
        write('  desc 0x%x  driver event 0x%x  device event 0x%x'
              % (self.desc, self.driver_event, self.device_event))
        if self.owner is not None:
            write('  %d prebuilt chains of %d descriptors at 0x%x%s'
                  % (st[RING_NSLOTS], st[RING_PER], st[RING_CHAINS],
                     ' (indirect tables)' if st[RING_INDIRECT] else ' (copied into the ring)'))
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
            off_wrap = hw.read16(at + EVENT_OFF_WRAP)
            flags = hw.read16(at + EVENT_FLAGS)
            write('  %s: flags %s off %d wrap %d' % (label, EVENT_FLAG_NAMES[flags & 3],
                                                   off_wrap & 0x7FFF, off_wrap >> 15))
        write('  driver: %s, %d notifications' % (self.indices(), self.st[RING_NOTIFIED]))

    def indices(self):
        """Where the driver is in the ring, in one line."""
        st = self.st
        return 'next avail %d wrap %d, next used %d wrap %d' % (
            st[RING_NEXT_AVAIL], st[RING_AVAIL_WRAP], st[RING_NEXT_USED], st[RING_USED_WRAP])


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
