# virtio-blk, the block device (spec 5.2): one requestq carrying requests of
# the form (5.2.6)
#     struct virtio_blk_req { le32 type; le32 reserved; le64 sector;  <- device-readable
#                             u8 data[];                              <- either way
#                             u8 status; }                            <- device-writable
# Sectors are always 512 bytes in the protocol; blk_size (BLK_SIZE) is the
# disk's logical block, the smallest unit QEMU accepts.
#
#     blk = virtio.find('blk')
#     blk.capacity, blk.block_size, blk.read_only
#     data = blk.read(0, 8)               # 8 sectors from sector 0
#     blk.write(8, data); blk.flush()
#     blk.submit(VIRTIO_BLK_T_IN, 0, buf, tag=1); blk.poll()   # many at once
#
# Every transfer goes through one path: it is checked whole, split into
# requests no bigger than seg_max/size_max allow, each request takes a
# preallocated slot (header and status byte in DMA memory) and a chain on
# the ring; requests are sent with one notification per batch and their
# status bytes checked on completion. Data moves without a copy when the
# hardware interface can tell the buffer's physical address (hw.addressof,
# the target); otherwise through bounce buffers in DMA memory.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct

from virtio import features
from virtio.device import VirtioDevice
from virtio.errors import DeviceError, VirtioError, VirtioTimeout, VirtqueueFull

VIRTIO_ID_BLOCK = const(2)
REQUESTQ = const(0)

# Feature bits (5.2.3).
VIRTIO_BLK_F_SIZE_MAX = const(1)
VIRTIO_BLK_F_SEG_MAX = const(2)
VIRTIO_BLK_F_GEOMETRY = const(4)
VIRTIO_BLK_F_RO = const(5)
VIRTIO_BLK_F_BLK_SIZE = const(6)
VIRTIO_BLK_F_FLUSH = const(9)
VIRTIO_BLK_F_TOPOLOGY = const(10)
VIRTIO_BLK_F_CONFIG_WCE = const(11)
VIRTIO_BLK_F_MQ = const(12)
VIRTIO_BLK_F_DISCARD = const(13)
VIRTIO_BLK_F_WRITE_ZEROES = const(14)

FEATURE_NAMES = {
    0: 'BARRIER', VIRTIO_BLK_F_SIZE_MAX: 'SIZE_MAX', VIRTIO_BLK_F_SEG_MAX: 'SEG_MAX',
    VIRTIO_BLK_F_GEOMETRY: 'GEOMETRY', VIRTIO_BLK_F_RO: 'RO', VIRTIO_BLK_F_BLK_SIZE: 'BLK_SIZE',
    7: 'SCSI', VIRTIO_BLK_F_FLUSH: 'FLUSH', VIRTIO_BLK_F_TOPOLOGY: 'TOPOLOGY',
    VIRTIO_BLK_F_CONFIG_WCE: 'CONFIG_WCE', VIRTIO_BLK_F_MQ: 'MQ',
    VIRTIO_BLK_F_DISCARD: 'DISCARD', VIRTIO_BLK_F_WRITE_ZEROES: 'WRITE_ZEROES',
    15: 'LIFETIME', 16: 'SECURE_ERASE', 17: 'ZONED',
}

# Request types (5.2.6).
VIRTIO_BLK_T_IN = const(0)
VIRTIO_BLK_T_OUT = const(1)
VIRTIO_BLK_T_FLUSH = const(4)
VIRTIO_BLK_T_GET_ID = const(8)
VIRTIO_BLK_T_DISCARD = const(11)
VIRTIO_BLK_T_WRITE_ZEROES = const(13)
OP_NAMES = {VIRTIO_BLK_T_IN: 'read', VIRTIO_BLK_T_OUT: 'write', VIRTIO_BLK_T_FLUSH: 'flush',
            VIRTIO_BLK_T_GET_ID: 'get id', VIRTIO_BLK_T_DISCARD: 'discard',
            VIRTIO_BLK_T_WRITE_ZEROES: 'write zeroes'}

# Status byte values (5.2.6).
VIRTIO_BLK_S_OK = const(0)
VIRTIO_BLK_S_IOERR = const(1)
VIRTIO_BLK_S_UNSUPP = const(2)
STATUS_UNSET = const(0xFF)      # ours: what a device that never wrote the status leaves

# struct virtio_blk_config (5.2.4): offsets.
CFG_CAPACITY = const(0)
CFG_SIZE_MAX = const(8)
CFG_SEG_MAX = const(12)
CFG_GEOMETRY_CYLINDERS = const(16)
CFG_GEOMETRY_HEADS = const(18)
CFG_GEOMETRY_SECTORS = const(19)
CFG_BLK_SIZE = const(20)
CFG_PHYSICAL_BLOCK_EXP = const(24)
CFG_ALIGNMENT_OFFSET = const(25)
CFG_MIN_IO_SIZE = const(26)
CFG_OPT_IO_SIZE = const(28)
CFG_WRITEBACK = const(32)
CFG_MAX_DISCARD_SECTORS = const(36)
CFG_MAX_DISCARD_SEG = const(40)
CFG_DISCARD_SECTOR_ALIGNMENT = const(44)
CFG_MAX_WRITE_ZEROES_SECTORS = const(48)
CFG_MAX_WRITE_ZEROES_SEG = const(52)
CFG_WRITE_ZEROES_MAY_UNMAP = const(56)

SECTOR_SIZE = const(512)                # the protocol's unit, whatever blk_size says
HEADER_BYTES = const(16)                # type, reserved, sector
SEGMENT_BYTES = const(16)               # struct virtio_blk_discard_write_zeroes
VIRTIO_BLK_ID_BYTES = const(20)
VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = const(1)
SLOT_BYTES = const(32)                  # per slot: header, then one discard/zeroes segment

MAX_CAPACITY = (1 << 55) - 1            # sectors: the byte size must fit in 64 bits
MAX_BLOCK_SIZE = const(65536)
MAX_TRANSFER = const(1 << 20)           # bytes per request unless the device says less
DEFAULT_DEPTH = const(64)               # requests in flight at most
DEFAULT_TIMEOUT_MS = const(5000)
POLL_BATCH = const(64)                  # ring polls between looks at the clock
BOUNCE_SLOTS = const(64)             # bounced requests in flight at most
BOUNCE_BYTES = const(512 * 1024)

# errno values (MicroPython's uerrno numbering, as Linux).
EIO = const(5)
EINVAL = const(22)
EROFS = const(30)
EOPNOTSUPP = const(95)

_SYNC = object()        # the tag of read()/write()/...: one at a time, never a user's


class BlkError(OSError):
    """An OSError of the block driver: EIO (the device answered
    VIRTIO_BLK_S_IOERR), EOPNOTSUPP (VIRTIO_BLK_S_UNSUPP, or a feature the
    device lacks), EROFS (a write to a read-only disk). For a failed request
    `tag` is its transfer's tag and `op`, `sector`, `count` the request."""

    def __init__(self, errno, msg, tag=None, op=None, sector=0, count=0):
        super().__init__(errno, msg)
        self.msg = msg
        self.tag = tag
        self.op = op
        self.sector = sector
        self.count = count

    def __str__(self):
        return '[Errno %d] %s: %s' % (self.args[0], ERRNO_NAMES.get(self.args[0], '?'), self.msg)


ERRNO_NAMES = {EIO: 'EIO', EINVAL: 'EINVAL', EROFS: 'EROFS', EOPNOTSUPP: 'EOPNOTSUPP'}


def sectors_text(sector, count):
    if count <= 1:
        return 'sector %d' % sector
    return 'sectors %d-%d' % (sector, sector + count - 1)


class BlkDevice(VirtioDevice):
    KIND = 'blk'
    DEVICE_TYPE = VIRTIO_ID_BLOCK
    NAME = 'virtio-blk'
    SUPPORTED_FEATURES = features.mask(
        VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_RO,
        VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES)
    FEATURE_NAMES = FEATURE_NAMES

    def __init__(self, transport, wanted=None):
        VirtioDevice.__init__(self, transport, wanted)
        self.depth = DEFAULT_DEPTH          # requests in flight at most (the caller may lower it)
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self.max_transfer = MAX_TRANSFER    # bytes per request, before the device's limits
        self.requestq = None

    def __str__(self):
        s = VirtioDevice.__str__(self)
        if self.requestq is None:
            return s
        return '%s %d sectors (%d-byte blocks%s)' % (
            s, self.capacity, self.block_size, ', read-only' if self.read_only else '')

    # -- set-up (5.2.5) ------------------------------------------------------------------------
    def setup(self):
        self._who = '%s %s' % (self.pci.address, self.NAME)
        self.read_config(self._read_config)
        vq = self.setup_queue(REQUESTQ)
        self.requestq = vq
        hw = self.hw
        n = vq.size
        # A slot per ring entry: a request's header and its status byte
        # live in DMA memory for its whole life, allocated once.
        self._hdrs = hw.dma_alloc(SLOT_BYTES * n, 16)
        self._statuses = hw.dma_alloc(n, 4)
        self._id_buf = hw.dma_alloc(VIRTIO_BLK_ID_BYTES, 4)
        self._free = list(range(n - 1, -1, -1))
        self._s_tag = [None] * n
        self._s_op = [0] * n
        self._s_sector = [0] * n
        self._s_count = [0] * n
        self._s_buf = [None] * n        # held until completion: the device may write it
        self._s_off = [0] * n
        self._s_bounce = [-1] * n
        self._transfers = {}            # tag -> [requests outstanding, first error]
        self._finished = []             # tags done, for poll()
        self._failed = []               # errors of failed transfers, for poll()
        self._sync_error = None
        self._bounce = 0
        self._bounce_free = []
        self._scratch = bytearray(HEADER_BYTES)
        addressof = getattr(hw, 'addressof', None)
        self._addressof = addressof
        # Requests use a few descriptors (header, segments, status): keep a
        # request within the ring even without indirect descriptors.
        self.seg_max = max(1, min(self.seg_max, n - 2))
        self._per_request = self._request_limit()

    def _read_config(self):
        t = self.transport
        has = self.has
        capacity = t.config_read64(CFG_CAPACITY)
        self.capacity = self.check_config('capacity', capacity, 0, MAX_CAPACITY)
        bs = SECTOR_SIZE
        if has(VIRTIO_BLK_F_BLK_SIZE):
            bs = self.check_config('blk_size', t.config_read32(CFG_BLK_SIZE),
                                   SECTOR_SIZE, MAX_BLOCK_SIZE)
            if bs & (bs - 1):
                raise DeviceError('%s: config blk_size = %d is not a power of 2' % (self._who, bs))
        self.block_size = bs
        self.seg_max = 1
        if has(VIRTIO_BLK_F_SEG_MAX):
            # 0 would forbid any data; read it as 1, as Linux does.
            self.seg_max = max(1, t.config_read32(CFG_SEG_MAX))
        self.size_max = 0
        if has(VIRTIO_BLK_F_SIZE_MAX):
            self.size_max = self.check_config('size_max', t.config_read32(CFG_SIZE_MAX),
                                              SECTOR_SIZE, 0xFFFFFFFF)
        self.geometry = None
        if has(VIRTIO_BLK_F_GEOMETRY):
            self.geometry = (t.config_read16(CFG_GEOMETRY_CYLINDERS),
                             t.config_read8(CFG_GEOMETRY_HEADS),
                             t.config_read8(CFG_GEOMETRY_SECTORS))
        self.topology = None
        if has(VIRTIO_BLK_F_TOPOLOGY):
            # (physical_block_exp, alignment_offset, min_io_size, opt_io_size)
            self.topology = (self.check_config('physical_block_exp',
                                               t.config_read8(CFG_PHYSICAL_BLOCK_EXP), 0, 15),
                             t.config_read8(CFG_ALIGNMENT_OFFSET),
                             t.config_read16(CFG_MIN_IO_SIZE),
                             t.config_read32(CFG_OPT_IO_SIZE))
        self.read_only = has(VIRTIO_BLK_F_RO)
        self.max_discard_sectors = self.max_discard_seg = self.discard_sector_alignment = 0
        if has(VIRTIO_BLK_F_DISCARD):
            self.max_discard_sectors = self.check_config(
                'max_discard_sectors', t.config_read32(CFG_MAX_DISCARD_SECTORS), 1, 0xFFFFFFFF)
            self.max_discard_seg = self.check_config(
                'max_discard_seg', t.config_read32(CFG_MAX_DISCARD_SEG), 1, 0xFFFFFFFF)
            self.discard_sector_alignment = t.config_read32(CFG_DISCARD_SECTOR_ALIGNMENT)
        self.max_write_zeroes_sectors = self.max_write_zeroes_seg = 0
        self.write_zeroes_may_unmap = False
        if has(VIRTIO_BLK_F_WRITE_ZEROES):
            self.max_write_zeroes_sectors = self.check_config(
                'max_write_zeroes_sectors', t.config_read32(CFG_MAX_WRITE_ZEROES_SECTORS),
                1, 0xFFFFFFFF)
            self.max_write_zeroes_seg = self.check_config(
                'max_write_zeroes_seg', t.config_read32(CFG_MAX_WRITE_ZEROES_SEG), 1, 0xFFFFFFFF)
            self.write_zeroes_may_unmap = self.check_config(
                'write_zeroes_may_unmap', t.config_read8(CFG_WRITE_ZEROES_MAY_UNMAP), 0, 1) == 1
        if has(VIRTIO_BLK_F_CONFIG_WCE):
            self.check_config('writeback', t.config_read8(CFG_WRITEBACK), 0, 1)

    def _request_limit(self):
        """Bytes one read or write request may carry: seg_max segments of at
        most size_max bytes each, within max_transfer, in whole blocks."""
        limit = self.max_transfer
        if self.size_max:
            limit = min(limit, self.seg_max * self.size_max)
        limit -= limit % self.block_size
        if limit < self.block_size:
            raise DeviceError('%s: seg_max %d x size_max %d cannot carry one %d-byte block'
                              % (self._who, self.seg_max, self.size_max, self.block_size))
        return limit

    def refresh(self):
        """Read the configuration again (after a configuration change
        notification, e.g. QEMU's block_resize: the capacity may change)."""
        self.read_config(self._read_config)
        self._per_request = self._request_limit()

    # -- write cache (5.2.5, CONFIG_WCE) ---------------------------------------------------
    @property
    def writeback(self):
        """True when the device caches writes (flush() makes them stable).
        Without CONFIG_WCE: True when FLUSH was negotiated (5.2.5.1)."""
        if self.has(VIRTIO_BLK_F_CONFIG_WCE):
            return self.transport.config_read8(CFG_WRITEBACK) == 1
        return self.has(VIRTIO_BLK_F_FLUSH)

    @writeback.setter
    def writeback(self, on):
        if not self.has(VIRTIO_BLK_F_CONFIG_WCE):
            raise BlkError(EOPNOTSUPP, '%s: the cache mode is fixed (no CONFIG_WCE)' % self._who)
        self.transport.config_write8(CFG_WRITEBACK, 1 if on else 0)

    # -- checks, before anything reaches the device ------------------------------------------
    def _check_range(self, what, sector, nbytes):
        """Raise ValueError unless [sector, sector + nbytes) is whole blocks
        inside the disk."""
        bs = self.block_size
        if nbytes <= 0 or nbytes % bs:
            raise ValueError('%s: %s of %d bytes: the length must be a positive multiple of '
                             'the %d-byte block size' % (self._who, what, nbytes, bs))
        if sector < 0 or sector % (bs // SECTOR_SIZE):
            raise ValueError('%s: %s at sector %d: not on a %d-byte block boundary'
                             % (self._who, what, sector, bs))
        count = nbytes // SECTOR_SIZE
        if sector + count > self.capacity:
            raise ValueError('%s: %s of %s runs past the end of the disk (capacity %d sectors)'
                             % (self._who, what, sectors_text(sector, count), self.capacity))
        return count

    def _check_writable(self, what):
        if self.read_only:
            raise BlkError(EROFS, '%s: %s refused: the disk is read-only (VIRTIO_BLK_F_RO)'
                           % (self._who, what))

    def _need(self, bit, what):
        if not self.has(bit):
            raise BlkError(EOPNOTSUPP, '%s: %s: the device does not offer %s'
                           % (self._who, what, FEATURE_NAMES[bit]))

    # -- the batch interface --------------------------------------------------------------------
    def submit(self, op, sector=0, buf=None, tag=None, count=0, unmap=False):
        """Queue one transfer without notifying the device: VIRTIO_BLK_T_IN
        (into the writable `buf`), VIRTIO_BLK_T_OUT (from `buf`),
        VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_DISCARD or VIRTIO_BLK_T_WRITE_ZEROES
        (`count` sectors; `unmap` lets write zeroes deallocate). It is
        checked whole first, then split into as
        many requests as the device's limits need; when the ring or the
        depth is full, completions are reaped (kept for poll()) to make
        room. `tag` (any value but None, unique among transfers in flight)
        comes back from poll(); by default a new int. Returns the tag."""
        if tag is None:
            tag = self._new_tag()
        elif tag in self._transfers:
            if tag is not _SYNC:
                raise ValueError('%s: tag %r is already in flight' % (self._who, tag))
            self._finish_sync()     # left behind by a call that timed out
        if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_OUT:
            self._submit_data(op, sector, buf, tag)
        elif op == VIRTIO_BLK_T_FLUSH:
            self._submit_flush(tag)
        elif op == VIRTIO_BLK_T_DISCARD or op == VIRTIO_BLK_T_WRITE_ZEROES:
            self._submit_zeroes(op, sector, count, tag,
                                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP if unmap else 0)
        elif op == VIRTIO_BLK_T_GET_ID:
            raise ValueError('%s: use id() for VIRTIO_BLK_T_GET_ID' % self._who)
        else:
            raise ValueError('%s: unknown request type %r' % (self._who, op))
        return tag

    def kick(self):
        """Notify the device of everything queued; True if a notification
        was needed (spec 2.7.10: the device may say it is not)."""
        return self.requestq.kick()

    def poll(self):
        """Notify the device of what is queued and return the tags of the
        transfers finished since the last poll, without waiting. A failed
        transfer raises its error (BlkError, or DeviceError for a device
        that broke the protocol) with its `tag`; the others are kept for
        the next poll."""
        self.kick()
        self._reap()
        return self._take_finished()

    def collect(self, count=None, timeout_ms=None):
        """Notify, then wait until `count` transfers have finished (default:
        every transfer in flight) and return their tags. Raises like
        poll(), or VirtioTimeout when the device goes quiet for timeout_ms."""
        self.kick()
        if count is None:
            count = len(self._transfers) + len(self._finished) + len(self._failed)
        while len(self._finished) < count and not self._failed and self._transfers:
            self._wait_some(timeout_ms)
        return self._take_finished()

    @property
    def in_flight(self):
        """Requests the device holds now."""
        return len(self._s_op) - len(self._free)

    def _take_finished(self):
        if self._failed:
            raise self._failed.pop(0)
        done = self._finished
        self._finished = []
        return done

    def _new_tag(self):
        t = getattr(self, '_tag_seq', 0)
        while t in self._transfers:
            t += 1
        self._tag_seq = t + 1
        return t

    # -- simple calls (all through submit) ---------------------------------------------------
    def readinto(self, sector, buf):
        """Fill `buf` (a writable buffer, a multiple of block_size long) from
        `sector` on. No copy when buf is DMA-reachable memory."""
        self.submit(VIRTIO_BLK_T_IN, sector, buf, _SYNC)
        self._finish_sync()

    def read(self, sector, count):
        """`count` sectors (512 bytes each) from `sector`, as bytes."""
        if count <= 0:
            raise ValueError('%s: read of %d sectors: the count must be positive'
                             % (self._who, count))
        buf = bytearray(count * SECTOR_SIZE)
        self.readinto(sector, buf)
        return bytes(buf)

    def write(self, sector, data):
        """Write `data` (a multiple of block_size long) at `sector`."""
        self.submit(VIRTIO_BLK_T_OUT, sector, data, _SYNC)
        self._finish_sync()

    def flush(self):
        """Make every completed write stable (VIRTIO_BLK_T_FLUSH). Without
        FLUSH the device has no volatile cache to flush: nothing to do."""
        self.submit(VIRTIO_BLK_T_FLUSH, 0, None, _SYNC)
        self._finish_sync()

    def discard(self, sector, count):
        """Tell the device `count` sectors from `sector` are unused
        (VIRTIO_BLK_T_DISCARD); what they read afterwards is undefined."""
        self.submit(VIRTIO_BLK_T_DISCARD, sector, None, _SYNC, count)
        self._finish_sync()

    def write_zeroes(self, sector, count, unmap=False):
        """Zero `count` sectors from `sector` (VIRTIO_BLK_T_WRITE_ZEROES);
        unmap lets the device deallocate them while they read as zeroes."""
        self.submit(VIRTIO_BLK_T_WRITE_ZEROES, sector, None, _SYNC, count, unmap)
        self._finish_sync()

    def id(self):
        """The device ID string (VIRTIO_BLK_T_GET_ID: QEMU's serial=), up to
        20 ASCII characters; '' when the device has none."""
        hw = self.hw
        hw.write(self._id_buf, bytes(VIRTIO_BLK_ID_BYTES))
        self._transfers[_SYNC] = [1, None]
        self._queue(VIRTIO_BLK_T_GET_ID, 0, 0, None, 0, VIRTIO_BLK_ID_BYTES, _SYNC,
                    self._id_buf)
        self._finish_sync()
        raw = hw.read(self._id_buf, VIRTIO_BLK_ID_BYTES)
        n = 0
        while n < VIRTIO_BLK_ID_BYTES and raw[n]:
            n += 1
        return ''.join([chr(c) if 32 <= c < 127 else '?' for c in raw[:n]])

    def _finish_sync(self):
        self.kick()
        while _SYNC in self._transfers:
            self._wait_some(None)
        err = self._sync_error
        if err is not None:
            self._sync_error = None
            raise err

    # -- MicroPython's block device protocol (os.AbstractBlockDev) -------------------------
    def readblocks(self, block_num, buf, offset=0):
        """Read len(buf) bytes from block `block_num` (block_size units),
        `offset` bytes into it."""
        bs = self.block_size
        if offset == 0 and len(buf) % bs == 0:
            self.readinto(block_num * (bs // SECTOR_SIZE), buf)
            return
        first, tmp, start = self._cover(block_num, offset, len(buf))
        self.readinto(first * (bs // SECTOR_SIZE), tmp)
        buf[:] = tmp[start:start + len(buf)]

    def writeblocks(self, block_num, buf, offset=0):
        """Write buf at block `block_num`, `offset` bytes into it; a partial
        block is read, patched and written back."""
        bs = self.block_size
        if offset == 0 and len(buf) % bs == 0:
            self.write(block_num * (bs // SECTOR_SIZE), buf)
            return
        self._check_writable('write')
        first, tmp, start = self._cover(block_num, offset, len(buf))
        self.readinto(first * (bs // SECTOR_SIZE), tmp)
        tmp[start:start + len(buf)] = buf
        self.write(first * (bs // SECTOR_SIZE), tmp)

    def _cover(self, block_num, offset, n):
        """The whole blocks covering n bytes at (block_num, offset): (first
        block, a buffer for them, where the bytes start in it)."""
        bs = self.block_size
        if offset < 0 or n <= 0:
            raise ValueError('%s: %d bytes at offset %d: bad length or offset'
                             % (self._who, n, offset))
        start = block_num * bs + offset
        first = start // bs
        last = (start + n + bs - 1) // bs
        return first, bytearray((last - first) * bs), start - first * bs

    def ioctl(self, op, arg):
        """MP_BLOCKDEV_IOCTL_*: 1 init, 2 deinit, 3 sync, 4 block count,
        5 block size, 6 erase a block (nothing to do on a disk)."""
        if op == 1 or op == 6:
            return 0
        if op == 2 or op == 3:
            self.flush()
            return 0
        if op == 4:
            return self.capacity // (self.block_size // SECTOR_SIZE)
        if op == 5:
            return self.block_size
        return None

    # -- splitting transfers into requests ---------------------------------------------------
    def _submit_data(self, op, sector, buf, tag):
        write = op == VIRTIO_BLK_T_OUT
        what = 'write' if write else 'read'
        if buf is None:
            raise ValueError('%s: %s needs a buffer' % (self._who, what))
        nbytes = len(buf)
        count = self._check_range(what, sector, nbytes)
        if write:
            self._check_writable(what)
        elif nbytes:
            buf[0] = buf[0]     # TypeError now for a read-only buffer, not mid-transfer
        addr = self._dma_address(buf)
        step = self._per_request
        if addr is None:
            step = min(step, self._bounce_chunk())
        nreq = (nbytes + step - 1) // step
        self._begin(tag, nreq)
        off = 0
        while off < nbytes:
            n = min(step, nbytes - off)
            self._queue(op, sector + off // SECTOR_SIZE, n // SECTOR_SIZE, buf, off, n, tag,
                        None if addr is None else addr + off)
            off += n

    def _submit_flush(self, tag):
        if not self.has(VIRTIO_BLK_F_FLUSH):
            self._begin(tag, 0)
            self._end(tag, None)
            return
        self._begin(tag, 1)
        self._queue(VIRTIO_BLK_T_FLUSH, 0, 0, None, 0, 0, tag, None)

    def _submit_zeroes(self, op, sector, count, tag, flags):
        discard = op == VIRTIO_BLK_T_DISCARD
        what = 'discard' if discard else 'write zeroes'
        self._need(VIRTIO_BLK_F_DISCARD if discard else VIRTIO_BLK_F_WRITE_ZEROES, what)
        self._check_range(what, sector, count * SECTOR_SIZE)
        self._check_writable(what)
        # One segment per request (QEMU takes no more: max_*_seg is 1), at
        # most max_*_sectors each, in whole blocks.
        step = self.max_discard_sectors if discard else self.max_write_zeroes_sectors
        step -= step % (self.block_size // SECTOR_SIZE)
        if step <= 0:
            raise BlkError(EOPNOTSUPP, '%s: %s: the device allows fewer sectors than a block'
                           % (self._who, what))
        self._begin(tag, (count + step - 1) // step)
        done = 0
        while done < count:
            n = min(step, count - done)
            self._queue(op, sector + done, n, None, flags, 0, tag, None)
            done += n

    def _begin(self, tag, nreq):
        self._transfers[tag] = [nreq, None]

    def _end(self, tag, err):
        del self._transfers[tag]
        if tag is _SYNC:
            self._sync_error = err
        elif err is None:
            self._finished.append(tag)
        else:
            self._failed.append(err)

    def _dma_address(self, buf):
        """The physical address of buf's bytes when the device can reach
        them as they are, else None (then data goes through bounce buffers)."""
        addressof = self._addressof
        if addressof is None:
            return None
        try:
            return addressof(buf)
        except (TypeError, ValueError):
            return None

    # -- bounce buffers: when the device cannot reach the caller's memory ------------------
    def _bounce_chunk(self):
        return max(self.block_size, BOUNCE_BYTES // BOUNCE_SLOTS)

    def _take_bounce(self):
        if not self._bounce:
            chunk = self._bounce_chunk()
            self._bounce = self.hw.dma_alloc(chunk * BOUNCE_SLOTS, 16)
            self._bounce_free = list(range(BOUNCE_SLOTS))
        while not self._bounce_free:
            self.kick()
            self._wait_some(None)
        return self._bounce_free.pop()

    # -- requests: a slot, a chain on the ring ----------------------------------------------
    def _take_slot(self):
        while not self._free or len(self._s_op) - len(self._free) >= self.depth:
            self.kick()
            self._wait_some(None)
        return self._free.pop()

    def _queue(self, op, sector, count, buf, off, nbytes, tag, addr):
        """Place one request on the ring (no notification). Data: nbytes of
        buf from off, at physical addr, or through a bounce buffer when
        addr is None; for GET_ID addr is the ID buffer; for DISCARD and
        WRITE_ZEROES `off` carries the segment's flags."""
        hw = self.hw
        bounce = -1
        if nbytes and addr is None:
            bounce = self._take_bounce()
            addr = self._bounce + bounce * self._bounce_chunk()
            if op == VIRTIO_BLK_T_OUT:
                hw.write(addr, memoryview(buf)[off:off + nbytes])
        slot = self._take_slot()
        hdr = self._hdrs + SLOT_BYTES * slot
        status = self._statuses + slot
        struct.pack_into('<IIQ', self._scratch, 0, op, 0,
                         sector if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_OUT else 0)
        hw.write(hdr, self._scratch)
        hw.write8(status, STATUS_UNSET)
        readable = [(hdr, HEADER_BYTES)]
        writable = []
        if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID:
            self._segments(writable, addr, nbytes)
        elif op == VIRTIO_BLK_T_OUT:
            self._segments(readable, addr, nbytes)
        elif op == VIRTIO_BLK_T_DISCARD or op == VIRTIO_BLK_T_WRITE_ZEROES:
            struct.pack_into('<QII', self._scratch, 0, sector, count, off)
            hw.write(hdr + HEADER_BYTES, self._scratch)
            readable.append((hdr + HEADER_BYTES, SEGMENT_BYTES))
        writable.append((status, 1))
        self._s_tag[slot] = tag
        self._s_op[slot] = op
        self._s_sector[slot] = sector
        self._s_count[slot] = count
        self._s_buf[slot] = buf
        self._s_off[slot] = off
        self._s_bounce[slot] = bounce
        while True:
            try:
                self.requestq.add(readable, writable, slot)
                return
            except VirtqueueFull:
                self.kick()
                self._wait_some(None)

    def _segments(self, out, addr, nbytes):
        """Descriptors for nbytes at addr, none above size_max (SIZE_MAX)."""
        limit = self.size_max
        if not limit or nbytes <= limit:
            out.append((addr, nbytes))
            return
        limit -= limit % SECTOR_SIZE
        while nbytes:
            n = min(limit, nbytes)
            out.append((addr, n))
            addr += n
            nbytes -= n

    # -- completions -------------------------------------------------------------------------------
    def _reap(self):
        """Take every completion off the ring; returns how many."""
        vq = self.requestq
        n = 0
        while True:
            try:
                r = vq.pop()
            except DeviceError as e:
                if e.token is None:
                    raise
                self._complete(e.token, e)      # e.g. an oversized used length
                n += 1
                continue
            if r is None:
                return n
            self._complete(r[0], None)
            n += 1

    def _wait_some(self, timeout_ms):
        """Wait until at least one request completes (VirtioTimeout after
        timeout_ms without any; a device that set DEVICE_NEEDS_RESET is
        reported as such)."""
        if self._reap():
            return
        if self.in_flight == 0:
            raise VirtioError('%s: nothing in flight to wait for' % self._who)
        hw = self.hw
        if timeout_ms is None:
            timeout_ms = self.timeout_ms
        start = hw.ticks_ms()
        polls = 0
        while True:
            if self._reap():
                return
            polls += 1
            if polls >= POLL_BATCH:
                polls = 0
                self.check()
                if hw.ticks_diff(hw.ticks_ms(), start) > timeout_ms:
                    raise VirtioTimeout('%s: no completion within %d ms (%d requests in flight)'
                                        % (self._who, timeout_ms, self.in_flight))

    def _complete(self, slot, err):
        """A request came back: check its status byte, copy bounced data
        home, free its slot, account it to its transfer."""
        hw = self.hw
        op = self._s_op[slot]
        sector = self._s_sector[slot]
        count = self._s_count[slot]
        tag = self._s_tag[slot]
        bounce = self._s_bounce[slot]
        if err is not None:
            err.tag = tag
        else:
            status = hw.read8(self._statuses + slot)
            if status != VIRTIO_BLK_S_OK:
                err = self._status_error(status, tag, op, sector, count)
        if bounce >= 0:
            if err is None and op == VIRTIO_BLK_T_IN:
                n = count * SECTOR_SIZE
                off = self._s_off[slot]
                buf = self._s_buf[slot]
                buf[off:off + n] = hw.read(self._bounce + bounce * self._bounce_chunk(), n)
            self._bounce_free.append(bounce)
        self._s_buf[slot] = None
        self._s_tag[slot] = None
        self._free.append(slot)
        t = self._transfers[tag]
        if t[1] is None:
            t[1] = err
        t[0] -= 1
        if t[0] == 0:
            self._end(tag, t[1])

    def _status_error(self, status, tag, op, sector, count):
        what = '%s %s of %s' % (self._who, OP_NAMES.get(op, 'request'),
                                sectors_text(sector, count))
        if op == VIRTIO_BLK_T_FLUSH or op == VIRTIO_BLK_T_GET_ID:
            what = '%s %s' % (self._who, OP_NAMES[op])
        if status == VIRTIO_BLK_S_IOERR:
            return BlkError(EIO, '%s failed: I/O error (VIRTIO_BLK_S_IOERR)' % what,
                            tag, op, sector, count)
        if status == VIRTIO_BLK_S_UNSUPP:
            return BlkError(EOPNOTSUPP, '%s: not supported by the device (VIRTIO_BLK_S_UNSUPP)'
                            % what, tag, op, sector, count)
        e = DeviceError('%s: the device completed it with status byte 0x%02x%s'
                        % (what, status, ' (never written)' if status == STATUS_UNSET else ''),
                        tag)
        e.tag = tag
        return e


DRIVER = BlkDevice
