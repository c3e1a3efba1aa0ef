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
#     blk.submit_read(0, buf, 'a'); blk.submit_read(8, buf2, 'b'); blk.poll()
#
# Every transfer goes one way: checked whole, split into requests no bigger
# than seg_max/size_max allow, each request in a slot of its own, sent with
# one notification per batch, its status byte checked on completion.
#
# A slot is prebuilt once (spec 2.7.5, 2.7.5.3 for indirect tables): a chain
# of descriptors header -> data segments -> status byte, with the header and
# the status byte in DMA memory of their own. A request only rewrites the
# header, the data descriptors and one avail ring entry; nothing is
# allocated. So the driver drives the split ring itself (packed rings are not
# negotiated). The same code runs under CPython; on the target viper versions
# of the ring functions (end of this file) take over, the spec-shaped plain
# ones staying the reference the host tests run.
#
# Data moves without a copy when the hardware interface can tell a buffer's
# physical address (hw.addressof: the target, where all RAM is reachable by
# DMA); otherwise through bounce buffers in DMA memory (qtest, models).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

import struct
from array import array

from virtio import features, wait
from virtio.buffers import byte_length, byte_view
from virtio.device import CORE_FEATURES, VirtioDevice
from virtio.errors import DeviceError, VirtioError, VirtioTimeout
from virtio.fastring import kicked, publish, ring_state
from virtio.virtqueue import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE

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

# struct virtq_desc (2.7.5) and the split ring (2.7.6, 2.7.8): offsets.
DESC_BYTES = const(16)
D_ADDR = const(0)
D_LEN = const(8)
D_FLAGS = const(12)
D_NEXT = const(14)
AVAIL_IDX = const(2)
AVAIL_RING = const(4)
USED_IDX = const(2)
USED_RING = const(4)
USED_ELEM_BYTES = const(8)
# virtio.virtqueue's flags again, as literals the viper code can build in (a
# name imported from another module is a run-time object there); a host test
# checks they agree.
_F_NEXT = const(1)              # VIRTQ_DESC_F_NEXT
_F_WRITE = const(2)             # VIRTQ_DESC_F_WRITE
_F_NO_NOTIFY = const(1)         # VIRTQ_USED_F_NO_NOTIFY
_F_INDIRECT = const(4)          # VIRTQ_DESC_F_INDIRECT

MAX_CAPACITY = (1 << 55) - 1            # sectors: the byte size must fit in 64 bits
FAST_CAPACITY = const(1 << 30)          # below it, sectors are small ints (the viper path)
MAX_BLOCK_SIZE = const(65536)
MAX_TRANSFER = const(8 << 20)           # bytes per request unless the device says less
MAX_TRANSFER_LIMIT = const(1 << 30)     # the most max_transfer may be (lengths in 32-bit words)
EARLY_KICK_BYTES = const(256 * 1024)    # a split transfer's parts this big go at once
DEFAULT_DEPTH = const(128)              # requests in flight at most
DEFAULT_TIMEOUT_MS = const(5000)
BOUNCE_SLOTS = const(64)                # bounced requests in flight at most
BOUNCE_BYTES = const(512 * 1024)

# The driver's numbers live in one array('I') (one lookup for the viper
# versions of the ring functions): ST_WORDS words of state, then a record of
# SLOT_WORDS words per slot. Objects (tags, buffers) in one list, two per slot.
# The first words are virtio.fastring's shared ring header (RING_*), again as
# literals for viper; a host test checks they agree.
ST_CHAINS = const(0)        # where slot chains live: the indirect tables, or the ring's table
ST_AVAIL = const(1)
ST_USED = const(2)
ST_MASK = const(3)          # queue size - 1
ST_AVAIL_IDX = const(4)     # our shadow of avail->idx
ST_KICKED = const(5)        # avail idx when the device was last told
ST_LAST_USED = const(6)     # used idx we have consumed up to
ST_EVENT_IDX = const(7)     # the shared header ends here (virtio.fastring.RING_WORDS)
ST_STATUS = const(8)
ST_BLOCK = const(9)         # descriptors per slot: header, segments, status
ST_INDIRECT = const(10)     # 1: a slot's chain is its own indirect table
ST_NSLOTS = const(11)
ST_NFREE = const(12)        # free slots: the first ST_NFREE S_FREE entries
ST_DEPTH = const(13)
ST_SYNC = const(14)         # 1 while a read()/write()/... transfer is outstanding
ST_HDRS = const(15)
ST_FAST_CAP = const(16)     # capacity when below FAST_CAPACITY, else 0 (no fast path)
ST_BLOCK_MASK = const(17)   # block_size - 1
ST_PER_REQUEST = const(18)  # data bytes per request at most
ST_SIZE_MAX = const(19)     # bytes per data descriptor at most, 0: no limit
ST_READ_ONLY = const(20)
ST_CHECK_LEN = const(21)    # 1: check used lengths (modern; 5.2.6's legacy note: ignore them)
ST_NDONE = const(22)        # tags of submit_batch() requests done, for poll_batch()
ST_WORDS = const(23)
S_FLAGS = const(0)          # slot record: its flags,
S_LEN = const(1)            # its data bytes,
S_TAG = const(2)            # its tag, for a submit_batch() request;
S_FREE = const(3)           # entry k of the free-slot stack (st[ST_NFREE] entries),
S_DONE = const(4)           # entry k of the finished batch tags (st[ST_NDONE]),
S_ADDR = const(5)           # and its data's address (a batch request, while checked)
SLOT_WORDS = const(6)

# Slot flags.
F_BUSY = const(1)
F_SIMPLE = const(2)         # a one-request transfer, no bounce: nothing to do but its tag
F_SYNC = const(4)           # the transfer of a read()/write()/...
F_BATCH = const(8)          # a submit_batch() request: its tag is S_TAG, done to S_DONE

# errno values (MicroPython's errno numbering, as Linux).
EIO = const(5)
EROFS = const(30)
EOPNOTSUPP = const(95)
ERRNO_NAMES = {EIO: 'EIO', EROFS: 'EROFS', EOPNOTSUPP: 'EOPNOTSUPP'}

_SYNC = object()        # the tag of read()/write()/...: one at a time, never a user's
_ABANDONED = object()   # the tag of a transfer whose submit failed half-way: silent
_ABANDONED_SYNC = object()  # the same for a read()/write()/...: its end ends the call


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


def sectors_text(sector, count):
    if count <= 1:
        return 'sector %d' % sector
    return 'sectors %d-%d' % (sector, sector + count - 1)


def words(n):
    """n unsigned 32-bit words, zero (made from bytes: fast on MicroPython too)."""
    return array('I', bytes(4 * n))


def slot_word(slot, field):
    """Where a field of slot's record is in the state array."""
    return ST_WORDS + SLOT_WORDS * slot + field


class BlkDevice(VirtioDevice):
    KIND = 'blk'
    DEVICE_TYPE = VIRTIO_ID_BLOCK
    NAME = 'virtio-blk'
    SUPPORTED_FEATURES = features.mask(
        VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_RO,
        VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_TOPOLOGY,
        VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES)
    # Prebuilt chains are a split-ring technique here: no RING_PACKED.
    RING_FEATURES = CORE_FEATURES & ~features.mask(features.RING_PACKED)
    FEATURE_NAMES = FEATURE_NAMES

    def __init__(self, transport, wanted=None):
        VirtioDevice.__init__(self, transport, wanted)
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self._max_transfer = MAX_TRANSFER
        self.requestq = None
        self.notifications = 0
        self._depth = DEFAULT_DEPTH

    def __str__(self):
        s = VirtioDevice.__str__(self)
        if self.requestq is None:
            return s
        return '%s %d sectors (%d-byte blocks%s)' % (
            s, self.capacity, self.block_size, ', read-only' if self.read_only else '')

    # -- set-up (5.2.5) ------------------------------------------------------------------------
    def setup(self):
        self._who = '%s %s' % (self.address, self.NAME)
        self.read_config(self._read_config)
        # The ring's own descriptor bookkeeping stays unused: our slots own
        # every descriptor (so no indirect area of its own either).
        self.requestq = self.setup_queue(REQUESTQ, None, 0)
        self.requestq.take_over('the %s driver' % self.NAME)
        self._setup_slots()

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

    def _limits(self):
        """(bytes per data descriptor, bytes per request): seg_max segments
        of at most size_max bytes each, within max_transfer, whole blocks. A
        chain never outgrows the ring (2.7.13.1), header and status included."""
        seg = self.size_max - self.size_max % SECTOR_SIZE
        per = self._max_transfer
        if seg:
            per = min(per, min(self.seg_max, self.requestq.size - 2) * seg)
        per -= per % self.block_size
        if per < self.block_size:
            raise DeviceError('%s: seg_max %d x size_max %d cannot carry one %d-byte block'
                              % (self._who, self.seg_max, self.size_max, self.block_size))
        return seg, per

    def _setup_slots(self):
        """Build every slot's chain once: header -> data segments -> status."""
        hw = self.hw
        vq = self.requestq
        n = vq.size
        seg, per = self._limits()
        nseg = (per + seg - 1) // seg if seg else 1
        block = nseg + 2
        indirect = self.has(features.INDIRECT_DESC)
        nslots = n if indirect else n // block
        st = self._st = ring_state(vq, ST_WORDS + SLOT_WORDS * nslots)
        st[ST_BLOCK] = block
        st[ST_INDIRECT] = 1 if indirect else 0
        st[ST_NSLOTS] = nslots
        st[ST_NFREE] = nslots
        st[ST_SIZE_MAX] = seg
        st[ST_PER_REQUEST] = per
        st[ST_CHECK_LEN] = 0 if self.transport.legacy_interface else 1
        st[ST_HDRS] = hw.dma_alloc(SLOT_BYTES * nslots, 16)
        st[ST_STATUS] = hw.dma_alloc(nslots, 4)
        self._set_capacity()
        self.depth = self._depth
        if indirect:
            st[ST_CHAINS] = hw.dma_alloc(nslots * block * DESC_BYTES, 16)
        else:
            st[ST_CHAINS] = vq.desc
        # Per slot: its tag, and its buffer, held until completion (the
        # device may write it, the GC must not reuse it).
        self._objs = [None] * (2 * nslots)
        self._s_xfer = [None] * nslots      # [requests outstanding, first error, tag]
        self._s_off = [0] * nslots          # where the bounced data goes in the buffer
        self._s_bounce = [-1] * nslots
        self._finished = []                 # tags done, for poll()
        self._failed = []                   # errors of failed transfers, for poll()
        self._sync_err = None
        self._tag_seq = 0
        self._bounce = 0
        self._bounce_free = []
        self._id_buf = hw.dma_alloc(VIRTIO_BLK_ID_BYTES, 4)
        self._addressof = getattr(hw, 'addressof', None)
        self._barrier = hw.barrier
        self._word_arrays = []
        self.native = False
        if NATIVE and getattr(hw, '__name__', None) == 'x86' and self._addressof is not None:
            # The target: the viper ring functions (end of this file).
            self.native = True
            self._build_chains = self._build_chains_v
            self._post = self._post_v
            self._publish = self._publish_native
            self._reap = self._reap_v
            self.submit_read = self._submit_read_v
            self.submit_write = self._submit_write_v
        self._build_chains(vq.desc)

    def _build_chains(self, ring):
        """Every slot's chain, header -> data segments -> status (2.7.5), as
        words (struct virtq_desc: addr, len, flags | next << 16) written in
        one go; with indirect tables, ring descriptor k points at slot k's
        for good (2.7.5.3). And every slot on the free stack."""
        st = self._st
        block = st[ST_BLOCK]
        nslots = st[ST_NSLOTS]
        indirect = st[ST_INDIRECT]
        t = words(nslots * block * 4)
        for k in range(nslots):
            first = 0 if indirect else k * block
            o = 4 * block * k
            t[o] = st[ST_HDRS] + k * SLOT_BYTES
            t[o + 2] = HEADER_BYTES
            t[o + 3] = VIRTQ_DESC_F_NEXT | (first + 1) << 16
            for j in range(1, block - 1):
                t[o + 4 * j + 3] = VIRTQ_DESC_F_NEXT | (first + j + 1) << 16
            o += 4 * (block - 1)
            t[o] = st[ST_STATUS] + k
            t[o + 2] = 1
            t[o + 3] = VIRTQ_DESC_F_WRITE
        self.hw.write(st[ST_CHAINS], bytes(t))
        if indirect:
            t = words(nslots * 4)
            for k in range(nslots):
                t[4 * k] = st[ST_CHAINS] + k * block * DESC_BYTES
                t[4 * k + 2] = block * DESC_BYTES
                t[4 * k + 3] = VIRTQ_DESC_F_INDIRECT
            self.hw.write(ring, bytes(t))
        for k in range(nslots):
            st[slot_word(k, S_FREE)] = nslots - 1 - k

    def _set_capacity(self):
        st = self._st
        st[ST_FAST_CAP] = self.capacity if self.capacity < FAST_CAPACITY else 0
        st[ST_BLOCK_MASK] = self.block_size - 1
        st[ST_READ_ONLY] = 1 if self.read_only else 0

    def refresh(self):
        """Read the configuration again (after a configuration change
        notification, e.g. QEMU's block_resize: the capacity may change)."""
        self.read_config(self._read_config)
        self._apply_limits()
        self._set_capacity()

    def _apply_limits(self):
        seg, per = self._limits()
        st = self._st
        if seg != st[ST_SIZE_MAX] or (seg and per > (st[ST_BLOCK] - 2) * seg):
            raise DeviceError('%s: segment limits changed (size_max %d): reset the device'
                              % (self._who, self.size_max))
        st[ST_PER_REQUEST] = per

    @property
    def max_transfer(self):
        """Bytes a request may carry as far as we are concerned (default 8
        MiB); the device's seg_max x size_max may cut it further: see
        max_request. Smaller means more, shorter requests per transfer."""
        return self._max_transfer

    @max_transfer.setter
    def max_transfer(self, n):
        if n < self.block_size:
            raise ValueError('%s: max_transfer %d: at least one %d-byte block'
                             % (self._who, n, self.block_size))
        if n > MAX_TRANSFER_LIMIT:
            raise ValueError('%s: max_transfer %d: at most %d (a descriptor length is 32 bits)'
                             % (self._who, n, MAX_TRANSFER_LIMIT))
        old = self._max_transfer
        self._max_transfer = n
        try:
            self._apply_limits()
        except DeviceError:
            self._max_transfer = old
            raise ValueError('%s: max_transfer %d needs more segments of size_max %d than a '
                             'slot holds' % (self._who, n, self.size_max))

    @property
    def depth(self):
        """Requests in flight at most (1 .. the number of slots)."""
        return self._st[ST_DEPTH]

    @depth.setter
    def depth(self, n):
        st = self._st
        if n < 1:
            raise ValueError('%s: depth %d: at least 1' % (self._who, n))
        self._depth = n
        st[ST_DEPTH] = min(n, st[ST_NSLOTS])

    @property
    def slots(self):
        return self._st[ST_NSLOTS]

    @property
    def in_flight(self):
        """Requests the device holds now."""
        return self._st[ST_NSLOTS] - self._st[ST_NFREE]

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
        inside the disk; returns the sector count."""
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
        (`count` sectors; `unmap` lets write zeroes deallocate). A flush
        covers the writes completed before it is sent. It is checked whole
        first, then split into as many requests as the
        device's limits need; when the slots or the depth run out,
        completions are reaped (kept for poll()) to make room. `tag` comes
        back from poll() when the transfer is done (default: a new int;
        tags are the caller's: reusing one in flight is allowed but
        ambiguous). Returns the tag."""
        if tag is None:
            tag = self._tag_seq
            self._tag_seq = tag + 1
        elif tag is _SYNC:
            self._drain_sync()
            self._st[ST_SYNC] = 1
        posted = self._st[ST_AVAIL_IDX]
        try:
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
        except BaseException:
            # (a Ctrl-C or MemoryError too.) Nothing posted: the caller has
            # the error and the simple call is over; else what was posted
            # ends it (silently: see _abandon, _drain_sync).
            if tag is _SYNC and self._st[ST_AVAIL_IDX] == posted:
                self._st[ST_SYNC] = 0
            raise
        return tag

    def submit_read(self, sector, buf, tag):
        """submit(VIRTIO_BLK_T_IN, sector, buf, tag), the lean way (in
        viper on MicroPython for one-request transfers)."""
        return self.submit(VIRTIO_BLK_T_IN, sector, buf, tag)

    def submit_write(self, sector, buf, tag):
        """submit(VIRTIO_BLK_T_OUT, sector, buf, tag), the lean way."""
        return self.submit(VIRTIO_BLK_T_OUT, sector, buf, tag)

    def kick(self):
        """Publish what is queued and notify the device unless it said it
        need not be (spec 2.7.10); True if a notification was sent."""
        need = self._publish()
        if need:
            self.transport.notify(REQUESTQ)
            self.notifications += 1
        kicked(self._st)
        return need

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
        self._reap()
        while not self._failed and self.in_flight and (count is None
                                                       or len(self._finished) < count):
            self._wait_some(timeout_ms)
        return self._take_finished()

    # -- the vector batch interface: many requests per call ---------------------------------
    def submit_batch(self, op, tags, count, sectors, bufs):
        """Queue `count` reads (VIRTIO_BLK_T_IN) or writes (VIRTIO_BLK_T_OUT)
        in one call: for each t in tags[0:count], bufs[t] at sectors[t], one
        request each (a buffer is at most one request, `max_request` bytes),
        tagged t, an int below 65536. Their tags come back from poll_batch(),
        not poll(). All are checked before any is queued (bad input raises
        and queues nothing); when fewer than `count` slots are free, it waits
        for completions. tags and sectors: array('I') for the fast path (any
        int sequences work). Returns count."""
        if self.native and self._words(tags) and self._words(sectors):
            return self._submit_batch_v(op, tags, count, sectors, bufs)
        return self._submit_batch(op, tags, count, sectors, bufs)

    def poll_batch(self, out, timeout_ms=0):
        """Notify the device of what is queued and put the tags of the
        submit_batch() requests finished since the last call in out[0:n]
        (an array('I'), or a list); returns n (at most len(out)). With a
        timeout_ms, first wait (up to that long without any completion,
        then VirtioTimeout) until there is at least one. Raises like poll()
        for a failed request."""
        self.kick()
        self._reap()
        st = self._st
        if timeout_ms:
            while not st[ST_NDONE] and not self._failed and self.in_flight:
                self._wait_some(timeout_ms)
        if self._failed:
            raise self._failed.pop(0)
        if self.native and self._words(out):
            return self._take_done_v(out)
        return self._take_done(out)

    def _words(self, a):
        """Whether `a` is an array of 32-bit words (what the viper code may
        index raw); the last few arrays seen are remembered."""
        seen = self._word_arrays
        for x in seen:
            if x is a:
                return True
        if not isinstance(a, array) or len(a) == 0 or len(bytes(memoryview(a)[:1])) != 4:
            return False
        seen.append(a)
        if len(seen) > 4:
            seen.pop(0)
        return True

    @property
    def max_request(self):
        """Data bytes one request carries at most."""
        return self._st[ST_PER_REQUEST]

    def _submit_batch(self, op, tags, count, sectors, bufs):
        write = op == VIRTIO_BLK_T_OUT
        what = 'write' if write else 'read'
        if not write and op != VIRTIO_BLK_T_IN:
            raise ValueError('%s: submit_batch takes VIRTIO_BLK_T_IN or VIRTIO_BLK_T_OUT, '
                             'not %r' % (self._who, op))
        st = self._st
        if count < 0 or count > len(tags):
            raise ValueError('%s: count %d: %d tags given' % (self._who, count, len(tags)))
        if count > st[ST_DEPTH]:
            raise ValueError('%s: a batch of %d is more than the depth %d'
                             % (self._who, count, st[ST_DEPTH]))
        if write:
            self._check_writable(what)
        per = st[ST_PER_REQUEST]
        addrs = []
        for j in range(count):
            t = tags[j]
            if t < 0 or t > 0xFFFF or t >= len(bufs) or t >= len(sectors):
                raise ValueError('%s: tag %d: not below 65536 and an index of bufs and '
                                 'sectors' % (self._who, t))
            buf = bufs[t]
            n = byte_length(buf, self._who)
            self._check_range(what, sectors[t], n)
            if n > per:
                raise ValueError('%s: %s of %d bytes: more than one request carries (%d)'
                                 % (self._who, what, n, per))
            if not write:
                buf[0] = buf[0]     # TypeError now for a read-only buffer
            addrs.append(self._dma_address(buf))
        while True:
            # Room in the slots and in the finished-tags list (in flight +
            # finished never exceed the slots: poll_batch() makes room).
            room = st[ST_NSLOTS] - st[ST_NDONE]
            if count > room:
                raise ValueError('%s: %d finished batch tags wait for poll_batch(): no room '
                                 'for %d more' % (self._who, st[ST_NDONE], count))
            if st[ST_NSLOTS] - st[ST_NFREE] + count <= min(st[ST_DEPTH], room):
                break
            self.kick()
            self._wait_some(None)
        for j in range(count):
            t = tags[j]
            buf = bufs[t]
            n = byte_length(buf, self._who)
            self._queue(op, sectors[t], n // SECTOR_SIZE, buf, 0, n, t, None, addrs[j], True)
        return count

    def _take_done(self, out):
        st = self._st
        n = st[ST_NDONE]
        m = min(n, len(out))
        for k in range(m):
            out[k] = st[slot_word(k, S_DONE)]
        for k in range(m, n):
            st[slot_word(k - m, S_DONE)] = st[slot_word(k, S_DONE)]
        st[ST_NDONE] = n - m
        return m

    def _take_finished(self):
        if self._failed:
            raise self._failed.pop(0)
        done = self._finished
        self._finished = []
        return done

    # -- learning aid ------------------------------------------------------------------------
    def dump(self, write=print):
        """Print the ring's indices and every request in flight, read back
        from the DMA memory the device sees (headers, descriptors, status)."""
        hw = self.hw
        st = self._st
        block = st[ST_BLOCK]
        write('%s: split ring of %d, %d slots (%s of %d descriptors), %d in flight, depth %d'
              % (self._who, st[ST_MASK] + 1, st[ST_NSLOTS],
                 'indirect tables' if st[ST_INDIRECT] else 'chains in the ring', block,
                 self.in_flight, st[ST_DEPTH]))
        line = '  avail idx %d (posted up to %d)  used idx %d (seen up to %d)' % (
            hw.read16(st[ST_AVAIL] + AVAIL_IDX), st[ST_AVAIL_IDX],
            hw.read16(st[ST_USED] + USED_IDX), st[ST_LAST_USED])
        if st[ST_EVENT_IDX]:
            line += '  avail_event %d' % hw.read16(
                st[ST_USED] + USED_RING + USED_ELEM_BYTES * (st[ST_MASK] + 1))
        write(line + '  notifications %d' % self.notifications)
        for k in range(st[ST_NSLOTS]):
            if not st[slot_word(k, S_FLAGS)] & F_BUSY:
                continue
            hdr = st[ST_HDRS] + k * SLOT_BYTES
            op = hw.read32(hdr)
            chain = st[ST_CHAINS] + k * block * DESC_BYTES
            what = self._describe(k, op)[0]
            data = ''
            if st[slot_word(k, S_LEN)]:
                data = ' -> 0x%x (%d bytes)' % (hw.read32(chain + DESC_BYTES + D_ADDR),
                                               st[slot_word(k, S_LEN)])
            write('  slot %d: %s%s, status 0x%02x' % (k, what, data,
                                                    hw.read8(st[ST_STATUS] + k)))

    # -- simple calls (all through submit) ---------------------------------------------------
    def readinto(self, sector, buf):
        """Fill `buf` (a writable buffer, a multiple of block_size long) from
        `sector` on. No copy when buf is DMA-reachable memory."""
        self.submit_read(sector, buf, _SYNC)
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
        self.submit_write(sector, data, _SYNC)
        self._finish_sync()

    def flush(self):
        """Make every write so far stable (VIRTIO_BLK_T_FLUSH covers the
        writes completed before it is sent, 5.2.6.2: so the requests in
        flight are waited for first; their tags stay for poll()). Without
        FLUSH the device has no volatile cache to flush: nothing to do."""
        self.kick()
        while self.in_flight:
            self._wait_some(None)
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
        self._drain_sync()
        hw.write(self._id_buf, bytes(VIRTIO_BLK_ID_BYTES))
        self._st[ST_SYNC] = 1
        self._queue(VIRTIO_BLK_T_GET_ID, 0, 0, None, 0, VIRTIO_BLK_ID_BYTES, _SYNC, None,
                    self._id_buf)
        self._finish_sync()
        raw = hw.read(self._id_buf, VIRTIO_BLK_ID_BYTES)
        n = 0
        while n < VIRTIO_BLK_ID_BYTES and raw[n]:
            n += 1
        return ''.join([chr(c) if 32 <= c < 127 else '?' for c in raw[:n]])

    def _drain_sync(self):
        """Let a read()/write()/... that timed out finish first (its error
        was the caller's then; it is not this call's)."""
        if self._st[ST_SYNC]:
            self.kick()
            while self._st[ST_SYNC]:
                self._wait_some(None)
        self._sync_err = None

    def _finish_sync(self):
        """Wait for the read()/write()/... transfer; raise its error."""
        self.kick()
        st = self._st
        while st[ST_SYNC]:
            self._wait_some(None)
        err = self._sync_err
        if err is not None:
            self._sync_err = None
            raise err

    # -- MicroPython's block device protocol (os.AbstractBlockDev) -------------------------
    def readblocks(self, block_num, buf, offset=0):
        """Read len(buf) bytes from block `block_num` (block_size units),
        `offset` bytes into it."""
        bs = self.block_size
        n = byte_length(buf, self._who)
        if offset == 0 and n % bs == 0:
            self.readinto(block_num * (bs // SECTOR_SIZE), buf)
            return
        first, tmp, start = self._cover(block_num, offset, n)
        self.readinto(first * (bs // SECTOR_SIZE), tmp)
        byte_view(buf)[:] = tmp[start:start + n]

    def writeblocks(self, block_num, buf, offset=0):
        """Write buf at block `block_num`, `offset` bytes into it; a partial
        block is read, patched and written back."""
        bs = self.block_size
        n = byte_length(buf, self._who)
        if offset == 0 and n % bs == 0:
            self.write(block_num * (bs // SECTOR_SIZE), buf)
            return
        self._check_writable('write')
        first, tmp, start = self._cover(block_num, offset, n)
        self.readinto(first * (bs // SECTOR_SIZE), tmp)
        tmp[start:start + n] = byte_view(buf)
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

    # -- transfers into requests ----------------------------------------------------------------
    def _submit_data(self, op, sector, buf, tag):
        write = op == VIRTIO_BLK_T_OUT
        what = 'write' if write else 'read'
        if buf is None:
            raise ValueError('%s: %s needs a buffer' % (self._who, what))
        nbytes = byte_length(buf, '%s: %s' % (self._who, what))
        self._check_range(what, sector, nbytes)
        if write:
            self._check_writable(what)
        else:
            buf[0] = buf[0]     # TypeError now for a read-only buffer, not mid-transfer
        addr = self._dma_address(buf)
        step = self._st[ST_PER_REQUEST]
        if addr is None:
            step = min(step, self._bounce_chunk())
        nreq = (nbytes + step - 1) // step
        xfer = [nreq, None, tag] if nreq > 1 else None
        off = 0
        try:
            while off < nbytes:
                n = min(step, nbytes - off)
                self._queue(op, sector + off // SECTOR_SIZE, n // SECTOR_SIZE, buf, off, n, tag,
                            xfer, None if addr is None else addr + off)
                off += n
                if nreq > 1 and n >= EARLY_KICK_BYTES:
                    self.kick()     # the device copies while we prepare the next part
        except BaseException:
            self._abandon(xfer, nreq - (off + step - 1) // step)
            raise

    def _submit_flush(self, tag):
        if not self.has(VIRTIO_BLK_F_FLUSH):
            self._end(tag, None)
            return
        self._queue(VIRTIO_BLK_T_FLUSH, 0, 0, None, 0, 0, tag, None, 0)

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
        nreq = (count + step - 1) // step
        xfer = [nreq, None, tag] if nreq > 1 else None
        done = 0
        try:
            while done < count:
                n = min(step, count - done)
                self._queue(op, sector + done, n, None, flags, SEGMENT_BYTES, tag, xfer, None)
                done += n
        except BaseException:
            self._abandon(xfer, nreq - (done + step - 1) // step)
            raise

    def _abandon(self, xfer, unqueued):
        """A submit failed (a timeout while waiting for room, a Ctrl-C)
        after queueing some of its requests: those complete silently (a
        simple call's end its transfer), the caller has the error."""
        if xfer is not None:
            xfer[0] -= unqueued
            if xfer[0] == 0:
                if xfer[2] is _SYNC:
                    self._st[ST_SYNC] = 0
                return
            xfer[2] = _ABANDONED_SYNC if xfer[2] is _SYNC else _ABANDONED

    def _end(self, tag, err):
        """A transfer is over: to poll(), or to the waiting simple call."""
        if tag is _SYNC:
            self._sync_err = err
            self._st[ST_SYNC] = 0
        elif tag is _ABANDONED:
            return
        elif tag is _ABANDONED_SYNC:
            self._st[ST_SYNC] = 0
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
            self._bounce = self.hw.dma_alloc(self._bounce_chunk() * BOUNCE_SLOTS, 16)
            self._bounce_free = list(range(BOUNCE_SLOTS))
        while not self._bounce_free:
            self.kick()
            self._wait_some(None)
        return self._bounce_free.pop()

    # -- requests: a slot, its chain on the ring ---------------------------------------------
    def _take_slot(self):
        """A free slot, once fewer than `depth` requests are in flight."""
        st = self._st
        while st[ST_NFREE] == 0 or st[ST_NSLOTS] - st[ST_NFREE] >= st[ST_DEPTH]:
            self.kick()
            self._wait_some(None)
        n = st[ST_NFREE] - 1
        st[ST_NFREE] = n
        return st[slot_word(n, S_FREE)]

    def _queue(self, op, sector, count, buf, off, nbytes, tag, xfer, addr, batch=False):
        """Place one request in a slot and on the ring (not yet notified).
        Data: nbytes of buf from off, at physical addr, through a bounce
        buffer when addr is None; for GET_ID addr is the ID buffer; for
        DISCARD and WRITE_ZEROES the segment goes in the slot and `off`
        carries its flags. `xfer` counts the requests of a split transfer."""
        slot = self._take_slot()
        posted = self._st[ST_AVAIL_IDX]
        try:
            self._fill(slot, op, sector, count, buf, off, nbytes, tag, xfer, addr, batch)
        except BaseException:
            # Taken and not on the ring (a Ctrl-C, a bad buffer): given back.
            if self._st[ST_AVAIL_IDX] == posted:
                if self._s_bounce[slot] >= 0:
                    self._bounce_free.append(self._s_bounce[slot])
                self._release(slot)
            raise

    def _fill(self, slot, op, sector, count, buf, off, nbytes, tag, xfer, addr, batch):
        hw = self.hw
        self._s_bounce[slot] = -1
        bounce = -1
        if nbytes and addr is None and buf is not None:
            bounce = self._s_bounce[slot] = self._take_bounce()
            addr = self._bounce + bounce * self._bounce_chunk()
            if op == VIRTIO_BLK_T_OUT:
                hw.write(addr, byte_view(buf)[off:off + nbytes])
        if op == VIRTIO_BLK_T_DISCARD or op == VIRTIO_BLK_T_WRITE_ZEROES:
            addr = self._st[ST_HDRS] + slot * SLOT_BYTES + HEADER_BYTES
            hw.write(addr, struct.pack('<QII', sector, count, off))
            sector = 0      # unused but for reads and writes (5.2.6)
        elif op == VIRTIO_BLK_T_FLUSH:
            addr = 0
        self._objs[2 * slot] = tag
        self._objs[2 * slot + 1] = buf
        self._s_off[slot] = off
        self._s_bounce[slot] = bounce
        self._s_xfer[slot] = xfer
        flags = F_BUSY
        if bounce < 0 and xfer is None:
            flags |= F_SIMPLE
        if tag is _SYNC:
            flags |= F_SYNC
        if batch:
            flags |= F_BATCH
            self._st[slot_word(slot, S_TAG)] = tag
        self._st[slot_word(slot, S_FLAGS)] = flags
        self._post(slot, op, sector & 0xFFFFFFFF, sector >> 32, addr, nbytes)

    # -- the ring: plain versions of what blk_fast does in viper ----------------------------
    def _post(self, slot, op, sector_lo, sector_hi, addr, nbytes):
        """Write a request into slot's prebuilt chain and its avail ring
        entry (2.7.13): the header, the status byte (set to a value no
        device writes), the data descriptors (none for a flush)."""
        hw = self.hw
        st = self._st
        block = st[ST_BLOCK]
        chain = st[ST_CHAINS] + slot * block * DESC_BYTES
        first = 0 if st[ST_INDIRECT] else slot * block
        status_at = first + block - 1
        hdr = st[ST_HDRS] + slot * SLOT_BYTES
        hw.write32(hdr, op)
        hw.write32(hdr + 8, sector_lo)
        hw.write32(hdr + 12, sector_hi)
        hw.write8(st[ST_STATUS] + slot, STATUS_UNSET)
        st[slot_word(slot, S_LEN)] = nbytes
        if nbytes == 0:
            hw.write16(chain + D_NEXT, status_at)
        else:
            hw.write16(chain + D_NEXT, first + 1)
            flags = VIRTQ_DESC_F_NEXT
            if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID:
                flags |= VIRTQ_DESC_F_WRITE
            seg = st[ST_SIZE_MAX] or nbytes
            d = chain + DESC_BYTES
            j = first + 1
            while nbytes:
                n = min(seg, nbytes)
                nbytes -= n
                hw.write32(d + D_ADDR, addr)
                hw.write32(d + D_LEN, n)
                hw.write16(d + D_FLAGS, flags)
                hw.write16(d + D_NEXT, j + 1 if nbytes else status_at)
                addr += n
                d += DESC_BYTES
                j += 1
        i = st[ST_AVAIL_IDX]
        hw.write16(st[ST_AVAIL] + AVAIL_RING + 2 * (i & st[ST_MASK]),
                   slot if st[ST_INDIRECT] else slot * block)
        st[ST_AVAIL_IDX] = (i + 1) & 0xFFFF

    def _publish(self):
        """Make the posted entries visible and say whether the device wants
        a notification (virtio.fastring.publish, 2.7.13.3 and 2.7.10)."""
        return publish(self.hw, self._st)

    def _publish_native(self):
        return publish_native(self.hw, self._st)

    def _reap(self):
        """Take every completion off the used ring (2.7.14); returns how many."""
        hw = self.hw
        st = self._st
        used = st[ST_USED]
        idx = hw.read16(used + USED_IDX)
        last = st[ST_LAST_USED]
        if idx == last:
            return 0
        if (idx - last) & 0xFFFF > st[ST_NSLOTS] - st[ST_NFREE]:
            raise DeviceError('%s: used idx %d reports %d completions, %d requests in flight'
                              % (self._who, idx, (idx - last) & 0xFFFF, self.in_flight))
        hw.barrier()        # entries are read after the index that covers them
        n = 0
        while last != idx:
            elem = used + USED_RING + USED_ELEM_BYTES * (last & st[ST_MASK])
            head = hw.read32(elem)
            length = hw.read32(elem + 4)
            last = (last + 1) & 0xFFFF
            st[ST_LAST_USED] = last
            self._complete(self._slot_of(head), length)
            n += 1
        return n

    # -- completions ---------------------------------------------------------------------------
    def _slot_of(self, head):
        st = self._st
        slot = head
        if not st[ST_INDIRECT]:
            slot = head // st[ST_BLOCK]
            if head % st[ST_BLOCK]:
                slot = st[ST_NSLOTS]
        if slot >= st[ST_NSLOTS] or not st[slot_word(slot, S_FLAGS)] & F_BUSY:
            raise DeviceError('%s: used id %d is not the head of a request in flight'
                              % (self._who, head))
        return slot

    def _complete(self, slot, length):
        """A request came back: check its used length and status byte, copy
        bounced data home, free the slot, account it to its transfer."""
        hw = self.hw
        st = self._st
        hdr = st[ST_HDRS] + slot * SLOT_BYTES
        op = hw.read32(hdr)
        nbytes = st[slot_word(slot, S_LEN)]
        status = hw.read8(st[ST_STATUS] + slot)
        written = 1 + (nbytes if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID else 0)
        err = None
        if st[ST_CHECK_LEN] and length > written:
            err = DeviceError('%s: %s: used length %d exceeds the %d writable bytes'
                              % (self._who, self._describe(slot, op)[0], length, written))
        elif status != VIRTIO_BLK_S_OK:
            err = self._status_error(status, slot, op)
        bounce = self._s_bounce[slot]
        if bounce >= 0:
            if err is None and op == VIRTIO_BLK_T_IN:
                off = self._s_off[slot]
                byte_view(self._objs[2 * slot + 1])[off:off + nbytes] = hw.read(
                    self._bounce + bounce * self._bounce_chunk(), nbytes)
            self._bounce_free.append(bounce)
        tag = self._objs[2 * slot]
        xfer = self._s_xfer[slot]
        batch = st[slot_word(slot, S_FLAGS)] & F_BATCH
        if batch:
            tag = st[slot_word(slot, S_TAG)]
        self._release(slot)
        if err is not None:
            err.tag = tag
        if batch and err is None:
            n = st[ST_NDONE]
            st[slot_word(n, S_DONE)] = tag
            st[ST_NDONE] = n + 1
            return
        if xfer is None:
            self._end(tag, err)
            return
        if xfer[1] is None:
            xfer[1] = err
        xfer[0] -= 1
        if xfer[0] == 0:
            self._end(xfer[2], xfer[1])

    def _release(self, slot):
        st = self._st
        st[slot_word(slot, S_FLAGS)] = 0
        self._objs[2 * slot] = None
        self._objs[2 * slot + 1] = None
        self._s_xfer[slot] = None
        self._s_bounce[slot] = -1
        n = st[ST_NFREE]
        st[slot_word(n, S_FREE)] = slot
        st[ST_NFREE] = n + 1

    def _describe(self, slot, op):
        """'read of sectors 8-15' for the request in slot (from its header
        and segment in DMA memory)."""
        hw = self.hw
        hdr = self._st[ST_HDRS] + slot * SLOT_BYTES
        if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_OUT:
            sector = hw.read64(hdr + 8)
            count = self._st[slot_word(slot, S_LEN)] // SECTOR_SIZE
        elif op == VIRTIO_BLK_T_DISCARD or op == VIRTIO_BLK_T_WRITE_ZEROES:
            sector = hw.read64(hdr + HEADER_BYTES)
            count = hw.read32(hdr + HEADER_BYTES + 8)
        else:
            return OP_NAMES.get(op, 'request type %d' % op), 0, 0
        return '%s of %s' % (OP_NAMES[op], sectors_text(sector, count)), sector, count

    def _status_error(self, status, slot, op):
        what, sector, count = self._describe(slot, op)
        if status == VIRTIO_BLK_S_IOERR:
            return BlkError(EIO, '%s %s failed: I/O error (VIRTIO_BLK_S_IOERR)'
                            % (self._who, what), None, op, sector, count)
        if status == VIRTIO_BLK_S_UNSUPP:
            return BlkError(EOPNOTSUPP, '%s %s: not supported by the device '
                            '(VIRTIO_BLK_S_UNSUPP)' % (self._who, what), None, op, sector, count)
        return DeviceError('%s %s: the device completed it with status byte 0x%02x%s'
                           % (self._who, what, status,
                              ' (never written)' if status == STATUS_UNSET else ''))

    def _wait_some(self, timeout_ms):
        """Wait until at least one request completes (VirtioTimeout after
        timeout_ms without any; a device that set DEVICE_NEEDS_RESET is
        reported as such)."""
        if self._reap():
            return
        if self.in_flight == 0:
            raise VirtioError('%s: nothing in flight to wait for' % self._who)
        if timeout_ms is None:
            timeout_ms = self.timeout_ms
        wait.until(self.hw, self._reap, timeout_ms, self.check, self._late)

    def _late(self, timeout_ms):
        return ('%s: no completion within %d ms (%d requests in flight)'
                % (self._who, timeout_ms, self.in_flight))


DRIVER = BlkDevice


# -- the target: the ring functions in viper ---------------------------------------------------
# MicroPython's native code emitter (frozen with mpy-cross -march=x86) runs
# these in place of the plain methods of the same names, which stay the
# reference (run and tested under CPython). They work on raw physical
# addresses, so only where the hardware interface is the target's x86 module
# (memory identity mapped): BlkDevice.setup() decides. Viper ints are 32-bit
# machine words: every address is below 4 GiB, and the one-request submit
# takes sectors below FAST_CAPACITY only; anything else goes the plain way,
# which also explains what is wrong with a bad request.

try:
    import micropython
    from virtio.fastring import publish_native
    NATIVE = True
except ImportError:
    NATIVE = False

if NATIVE:
    # Object bounds for a sector before it becomes a machine word (viper's
    # int() would silently truncate a big int).
    _ZERO = 0
    _LIMIT = FAST_CAPACITY
    _NONE = None                # viper compares objects with objects only
    _BYTEARRAY = bytearray      # the buffers the viper paths take (a byte is an item)
    _BYTES = bytes

    @micropython.viper
    def _post_v(self, slot: int, op: int, sector_lo: uint, sector_hi: uint, addr: uint,
                nbytes: int):
        st = ptr32(self._st)
        block = int(st[ST_BLOCK])
        first = 0
        if not st[ST_INDIRECT]:
            first = slot * block
        chain = st[ST_CHAINS] + uint(slot * block * DESC_BYTES)
        status_at = first + block - 1
        hdr = ptr32(st[ST_HDRS] + uint(slot * SLOT_BYTES))
        hdr[0] = op
        hdr[2] = sector_lo
        hdr[3] = sector_hi
        ptr8(st[ST_STATUS])[slot] = STATUS_UNSET
        st[ST_WORDS + SLOT_WORDS * slot + S_LEN] = nbytes
        if nbytes == 0:
            ptr16(chain + D_NEXT)[0] = status_at
        else:
            ptr16(chain + D_NEXT)[0] = first + 1
            flags = _F_NEXT
            if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID:
                flags |= _F_WRITE
            seg = int(st[ST_SIZE_MAX])
            if seg == 0:
                seg = nbytes
            d = chain + DESC_BYTES
            j = first + 1
            while nbytes:
                n = nbytes
                if n > seg:
                    n = seg
                nbytes -= n
                ptr32(d)[0] = addr
                ptr32(d + D_LEN)[0] = n
                ptr16(d + D_FLAGS)[0] = flags
                if nbytes:
                    ptr16(d + D_NEXT)[0] = j + 1
                else:
                    ptr16(d + D_NEXT)[0] = status_at
                addr += uint(n)
                d += DESC_BYTES
                j += 1
        i = int(st[ST_AVAIL_IDX])
        head = slot
        if not st[ST_INDIRECT]:
            head = slot * block
        ptr16(st[ST_AVAIL] + AVAIL_RING)[i & int(st[ST_MASK])] = head
        st[ST_AVAIL_IDX] = (i + 1) & 0xFFFF

    @micropython.viper
    def _reap_v(self) -> int:
        st = ptr32(self._st)
        used = st[ST_USED]
        idx = int(ptr16(used)[1])
        last = int(st[ST_LAST_USED])
        if idx == last:
            return 0
        if ((idx - last) & 0xFFFF) > int(st[ST_NSLOTS]) - int(st[ST_NFREE]):
            return int(BlkDevice._reap(self))   # it raises the DeviceError
        ring = ptr32(used + USED_RING)
        mask = int(st[ST_MASK])
        nslots = int(st[ST_NSLOTS])
        block = int(st[ST_BLOCK])
        indirect = int(st[ST_INDIRECT])
        check_len = int(st[ST_CHECK_LEN])
        hdrs = st[ST_HDRS]
        status = ptr8(st[ST_STATUS])
        objs = self._objs
        finished = self._finished
        none = _NONE
        n = 0
        while last != idx:
            k = (last & mask) << 1
            head = int(ring[k])
            length = int(ring[k + 1])
            last = (last + 1) & 0xFFFF
            st[ST_LAST_USED] = last
            slot = head
            if not indirect:
                slot = head // block
                if slot * block != head:
                    slot = nslots
            rec = ST_WORDS + SLOT_WORDS * slot
            if uint(slot) >= uint(nslots) or not (st[rec + S_FLAGS] & F_BUSY):
                self._slot_of(head)         # raises the DeviceError
            f = int(st[rec + S_FLAGS])
            if (f & F_SIMPLE) and status[slot] == VIRTIO_BLK_S_OK:
                written = 1
                op = int(ptr32(hdrs + uint(slot * SLOT_BYTES))[0])
                if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID:
                    written += int(st[rec + S_LEN])
                if check_len == 0 or uint(length) <= uint(written):
                    st[rec + S_FLAGS] = 0
                    nf = int(st[ST_NFREE])
                    st[ST_WORDS + SLOT_WORDS * nf + S_FREE] = slot
                    st[ST_NFREE] = nf + 1
                    if f & F_BATCH:
                        # (its buffer stays referenced until the slot's next
                        # use: the caller's list holds it anyway)
                        nd = int(st[ST_NDONE])
                        st[ST_WORDS + SLOT_WORDS * nd + S_DONE] = st[rec + S_TAG]
                        st[ST_NDONE] = nd + 1
                    else:
                        tag = objs[2 * slot]
                        objs[2 * slot] = none
                        objs[2 * slot + 1] = none
                        if f & F_SYNC:
                            st[ST_SYNC] = 0
                        else:
                            finished.append(tag)
                    n += 1
                    continue
            self._complete(slot, length)    # errors, bounces, split transfers
            n += 1
        return n

    @micropython.viper
    def _submit1_v(self, op: int, sector, buf, tag):
        # One request of one segment into a free slot, from the caller's
        # memory as it is (_post_v's work, inlined); whatever it does not
        # cover goes to the plain submit(), which also explains bad input.
        st = ptr32(self._st)
        kind = type(buf)
        if tag is _NONE or sector < _ZERO or sector >= _LIMIT \
                or (kind is not _BYTEARRAY and kind is not _BYTES):
            return self.submit(op, sector, buf, tag)    # (it counts bytes of typed arrays)
        sec = int(sector)
        n = int(len(buf))
        bmask = int(st[ST_BLOCK_MASK])
        seg = int(st[ST_SIZE_MAX])
        if n <= 0 or (n & bmask) or ((sec << 9) & bmask) or n > int(st[ST_PER_REQUEST]) \
                or sec + (n >> 9) > int(st[ST_FAST_CAP]) or (seg and n > seg):
            return self.submit(op, sector, buf, tag)
        flags = _F_NEXT
        if op == VIRTIO_BLK_T_OUT:
            if st[ST_READ_ONLY]:
                return self.submit(op, sector, buf, tag)
        else:
            buf[0] = buf[0]                 # TypeError now for a read-only buffer
            flags |= _F_WRITE
        addr = uint(ptr8(buf))              # before a slot is taken
        nfree = int(st[ST_NFREE])
        if nfree == 0 or int(st[ST_NSLOTS]) - nfree >= int(st[ST_DEPTH]):
            return self.submit(op, sector, buf, tag)    # it waits for room
        f = F_BUSY | F_SIMPLE
        if tag is _SYNC:
            if st[ST_SYNC]:
                return self.submit(op, sector, buf, tag)
            st[ST_SYNC] = 1
            f |= F_SYNC
        nfree -= 1
        st[ST_NFREE] = nfree
        slot = int(st[ST_WORDS + SLOT_WORDS * nfree + S_FREE])
        rec = ST_WORDS + SLOT_WORDS * slot
        st[rec + S_FLAGS] = f
        st[rec + S_LEN] = n
        objs = self._objs
        objs[2 * slot] = tag
        objs[2 * slot + 1] = buf
        block = int(st[ST_BLOCK])
        first = 0
        head = slot
        if not st[ST_INDIRECT]:
            first = slot * block
            head = first
        chain = st[ST_CHAINS] + uint(slot * block * DESC_BYTES)
        hdr = ptr32(st[ST_HDRS] + uint(slot * SLOT_BYTES))
        hdr[0] = op
        hdr[2] = sec
        hdr[3] = 0
        ptr8(st[ST_STATUS])[slot] = STATUS_UNSET
        ptr16(chain + D_NEXT)[0] = first + 1
        d = chain + DESC_BYTES
        ptr32(d)[0] = addr
        ptr32(d + D_LEN)[0] = n
        ptr16(d + D_FLAGS)[0] = flags
        ptr16(d + D_NEXT)[0] = first + block - 1
        i = int(st[ST_AVAIL_IDX])
        ptr16(st[ST_AVAIL] + AVAIL_RING)[i & int(st[ST_MASK])] = head
        st[ST_AVAIL_IDX] = (i + 1) & 0xFFFF
        return tag

    @micropython.viper
    def _submit_read_v(self, sector, buf, tag):
        return _submit1_v(self, VIRTIO_BLK_T_IN, sector, buf, tag)

    @micropython.viper
    def _submit_write_v(self, sector, buf, tag):
        return _submit1_v(self, VIRTIO_BLK_T_OUT, sector, buf, tag)

    @micropython.viper
    def _submit_batch_v(self, op: int, tags, count: int, sectors, bufs) -> int:
        # submit_batch() with everything in machine words: checked whole
        # first, then posted; any case it does not cover (waiting for room,
        # bad input to explain) goes to the plain _submit_batch().
        st = ptr32(self._st)
        nslots = int(st[ST_NSLOTS])
        nfree = int(st[ST_NFREE])
        room = nslots - int(st[ST_NDONE])
        depth = int(st[ST_DEPTH])
        if depth < room:
            room = depth
        if (op != VIRTIO_BLK_T_IN and op != VIRTIO_BLK_T_OUT) or count < 0 \
                or count > int(len(tags)) or nslots - nfree + count > room \
                or (op == VIRTIO_BLK_T_OUT and st[ST_READ_ONLY]):
            return int(BlkDevice._submit_batch(self, op, tags, count, sectors, bufs))
        tp = ptr32(tags)
        sp = ptr32(sectors)
        nbufs = int(len(bufs))
        nsec = int(len(sectors))
        bmask = int(st[ST_BLOCK_MASK])
        per = int(st[ST_PER_REQUEST])
        cap = uint(st[ST_FAST_CAP])
        seg = int(st[ST_SIZE_MAX])
        if seg == 0 or seg > per:
            seg = per
        # First check every request, noting what it needs in the record of
        # the slot it will take (the free stack says which); nothing is on
        # the ring until the second loop.
        objs = self._objs
        j = 0
        while j < count:
            t = int(tp[j])
            if uint(t) > uint(0xFFFF) or t >= nbufs or t >= nsec:
                return int(BlkDevice._submit_batch(self, op, tags, count, sectors, bufs))
            sec = uint(sp[t])
            buf = bufs[t]
            kind = type(buf)
            if kind is not _BYTEARRAY and kind is not _BYTES:
                return int(BlkDevice._submit_batch(self, op, tags, count, sectors, bufs))
            n = int(len(buf))
            if n <= 0 or (n & bmask) or (int(sec << 9) & bmask) or n > seg \
                    or sec >= cap or sec + uint(n >> 9) > cap:
                return int(BlkDevice._submit_batch(self, op, tags, count, sectors, bufs))
            if op == VIRTIO_BLK_T_IN:
                buf[0] = buf[0]             # TypeError now for a read-only buffer
            slot = int(st[ST_WORDS + SLOT_WORDS * (nfree - 1 - j) + S_FREE])
            rec = ST_WORDS + SLOT_WORDS * slot
            st[rec + S_LEN] = n
            st[rec + S_TAG] = t
            st[rec + S_ADDR] = uint(ptr8(buf))
            objs[2 * slot + 1] = buf
            j += 1
        flags = _F_NEXT
        if op == VIRTIO_BLK_T_IN:
            flags |= _F_WRITE
        block = int(st[ST_BLOCK])
        indirect = int(st[ST_INDIRECT])
        chains = st[ST_CHAINS]
        hdrs = st[ST_HDRS]
        status = ptr8(st[ST_STATUS])
        ring = ptr16(st[ST_AVAIL] + AVAIL_RING)
        mask = int(st[ST_MASK])
        i = int(st[ST_AVAIL_IDX])
        j = 0
        while j < count:
            nfree -= 1
            slot = int(st[ST_WORDS + SLOT_WORDS * nfree + S_FREE])
            rec = ST_WORDS + SLOT_WORDS * slot
            st[rec + S_FLAGS] = F_BUSY | F_SIMPLE | F_BATCH
            first = 0
            head = slot
            if not indirect:
                first = slot * block
                head = first
            chain = chains + uint(slot * block * DESC_BYTES)
            hdr = ptr32(hdrs + uint(slot * SLOT_BYTES))
            hdr[0] = op
            hdr[2] = sp[st[rec + S_TAG]]
            hdr[3] = 0
            status[slot] = STATUS_UNSET
            ptr16(chain + D_NEXT)[0] = first + 1
            d = ptr32(chain + DESC_BYTES)
            d[0] = st[rec + S_ADDR]
            d[2] = st[rec + S_LEN]
            d16 = ptr16(chain + DESC_BYTES + D_FLAGS)
            d16[0] = flags
            d16[1] = first + block - 1
            ring[i & mask] = head
            i = (i + 1) & 0xFFFF
            j += 1
        st[ST_NFREE] = nfree
        st[ST_AVAIL_IDX] = i
        return count

    @micropython.viper
    def _take_done_v(self, out) -> int:
        st = ptr32(self._st)
        n = int(st[ST_NDONE])
        m = int(len(out))
        if n < m:
            m = n
        o = ptr32(out)
        k = 0
        while k < m:
            o[k] = st[ST_WORDS + SLOT_WORDS * k + S_DONE]
            k += 1
        while k < n:
            st[ST_WORDS + SLOT_WORDS * (k - m) + S_DONE] = st[ST_WORDS + SLOT_WORDS * k + S_DONE]
            k += 1
        st[ST_NDONE] = n - m
        return m

    @micropython.viper
    def _build_chains_v(self, ring: uint):
        st = ptr32(self._st)
        block = int(st[ST_BLOCK])
        nslots = int(st[ST_NSLOTS])
        indirect = int(st[ST_INDIRECT])
        hdrs = st[ST_HDRS]
        status = st[ST_STATUS]
        chains = st[ST_CHAINS]
        k = 0
        while k < nslots:
            first = 0
            if not indirect:
                first = k * block
            d = ptr32(chains + uint(k * block * DESC_BYTES))
            d[0] = hdrs + uint(k * SLOT_BYTES)
            d[1] = 0
            d[2] = HEADER_BYTES
            d[3] = _F_NEXT | (first + 1) << 16
            j = 1
            while j < block - 1:
                d[4 * j] = 0
                d[4 * j + 1] = 0
                d[4 * j + 2] = 0
                d[4 * j + 3] = _F_NEXT | (first + j + 1) << 16
                j += 1
            o = 4 * (block - 1)
            d[o] = status + uint(k)
            d[o + 1] = 0
            d[o + 2] = 1
            d[o + 3] = _F_WRITE
            if indirect:
                r = ptr32(ring + uint(k * DESC_BYTES))
                r[0] = uint(d)
                r[1] = 0
                r[2] = block * DESC_BYTES
                r[3] = _F_INDIRECT
            st[ST_WORDS + SLOT_WORDS * k + S_FREE] = nslots - 1 - k
            k += 1

    BlkDevice._build_chains_v = _build_chains_v
    BlkDevice._submit_batch_v = _submit_batch_v
    BlkDevice._take_done_v = _take_done_v
    BlkDevice._post_v = _post_v
    BlkDevice._reap_v = _reap_v
    BlkDevice._submit_read_v = _submit_read_v
    BlkDevice._submit_write_v = _submit_write_v
