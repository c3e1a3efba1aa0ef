"""The device side of a packed virtqueue (VirtIO 1.2, 2.8), for front-ends
that offer VIRTIO_F_RING_PACKED (QEMU: `-device ...,packed=on`).

One ring of descriptors, struct pvirtq_desc { le64 addr; le32 len; le16 id;
le16 flags; }, that driver and device both walk; a descriptor is available
when its AVAIL bit equals the driver's wrap counter and its USED bit does
not, used when both equal the device's (2.8.1). Event suppression
(2.8.10): struct pvirtq_event_suppress { le16 desc; le16 flags; } in the
driver area (read by us) and the device area (written by us).
"""

import struct

from vhost.ring import (RingError, Request, VIRTQ_DESC_F_INDIRECT,
                        VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, fields16)

PDESC = struct.Struct('<QIHH')
VIRTQ_DESC_F_AVAIL = 1 << 7
VIRTQ_DESC_F_USED = 1 << 15
RING_EVENT_FLAGS_ENABLE = 0
RING_EVENT_FLAGS_DISABLE = 1
RING_EVENT_FLAGS_DESC = 2
WRAP_BIT = 15


class PackedRing:
    packed = True

    def __init__(self, mem, size, desc, driver, device, event_idx, indirect, base=None):
        self.mem = mem
        self.size = size
        self.event_idx = event_idx
        self.indirect = indirect
        self.desc = mem.view(desc, 16 * size)
        self.driver = mem.view(driver, 4)
        self.device = mem.view(device, 4)
        # The fields the driver polls, each written in one store (ring.py):
        # a descriptor's flags (field 8 * slot + 7), the device area's desc, flags.
        self.desc16 = fields16(self.desc)
        self.device16 = fields16(self.device)
        # SET_VRING_BASE for packed rings: bits 0-14 the next available
        # slot, bit 15 its wrap counter; QEMU puts the used side in the
        # upper 16 bits the same way.
        if base is None:
            base = (1 << WRAP_BIT) | (1 << (16 + WRAP_BIT))
        self.next_avail = base & 0x7FFF
        self.avail_wrap = (base >> WRAP_BIT) & 1
        used = base >> 16
        self.next_used = used & 0x7FFF
        self.used_wrap = (used >> WRAP_BIT) & 1

    def base(self):
        return (self.next_avail | (self.avail_wrap << WRAP_BIT)
                | ((self.next_used | (self.used_wrap << WRAP_BIT)) << 16))

    def _is_avail(self, flags, wrap):
        avail = 1 if flags & VIRTQ_DESC_F_AVAIL else 0
        used = 1 if flags & VIRTQ_DESC_F_USED else 0
        return avail != used and avail == wrap

    def pending(self):
        flags = PDESC.unpack_from(self.desc, 16 * self.next_avail)[3]
        return self._is_avail(flags, self.avail_wrap)

    def pop(self):
        if not self.pending():
            return None
        readable, writable = [], []
        i, wrap, ndesc = self.next_avail, self.avail_wrap, 0
        while True:
            if ndesc >= self.size:
                raise RingError('packed descriptor list longer than the ring')
            addr, length, id, flags = PDESC.unpack_from(self.desc, 16 * i)
            if not self._is_avail(flags, wrap):
                raise RingError('descriptor %d in a list is not available' % i)
            ndesc += 1
            i += 1
            if i == self.size:
                i, wrap = 0, wrap ^ 1
            if flags & VIRTQ_DESC_F_INDIRECT:
                if not self.indirect or flags & VIRTQ_DESC_F_NEXT or ndesc > 1:
                    raise RingError('INDIRECT descriptor not allowed here (flags 0x%x)' % flags)
                if length == 0 or length % 16:
                    raise RingError('indirect table length %d is not a multiple of 16' % length)
                table = self.mem.view(addr, length)
                for k in range(length // 16):
                    a, n, _id, f = PDESC.unpack_from(table, 16 * k)
                    self._add(readable, writable, a, n, f)
                break
            self._add(readable, writable, addr, length, flags)
            if not flags & VIRTQ_DESC_F_NEXT:
                break
        self.next_avail, self.avail_wrap = i, wrap
        if self.event_idx:
            self.device16[0] = self.next_avail | (self.avail_wrap << WRAP_BIT)
            self.device16[1] = RING_EVENT_FLAGS_DESC
        return Request(id, readable, writable, ndesc, self.mem)

    @staticmethod
    def _add(readable, writable, addr, length, flags):
        if flags & VIRTQ_DESC_F_WRITE:
            writable.append((addr, length))
        elif writable:
            raise RingError('device-readable buffer after a writable one')
        else:
            readable.append((addr, length))

    def push(self, id, length, ndesc=1, jump=0):
        """Write the used descriptor for buffer `id` (covering ndesc slots);
        the flags go last, publishing it (2.8.6). True when the driver wants
        a used buffer notification (2.8.10)."""
        at, wrap = self.next_used, self.used_wrap
        flags = (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) if wrap else 0
        struct.pack_into('<IH', self.desc, 16 * at + 8, length, id)
        self.desc16[8 * at + 7] = flags
        self.next_used += ndesc + jump
        while self.next_used >= self.size:
            self.next_used -= self.size
            self.used_wrap ^= 1
        off_wrap, ev = struct.unpack_from('<HH', self.driver, 0)
        ev &= 3
        if ev == RING_EVENT_FLAGS_DISABLE:
            return False
        if ev == RING_EVENT_FLAGS_DESC and self.event_idx:
            event = (off_wrap & 0x7FFF) + (0 if off_wrap >> WRAP_BIT else self.size)
            start = at + (0 if wrap else self.size)
            return (event - start) % (2 * self.size) < ndesc + jump
        return True

    def release(self):
        for v in (self.desc16, self.device16, self.desc, self.driver, self.device):
            v.release()
