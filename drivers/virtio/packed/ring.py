# Packed virtqueues (spec 2.8, negotiated with RING_PACKED): one descriptor
# ring that both sides write, plus two event suppression structures. The
# driver writes available descriptors in ring order, marking them with its
# wrap counter in the AVAIL/USED flag bits; the device overwrites them with
# used descriptors, in completion order, each carrying the buffer ID. This
# module owns every step of the packed ring, the same steps and names as
# virtio.split:
#
#   set_desc   write a descriptor of a prebuilt chain     2.8.13 (2.8.7 indirect)
#   post       write a buffer's descriptors into the ring 2.8.6, 2.8.13
#              (the first descriptor's flags last: they make it available)
#   publish    decide on a notification                   2.8.10, 2.8.14
#   kick       publish, then the transport's available buffer notification
#              when the device wants one                  2.8.10, 4.1.5.2 / 4.2.3.3
#   pop        take the next used descriptor, check it    2.8.14 (2.8.15)
#
# The state array: the words both formats share (virtio.virtqueue,
# RING_COMMON), this format's, then one word per buffer ID (slot): the ring
# descriptors it holds while the device has it (0: free). Buffer IDs are the
# slots. On the target the same functions run as viper code (end of file).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from array import array

from virtio.errors import DeviceError, VirtioError
from virtio.virtqueue import (DESC_SIZE, NATIVE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
                              VIRTQ_DESC_F_WRITE, Steps, desc_table, send_notification)

VIRTQ_DESC_F_AVAIL = const(0x80)
VIRTQ_DESC_F_USED = const(0x8000)
# struct pvirtq_desc (2.8.13): addr, len, id, flags.
D_ADDR = const(0)
D_LEN = const(8)
D_ID = const(12)
D_FLAGS = const(14)
# struct pvirtq_event_suppress (2.8.10): off_wrap, flags.
EVENT_OFF_WRAP = const(0)
EVENT_FLAGS = const(2)
RING_EVENT_FLAGS_ENABLE = const(0)
RING_EVENT_FLAGS_DISABLE = const(1)
RING_EVENT_FLAGS_DESC = const(2)
EVENT_FLAG_NAMES = ('ENABLE', 'DISABLE', 'DESC', 'reserved')
MAX_PACKED_SIZE = const(32768)

# The state words (the first nine as in virtio.virtqueue, for viper here).
RING_IN_FLIGHT = const(0)
RING_LEN = const(1)
RING_FREED = const(2)
RING_NSLOTS = const(3)
RING_PER = const(4)
RING_INDIRECT = const(5)
RING_CHAINS = const(6)      # the slots' indirect tables, or their chains to copy in
RING_EVENT_IDX = const(7)
RING_NOTIFIED = const(8)    # available buffer notifications sent (mod 2^32)
RING_SIZE = const(9)
RING_DESC = const(10)        # the descriptor ring (descriptor area)
RING_DRIVER_EVENT = const(11)   # driver event suppression (driver area)
RING_DEVICE_EVENT = const(12)   # device event suppression (device area)
RING_NEXT_AVAIL = const(13)
RING_AVAIL_WRAP = const(14)     # Driver Ring Wrap Counter (2.8.1)
RING_NEXT_USED = const(15)
RING_USED_WRAP = const(16)      # the wrap counter the next used descriptor carries
RING_KICK_POS = const(17)       # ring position (index + size * !wrap) last told
RING_ADDED = const(18)          # descriptors made available since then
RING_WORDS = const(19)


def new_state(desc, driver_event, device_event, size, event_idx):
    st = array('I', bytes(4 * (RING_WORDS + size)))
    st[RING_DESC] = desc
    st[RING_DRIVER_EVENT] = driver_event
    st[RING_DEVICE_EVENT] = device_event
    st[RING_SIZE] = size
    st[RING_EVENT_IDX] = 1 if event_idx else 0
    st[RING_AVAIL_WRAP] = 1
    st[RING_USED_WRAP] = 1
    st[RING_NSLOTS] = size
    st[RING_PER] = 1
    return st


def use_slots(hw, st, nslots, per, indirect):
    """Prebuilt chains: nslots chains of per descriptors, each an indirect
    table (one ring descriptor per request) or a chain copied into the ring
    at each post (per ring descriptors per request)."""
    if not indirect and nslots * per > st[RING_SIZE]:
        raise VirtioError('%d chains of %d descriptors do not fit a ring of %d'
                          % (nslots, per, st[RING_SIZE]))
    st[RING_CHAINS] = hw.dma_alloc(nslots * per * DESC_SIZE, DESC_SIZE)
    st[RING_NSLOTS] = nslots
    st[RING_PER] = per
    st[RING_INDIRECT] = 1 if indirect else 0


def position(st, index, wrap):
    """(index, wrap counter) as one position modulo twice the ring size."""
    return index if wrap else index + st[RING_SIZE]


def avail_flags(st):
    """AVAIL and USED as a descriptor made available now carries them (2.8.1)."""
    return VIRTQ_DESC_F_AVAIL if st[RING_AVAIL_WRAP] else VIRTQ_DESC_F_USED


# -- the steps: plain versions (the reference, run on the host) ----------------------

def build(hw, st, template):
    """Write every slot's chain from template, (addr, len, flags) words per
    descriptor. In an indirect table only VIRTQ_DESC_F_WRITE means anything
    (2.8.7); a chain to copy keeps NEXT too."""
    nslots, per = st[RING_NSLOTS], st[RING_PER]
    keep = VIRTQ_DESC_F_WRITE if st[RING_INDIRECT] else VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT
    t = array('I', bytes(16 * nslots * per))
    for d in range(nslots * per):
        t[4 * d] = template[3 * d]
        t[4 * d + 2] = template[3 * d + 1]
        t[4 * d + 3] = (template[3 * d + 2] & keep) << 16
    hw.write(st[RING_CHAINS], bytes(t))


def set_desc(hw, st, slot, j, addr, length, flags):
    """Descriptor j of slot's chain (NEXT, in a copied chain: more follow)."""
    at = st[RING_CHAINS] + (slot * st[RING_PER] + j) * DESC_SIZE
    keep = VIRTQ_DESC_F_WRITE if st[RING_INDIRECT] else VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT
    hw.write64(at + D_ADDR, addr)
    hw.write32(at + D_LEN, length)
    hw.write16(at + D_ID, 0)
    hw.write16(at + D_FLAGS, flags & keep)


def put(hw, st, table, addr, length, bid, flags):
    """Write one descriptor at the next available position (through the
    ring's descriptor writer `table`, virtio.virtqueue.desc_table) and move
    on, flipping the wrap counter at the ring's end. flags: without
    AVAIL/USED, which are added here; None for a first descriptor whose
    flags the caller writes last. Returns where its flags are."""
    off = DESC_SIZE * st[RING_NEXT_AVAIL]
    if flags is None:
        table.put_head(off, addr, length, bid)
    else:
        table.put(off, addr, length, bid, flags | avail_flags(st))
    st[RING_NEXT_AVAIL] += 1
    if st[RING_NEXT_AVAIL] == st[RING_SIZE]:
        st[RING_NEXT_AVAIL] = 0
        st[RING_AVAIL_WRAP] ^= 1
    st[RING_ADDED] += 1
    return st[RING_DESC] + off + D_FLAGS


def make_available(hw, st, slot, held, first, flags, before):
    """Book buffer `slot` as with the device (it holds `held` ring
    descriptors), then write the first descriptor's flags (2.8.6: they make
    the whole list available): so no moment has the device holding a buffer
    the books do not know (a Ctrl-C arrives at a jump). If the write fails,
    nothing was handed over: the books and the ring positions go back to
    `before` (next avail, wrap counter, added)."""
    st[RING_WORDS + slot] = held
    st[RING_IN_FLIGHT] += 1
    try:
        hw.barrier()
        hw.write16(first, flags)
    except BaseException:
        st[RING_WORDS + slot] = 0
        st[RING_IN_FLIGHT] -= 1
        st[RING_NEXT_AVAIL], st[RING_AVAIL_WRAP], st[RING_ADDED] = before
        raise


def post_one(hw, st, slot, count, j, addr, length, flags):
    """Make slot's chain of count descriptors available as buffer ID slot
    (2.8.13): descriptor j rewritten first unless j < 0; then one ring
    descriptor pointing at the slot's indirect table, or the chain copied
    into the ring; the first descriptor's flags written last (2.8.6)."""
    if j >= 0:
        set_desc(hw, st, slot, j, addr, length, flags)
    first_flags = avail_flags(st)
    before = (st[RING_NEXT_AVAIL], st[RING_AVAIL_WRAP], st[RING_ADDED])
    chain = st[RING_CHAINS] + slot * st[RING_PER] * DESC_SIZE
    table = desc_table(hw, st[RING_DESC], DESC_SIZE * st[RING_SIZE])
    if st[RING_INDIRECT]:
        first = put(hw, st, table, chain, count * DESC_SIZE, slot, None)
        first_flags |= VIRTQ_DESC_F_INDIRECT
        held = 1
    else:
        first = 0
        for k in range(count):
            d = chain + k * DESC_SIZE
            f = hw.read16(d + D_FLAGS) & (VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT)
            if k + 1 == count:
                f &= ~VIRTQ_DESC_F_NEXT
            if k == 0:
                first_flags |= f
                first = put(hw, st, table, hw.read64(d + D_ADDR), hw.read32(d + D_LEN), slot,
                            None)
            else:
                put(hw, st, table, hw.read64(d + D_ADDR), hw.read32(d + D_LEN), slot, f)
        held = count
    make_available(hw, st, slot, held, first, first_flags, before)


def post(hw, st, reqs, count, per, j, flags):
    """Make count prebuilt chains available (2.8.13), in order. reqs holds
    (slot, addr, length) word triples; each slot's chain has `per`
    descriptors, its descriptor j rewritten to (addr, length, flags) first
    unless j < 0."""
    for k in range(count):
        post_one(hw, st, reqs[3 * k], per, j, reqs[3 * k + 1], reqs[3 * k + 2], flags)


def publish(hw, st):
    """Posted descriptors are visible once their flags are written; say
    whether the device wants a notification for those added since it was
    last told (2.8.10: its event suppression structure; with EVENT_IDX a
    descriptor position). When it does not, they count as told here; when
    it does, kick() sends it."""
    added = st[RING_ADDED]
    if added == 0:
        return 0
    hw.barrier()        # flags visible before we read the device's wish
    if device_wants(hw, st, added):
        return 1
    kicked(st)
    return 0


def device_wants(hw, st, added):
    """Whether the device's event suppression structure (2.8.10) asks for
    a notification of the `added` descriptors made available since the
    last kick."""
    ev = st[RING_DEVICE_EVENT]
    flags = hw.read16(ev + EVENT_FLAGS) & 3
    if flags == RING_EVENT_FLAGS_DISABLE:
        return False
    if flags == RING_EVENT_FLAGS_DESC and st[RING_EVENT_IDX] and added < st[RING_SIZE]:
        old = st[RING_KICK_POS]
        new = position(st, st[RING_NEXT_AVAIL], st[RING_AVAIL_WRAP])
        off_wrap = hw.read16(ev + EVENT_OFF_WRAP)
        event = position(st, off_wrap & 0x7FFF, off_wrap >> 15)
        span = 2 * st[RING_SIZE]
        return (event - old) % span < (new - old) % span
    return True


def kicked(st):
    """The device has been told of (or did not want to hear of) every
    descriptor made available."""
    st[RING_KICK_POS] = position(st, st[RING_NEXT_AVAIL], st[RING_AVAIL_WRAP])
    st[RING_ADDED] = 0


def kick(hw, st, notifier):
    """publish(), then the available buffer notification if the device
    wants it (2.8.10), through the queue's notifier (Transport.notifier).
    Returns 1 when it notified; the descriptors count as told only once it
    is sent (a notification lost to an exception is sent by the next kick)."""
    if not publish(hw, st):
        return 0
    send_notification(st, notifier)
    kicked(st)
    return 1


def used_ready(hw, st):
    """Whether the descriptor at the next used position is a used one (its
    AVAIL and USED bits both equal to the used wrap counter, 2.8.1)."""
    flags = hw.read16(st[RING_DESC] + DESC_SIZE * st[RING_NEXT_USED] + D_FLAGS)
    used = 1 if flags & VIRTQ_DESC_F_USED else 0
    return used == st[RING_USED_WRAP] and (1 if flags & VIRTQ_DESC_F_AVAIL else 0) == used


def pop(hw, st, name):
    """The buffer ID of the next used descriptor (2.8.14), its length in
    st[RING_LEN]; -1 if there is none. DeviceError, before anything
    changes, when the ID is not a buffer with the device."""
    if not used_ready(hw, st):
        return -1
    nxt = st[RING_NEXT_USED]
    at = st[RING_DESC] + DESC_SIZE * nxt
    hw.barrier()        # the descriptor is read after its flags
    bid = hw.read16(at + D_ID)
    if bid >= st[RING_NSLOTS] or not st[RING_WORDS + bid]:
        raise DeviceError('%s: used buffer id %d at slot %d is not a request in flight'
                          % (name, bid, nxt))
    # Spec 2.8.5 calls the length reserved without VIRTQ_DESC_F_WRITE, but
    # QEMU 7.2 never sets that flag on used descriptors: like Linux, read
    # the length always (callers check it against their writable bytes).
    st[RING_LEN] = hw.read32(at + D_LEN)
    held = st[RING_WORDS + bid]
    nxt += held
    if nxt >= st[RING_SIZE]:
        nxt -= st[RING_SIZE]
        st[RING_USED_WRAP] ^= 1
    st[RING_NEXT_USED] = nxt
    st[RING_FREED] = held
    st[RING_WORDS + bid] = 0
    st[RING_IN_FLIGHT] -= 1
    return bid


def set_interrupts(hw, st, on):
    """Used buffer notifications on or off: the driver event suppression
    flags (2.8.10)."""
    hw.write16(st[RING_DRIVER_EVENT] + EVENT_FLAGS,
               RING_EVENT_FLAGS_ENABLE if on else RING_EVENT_FLAGS_DISABLE)


# -- the target: the same steps in viper (see virtio.split) --------------------------------
_F_NEXT = const(1)          # VIRTQ_DESC_F_NEXT
_F_WRITE = const(2)         # VIRTQ_DESC_F_WRITE
_F_INDIRECT = const(4)      # VIRTQ_DESC_F_INDIRECT
_DESC = const(16)           # DESC_SIZE


PlainSteps = Steps(use_slots, build, set_desc, post, publish, kick, pop,
                   set_interrupts)

if NATIVE:
    import micropython

    @micropython.viper
    def _set_desc(hw, st, slot: int, j: int, addr: uint, length: uint, flags: int):
        s = ptr32(st)
        d = ptr32(s[RING_CHAINS] + uint((slot * int(s[RING_PER]) + j) * _DESC))
        keep = _F_WRITE
        if not s[RING_INDIRECT]:
            keep = _F_WRITE | _F_NEXT
        d[0] = addr
        d[1] = 0
        d[2] = length
        d[3] = (flags & keep) << 16

    @micropython.viper
    def _post(hw, st, reqs, count: int, per: int, j: int, flags: int):
        # Every (slot, addr, length) triple in one loop: a viper call per
        # request (eight arguments converted each way) cost a third
        # of a depth-32 batch. Descriptor j rewritten first unless j < 0; then
        # one ring descriptor pointing at the slot's indirect table, or the
        # chain copied into the ring; each first descriptor's flags written
        # last (2.8.6, 2.8.13).
        s = ptr32(st)
        r = ptr32(reqs)
        chains = s[RING_CHAINS]
        cper = int(s[RING_PER])
        indirect = int(s[RING_INDIRECT])
        keep = _F_WRITE
        if not indirect:
            keep = _F_WRITE | _F_NEXT
        dflags = (flags & keep) << 16
        size = int(s[RING_SIZE])
        ring = s[RING_DESC]
        k = 0
        while k < count:
            slot = int(r[3 * k])
            chain = chains + uint(slot * cper * _DESC)
            if j >= 0:
                d = ptr32(chain + uint(j * _DESC))
                d[0] = r[3 * k + 1]
                d[1] = 0
                d[2] = r[3 * k + 2]
                d[3] = dflags
            nxt = int(s[RING_NEXT_AVAIL])
            wrap = int(s[RING_AVAIL_WRAP])
            first = ptr16(ring + uint(nxt * _DESC + D_FLAGS))
            first_flags = VIRTQ_DESC_F_USED
            if wrap:
                first_flags = VIRTQ_DESC_F_AVAIL
            if indirect:
                e = ptr32(ring + uint(nxt * _DESC))
                e[0] = chain
                e[1] = 0
                e[2] = per * _DESC
                ptr16(ring + uint(nxt * _DESC + D_ID))[0] = slot
                first_flags |= _F_INDIRECT
                held = 1
            else:
                held = per
                m = 0
                while m < per:
                    src = ptr32(chain + uint(m * _DESC))
                    at = nxt + m
                    w = wrap
                    if at >= size:
                        at -= size
                        w ^= 1
                    e = ptr32(ring + uint(at * _DESC))
                    e[0] = src[0]
                    e[1] = src[1]
                    e[2] = src[2]
                    f = int(src[3]) >> 16
                    if m + 1 == per:
                        f &= _F_WRITE
                    if w:
                        f |= VIRTQ_DESC_F_AVAIL
                    else:
                        f |= VIRTQ_DESC_F_USED
                    e16 = ptr16(ring + uint(at * _DESC + D_ID))
                    e16[0] = slot
                    if m == 0:
                        first_flags = f
                    else:
                        e16[1] = f
                    m += 1
            nxt += held
            if nxt >= size:
                nxt -= size
                s[RING_AVAIL_WRAP] = wrap ^ 1
            s[RING_NEXT_AVAIL] = nxt
            s[RING_ADDED] = int(s[RING_ADDED]) + held
            s[RING_WORDS + slot] = held
            s[RING_IN_FLIGHT] = int(s[RING_IN_FLIGHT]) + 1
            first[0] = first_flags          # last: the buffer becomes available (stores in order)
            k += 1

    @micropython.viper
    def _kick(hw, st, notifier) -> int:
        s = ptr32(st)
        added = int(s[RING_ADDED])
        if added == 0:
            return 0
        hw.barrier()                        # flags visible before we read the device's wish
        size = int(s[RING_SIZE])
        new = int(s[RING_NEXT_AVAIL])       # as a position: index + size * !wrap
        if not s[RING_AVAIL_WRAP]:
            new += size
        ev = ptr16(s[RING_DEVICE_EVENT])
        flags = int(ev[EVENT_FLAGS >> 1]) & 3
        want = 1
        if flags == RING_EVENT_FLAGS_DISABLE:
            want = 0
        elif flags == RING_EVENT_FLAGS_DESC and s[RING_EVENT_IDX] and added < size:
            old = int(s[RING_KICK_POS])
            off_wrap = int(ev[EVENT_OFF_WRAP >> 1])
            event = off_wrap & 0x7FFF
            if not off_wrap >> 15:
                event += size
            # (event - old) mod 2 * size < (new - old) mod 2 * size: both in (-span, span)
            span = 2 * size
            past = event - old
            if past < 0:
                past += span
            ahead = new - old
            if ahead < 0:
                ahead += span
            if past >= ahead:
                want = 0
        if want:
            # (one C call that viper does not interrupt: sent and recorded together)
            notifier[0](notifier[1], notifier[2])
            s[RING_NOTIFIED] = s[RING_NOTIFIED] + 1
        s[RING_KICK_POS] = new
        s[RING_ADDED] = 0
        return want

    @micropython.viper
    def _pop(hw, st, name) -> int:
        s = ptr32(st)
        nxt = int(s[RING_NEXT_USED])
        at = s[RING_DESC] + uint(nxt * _DESC)
        flags = int(ptr16(at + D_FLAGS)[0])
        wrap = int(s[RING_USED_WRAP])
        used = 0
        if flags & VIRTQ_DESC_F_USED:
            used = 1
        avail = 0
        if flags & VIRTQ_DESC_F_AVAIL:
            avail = 1
        if used != wrap or avail != used:
            return -1
        bid = int(ptr16(at + D_ID)[0])
        if uint(bid) >= uint(s[RING_NSLOTS]) or not s[RING_WORDS + bid]:
            return int(PlainSteps.pop(hw, st, name))        # raises the DeviceError
        s[RING_LEN] = ptr32(at + D_LEN)[0]
        held = int(s[RING_WORDS + bid])
        nxt += held
        size = int(s[RING_SIZE])
        if nxt >= size:
            nxt -= size
            s[RING_USED_WRAP] = wrap ^ 1
        s[RING_NEXT_USED] = nxt
        s[RING_FREED] = held
        s[RING_WORDS + bid] = 0
        s[RING_IN_FLIGHT] = int(s[RING_IN_FLIGHT]) - 1
        return bid

    set_desc = _set_desc
    post = _post
    kick = _kick
    pop = _pop
