# Virtqueues (spec 2.5-2.8): what the two ring formats share. Each format is
# a package whose ring module owns every step of its ring: virtio.split.ring
# (2.7) and virtio.packed.ring (2.8). The same steps (post, publish, kick,
# pop on the ring's state array) serve the general path (add a request with
# a token, kick, pop a completion: SplitVirtqueue, PackedVirtqueue, in each
# package's queue module) and drivers that prebuild one descriptor chain per
# request slot (blk and net, see take_over()).
#
# Both keep their state in one array('I') whose first RING_COMMON words
# mean the same in both (their modules declare them again as literals for
# viper code; a host test checks they agree):

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct

from virtio import features, wait
from virtio.errors import VirtioError, VirtqueueFull

# Descriptor flags (2.7.5).
VIRTQ_DESC_F_NEXT = const(1)
VIRTQ_DESC_F_WRITE = const(2)
VIRTQ_DESC_F_INDIRECT = const(4)

RING_IN_FLIGHT = const(0)   # slots (requests) with the device
RING_LEN = const(1)         # the used length of the last pop
RING_FREED = const(2)       # the descriptors the last popped slot held
RING_NSLOTS = const(3)      # slots; then, after the format's own words, one word per slot
RING_PER = const(4)         # descriptors per prebuilt chain
RING_INDIRECT = const(5)    # 1: each chain is its own indirect table
RING_CHAINS = const(6)      # where the prebuilt chains are
RING_EVENT_IDX = const(7)   # 1 when VIRTIO_F_EVENT_IDX was negotiated
RING_NOTIFIED = const(8)    # available buffer notifications sent (mod 2^32)
RING_COMMON = const(9)

# On MicroPython the ring modules' viper twins replace their plain steps.
try:
    import micropython  # noqa: F401
    NATIVE = True
except ImportError:
    NATIVE = False

DESC_SIZE = const(16)
DEFAULT_INDIRECT_MAX = const(8)
DEFAULT_TIMEOUT_MS = const(1000)


class Steps:
    """A ring format's steps as one object (each format's module keeps its
    plain ones in PlainSteps, whatever runs: a test in the image runs the same
    scenario through those and through the viper ones)."""

    def __init__(self, use_slots, build, set_desc, post, publish, kick, pop, set_interrupts):
        self.set_interrupts = set_interrupts
        self.use_slots = use_slots
        self.build = build
        self.set_desc = set_desc
        self.post = post
        self.publish = publish
        self.kick = kick
        self.pop = pop


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


def send_notification(st, notifier):
    """The available buffer notification itself: the transport's register
    write (Transport.notifier: [write, where, value]), counted."""
    notifier[0](notifier[1], notifier[2])
    st[RING_NOTIFIED] = (st[RING_NOTIFIED] + 1) & 0xFFFFFFFF


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

    def enable(self):
        """Tell the transport where the queue's descriptor area, driver area
        and device area are and enable it (4.1.5.1.3, 4.2.3.2); then learn
        how its notification is sent."""
        desc, driver, device = self.areas()
        self.transport.enable_queue(self.index, self.size, desc, driver, device)
        self.notifier = self.transport.notifier(self.index)

    # -- used buffer notifications (2.7.7, 2.8.10) ----------------------------------
    def suppress_interrupts(self):
        """We poll: ask the device not to interrupt (the avail ring's flag or
        used_event; the driver event suppression structure)."""
        self.steps.set_interrupts(self.hw, self.st, False)

    def enable_interrupts(self):
        self.steps.set_interrupts(self.hw, self.st, True)

    def _not_enabled(self, where, index):
        raise VirtioError('%s: kick before enable(): the device does not know this queue yet'
                          % self.name)

    def kick(self):
        """Publish what was added and notify the device unless it said it
        need not be (2.7.10, 2.8.10). True when a notification was sent."""
        return self.steps.kick(self.hw, self.st, self.notifier) != 0

    @property
    def notifications(self):
        """Available buffer notifications sent so far (mod 2^32)."""
        return self.st[RING_NOTIFIED]

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
        return wait.until(self.hw, self.pop, timeout_ms, self.check, self._late, self.sleeper)

    def _late(self, timeout_ms):
        return ('%s: no completion within %d ms (%d requests in flight)'
                % (self.name, timeout_ms, self.in_flight))

    @property
    def in_flight(self):
        """Requests the device holds."""
        return self.st[RING_IN_FLIGHT]

    def tokens(self):
        """The tokens of the requests in flight (those given one)."""
        return [t for t in self._tokens if t is not None]

    def _init_bookkeeping(self):
        # The transport's notifier once enabled (enable()); until then one that
        # says so (a kick publishes, then refuses to notify: the entries stay untold).
        self.notifier = [self._not_enabled, 0, self.index]
        self.owner = None             # a driver that drives this ring itself (take_over)
        self.sleeper = None           # how a wait on this ring sleeps (virtio.wait.Sleeper)

    # -- prebuilt chains: a driver that drives the ring itself -------------------------
    def take_over(self, owner, nslots, per, indirect):
        """Hand the ring to a driver that prebuilds one chain of `per`
        descriptors for each of `nslots` request slots (blk, net) and drives
        the ring with this format's step functions (`steps`: build,
        set_desc, post, publish, kick, pop on `st`). indirect: each chain
        in an indirect table of its own (2.7.5.3, 2.8.7). From then on add()
        and pop() refuse; dump() still shows the ring. Returns the steps."""
        if self.in_flight:
            raise VirtioError('%s: cannot hand over a ring with %d requests in flight'
                              % (self.name, self.in_flight))
        steps = self.steps
        steps.use_slots(self.hw, self.st, nslots, per, indirect)
        self.owner = owner
        return steps

    def _owned(self, what):
        raise VirtioError('%s: %s() refused: the ring is driven by %s (use its API)'
                          % (self.name, what, self.owner))
