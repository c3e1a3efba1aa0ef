# The split virtqueue as a queue for the general path (spec 2.7): add a
# request of any buffers with a token, kick, pop its completion (console,
# rng and anyone poking at a device), plus dump() to show the ring. Every
# step on the ring itself is one of virtio.split.ring's, the same ones the
# drivers with prebuilt chains (blk, net) use after take_over().

import struct
from array import array

from virtio.errors import DeviceError, VirtioError
from virtio.split import ring
from virtio.split.ring import (AVAIL_IDX, AVAIL_RING, MAX_SPLIT_SIZE, RING_AVAIL_IDX, RING_CHAINS,
                               RING_FREED, RING_INDIRECT, RING_IN_FLIGHT, RING_KICKED,
                               RING_LAST_USED, RING_LEN, RING_NOTIFIED, RING_NSLOTS, RING_PER,
                               RING_STRIDE, RING_WORDS, USED_ELEM, USED_IDX, USED_RING,
                               VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY, new_state, pop,
                               post, ring_bytes)
from virtio.virtqueue import (DEFAULT_INDIRECT_MAX, DESC_SIZE, VIRTQ_DESC_F_INDIRECT,
                              VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, Virtqueue, desc_flag_names,
                              desc_table)


class SplitVirtqueue(Virtqueue):
    """A split virtqueue. `negotiated` is the negotiated feature set (for
    INDIRECT_DESC and EVENT_IDX); `check` is called while waiting so a
    device that set DEVICE_NEEDS_RESET is reported instead of timing out.
    add() links a chain from the free list (or one descriptor pointing at
    a preallocated indirect table) and posts its head; kick() publishes and
    notifies; pop() takes one completion off the used ring and checks it."""

    kind = 'split'
    steps = ring                  # the ring's step functions (virtio.split.ring)

    def __init__(self, hw, transport, index, size, negotiated=0,
                 indirect_max=DEFAULT_INDIRECT_MAX, name=None, check=None):
        if size < 1 or size > MAX_SPLIT_SIZE or size & (size - 1):
            raise VirtioError('queue %d: split ring size %d is not a power of 2 up to %d'
                              % (index, size, MAX_SPLIT_SIZE))
        self._init_common(hw, transport, index, size, negotiated, indirect_max, name, check)
        self._init_bookkeeping()
        self._alloc_rings()
        self.st = new_state(self.desc, self.avail, self.used, size, self.event_idx)
        # Driver-side bookkeeping: never read back from device memory.
        self._next = list(range(1, size + 1))     # free list links
        self._free_head = 0
        self.num_free = size
        self._wlen = [0] * size       # per head: device-writable bytes
        self._last = [0] * size       # per head: its chain's last descriptor
        self._tokens = [None] * size
        self._one = array('I', [0, 0, 0])  # a request as post() takes it: (head, -, -)
        self._ring = desc_table(hw, self.desc, DESC_SIZE * size)
        self._alloc_indirect()
        self.suppress_interrupts()

    def _alloc_rings(self):
        hw, n = self.hw, self.size
        align = self.transport.ring_align
        if align:
            # One block: descriptors, available ring, then the used ring on
            # the next `align` boundary (2.7.2).
            nbytes, used_at = ring_bytes(n, align)
            self.desc = hw.dma_alloc(nbytes, align)
            self.avail = self.desc + DESC_SIZE * n
            self.used = self.desc + used_at
        else:
            # Three parts, each with its own alignment (2.7).
            self.desc = hw.dma_alloc(DESC_SIZE * n, 16)
            self.avail = hw.dma_alloc(6 + 2 * n, 2)
            self.used = hw.dma_alloc(6 + 8 * n, 4)
        self._used_event = self.avail + AVAIL_RING + 2 * n
        self._avail_event = self.used + USED_RING + USED_ELEM * n

    def areas(self):
        return self.desc, self.avail, self.used

    # -- supplying buffers (2.7.13) ------------------------------------------------------
    def add(self, readable, writable, token=None):
        """Offer one request: `readable` then `writable` are sequences of
        (address, length). Returns the head descriptor index. Raises
        VirtqueueFull when the free descriptors do not suffice. Nothing is
        taken before the descriptors are written: an exception on the way
        leaves the free list as it was."""
        if self.owner is not None:
            self._owned('add')
        n = len(readable) + len(writable)
        use_indirect = self._fits(n)
        need = 1 if use_indirect else n
        head = self._free_head
        wlen = 0
        if use_indirect:
            tables = self._tables
            toff = head * self.indirect_max * DESC_SIZE
            i = 0
            for part, flags in ((readable, 0), (writable, VIRTQ_DESC_F_WRITE)):
                for addr, length in part:
                    tables.put(toff + i * DESC_SIZE, addr, length,
                               flags | (VIRTQ_DESC_F_NEXT if i + 1 < n else 0), i + 1)
                    if flags:
                        wlen += length
                    i += 1
            self._ring.put(head * DESC_SIZE, self.indirect + toff, n * DESC_SIZE,
                           VIRTQ_DESC_F_INDIRECT, 0)
            last = head
            after = self._next[head]
        else:
            ring = self._ring
            nxt = self._next
            i = head
            k = 0
            for part, flags in ((readable, 0), (writable, VIRTQ_DESC_F_WRITE)):
                for addr, length in part:
                    k += 1
                    ring.put(i * DESC_SIZE, addr, length,
                             flags | (VIRTQ_DESC_F_NEXT if k < n else 0), nxt[i] if k < n else 0)
                    if flags:
                        wlen += length
                    last = i
                    i = nxt[i]
            after = i
        self._wlen[head] = wlen
        self._last[head] = last
        self._tokens[head] = token
        one = self._one
        one[0] = head
        # From here on no jump: nothing can cut in between (a Ctrl-C arrives
        # at a jump in MicroPython's VM) the hand-over and the bookkeeping.
        post(self.hw, self.st, one, 1, need, -1, 0)
        self._free_head = after
        self.num_free -= need
        return head

    # -- receiving used buffers (2.7.14) -----------------------------------------------------
    def pop(self):
        """One completion as (token, written length), or None."""
        if self.owner is not None:
            self._owned('pop')
        st = self.st
        if self.hw.read16(self.used + USED_IDX) == st[RING_LAST_USED]:
            return None
        # From here on no jump until the books are right (a Ctrl-C arrives at
        # a jump): the element taken, its chain back on the free list.
        head = pop(self.hw, st, self.name)
        length = st[RING_LEN]
        token = self._tokens[head]
        wlen = self._wlen[head]
        self._tokens[head] = None
        self._next[self._last[head]] = self._free_head
        self._free_head = head
        self.num_free += st[RING_FREED]
        if length > wlen:
            raise DeviceError('%s: used length %d for head %d exceeds its %d writable bytes'
                              % (self.name, length, head, wlen), token)
        return token, length

    # -- learning aid ---------------------------------------------------------------------------
    def dump(self, write=print):
        """Print the descriptor table (descriptors ever written), both rings
        with their indices, and what the driver knows: all read back from
        memory, so a driver that drives the ring itself (take_over) shows
        the same way."""
        hw = self.hw
        st = self.st
        n = self.size
        if self.owner is not None:
            who = 'driven by %s' % self.owner
        else:
            who = '%d free descriptors' % self.num_free
        write('%s: split ring, size %d, %d in flight, %s'
              % (self.name, n, st[RING_IN_FLIGHT], who))
        write('  desc 0x%x  avail 0x%x  used 0x%x%s'
              % (self.desc, self.avail, self.used,
                 '  (legacy layout)' if self.transport.ring_align else ''))
        if st[RING_INDIRECT] or st[RING_PER] > 1:
            write('  %d prebuilt chains of %d descriptors%s' % (
                st[RING_NSLOTS], st[RING_PER],
                ' in indirect tables at 0x%x' % st[RING_CHAINS] if st[RING_INDIRECT] else ''))
        write('  desc  addr                len       flags           next')
        hidden = 0
        for i in range(n):
            addr, length, flags, nxt = struct.unpack('<QIHH', hw.read(self.desc + DESC_SIZE * i,
                                                                     DESC_SIZE))
            if addr == 0 and length == 0 and flags == 0:
                hidden += 1
                continue
            mark = '*' if self._holds(i) else ' '
            write('  %4d%s 0x%016x %-9d %-15s %d' % (i, mark, addr, length,
                                                     desc_flag_names(flags), nxt))
            if flags & VIRTQ_DESC_F_INDIRECT:
                for k in range(length // DESC_SIZE):
                    a, l, f, x = struct.unpack('<QIHH', hw.read(addr + DESC_SIZE * k, DESC_SIZE))
                    write('     [%d] 0x%016x %-9d %-15s %d' % (k, a, l, desc_flag_names(f), x))
        if hidden:
            write('  (%d descriptors never used; * = head of a request in flight)' % hidden)
        flags = hw.read16(self.avail)
        idx = hw.read16(self.avail + AVAIL_IDX)
        ring = [hw.read16(self.avail + AVAIL_RING + 2 * i) for i in range(min(idx, n))]
        write('  avail: flags 0x%04x%s idx %d ring %s%s'
              % (flags, ' NO_INTERRUPT' if flags & VIRTQ_AVAIL_F_NO_INTERRUPT else '', idx,
                 ' '.join(['%d' % h for h in ring]) or '-',
                 ('  used_event %d' % hw.read16(self._used_event)) if self.event_idx else ''))
        flags = hw.read16(self.used)
        idx = hw.read16(self.used + USED_IDX)
        ents = []
        for i in range(min(idx, n)):
            ents.append('%d/%d' % (hw.read32(self.used + USED_RING + USED_ELEM * i),
                                   hw.read32(self.used + USED_RING + USED_ELEM * i + 4)))
        write('  used:  flags 0x%04x%s idx %d ring %s%s'
              % (flags, ' NO_NOTIFY' if flags & VIRTQ_USED_F_NO_NOTIFY else '', idx,
                 ' '.join(ents) or '-',
                 ('  avail_event %d' % hw.read16(self._avail_event)) if self.event_idx else ''))
        write('  driver: next avail idx %d, last used idx %d, kicked at %d, %d notifications'
              % (st[RING_AVAIL_IDX], st[RING_LAST_USED], st[RING_KICKED], st[RING_NOTIFIED]))

    def indices(self):
        """Where driver and device are, in one line (from memory and state)."""
        hw, st = self.hw, self.st
        line = 'avail idx %d (posted up to %d)  used idx %d (seen up to %d)' % (
            hw.read16(self.avail + AVAIL_IDX), st[RING_AVAIL_IDX],
            hw.read16(self.used + USED_IDX), st[RING_LAST_USED])
        if self.event_idx:
            line += '  avail_event %d' % hw.read16(self._avail_event)
        return line

    def _holds(self, i):
        """Whether descriptor i heads a request in flight."""
        st = self.st
        stride = st[RING_STRIDE]
        slot = i // stride
        return i % stride == 0 and slot < st[RING_NSLOTS] and st[RING_WORDS + slot] != 0
