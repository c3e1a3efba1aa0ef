# virtio-blk's names and numbers (spec 5.2): feature bits, request types,
# status values, the configuration layout; the driver's state words; its
# errors.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from array import array

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
FAST_CAPACITY = const(1 << 30)          # below it, sectors are small ints (the viper path)
MAX_BLOCK_SIZE = const(65536)
MAX_TRANSFER = const(8 << 20)           # bytes per request unless the device says less
MAX_TRANSFER_LIMIT = const(1 << 30)     # the most max_transfer may be (lengths in 32-bit words)
EARLY_KICK_BYTES = const(256 * 1024)    # a split transfer's parts this big go at once
DEFAULT_DEPTH = const(128)              # requests in flight at most
DEFAULT_TIMEOUT_MS = const(5000)
BOUNCE_SLOTS = const(64)                # bounced requests in flight at most
BOUNCE_BYTES = const(512 * 1024)

# The driver's own numbers live in one array('I') (one lookup for the viper
# fast paths): ST_WORDS words of state, then a record of SLOT_WORDS words per
# slot. Objects (tags, buffers) in one list, two per slot. The ring's state
# is another array, the ring module's (virtio.split.ring or virtio.packed.ring).
ST_STATUS = const(0)        # the status bytes, one per slot
ST_BLOCK = const(1)         # descriptors per slot: header, segments, status
ST_NSLOTS = const(2)
ST_NFREE = const(3)         # free slots: the first ST_NFREE S_FREE entries
ST_DEPTH = const(4)
ST_SYNC = const(5)          # 1 while a read()/write()/... transfer is outstanding
ST_HDRS = const(6)
ST_FAST_CAP = const(7)      # capacity when below FAST_CAPACITY, else 0 (no fast path)
ST_BLOCK_MASK = const(8)    # block_size - 1
ST_PER_REQUEST = const(9)   # data bytes per request at most
ST_SIZE_MAX = const(10)     # bytes per data descriptor at most, 0: no limit
ST_READ_ONLY = const(11)
ST_CHECK_LEN = const(12)    # 1: check used lengths (modern; 5.2.6's legacy note: ignore them)
ST_NDONE = const(13)        # tags of submit_batch() requests done, for poll_batch()
ST_POSTED = const(14)       # requests posted so far (mod 2^16): did a cut call post?
ST_WORDS = const(15)
S_FLAGS = const(0)          # slot record: its flags,
S_LEN = const(1)            # its data bytes,
S_TAG = const(2)            # its tag, for a submit_batch() request;
S_FREE = const(3)           # entry k of the free-slot stack (st[ST_NFREE] entries),
S_DONE = const(4)           # entry k of the finished batch tags (st[ST_NDONE]),
S_ADDR = const(5)           # and its data's address (a batch request, while checked)
SLOT_WORDS = const(6)

# A slot's chain: the header (descriptor 0), the data segments, the status byte (2.7.5).
CHAIN_DATA = const(1)

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
