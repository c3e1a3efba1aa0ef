"""The device side of a split virtqueue (VirtIO 1.2, 2.7), read and written
in guest memory shared with the front-end: take available chains (pop),
return used ones (push), and decide whether the driver wants to be
interrupted (2.7.10, VIRTIO_F_EVENT_IDX).

    desc table  struct virtq_desc  { le64 addr; le32 len; le16 flags; le16 next; }
    avail ring  struct virtq_avail { le16 flags; le16 idx; le16 ring[N]; le16 used_event; }
    used ring   struct virtq_used  { le16 flags; le16 idx; struct { le32 id; le32 len; } ring[N];
                                     le16 avail_event; }
"""

import struct

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
VIRTQ_AVAIL_F_NO_INTERRUPT = 1
DESC = struct.Struct('<QIHH')
U16 = struct.Struct('<H')
USED_ELEM = struct.Struct('<II')
# A field the driver polls (used idx, avail_event, a packed descriptor's
# flags, the event suppression structure) must go from one value to the next
# in one 2-byte store, as a real device's does: the driver, on another CPU,
# may read it at any moment. struct cannot do that: pack_into first clears
# the bytes it packs (memset, in CPython's s_pack_internal), then writes them
# ('<H' one byte at a time), so a driver could read 0 or half a value, e.g.
# the bench's "used idx 0 reports 55005 completions" (0 when 10531 was
# expected), or an avail_event of 0 saying "no kick needed". Item k of a
# memoryview cast to 'H' is stored with one 2-byte copy; these hosts are
# little-endian, like VirtIO 1.x's fields.
assert memoryview(U16.pack(0x1234)).cast('H')[0] == 0x1234


def fields16(view):
    """`view` (an even number of bytes) as 16-bit fields: field k is bytes
    2k and 2k + 1, and `fields[k] = value` is one store. Release it with
    the view."""
    return view.cast('H')


class RingError(Exception):
    """The driver put something in a ring the spec forbids (a real device
    stops the queue: QEMU calls virtio_error)."""


def need_event(event, new, old):
    """2.7.10: notify when `event` lies in [old, new) (mod 2^16)."""
    return ((new - event - 1) & 0xFFFF) < ((new - old) & 0xFFFF)


class Request:
    """One chain the device took: what it may read, where it may write
    (lists of guest-physical (addr, len)), and its id for the used ring.
    `written` is the used length the device will report."""

    __slots__ = ('id', 'readable', 'writable', 'ndesc', 'mem', 'written')

    def __init__(self, id, readable, writable, ndesc, mem):
        self.id = id
        self.readable = readable
        self.writable = writable
        self.ndesc = ndesc
        self.mem = mem
        self.written = 0

    @property
    def readable_size(self):
        return sum(n for _a, n in self.readable)

    @property
    def writable_size(self):
        return sum(n for _a, n in self.writable)

    def read_views(self):
        return [self.mem.view(a, n) for a, n in self.readable]

    def write_views(self):
        return [self.mem.view(a, n) for a, n in self.writable]

    def write_range(self, offset, n):
        """Views of n device-writable bytes from `offset` bytes in (they may
        span several buffers: VIRTIO_F_VERSION_1 lets a driver lay a request
        out as it likes, 2.7.4)."""
        return _range(self.mem, self.writable, offset, n)

    def read_range(self, offset, n):
        return _range(self.mem, self.readable, offset, n)

    def data(self):
        """Everything device-readable, as bytes."""
        return b''.join(bytes(v) for v in self.read_views())

    def write(self, data, offset=0):
        """Copy `data` into the writable buffers from `offset` bytes in;
        the used length grows to cover it. Returns how much fitted."""
        pos, skip = 0, offset
        for a, n in self.writable:
            if skip >= n:
                skip -= n
                continue
            take = min(n - skip, len(data) - pos)
            if take <= 0:
                break
            self.mem.view(a + skip, take)[:] = data[pos:pos + take]
            pos += take
            skip = 0
        self.written = max(self.written, offset + pos)
        return pos


def _range(mem, bufs, offset, n):
    out = []
    for a, length in bufs:
        if n <= 0:
            break
        if offset >= length:
            offset -= length
            continue
        take = min(length - offset, n)
        out.append(mem.view(a + offset, take))
        n -= take
        offset = 0
    return out


class SplitRing:
    """Device view of a split virtqueue of `size` entries whose parts are at
    guest physical desc, avail and used."""

    packed = False

    def __init__(self, mem, size, desc, avail, used, event_idx, indirect,
                 last_avail=0):
        self.mem = mem
        self.size = size
        self.desc_gpa = desc
        self.event_idx = event_idx
        self.indirect = indirect
        self.desc = mem.view(desc, 16 * size)
        self.avail = mem.view(avail, 6 + 2 * size)
        self.used = mem.view(used, 6 + 8 * size)
        self.used16 = fields16(self.used)       # [1] used idx, [2 + 4 * size] avail_event
        self.last_avail = last_avail & 0xFFFF
        # The used index lives in guest memory: start from what is there.
        self.used_idx = U16.unpack_from(self.used, 2)[0]

    def base(self):
        """GET_VRING_BASE's answer: the next available index to process."""
        return self.last_avail

    def pending(self):
        return U16.unpack_from(self.avail, 2)[0] != self.last_avail

    def pop(self):
        """The next available chain as a Request, or None."""
        avail_idx = U16.unpack_from(self.avail, 2)[0]
        if avail_idx == self.last_avail:
            return None
        if (avail_idx - self.last_avail) & 0xFFFF > self.size:
            raise RingError('avail idx %d is more than %d ahead of %d'
                            % (avail_idx, self.size, self.last_avail))
        head = U16.unpack_from(self.avail, 4 + 2 * (self.last_avail % self.size))[0]
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        if self.event_idx:
            # avail_event: kick me once you publish past what I consumed.
            self.used16[2 + 4 * self.size] = self.last_avail
        readable, writable, ndesc = self.walk(head)
        return Request(head, readable, writable, ndesc, self.mem)

    def walk(self, head):
        if head >= self.size:
            raise RingError('avail ring names descriptor %d, queue size %d' % (head, self.size))
        readable, writable = [], []
        table, limit, i, ndesc = self.desc, self.size, head, 0
        indirect = False
        while True:
            ndesc += 1
            if ndesc > limit:
                raise RingError('descriptor chain from %d loops or is longer than %d'
                                % (head, limit))
            addr, length, flags, nxt = DESC.unpack_from(table, 16 * i)
            if flags & VIRTQ_DESC_F_INDIRECT:
                if not self.indirect or indirect or flags & VIRTQ_DESC_F_NEXT:
                    raise RingError('descriptor %d: INDIRECT not allowed here (flags 0x%x)'
                                    % (i, flags))
                if length == 0 or length % 16:
                    raise RingError('indirect table length %d is not a multiple of 16' % length)
                table, limit, i, ndesc = self.mem.view(addr, length), length // 16, 0, 0
                indirect = True
                continue
            if flags & VIRTQ_DESC_F_WRITE:
                writable.append((addr, length))
            elif writable:
                raise RingError('device-readable buffer after a writable one')
            else:
                readable.append((addr, length))
            if not flags & VIRTQ_DESC_F_NEXT:
                return readable, writable, ndesc
            if nxt >= limit:
                raise RingError('descriptor %d: next %d out of range %d' % (i, nxt, limit))
            i = nxt

    def push(self, id, length, ndesc=1, jump=0):
        """Put (id, length) in the used ring, then publish used idx (moved
        by 1 + jump: a jump is a misbehaving device). True when the driver
        wants a used buffer notification."""
        USED_ELEM.pack_into(self.used, 4 + 8 * (self.used_idx % self.size), id, length)
        old = self.used_idx
        self.used_idx = (old + 1 + jump) & 0xFFFF
        self.used16[1] = self.used_idx          # after the element: publishes it
        if self.event_idx:
            used_event = U16.unpack_from(self.avail, 4 + 2 * self.size)[0]
            return need_event(used_event, self.used_idx, old)
        return not U16.unpack_from(self.avail, 0)[0] & VIRTQ_AVAIL_F_NO_INTERRUPT

    def release(self):
        for v in (self.used16, self.desc, self.avail, self.used):
            v.release()
