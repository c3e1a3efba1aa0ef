# What drivers that drive a split ring themselves share (blk and net: their
# requests are prebuilt descriptor chains, posted and reaped by viper code on
# the target). Their ring state lives in one array('I') whose first
# RING_WORDS words have this layout; the rest is the driver's own.
#
# The generic path (virtio.virtqueue.SplitVirtqueue) keeps the same fields
# as Python attributes; SplitVirtqueue.take_over() hands a ring to a driver.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.virtqueue import VIRTQ_USED_F_NO_NOTIFY, need_event

RING_DESC = const(0)        # the descriptor table (or where the driver's chains live)
RING_AVAIL = const(1)       # the available ring (driver area)
RING_USED = const(2)        # the used ring (device area)
RING_MASK = const(3)        # queue size - 1
RING_AVAIL_IDX = const(4)   # our shadow of avail->idx: entries posted so far
RING_KICKED = const(5)      # avail idx when the device was last told
RING_LAST_USED = const(6)   # used idx consumed up to
RING_EVENT_IDX = const(7)   # 1 when VIRTIO_F_EVENT_IDX was negotiated
RING_WORDS = const(8)

AVAIL_IDX = const(2)        # struct virtq_avail: flags, idx, ring[] (2.7.6)
USED_RING = const(4)        # struct virtq_used: flags, idx, ring[] of 8-byte elems (2.7.8)


def ring_state(vq, words):
    """A state array of `words` words (at least RING_WORDS) for split ring
    vq, the shared header filled in; the driver takes the ring over."""
    from array import array
    st = array('I', bytes(4 * words))
    st[RING_DESC] = vq.desc
    st[RING_AVAIL] = vq.avail
    st[RING_USED] = vq.used
    st[RING_MASK] = vq.size - 1
    st[RING_EVENT_IDX] = 1 if vq.event_idx else 0
    return st


def publish(hw, st):
    """Make the posted entries visible (avail idx after a barrier, 2.7.13.3)
    and say whether the device wants a notification (2.7.10: avail_event
    with EVENT_IDX, else the used ring's NO_NOTIFY flag) for the entries
    published since the last kick. The caller notifies, then calls
    kicked(): until then the entries count as not told, so a notification
    lost to an exception (Ctrl-C, MemoryError) is sent by the next kick."""
    new = st[RING_AVAIL_IDX]
    old = st[RING_KICKED]
    if new == old:
        return False
    hw.barrier()
    hw.write16(st[RING_AVAIL] + AVAIL_IDX, new)
    hw.barrier()        # idx visible before we read the device's wish
    if st[RING_EVENT_IDX]:
        avail_event = st[RING_USED] + USED_RING + 8 * (st[RING_MASK] + 1)
        return need_event(hw.read16(avail_event), new, old)
    return not hw.read16(st[RING_USED]) & VIRTQ_USED_F_NO_NOTIFY


def kicked(st):
    """The device has been notified of (or did not want to hear of) every
    published entry."""
    st[RING_KICKED] = st[RING_AVAIL_IDX]


try:
    import micropython
    NATIVE = True
except ImportError:
    NATIVE = False

if NATIVE:
    @micropython.viper
    def publish_native(hw, st) -> int:
        """publish() on the target: the same steps on raw ring memory."""
        s = ptr32(st)
        new = int(s[RING_AVAIL_IDX])
        old = int(s[RING_KICKED])
        if new == old:
            return 0
        ptr16(s[RING_AVAIL])[1] = new       # avail->idx (x86 keeps stores in order)
        hw.barrier()                        # idx visible before we read the device's wish
        if s[RING_EVENT_IDX]:
            event = int(ptr16(s[RING_USED] + USED_RING + uint(8 * (int(s[RING_MASK]) + 1)))[0])
            if ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF):
                return 1
            return 0
        if ptr16(s[RING_USED])[0] & 1:      # VIRTQ_USED_F_NO_NOTIFY
            return 0
        return 1
