"""The device side of virtqueues, as the VirtIO spec tells a device to
consume them: split rings (2.7) and packed rings (2.8). A RingError is what a
real device would treat as a fatal driver bug (QEMU: virtio_error, then
DEVICE_NEEDS_RESET)."""

import struct

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_DESC_F_AVAIL = 1 << 7
VIRTQ_DESC_F_USED = 1 << 15
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
VIRTQ_USED_F_NO_NOTIFY = 1
RING_EVENT_FLAGS_ENABLE = 0
RING_EVENT_FLAGS_DISABLE = 1
RING_EVENT_FLAGS_DESC = 2


class RingError(Exception):
    """The driver put something in a ring that the spec forbids."""


def need_event(event, new, old):
    """Spec 2.7.10: notify when `event` lies in [old, new) (mod 2^16)."""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


class Dma:
    """Device-side access to guest memory: every access checks that the
    function may master the bus and that the range is RAM."""

    def __init__(self, dev):
        self.dev = dev

    def _check(self):
        if not self.dev.bus_master():
            raise RingError('DMA with bus mastering disabled (command register)')

    def read(self, addr, n):
        self._check()
        try:
            return self.dev.machine.dma_read(addr, n)
        except Exception as e:
            raise RingError(str(e))

    def write(self, addr, data):
        self._check()
        try:
            self.dev.machine.dma_write(addr, data)
        except Exception as e:
            raise RingError(str(e))

    def r16(self, addr):
        return struct.unpack('<H', self.read(addr, 2))[0]

    def w16(self, addr, v):
        self.write(addr, struct.pack('<H', v & 0xFFFF))


class Request:
    """One buffer the device took from a ring: what it may read and where it
    may write. `written` counts the bytes it wrote (the used length)."""

    def __init__(self, queue, id, readable, writable, ndesc, dma):
        self.queue = queue
        self.id = id
        self.readable = readable
        self.writable = writable
        self.ndesc = ndesc
        self.dma = dma
        self.written = 0

    @property
    def readable_size(self):
        return sum(n for a, n in self.readable)

    @property
    def writable_size(self):
        return sum(n for a, n in self.writable)

    def data(self):
        return b''.join(self.dma.read(a, n) for a, n in self.readable)

    def write(self, data, offset=0):
        """Write `data` into the writable buffers starting `offset` bytes in;
        returns how much fitted. The used length grows to cover it."""
        pos = 0
        skip = offset
        for a, n in self.writable:
            if skip >= n:
                skip -= n
                continue
            take = min(n - skip, len(data) - pos)
            if take <= 0:
                break
            self.dma.write(a + skip, data[pos:pos + take])
            pos += take
            skip = 0
        self.written = max(self.written, offset + pos)
        return pos


class SplitRing:
    """Device view of a split virtqueue (spec 2.7)."""

    def __init__(self, dma, size, desc, avail, used, event_idx, indirect):
        self.dma = dma
        self.size = size
        self.desc = desc
        self.avail = avail
        self.used = used
        self.event_idx = event_idx
        self.indirect = indirect
        self.last_avail = 0
        self.used_idx = 0
        self.no_notify = False       # set VIRTQ_USED_F_NO_NOTIFY when True

    def set_no_notify(self, on):
        self.no_notify = on
        self.dma.w16(self.used, VIRTQ_USED_F_NO_NOTIFY if on else 0)

    def _desc(self, table, i):
        return struct.unpack('<QIHH', self.dma.read(table + 16 * i, 16))

    def pop(self, queue):
        """The next available chain as a Request, or None."""
        avail_idx = self.dma.r16(self.avail + 2)
        if avail_idx == self.last_avail:
            return None
        if (avail_idx - self.last_avail) & 0xFFFF > self.size:
            raise RingError('avail idx %d is more than %d ahead of %d'
                            % (avail_idx, self.size, self.last_avail))
        head = self.dma.r16(self.avail + 4 + 2 * (self.last_avail % self.size))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if self.event_idx:
            # avail_event: notify me when you go past what I have consumed.
            self.dma.w16(self.used + 4 + 8 * self.size, self.last_avail)
        readable, writable, ndesc = self.walk(head)
        return Request(queue, head, readable, writable, ndesc, self.dma)

    def walk(self, head):
        if head >= self.size:
            raise RingError('avail ring names descriptor %d, queue size %d' % (head, self.size))
        readable, writable = [], []
        table, limit, i = self.desc, self.size, head
        ndesc = 0
        in_indirect = False
        while True:
            ndesc += 1
            if ndesc > limit:
                raise RingError('descriptor chain from %d loops or is longer than %d'
                                % (head, limit))
            addr, length, flags, nxt = self._desc(table, i)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if not self.indirect:
                    raise RingError('INDIRECT descriptor without INDIRECT_DESC')
                if in_indirect:
                    raise RingError('INDIRECT descriptor inside an indirect table')
                if flags & VIRTQ_DESC_F_NEXT:
                    raise RingError('descriptor %d has both INDIRECT and NEXT' % i)
                if length == 0 or length % 16:
                    raise RingError('indirect table length %d is not a multiple of 16' % length)
                table, limit, i = addr, length // 16, 0
                ndesc = 0
                in_indirect = True
                continue
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append((addr, length))
            else:
                if writable:
                    raise RingError('device-readable buffer after a writable one')
                readable.append((addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                break
            if nxt >= limit:
                raise RingError('descriptor %d: next %d out of range %d' % (i, nxt, limit))
            i = nxt
        return readable, writable, ndesc

    def push(self, id, length, jump=0):
        """Put (id, length) in the used ring and publish used idx (+jump,
        for a misbehaving device). Returns True when the driver wants a
        used buffer notification."""
        slot = self.used + 4 + 8 * (self.used_idx % self.size)
        self.dma.write(slot, struct.pack('<II', id, length))
        old = self.used_idx
        self.used_idx = (self.used_idx + 1 + jump) & 0xFFFF
        self.dma.w16(self.used + 2, self.used_idx)
        if self.event_idx:
            used_event = self.dma.r16(self.avail + 4 + 2 * self.size)
            return need_event(used_event, self.used_idx, old)
        return not self.dma.r16(self.avail) & VIRTQ_AVAIL_F_NO_INTERRUPT


class PackedRing:
    """Device view of a packed virtqueue (spec 2.8)."""

    def __init__(self, dma, size, desc, driver, device, event_idx, indirect,
                 write_flag=False):
        # write_flag: mark used descriptors VIRTQ_DESC_F_WRITE when the device
        # wrote (spec 2.8.5). QEMU 7.2 never does (flags AVAIL|USED only), and
        # the model follows QEMU unless asked.
        self.write_flag = write_flag
        self.dma = dma
        self.size = size
        self.desc = desc
        self.driver = driver         # driver event suppression (read by us)
        self.device = device         # device event suppression (written by us)
        self.event_idx = event_idx
        self.indirect = indirect
        self.next_avail = 0
        self.avail_wrap = 1
        self.next_used = 0
        self.used_wrap = 1
        self.disable_notify = False

    def set_no_notify(self, on):
        self.disable_notify = on
        self.dma.w16(self.device + 2, RING_EVENT_FLAGS_DISABLE if on else RING_EVENT_FLAGS_ENABLE)

    def _desc(self, i):
        return struct.unpack('<QIHH', self.dma.read(self.desc + 16 * i, 16))

    def _is_avail(self, flags, wrap):
        avail = 1 if flags & VIRTQ_DESC_F_AVAIL else 0
        used = 1 if flags & VIRTQ_DESC_F_USED else 0
        return avail != used and avail == wrap

    def pop(self, queue):
        addr, length, id, flags = self._desc(self.next_avail)
        if not self._is_avail(flags, self.avail_wrap):
            return None
        readable, writable = [], []
        ndesc = 0
        i, wrap = self.next_avail, self.avail_wrap
        while True:
            if ndesc >= self.size:
                raise RingError('packed descriptor list longer than the ring')
            addr, length, id, flags = self._desc(i)
            if not self._is_avail(flags, wrap):
                raise RingError('descriptor %d in a list is not available' % i)
            ndesc += 1
            i += 1
            if i == self.size:
                i, wrap = 0, wrap ^ 1
            if flags & VIRTQ_DESC_F_INDIRECT:
                if not self.indirect:
                    raise RingError('INDIRECT descriptor without INDIRECT_DESC')
                if flags & VIRTQ_DESC_F_NEXT or ndesc > 1:
                    raise RingError('INDIRECT descriptor inside a chained list')
                if length == 0 or length % 16:
                    raise RingError('indirect table length %d is not a multiple of 16' % length)
                for k in range(length // 16):
                    a, n, _id, f = struct.unpack('<QIHH', self.dma.read(addr + 16 * k, 16))
                    self._add(readable, writable, a, n, f)
                break
            self._add(readable, writable, addr, length, flags)
            if not flags & VIRTQ_DESC_F_NEXT:
                break
        self.next_avail, self.avail_wrap = i, wrap
        if self.event_idx:
            self.dma.w16(self.device, self.next_avail | (self.avail_wrap << 15))
            self.dma.w16(self.device + 2, RING_EVENT_FLAGS_DESC)
        return Request(queue, id, readable, writable, ndesc, self.dma)

    def _add(self, readable, writable, addr, length, flags):
        if flags & VIRTQ_DESC_F_WRITE:
            writable.append((addr, length))
        else:
            if writable:
                raise RingError('device-readable buffer after a writable one')
            readable.append((addr, length))

    def push(self, id, length, ndesc, jump=0):
        """Write a used descriptor for buffer `id` covering `ndesc` ring
        slots. Returns True when the driver wants a used notification."""
        at, wrap = self.next_used, self.used_wrap
        flags = (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) if wrap else 0
        if length and self.write_flag:
            flags |= VIRTQ_DESC_F_WRITE
        base = self.desc + 16 * at
        self.dma.write(base + 8, struct.pack('<IH', length, id))
        self.dma.w16(base + 14, flags)        # flags last: publishes it
        self.next_used += ndesc + jump
        while self.next_used >= self.size:
            self.next_used -= self.size
            self.used_wrap ^= 1
        off_wrap = self.dma.r16(self.driver)
        ev_flags = self.dma.r16(self.driver + 2) & 3
        if ev_flags == RING_EVENT_FLAGS_DISABLE:
            return False
        if ev_flags == RING_EVENT_FLAGS_DESC and self.event_idx:
            # Notify when the driver's event position lies in the slots
            # this used descriptor covers.
            return (self._lin(off_wrap & 0x7FFF, off_wrap >> 15)
                    - self._lin(at, wrap)) % (2 * self.size) < ndesc + jump
        return True

    def _lin(self, idx, wrap):
        # (index, wrap counter) as one position modulo twice the ring size.
        return idx + (0 if wrap else self.size)
