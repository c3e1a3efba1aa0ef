"""virtio-blk in Python (VirtIO 1.2, 5.2) on an image file: one requestq of
requests laid out as (5.2.6)

    struct virtio_blk_req { le32 type; le32 reserved; le64 sector;   device-readable
                            u8 data[];                               either way
                            u8 status; }                             device-writable

T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD and T_WRITE_ZEROES; the status
byte says OK, IOERR (out of range, read-only, misaligned) or UNSUPP. Data
moves between the file and guest memory with preadv/pwritev straight into
the shared mapping: no copy in Python. QEMU:
`-chardev socket,id=blk0,path=SOCK -device vhost-user-blk-pci,chardev=blk0`
(the configuration space below is what the guest reads, through GET_CONFIG).
"""

import os
import struct

from vhost.device import Device

VIRTIO_ID_BLOCK = 2
QUEUE_SIZE = 256
SECTOR_SIZE = 512

# Feature bits (5.2.3).
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_GEOMETRY = 4
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_TOPOLOGY = 10
VIRTIO_BLK_F_CONFIG_WCE = 11
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14

# Request types and status values (5.2.6).
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2
VIRTIO_BLK_ID_BYTES = 20
WRITE_ZEROES_FLAG_UNMAP = 1

HEADER = struct.Struct('<IIQ')
SEGMENT = struct.Struct('<QII')        # struct virtio_blk_discard_write_zeroes
SEG_MAX = 126                          # data segments per request (QEMU: queue size - 2)
MAX_SECTORS = 0x3FFFFF                 # per discard / write-zeroes segment, as QEMU
CFG_WRITEBACK = 32
ZERO_CHUNK = bytes(1 << 20)


def blk_config(capacity, blk_size=SECTOR_SIZE, writeback=1):
    """struct virtio_blk_config (5.2.4), the 60 bytes QEMU 7.2 asks for."""
    cfg = bytearray(60)
    struct.pack_into('<QII', cfg, 0, capacity, 0, SEG_MAX)      # capacity, size_max, seg_max
    struct.pack_into('<HBB', cfg, 16, 1024, 16, 63)            # geometry
    struct.pack_into('<I', cfg, 20, blk_size)
    struct.pack_into('<BBHI', cfg, 24, 0, 0, 1, 0)             # topology
    cfg[CFG_WRITEBACK] = writeback
    struct.pack_into('<H', cfg, 34, 1)                         # num_queues
    struct.pack_into('<III', cfg, 36, MAX_SECTORS, 1, blk_size // SECTOR_SIZE)
    struct.pack_into('<IIB', cfg, 48, MAX_SECTORS, 1, 0)       # write zeroes, no unmap
    return cfg


class BlkDevice(Device):
    NAME = 'virtio-blk'
    DEVICE_ID = VIRTIO_ID_BLOCK
    QUEUES = (QUEUE_SIZE,)
    FEATURES = sum(1 << b for b in (VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_GEOMETRY,
                                    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
                                    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_CONFIG_WCE,
                                    VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES))

    def __init__(self, path, serial=b'vhost-python', read_only=False, **kw):
        Device.__init__(self, **kw)
        self.fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        size = os.fstat(self.fd).st_size
        if size % SECTOR_SIZE:
            raise ValueError('%s: %d bytes is not a whole number of sectors' % (path, size))
        self.capacity = size // SECTOR_SIZE
        self.read_only = read_only
        self.serial = serial
        self.cfg = blk_config(self.capacity)
        self.counts = {}                # request type -> how many served
        self.flushes = 0
        self.discarded = []             # (sector, count)

    def offered_features(self):
        f = Device.offered_features(self)
        return f | (1 << VIRTIO_BLK_F_RO) if self.read_only else f

    def config(self):
        return self.cfg

    def write_config(self, offset, data):
        # Only `writeback` is writable (5.2.5, VIRTIO_BLK_F_CONFIG_WCE).
        if offset != CFG_WRITEBACK or len(data) != 1 or data[0] > 1:
            raise ValueError('virtio-blk: config write of %d bytes at %d (only writeback, '
                             'byte 32, 0 or 1)' % (len(data), offset))
        self.cfg[CFG_WRITEBACK] = data[0]

    # -- requests ---------------------------------------------------------------------
    def handle(self, queue, req):
        nread, nwrite = req.readable_size, req.writable_size
        if nread < HEADER.size or nwrite < 1:
            raise ValueError('blk request without header or status byte '
                             '(%d readable, %d writable bytes)' % (nread, nwrite))
        rtype, _reserved, sector = HEADER.unpack(b''.join(
            bytes(v) for v in req.read_range(0, HEADER.size)))
        self.counts[rtype] = self.counts.get(rtype, 0) + 1
        status, written = self._serve(req, rtype, sector, nread - HEADER.size, nwrite - 1)
        req.write(bytes([status]), offset=nwrite - 1)
        req.written = written + 1

    def _in_range(self, sector, nbytes):
        return nbytes % SECTOR_SIZE == 0 and sector + nbytes // SECTOR_SIZE <= self.capacity

    def _serve(self, req, rtype, sector, data_out, data_in):
        """(status, data bytes written into guest memory)."""
        if rtype == VIRTIO_BLK_T_IN:
            if not self._in_range(sector, data_in):
                return VIRTIO_BLK_S_IOERR, 0
            os.preadv(self.fd, req.write_range(0, data_in), sector * SECTOR_SIZE)
            return VIRTIO_BLK_S_OK, data_in
        if rtype == VIRTIO_BLK_T_OUT:
            if self.read_only or not self._in_range(sector, data_out):
                return VIRTIO_BLK_S_IOERR, 0
            os.pwritev(self.fd, req.read_range(HEADER.size, data_out), sector * SECTOR_SIZE)
            if not self.cfg[CFG_WRITEBACK]:
                os.fdatasync(self.fd)         # write-through
            return VIRTIO_BLK_S_OK, 0
        if rtype == VIRTIO_BLK_T_FLUSH:
            self.flushes += 1
            os.fdatasync(self.fd)
            return VIRTIO_BLK_S_OK, 0
        if rtype == VIRTIO_BLK_T_GET_ID:
            ident = (self.serial + bytes(VIRTIO_BLK_ID_BYTES))[:VIRTIO_BLK_ID_BYTES]
            return VIRTIO_BLK_S_OK, req.write(ident[:data_in])
        if rtype in (VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES):
            return self._discard_or_zeroes(req, rtype, data_out), 0
        return VIRTIO_BLK_S_UNSUPP, 0

    def _discard_or_zeroes(self, req, rtype, nbytes):
        zeroes = rtype == VIRTIO_BLK_T_WRITE_ZEROES
        if nbytes != SEGMENT.size:          # max_*_seg is 1 in our config
            return VIRTIO_BLK_S_UNSUPP
        sector, count, flags = SEGMENT.unpack(b''.join(
            bytes(v) for v in req.read_range(HEADER.size, SEGMENT.size)))
        if flags & ~WRITE_ZEROES_FLAG_UNMAP or (flags and not zeroes):
            return VIRTIO_BLK_S_UNSUPP
        if count > MAX_SECTORS or self.read_only \
                or not self._in_range(sector, count * SECTOR_SIZE):
            return VIRTIO_BLK_S_IOERR
        if not zeroes:
            # Discarded sectors may read back anything (5.2.6.2): we keep them.
            self.discarded.append((sector, count))
            return VIRTIO_BLK_S_OK
        pos, left = sector * SECTOR_SIZE, count * SECTOR_SIZE
        while left:
            n = os.pwrite(self.fd, ZERO_CHUNK[:min(left, len(ZERO_CHUNK))], pos)
            pos += n
            left -= n
        return VIRTIO_BLK_S_OK
