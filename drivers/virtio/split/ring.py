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

from array import array

from virtio.errors import DeviceError, VirtioError
from virtio.virtqueue import (DESC_SIZE, NATIVE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                              Steps, need_event, send_notification)

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

if NATIVE:
    import micropython

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
