"""virtio-blk (spec 5.2) over a bytearray disk, behaving as QEMU 7.2's device does where
the tests can tell: every request type (T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD,
T_WRITE_ZEROES), the status byte, the range and alignment checks of
virtio_blk_sect_range_ok (IOERR), read-only (IOERR on writes), logical blocks of 4096
bytes, one discard/write-zeroes segment per request. Configuration laid out as struct
virtio_blk_config (60 bytes).

Knobs for tests:
  read_only           offer VIRTIO_BLK_F_RO; writes fail with IOERR, nothing is written
  blk_size            the logical block size (512 or 4096 ...); I/O must be aligned to it
  seg_max, size_max   limits offered (size_max only with VIRTIO_BLK_F_SIZE_MAX in features);
                      a request beyond them is a driver bug: logged in `errors`, IOERR
  bad_sectors         sectors whose reads and writes fail with IOERR (a failing disk)
  unsupported         request types answered VIRTIO_BLK_S_UNSUPP
  writeback           the cache mode (CONFIG_WCE): with 1, writes reach `stable` only on
                      T_FLUSH; with 0 at once. `stable` is what survives a power cut.
  blk_misbehave       'no_status' (status byte left alone), 'bad_status' (status 7)
  completion/order    (VirtioPciModel) deferred and out-of-order completion

Every request served is logged in `requests` as (type, sector, data bytes, data
segments), so tests can see how the driver split its transfers.
"""

import ctypes
import struct

from tests.host.models.machine import Machine
from tests.host.models.virtio import VirtioPciModel

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
SECTOR_SIZE = 512
SEGMENT_BYTES = 16
FLAG_UNMAP = 1

# Device feature bits (5.2.3).
VIRTIO_BLK_F_SIZE_MAX = 1
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_GEOMETRY = 4
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_TOPOLOGY = 10
VIRTIO_BLK_F_CONFIG_WCE = 11
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14
# What QEMU 7.2 offers (device bits 0x6e54).
DEFAULT_FEATURES = ((1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_GEOMETRY)
                    | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH)
                    | (1 << VIRTIO_BLK_F_TOPOLOGY) | (1 << VIRTIO_BLK_F_CONFIG_WCE)
                    | (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES))
MAX_DISCARD_SECTORS = 0x3FFFFF      # as QEMU
MAX_WRITE_ZEROES_SECTORS = 0x3FFFFF

# struct virtio_blk_config offsets.
CFG_WRITEBACK = 32


def blk_config(capacity, seg_max=254, blk_size=SECTOR_SIZE, size_max=0, writeback=1,
               max_discard_sectors=MAX_DISCARD_SECTORS,
               max_write_zeroes_sectors=MAX_WRITE_ZEROES_SECTORS):
    cfg = bytearray(60)
    struct.pack_into('<QII', cfg, 0, capacity, size_max, seg_max)
    struct.pack_into('<HBB', cfg, 16, 1024, 16, 63)      # geometry
    struct.pack_into('<I', cfg, 20, blk_size)
    exp = (blk_size // SECTOR_SIZE).bit_length() - 1     # topology: physical_block_exp
    struct.pack_into('<BBHI', cfg, 24, exp, 0, 1, 0)
    cfg[CFG_WRITEBACK] = writeback
    struct.pack_into('<H', cfg, 34, 1)                   # num_queues
    struct.pack_into('<III', cfg, 36, max_discard_sectors, 1, blk_size // SECTOR_SIZE)
    struct.pack_into('<IIB', cfg, 48, max_write_zeroes_sectors, 1, 1)
    return cfg


class BlkModel(VirtioPciModel):
    DEVICE_TYPE = 2
    NAME = 'virtio-blk'

    def __init__(self, mode='transitional', disk=None, sectors=2048, serial=b'model-disk',
                 features=DEFAULT_FEATURES, read_only=False, blk_size=SECTOR_SIZE,
                 seg_max=254, size_max=0, bad_sectors=(), unsupported=(), writeback=1,
                 blk_misbehave=None, max_discard_sectors=MAX_DISCARD_SECTORS,
                 max_write_zeroes_sectors=MAX_WRITE_ZEROES_SECTORS, **kw):
        if disk is None:
            disk = bytearray(sectors * SECTOR_SIZE)
        self.disk = disk
        self.stable = bytearray(disk)       # what a power cut would leave
        self.serial = serial
        self.flushes = 0
        if read_only:
            features |= 1 << VIRTIO_BLK_F_RO
        if size_max:
            features |= 1 << VIRTIO_BLK_F_SIZE_MAX
        self.read_only = read_only
        self.blk_size = blk_size
        self.seg_max = seg_max
        self.size_max = size_max
        self.bad_sectors = set(bad_sectors)
        self.unsupported = set(unsupported)
        self.blk_misbehave = blk_misbehave
        self.requests = []
        self.discarded = []                 # (sector, count) of discards served
        kw.setdefault('queue_sizes', (256,))
        VirtioPciModel.__init__(self, mode=mode, features=features,
                                config=blk_config(len(disk) // SECTOR_SIZE, seg_max, blk_size,
                                                  size_max, writeback, max_discard_sectors,
                                                  max_write_zeroes_sectors), **kw)

    @property
    def capacity(self):
        return len(self.disk) // SECTOR_SIZE

    def resize(self, sectors):
        """QEMU's block_resize: the disk grows (zeros) or shrinks to `sectors`, the
        capacity in the configuration follows, with a config change notification."""
        nbytes = sectors * SECTOR_SIZE
        if nbytes > len(self.disk):
            self.disk.extend(bytes(nbytes - len(self.disk)))
        else:
            del self.disk[nbytes:]
        self.stable = self.stable[:nbytes] + bytes(max(0, nbytes - len(self.stable)))
        self.set_config(0, struct.pack('<Q', sectors))

    @property
    def writeback(self):
        return self.cfg[CFG_WRITEBACK]

    def _range_ok(self, sector, nbytes):
        # QEMU's virtio_blk_sect_range_ok: whole logical blocks, inside the disk.
        per_block = self.blk_size // SECTOR_SIZE
        if sector % per_block or nbytes % self.blk_size:
            return False
        return sector + nbytes // SECTOR_SIZE <= self.capacity

    def _touches_bad(self, sector, nsectors):
        return any(sector <= s < sector + nsectors for s in self.bad_sectors)

    def _store(self, off, data):
        self.disk[off:off + len(data)] = data
        if not self.writeback:
            self.stable[off:off + len(data)] = data

    def handle(self, queue, req):
        data = req.data()
        if len(data) < 16 or req.writable_size < 1:
            self.errors.append('blk request without header or status byte')
            return
        rtype, _reserved, sector = struct.unpack_from('<IIQ', data, 0)
        payload = data[16:]
        room = req.writable_size - 1          # the last byte is the status
        if rtype == VIRTIO_BLK_T_IN:
            segs = [n for a, n in req.writable][:-1]
        elif rtype == VIRTIO_BLK_T_OUT:
            segs = [n for a, n in req.readable][1:] if req.readable[0][1] == 16 else [len(payload)]
        else:
            segs = []
        self.requests.append((rtype, sector, room if rtype == VIRTIO_BLK_T_IN else len(payload),
                              len(segs)))
        status = self._serve(req, rtype, sector, payload, room, segs)
        if self.blk_misbehave == 'no_status':
            return
        if self.blk_misbehave == 'bad_status':
            status = 7
        req.write(bytes([status]), offset=req.writable_size - 1)

    def _serve(self, req, rtype, sector, payload, room, segs):
        if rtype in self.unsupported:
            return VIRTIO_BLK_S_UNSUPP
        if rtype in (VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT):
            if len(segs) > self.seg_max:
                self.errors.append('request with %d data segments, seg_max %d'
                                   % (len(segs), self.seg_max))
                return VIRTIO_BLK_S_IOERR
            if self.size_max and any(n > self.size_max for n in segs):
                self.errors.append('segment of %d bytes, size_max %d'
                                   % (max(segs), self.size_max))
                return VIRTIO_BLK_S_IOERR
        if rtype == VIRTIO_BLK_T_IN:
            if not self._range_ok(sector, room) or self._touches_bad(sector, room // SECTOR_SIZE):
                return VIRTIO_BLK_S_IOERR
            off = sector * SECTOR_SIZE
            req.write(bytes(self.disk[off:off + room]))
            return VIRTIO_BLK_S_OK
        if rtype == VIRTIO_BLK_T_OUT:
            n = len(payload)
            if self.read_only or not self._range_ok(sector, n) \
                    or self._touches_bad(sector, n // SECTOR_SIZE):
                return VIRTIO_BLK_S_IOERR
            self._store(sector * SECTOR_SIZE, payload)
            return VIRTIO_BLK_S_OK
        if rtype == VIRTIO_BLK_T_FLUSH:
            if sector != 0:
                self.errors.append('FLUSH with sector %d (must be 0)' % sector)
            self.flushes += 1
            self.stable[:] = self.disk
            return VIRTIO_BLK_S_OK
        if rtype == VIRTIO_BLK_T_GET_ID:
            if room != VIRTIO_BLK_ID_BYTES:
                self.errors.append('GET_ID with %d data bytes (must be 20)' % room)
            ident = (self.serial + bytes(VIRTIO_BLK_ID_BYTES))[:VIRTIO_BLK_ID_BYTES]
            req.write(ident[:room])
            return VIRTIO_BLK_S_OK
        if rtype in (VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES):
            return self._discard_or_zeroes(rtype, payload)
        return VIRTIO_BLK_S_UNSUPP

    def _discard_or_zeroes(self, rtype, payload):
        # As QEMU 7.2: exactly one segment; UNSUPP for unknown flags (and for
        # unmap on a discard); IOERR beyond the limits or the disk.
        zeroes = rtype == VIRTIO_BLK_T_WRITE_ZEROES
        bit = VIRTIO_BLK_F_WRITE_ZEROES if zeroes else VIRTIO_BLK_F_DISCARD
        if not self.negotiated(1 << bit):
            return VIRTIO_BLK_S_UNSUPP
        if len(payload) != SEGMENT_BYTES:
            self.errors.append('%s with %d bytes of segments'
                               % ('write zeroes' if zeroes else 'discard', len(payload)))
            return VIRTIO_BLK_S_UNSUPP
        sector, count, flags = struct.unpack('<QII', payload)
        if flags & ~FLAG_UNMAP or (flags and not zeroes):
            return VIRTIO_BLK_S_UNSUPP
        limit = struct.unpack_from('<I', self.cfg, 48 if zeroes else 36)[0]
        if count > limit or self.read_only or not self._range_ok(sector, count * SECTOR_SIZE):
            return VIRTIO_BLK_S_IOERR
        if self._touches_bad(sector, count):
            return VIRTIO_BLK_S_IOERR
        if zeroes:
            self._store(sector * SECTOR_SIZE, bytes(count * SECTOR_SIZE))
        else:
            self.discarded.append((sector, count))
        return VIRTIO_BLK_S_OK


class AddressingMachine(Machine):
    """A Machine whose hardware interface also has addressof(buf), as the target's x86
    module does: the physical address of a buffer's bytes, here only for views of guest
    RAM (bytearray_at and slices of it); anything else raises TypeError, as memory a
    device cannot reach. Drivers then move data without bounce copies."""

    def addressof(self, buf):
        if not isinstance(buf, memoryview) or buf.obj is not self.ram or buf.readonly:
            raise TypeError('not a view of guest RAM')
        base = ctypes.addressof(ctypes.c_char.from_buffer(self.ram))
        if not len(buf):
            raise TypeError('empty view')
        return ctypes.addressof(ctypes.c_char.from_buffer(buf)) - base
