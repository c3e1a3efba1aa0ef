# Split virtqueues (spec 2.7): a descriptor table, an available ring written
# by the driver and a used ring written by the device, all in DMA memory.
# This module owns every step of the split ring, for every user of it:
#
#   set_desc   write a descriptor of a chain             2.7.5
#   post       put chains' heads in the available ring   2.7.13.1-2
#   publish    move avail->idx, decide on a notification 2.7.13.3, 2.7.10
#   kick       publish, then the transport's available buffer notification
#              when the device wants one                 2.7.10, 4.1.5.2 / 4.2.3.3
#   pop        take the next used element, check it      2.7.14
#
# A ring's state is one array('I') (so that viper code reads it without
# lookups): the words below, then one word per slot: the descriptors its
# chain holds while the device has it (0: not with the device). A slot is
# a request: for the general path (SplitVirtqueue.add/pop) a head
# descriptor; for drivers that prebuild one chain per slot (blk, net: see
# Virtqueue.take_over) slot k's head is k * stride (chains in the ring), or
# k with a chain of its own in an indirect table (2.7.5.3, stride 1).
#
# On the target the same functions run as viper code (end of this file, the
# choice made once there); the plain ones are the reference the host runs.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct
from array import array

from virtio.errors import DeviceError, VirtioError
from virtio.virtqueue import (DEFAULT_INDIRECT_MAX, DESC_SIZE, VIRTQ_DESC_F_INDIRECT,
                              VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, Steps, Virtqueue, desc_flag_names,
                              desc_table, need_event, send_notification)

# struct virtq_desc (2.7.5): addr, len, flags, next.
D_ADDR = const(0)
D_LEN = const(8)
D_FLAGS = const(12)
D_NEXT = const(14)
# struct virtq_avail (2.7.6): flags, idx, ring[size], used_event.
VIRTQ_AVAIL_F_NO_INTERRUPT = const(1)
AVAIL_IDX = const(2)
AVAIL_RING = const(4)
# struct virtq_used (2.7.8): flags, idx, ring[size] of (id, len), avail_event.
VIRTQ_USED_F_NO_NOTIFY = const(1)
USED_IDX = const(2)
USED_RING = const(4)
USED_ELEM = const(8)
MAX_SPLIT_SIZE = const(32768)

# The state words. The first nine are the same in virtio.packed (a host
# test checks): drivers read those without knowing the ring's kind.
RING_IN_FLIGHT = const(0)   # slots with the device
RING_LEN = const(1)         # the used length of the last pop
RING_FREED = const(2)       # the descriptors the last popped slot held
RING_NSLOTS = const(3)
RING_PER = const(4)         # descriptors per prebuilt chain
RING_INDIRECT = const(5)    # 1: each chain is its own indirect table
RING_CHAINS = const(6)      # where the chains are (their tables, or the ring's)
RING_EVENT_IDX = const(7)   # 1 when VIRTIO_F_EVENT_IDX was negotiated
RING_NOTIFIED = const(8)    # available buffer notifications sent (mod 2^32)
RING_MASK = const(9)        # queue size - 1
RING_STRIDE = const(10)     # head of slot k = k * stride
RING_DESC = const(11)       # the descriptor table (descriptor area)
RING_AVAIL = const(12)      # the available ring (driver area)
RING_USED = const(13)       # the used ring (device area)
RING_AVAIL_IDX = const(14)  # entries posted (our shadow of avail->idx)
RING_KICKED = const(15)     # avail idx the device has been told of
RING_LAST_USED = const(16)  # used idx consumed up to
RING_WORDS = const(17)


def ring_bytes(size, align):
    """(bytes, used ring offset) of a ring in one block whose used ring
    starts on an `align` boundary (2.7.2, the legacy layout)."""
    avail_end = DESC_SIZE * size + 6 + 2 * size
    used_at = (avail_end + align - 1) & ~(align - 1)
    return used_at + 6 + 8 * size, used_at


def new_state(desc, avail, used, size, event_idx):
    st = array('I', bytes(4 * (RING_WORDS + size)))
    st[RING_DESC] = desc
    st[RING_AVAIL] = avail
    st[RING_USED] = used
    st[RING_MASK] = size - 1
    st[RING_EVENT_IDX] = 1 if event_idx else 0
    st[RING_NSLOTS] = size
    st[RING_PER] = 1
    st[RING_STRIDE] = 1
    st[RING_CHAINS] = desc
    return st


def use_slots(hw, st, nslots, per, indirect):
    """Prebuilt chains: nslots chains of per descriptors, each in an
    indirect table of its own or in the ring (slot k's at k * per)."""
    if indirect:
        st[RING_CHAINS] = hw.dma_alloc(nslots * per * DESC_SIZE, DESC_SIZE)
        st[RING_STRIDE] = 1
    else:
        if nslots * per > st[RING_MASK] + 1:
            raise VirtioError('%d chains of %d descriptors do not fit a ring of %d'
                              % (nslots, per, st[RING_MASK] + 1))
        st[RING_CHAINS] = st[RING_DESC]
        st[RING_STRIDE] = per
    st[RING_NSLOTS] = nslots
    st[RING_PER] = per
    st[RING_INDIRECT] = 1 if indirect else 0


def chain_at(st, slot):
    """Where slot's chain is, and the number its first descriptor has
    (next links count from the table's start, 2.7.5.3.1)."""
    per = st[RING_PER]
    first = 0 if st[RING_INDIRECT] else slot * per
    return st[RING_CHAINS] + slot * per * DESC_SIZE, first


# -- the steps: plain versions (the reference, run on the host) ----------------------

def build(hw, st, template):
    """Write every slot's chain from template, (addr, len, flags) words per
    descriptor, linking descriptors that have VIRTQ_DESC_F_NEXT to the next
    one; with indirect tables, ring descriptor k points at slot k's table
    for good (2.7.5.3)."""
    nslots, per = st[RING_NSLOTS], st[RING_PER]
    t = array('I', bytes(16 * nslots * per))
    for k in range(nslots):
        first = chain_at(st, k)[1]
        for j in range(per):
            src = 3 * (k * per + j)
            o = 4 * (k * per + j)
            t[o] = template[src]
            t[o + 2] = template[src + 1]
            flags = template[src + 2]
            t[o + 3] = flags | ((first + j + 1) << 16 if flags & VIRTQ_DESC_F_NEXT else 0)
    hw.write(st[RING_CHAINS], bytes(t))
    if st[RING_INDIRECT]:
        t = array('I', bytes(16 * nslots))
        for k in range(nslots):
            t[4 * k] = st[RING_CHAINS] + k * per * DESC_SIZE
            t[4 * k + 2] = per * DESC_SIZE
            t[4 * k + 3] = VIRTQ_DESC_F_INDIRECT
        hw.write(st[RING_DESC], bytes(t))


def set_desc(hw, st, slot, j, addr, length, flags):
    """Descriptor j of slot's chain: its buffer, and its next link to
    descriptor j + 1 when flags has VIRTQ_DESC_F_NEXT (2.7.5)."""
    at, first = chain_at(st, slot)
    at += j * DESC_SIZE
    hw.write64(at + D_ADDR, addr)
    hw.write32(at + D_LEN, length)
    hw.write16(at + D_FLAGS, flags)
    hw.write16(at + D_NEXT, first + j + 1 if flags & VIRTQ_DESC_F_NEXT else 0)


def post_one(hw, st, slot, count, j, addr, length, flags):
    """One slot's chain (count descriptors) made available: descriptor j
    rewritten first unless j < 0, then the chain's head in the next
    available ring entry."""
    if j >= 0:
        set_desc(hw, st, slot, j, addr, length, flags)
    i = st[RING_AVAIL_IDX]
    hw.write16(st[RING_AVAIL] + AVAIL_RING + 2 * (i & st[RING_MASK]), slot * st[RING_STRIDE])
    st[RING_WORDS + slot] = count
    st[RING_IN_FLIGHT] += 1
    st[RING_AVAIL_IDX] = (i + 1) & 0xFFFF


def post(hw, st, reqs, count, per, j, flags):
    """Make count prebuilt chains available (2.7.13.1-2). reqs holds
    (slot, addr, length) word triples; each slot's chain has `per`
    descriptors, its descriptor j rewritten to (addr, length, flags) first
    unless j < 0. Not visible to the device before publish()."""
    for k in range(count):
        post_one(hw, st, reqs[3 * k], per, j, reqs[3 * k + 1], reqs[3 * k + 2], flags)


def publish(hw, st):
    """Make the posted entries visible (avail idx after a barrier, 2.7.13.3)
    and say whether the device wants a notification for the entries
    published since it was last told (2.7.10: avail_event with EVENT_IDX,
    else the used ring's NO_NOTIFY flag). When it does not, they count as
    told here; when it does, kick() sends it."""
    new = st[RING_AVAIL_IDX]
    old = st[RING_KICKED]
    if new == old:
        return 0
    hw.barrier()
    hw.write16(st[RING_AVAIL] + AVAIL_IDX, new)
    hw.barrier()        # idx visible before we read the device's wish
    if st[RING_EVENT_IDX]:
        avail_event = st[RING_USED] + USED_RING + USED_ELEM * (st[RING_MASK] + 1)
        need = need_event(hw.read16(avail_event), new, old)
    else:
        need = not hw.read16(st[RING_USED]) & VIRTQ_USED_F_NO_NOTIFY
    if need:
        return 1
    kicked(st)
    return 0


def kicked(st):
    """The device has been told of (or did not want to hear of) every
    published entry."""
    st[RING_KICKED] = st[RING_AVAIL_IDX]


def kick(hw, st, notifier):
    """publish(), then the available buffer notification if the device
    wants it (2.7.10), through the queue's notifier (Transport.notifier).
    Returns 1 when it notified. The entries count as told only once the
    notification is sent: one lost to an exception (Ctrl-C, MemoryError)
    is sent by the next kick."""
    if not publish(hw, st):
        return 0
    send_notification(st, notifier)
    kicked(st)
    return 1


def pop(hw, st, name):
    """The slot of the next used element (2.7.14), its used length in
    st[RING_LEN]; -1 if there is none. DeviceError, before anything
    changes, when the used idx runs ahead of what is in flight or the
    element names no slot with the device (`name` says whose ring)."""
    used = st[RING_USED]
    idx = hw.read16(used + USED_IDX)
    last = st[RING_LAST_USED]
    if idx == last:
        return -1
    ahead = (idx - last) & 0xFFFF
    if ahead > st[RING_IN_FLIGHT]:
        if ahead > st[RING_MASK] + 1:
            raise DeviceError('%s: used idx jumped from %d to %d, more than the queue size %d'
                              % (name, last, idx, st[RING_MASK] + 1))
        raise DeviceError('%s: used idx %d reports %d completions, only %d requests in flight'
                          % (name, idx, ahead, st[RING_IN_FLIGHT]))
    hw.barrier()        # the element is read after the index that covers it
    elem = used + USED_RING + USED_ELEM * (last & st[RING_MASK])
    head = hw.read32(elem)
    stride = st[RING_STRIDE]
    slot = head // stride
    if head % stride or slot >= st[RING_NSLOTS] or not st[RING_WORDS + slot]:
        raise DeviceError('%s: used id %d is not the head of a request in flight'
                          % (name, head))
    st[RING_LEN] = hw.read32(elem + 4)
    st[RING_LAST_USED] = (last + 1) & 0xFFFF
    st[RING_FREED] = st[RING_WORDS + slot]
    st[RING_WORDS + slot] = 0
    st[RING_IN_FLIGHT] -= 1
    return slot


def set_interrupts(hw, st, on):
    """Ask the device for used buffer notifications, or not (2.7.7): the
    avail ring's flag, or with EVENT_IDX used_event (on: the next used
    entry; off: the entry just behind, which the device will not reach)."""
    used_event = st[RING_AVAIL] + AVAIL_RING + 2 * (st[RING_MASK] + 1)
    if st[RING_EVENT_IDX]:
        hw.write16(used_event, (st[RING_LAST_USED] - (0 if on else 1)) & 0xFFFF)
    else:
        hw.write16(st[RING_AVAIL], 0 if on else VIRTQ_AVAIL_F_NO_INTERRUPT)


class SplitVirtqueue(Virtqueue):
    """A split virtqueue. `negotiated` is the negotiated feature set (for
    INDIRECT_DESC and EVENT_IDX); `check` is called while waiting so a
    device that set DEVICE_NEEDS_RESET is reported instead of timing out.
    add() links a chain from the free list (or one descriptor pointing at
    a preallocated indirect table) and posts its head; kick() publishes and
    notifies; pop() takes one completion off the used ring and checks it."""

    kind = 'split'
    steps = None                  # this module (set below): its step functions

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

    # -- used buffer notifications (2.7.7) -------------------------------------------
    def suppress_interrupts(self):
        """We poll: ask the device not to interrupt (2.7.7)."""
        set_interrupts(self.hw, self.st, False)

    def enable_interrupts(self):
        set_interrupts(self.hw, self.st, True)

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


# -- the target: the same steps in viper ----------------------------------------------------
# MicroPython's native emitter (the image freezes this module with mpy-cross
# -march=x86) runs these in place of the plain functions of the same names:
# the choice is made once, here. They work on physical memory (the target's
# memory is identity mapped; x86 keeps stores in order, so only a store
# followed by a load needs hw.barrier()). Viper builds in only this module's
# constants: the flags again as literals (a host test checks they agree).
# Anything wrong goes to the plain function, which says what.

_F_NEXT = const(1)          # VIRTQ_DESC_F_NEXT
_F_INDIRECT = const(4)      # VIRTQ_DESC_F_INDIRECT
_DESC = const(16)           # DESC_SIZE


PlainSteps = Steps(use_slots, build, set_desc, post, publish, kick, pop,
                   set_interrupts)

try:
    import micropython
    NATIVE = True
except ImportError:
    NATIVE = False

if NATIVE:

    @micropython.viper
    def _build(hw, st, template):
        s = ptr32(st)
        t = ptr32(template)
        nslots = int(s[RING_NSLOTS])
        per = int(s[RING_PER])
        indirect = int(s[RING_INDIRECT])
        chains = s[RING_CHAINS]
        ring = s[RING_DESC]
        k = 0
        while k < nslots:
            first = 0
            if not indirect:
                first = k * per
            d = ptr32(chains + uint(k * per * _DESC))
            j = 0
            while j < per:
                src = 3 * (k * per + j)
                flags = int(t[src + 2])
                d[4 * j] = t[src]
                d[4 * j + 1] = 0
                d[4 * j + 2] = t[src + 1]
                if flags & _F_NEXT:
                    flags |= (first + j + 1) << 16
                d[4 * j + 3] = flags
                j += 1
            if indirect:
                r = ptr32(ring + uint(k * _DESC))
                r[0] = uint(d)
                r[1] = 0
                r[2] = per * _DESC
                r[3] = _F_INDIRECT
            k += 1

    @micropython.viper
    def _set_desc(hw, st, slot: int, j: int, addr: uint, length: uint, flags: int):
        s = ptr32(st)
        per = int(s[RING_PER])
        first = 0
        if not s[RING_INDIRECT]:
            first = slot * per
        d = ptr32(s[RING_CHAINS] + uint((slot * per + j) * _DESC))
        d[0] = addr
        d[1] = 0
        d[2] = length
        if flags & _F_NEXT:
            flags |= (first + j + 1) << 16
        d[3] = flags

    @micropython.viper
    def _post(hw, st, reqs, count: int, per: int, j: int, flags: int):
        # Every (slot, addr, length) triple in one loop: a viper call per
        # request costs as much as the rest. Descriptor j of each
        # chain rewritten first unless j < 0 (2.7.13.1), then the chain's
        # head in the next avail entry (2.7.13.2); avail->idx waits for publish.
        s = ptr32(st)
        r = ptr32(reqs)
        chains = s[RING_CHAINS]
        cper = int(s[RING_PER])
        indirect = int(s[RING_INDIRECT])
        stride = int(s[RING_STRIDE])
        avail = ptr16(s[RING_AVAIL] + AVAIL_RING)
        mask = int(s[RING_MASK])
        i = int(s[RING_AVAIL_IDX])
        k = 0
        while k < count:
            slot = int(r[3 * k])
            if j >= 0:
                first = 0
                if not indirect:
                    first = slot * cper
                d = ptr32(chains + uint((slot * cper + j) * _DESC))
                d[0] = r[3 * k + 1]
                d[1] = 0
                d[2] = r[3 * k + 2]
                f = flags
                if f & _F_NEXT:
                    f |= (first + j + 1) << 16
                d[3] = f
            avail[i & mask] = slot * stride
            s[RING_WORDS + slot] = per
            i = (i + 1) & 0xFFFF
            k += 1
        s[RING_IN_FLIGHT] = int(s[RING_IN_FLIGHT]) + count
        s[RING_AVAIL_IDX] = i

    @micropython.viper
    def _kick(hw, st, notifier) -> int:
        s = ptr32(st)
        new = int(s[RING_AVAIL_IDX])
        old = int(s[RING_KICKED])
        if new == old:
            return 0
        ptr16(s[RING_AVAIL])[1] = new       # avail->idx, after the entries (stores in order)
        hw.barrier()                        # idx visible before we read the device's wish
        if s[RING_EVENT_IDX]:
            event = int(ptr16(s[RING_USED] + USED_RING
                              + uint(USED_ELEM * (int(s[RING_MASK]) + 1)))[0])
            if ((new - event - 1) & 0xFFFF) >= ((new - old) & 0xFFFF):
                s[RING_KICKED] = new        # not wanted: told, as far as the device cares
                return 0
        elif ptr16(s[RING_USED])[0] & VIRTQ_USED_F_NO_NOTIFY:
            s[RING_KICKED] = new
            return 0
        # (Viper code never stops for a pending Ctrl-C, and the transport's
        # write is one C call: the notification and its record go together.)
        notifier[0](notifier[1], notifier[2])
        s[RING_NOTIFIED] = s[RING_NOTIFIED] + 1
        s[RING_KICKED] = new
        return 1

    @micropython.viper
    def _pop(hw, st, name) -> int:
        s = ptr32(st)
        used = s[RING_USED]
        idx = int(ptr16(used)[1])
        last = int(s[RING_LAST_USED])
        if idx == last:
            return -1
        if ((idx - last) & 0xFFFF) > int(s[RING_IN_FLIGHT]):
            return int(PlainSteps.pop(hw, st, name))        # raises the DeviceError
        elem = ptr32(used + USED_RING + uint(USED_ELEM * (last & int(s[RING_MASK]))))
        head = int(elem[0])
        stride = int(s[RING_STRIDE])
        slot = head
        if stride != 1:
            slot = head // stride
            if slot * stride != head:
                slot = int(s[RING_NSLOTS])
        if uint(slot) >= uint(s[RING_NSLOTS]) or not s[RING_WORDS + slot]:
            return int(PlainSteps.pop(hw, st, name))        # raises the DeviceError
        s[RING_LEN] = elem[1]
        s[RING_LAST_USED] = (last + 1) & 0xFFFF
        s[RING_FREED] = s[RING_WORDS + slot]
        s[RING_WORDS + slot] = 0
        s[RING_IN_FLIGHT] = int(s[RING_IN_FLIGHT]) - 1
        return slot

    build = _build
    set_desc = _set_desc
    post = _post
    kick = _kick
    pop = _pop


SplitVirtqueue.steps = __import__('virtio.split', None, None, ('split',))
