# Split virtqueues (spec 2.7): a descriptor table, an available ring written
# by the driver and a used ring written by the device, all in DMA memory.
#
# One request = a chain of buffers, device-readable first, then
# device-writable, identified by its head descriptor. add() links a chain
# from the free list (or one descriptor pointing at a preallocated indirect
# table) and publishes its head; kick() notifies the device only when it
# asked to be told; pop() takes one completion off the used ring and checks
# it, since a device is not to be trusted.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct

from virtio import features, wait
from virtio.errors import DeviceError, VirtioError, VirtqueueFull

# Descriptor flags (2.7.5).
VIRTQ_DESC_F_NEXT = const(1)
VIRTQ_DESC_F_WRITE = const(2)
VIRTQ_DESC_F_INDIRECT = const(4)
# Ring flags (2.7.6, 2.7.8).
VIRTQ_AVAIL_F_NO_INTERRUPT = const(1)
VIRTQ_USED_F_NO_NOTIFY = const(1)

DESC_SIZE = const(16)
MAX_SPLIT_SIZE = const(32768)
DEFAULT_INDIRECT_MAX = const(8)
DEFAULT_TIMEOUT_MS = const(1000)


def desc_flag_names(flags):
    out = []
    if flags & VIRTQ_DESC_F_NEXT:
        out.append('NEXT')
    if flags & VIRTQ_DESC_F_WRITE:
        out.append('WRITE')
    if flags & VIRTQ_DESC_F_INDIRECT:
        out.append('INDIRECT')
    rest = flags & ~7
    if rest:
        out.append('0x%x' % rest)
    return '|'.join(out) or '-'


class ViewTable:
    """Descriptors written straight into a view of DMA memory
    (hw.bytearray_at): one struct.pack_into per descriptor."""

    def __init__(self, hw, base, nbytes):
        self.base = base
        self.view = hw.bytearray_at(base, nbytes)

    def put(self, off, addr, length, a, b):
        # struct virtq_desc {addr, len, flags, next} or, packed,
        # struct pvirtq_desc {addr, len, id, flags}.
        struct.pack_into('<QIHH', self.view, off, addr, length, a, b)

    def put_head(self, off, addr, length, a):
        struct.pack_into('<QIH', self.view, off, addr, length, a)


class CopyTable:
    """Descriptors packed into a scratch buffer and copied with hw.write,
    for hardware interfaces that cannot alias memory (qtest)."""

    def __init__(self, hw, base, nbytes):
        self.hw = hw
        self.base = base
        self.scratch = bytearray(DESC_SIZE)
        self.head = bytearray(DESC_SIZE - 2)

    def put(self, off, addr, length, a, b):
        struct.pack_into('<QIHH', self.scratch, 0, addr, length, a, b)
        self.hw.write(self.base + off, self.scratch)

    def put_head(self, off, addr, length, a):
        struct.pack_into('<QIH', self.head, 0, addr, length, a)
        self.hw.write(self.base + off, self.head)


def desc_table(hw, base, nbytes):
    """A writer for `nbytes` of descriptors at `base`, chosen once."""
    if hasattr(hw, 'bytearray_at'):
        return ViewTable(hw, base, nbytes)
    return CopyTable(hw, base, nbytes)


def need_event(event, new, old):
    """Spec 2.7.10: notify when `event` lies in [old, new) modulo 2^16."""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


class Virtqueue:
    """What split and packed rings share: collecting and waiting for
    completions on top of their pop()."""

    def _init_common(self, hw, transport, index, size, negotiated, indirect_max, name, check):
        """What both ring formats keep: where the queue is, its name for
        errors, and the negotiated ring features they act on."""
        self.hw = hw
        self.transport = transport
        self.index = index
        self.size = size
        self.name = name or '%s queue %d' % (transport.address, index)
        self.check = check
        self.event_idx = features.has(negotiated, features.EVENT_IDX)
        self.indirect_max = indirect_max if features.has(negotiated, features.INDIRECT_DESC) else 0

    def _alloc_indirect(self):
        """The indirect tables, indirect_max descriptors for each request
        that may be in flight (2.7.5.3, 2.8.7), allocated once so that
        add() allocates nothing."""
        self.indirect = 0
        if self.indirect_max:
            nbytes = self.size * self.indirect_max * DESC_SIZE
            self.indirect = self.hw.dma_alloc(nbytes, DESC_SIZE)
            self._tables = desc_table(self.hw, self.indirect, nbytes)

    def _fits(self, n):
        """Check that a request of n buffers can be added now; whether it
        goes into an indirect table (one ring descriptor) or the ring (n)."""
        if n == 0:
            raise VirtioError('%s: a request needs at least one buffer' % self.name)
        use_indirect = 1 < n <= self.indirect_max
        need = 1 if use_indirect else n
        if need > self.num_free:
            if need > self.size:
                raise VirtioError('%s: %d buffers can never fit a ring of %d'
                                  % (self.name, n, self.size))
            raise VirtqueueFull('%s: %d descriptors needed, %d free (%d requests in flight)'
                                % (self.name, need, self.num_free, self.in_flight))
        return use_indirect

    def collect(self):
        """Every completion available now, as a list of (token, length)."""
        out = []
        while True:
            r = self.pop()
            if r is None:
                return out
            out.append(r)

    def wait(self, timeout_ms=DEFAULT_TIMEOUT_MS):
        """Wait (virtio.wait) until one request completes; (token, length).
        Raises VirtioTimeout after timeout_ms. Anything published but not
        yet notified (a kick cut short) is notified first."""
        self.kick()
        return wait.until(self.hw, self.pop, timeout_ms, self.check, self._late)

    def _late(self, timeout_ms):
        return ('%s: no completion within %d ms (%d requests in flight)'
                % (self.name, timeout_ms, self.in_flight))


class SplitVirtqueue(Virtqueue):
    """A split virtqueue. `features` is the negotiated feature set (for
    INDIRECT_DESC and EVENT_IDX); `check` is called while waiting so a
    device that set DEVICE_NEEDS_RESET is reported instead of timing out."""

    kind = 'split'

    def __init__(self, hw, transport, index, size, negotiated=0,
                 indirect_max=DEFAULT_INDIRECT_MAX, name=None, check=None):
        if size < 1 or size > MAX_SPLIT_SIZE or size & (size - 1):
            raise VirtioError('queue %d: split ring size %d is not a power of 2 up to %d'
                              % (index, size, MAX_SPLIT_SIZE))
        self._init_common(hw, transport, index, size, negotiated, indirect_max, name, check)
        self._alloc_rings()
        # Driver-side bookkeeping: never read back from device memory.
        self._next = list(range(1, size + 1))     # free list links
        self._free_head = 0
        self.num_free = size
        self._ndesc = [0] * size      # per head: descriptors held (0 = not in flight)
        self._wlen = [0] * size       # per head: device-writable bytes
        self._tokens = [None] * size
        self.in_flight = 0
        self._avail_idx = 0           # shadow of avail->idx
        self._kicked_idx = 0          # avail idx at the last kick
        self._last_used = 0
        self.notifications = 0
        self.owner = None             # a driver that drives this ring itself (take_over)
        self._ring = desc_table(hw, self.desc, DESC_SIZE * size)
        self._alloc_indirect()
        self.suppress_interrupts()

    def _alloc_rings(self):
        hw, n = self.hw, self.size
        align = self.transport.ring_align
        if align:
            # One block: descriptors, available ring, then the used ring on
            # the next `align` boundary (2.7.2).
            avail_end = DESC_SIZE * n + 6 + 2 * n
            used_at = (avail_end + align - 1) & ~(align - 1)
            self.desc = hw.dma_alloc(used_at + 6 + 8 * n, align)
            self.avail = self.desc + DESC_SIZE * n
            self.used = self.desc + used_at
        else:
            # Three parts, each with its own alignment (2.7).
            self.desc = hw.dma_alloc(DESC_SIZE * n, 16)
            self.avail = hw.dma_alloc(6 + 2 * n, 2)
            self.used = hw.dma_alloc(6 + 8 * n, 4)
        self._used_event = self.avail + 4 + 2 * n
        self._avail_event = self.used + 4 + 8 * n

    def enable(self):
        self.transport.enable_queue(self.index, self.size, self.desc, self.avail, self.used)

    def take_over(self, owner):
        """Hand the ring to a driver that posts and reaps its own prebuilt
        chains (blk, net: their hot paths in viper). From then on this
        object's bookkeeping is unused: add()/pop() refuse, and dump() reads
        everything from ring memory and points at the owner's dump()."""
        if self.in_flight:
            raise VirtioError('%s: cannot hand over a ring with %d requests in flight'
                              % (self.name, self.in_flight))
        self.owner = owner

    def _owned(self, what):
        raise VirtioError('%s: %s() refused: the ring is driven by %s (use its API)'
                          % (self.name, what, self.owner))

    # -- used buffer notifications (2.7.7) -------------------------------------------
    def suppress_interrupts(self):
        """We poll: ask the device not to interrupt (2.7.7). With EVENT_IDX the
        flag is ignored, so used_event is set just behind the device."""
        if self.event_idx:
            self.hw.write16(self._used_event, (self._last_used - 1) & 0xFFFF)
        else:
            self.hw.write16(self.avail, VIRTQ_AVAIL_F_NO_INTERRUPT)

    def enable_interrupts(self):
        if self.event_idx:
            self.hw.write16(self._used_event, self._last_used)
        else:
            self.hw.write16(self.avail, 0)

    # -- supplying buffers (2.7.13) ------------------------------------------------------
    def add(self, readable, writable, token=None):
        """Offer one request: `readable` then `writable` are sequences of
        (address, length). Returns the head descriptor index. Raises
        VirtqueueFull when the free descriptors do not suffice."""
        if self.owner is not None:
            self._owned('add')
        nr = len(readable)
        n = nr + len(writable)
        use_indirect = self._fits(n)
        need = 1 if use_indirect else n
        head = self._free_head
        wlen = 0
        if use_indirect:
            tables = self._tables
            toff = head * self.indirect_max * DESC_SIZE
            i = 0
            for addr, length in readable:
                tables.put(toff + i * DESC_SIZE, addr, length,
                           VIRTQ_DESC_F_NEXT if i + 1 < n else 0, i + 1)
                i += 1
            for addr, length in writable:
                flags = VIRTQ_DESC_F_WRITE | (VIRTQ_DESC_F_NEXT if i + 1 < n else 0)
                tables.put(toff + i * DESC_SIZE, addr, length, flags, i + 1)
                wlen += length
                i += 1
            self._ring.put(head * DESC_SIZE, self.indirect + toff, n * DESC_SIZE,
                           VIRTQ_DESC_F_INDIRECT, 0)
            self._free_head = self._next[head]
        else:
            ring = self._ring
            i = head
            k = 0
            nxt = self._next
            for addr, length in readable:
                k += 1
                ring.put(i * DESC_SIZE, addr, length,
                         VIRTQ_DESC_F_NEXT if k < n else 0, nxt[i] if k < n else 0)
                i = nxt[i]
            for addr, length in writable:
                k += 1
                flags = VIRTQ_DESC_F_WRITE | (VIRTQ_DESC_F_NEXT if k < n else 0)
                ring.put(i * DESC_SIZE, addr, length, flags, nxt[i] if k < n else 0)
                wlen += length
                i = nxt[i]
            self._free_head = i
        self.num_free -= need
        self._ndesc[head] = need
        self._wlen[head] = wlen
        self._tokens[head] = token
        self.in_flight += 1
        # Publish: the ring entry, a barrier, then the index (2.7.13.3-4).
        hw = self.hw
        hw.write16(self.avail + 4 + 2 * (self._avail_idx & (self.size - 1)), head)
        hw.barrier()
        self._avail_idx = (self._avail_idx + 1) & 0xFFFF
        hw.write16(self.avail + 2, self._avail_idx)
        return head

    def kick(self):
        """Notify the device of new buffers, unless it said it does not need
        it (VIRTQ_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX, 2.7.10).
        Returns True when a notification was sent."""
        new = self._avail_idx
        old = self._kicked_idx
        if new == old:
            return False
        hw = self.hw
        hw.barrier()        # idx visible before we read the device's wish
        if self.event_idx:
            need = need_event(hw.read16(self._avail_event), new, old)
        else:
            need = not hw.read16(self.used) & VIRTQ_USED_F_NO_NOTIFY
        if need:
            self.transport.notify(self.index)
            self.notifications += 1
        # Only now: a notification lost to an exception is sent by the next kick.
        self._kicked_idx = new
        return need

    # -- receiving used buffers (2.7.14) -----------------------------------------------------
    def pop(self):
        """One completion as (token, written length), or None."""
        if self.owner is not None:
            self._owned('pop')
        hw = self.hw
        used_idx = hw.read16(self.used + 2)
        last = self._last_used
        if used_idx == last:
            return None
        delta = (used_idx - last) & 0xFFFF
        if delta > self.in_flight:
            if delta > self.size:
                raise DeviceError('%s: used idx jumped from %d to %d, more than the queue size %d'
                                  % (self.name, last, used_idx, self.size))
            raise DeviceError('%s: used idx %d reports %d completions, only %d requests in flight'
                              % (self.name, used_idx, delta, self.in_flight))
        hw.barrier()        # the entry is read after the index that covers it
        slot = self.used + 4 + 8 * (last & (self.size - 1))
        head = hw.read32(slot)
        length = hw.read32(slot + 4)
        self._last_used = (last + 1) & 0xFFFF
        if head >= self.size or self._ndesc[head] == 0:
            raise DeviceError('%s: used id %d is not the head of a request in flight'
                              % (self.name, head))
        token = self._tokens[head]
        wlen = self._wlen[head]
        self._free(head)
        if length > wlen:
            raise DeviceError('%s: used length %d for head %d exceeds its %d writable bytes'
                              % (self.name, length, head, wlen), token)
        return token, length

    def _free(self, head):
        # A direct chain holds n descriptors linked through the free-list
        # links it was taken along; an indirect one holds just its head.
        n = self._ndesc[head]
        last = head
        for _ in range(n - 1):
            last = self._next[last]
        self._next[last] = self._free_head
        self._free_head = head
        self.num_free += n
        self._ndesc[head] = 0
        self._tokens[head] = None
        self.in_flight -= 1

    # -- learning aid ---------------------------------------------------------------------------
    def dump(self, write=print):
        """Print the descriptor table (descriptors ever written) and both
        rings with their indices."""
        hw = self.hw
        n = self.size
        owned = self.owner is not None
        if owned:
            # Only ring memory is true here: the owner keeps its own books.
            ahead = (hw.read16(self.avail + 2) - hw.read16(self.used + 2)) & 0xFFFF
            write('%s: split ring, size %d, driven by %s (its dump() shows its requests); '
                  '%d published and not yet used' % (self.name, n, self.owner, ahead))
        else:
            write('%s: split ring, size %d, %d in flight, %d free descriptors'
                  % (self.name, n, self.in_flight, self.num_free))
        write('  desc 0x%x  avail 0x%x  used 0x%x%s'
              % (self.desc, self.avail, self.used,
                 '  (legacy layout)' if self.transport.ring_align else ''))
        write('  desc  addr                len       flags           next')
        hidden = 0
        for i in range(n):
            addr, length, flags, nxt = struct.unpack('<QIHH', hw.read(self.desc + DESC_SIZE * i,
                                                                     DESC_SIZE))
            if addr == 0 and length == 0 and flags == 0:
                hidden += 1
                continue
            mark = '*' if self._ndesc[i] and not owned else ' '
            write('  %4d%s 0x%016x %-9d %-15s %d' % (i, mark, addr, length,
                                                     desc_flag_names(flags), nxt))
            if flags & VIRTQ_DESC_F_INDIRECT:
                for k in range(length // DESC_SIZE):
                    a, l, f, x = struct.unpack('<QIHH', hw.read(addr + DESC_SIZE * k, DESC_SIZE))
                    write('     [%d] 0x%016x %-9d %-15s %d' % (k, a, l, desc_flag_names(f), x))
        if hidden:
            write('  (%d descriptors never used; * = head of a request in flight)' % hidden)
        flags = hw.read16(self.avail)
        idx = hw.read16(self.avail + 2)
        ring = [hw.read16(self.avail + 4 + 2 * i) for i in range(min(idx, n))]
        write('  avail: flags 0x%04x%s idx %d ring %s%s'
              % (flags, ' NO_INTERRUPT' if flags & VIRTQ_AVAIL_F_NO_INTERRUPT else '', idx,
                 ' '.join(['%d' % h for h in ring]) or '-',
                 ('  used_event %d' % hw.read16(self._used_event)) if self.event_idx else ''))
        flags = hw.read16(self.used)
        idx = hw.read16(self.used + 2)
        ents = []
        for i in range(min(idx, n)):
            ents.append('%d/%d' % (hw.read32(self.used + 4 + 8 * i),
                                   hw.read32(self.used + 8 + 8 * i)))
        write('  used:  flags 0x%04x%s idx %d ring %s%s'
              % (flags, ' NO_NOTIFY' if flags & VIRTQ_USED_F_NO_NOTIFY else '', idx,
                 ' '.join(ents) or '-',
                 ('  avail_event %d' % hw.read16(self._avail_event)) if self.event_idx else ''))
        if not owned:
            write('  driver: next avail idx %d, last used idx %d, kicked at %d, %d notifications'
                  % (self._avail_idx, self._last_used, self._kicked_idx, self.notifications))
