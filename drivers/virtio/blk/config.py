# virtio-blk's configuration (spec 5.2.4, 5.2.5): read and checked (a device
# must not feed the driver garbage), the limits a request must keep to
# (seg_max, size_max, blk_size, max_transfer), and the settings a user can
# change (max_transfer, depth, the write cache mode).

from virtio.blk.consts import (
    CFG_ALIGNMENT_OFFSET, CFG_BLK_SIZE, CFG_CAPACITY, CFG_GEOMETRY_CYLINDERS, CFG_GEOMETRY_HEADS,
    CFG_GEOMETRY_SECTORS, CFG_MAX_DISCARD_SECTORS, CFG_MAX_DISCARD_SEG,
    CFG_DISCARD_SECTOR_ALIGNMENT, CFG_MAX_WRITE_ZEROES_SECTORS, CFG_MAX_WRITE_ZEROES_SEG,
    CFG_MIN_IO_SIZE, CFG_OPT_IO_SIZE, CFG_PHYSICAL_BLOCK_EXP, CFG_SEG_MAX, CFG_SIZE_MAX,
    CFG_WRITEBACK, CFG_WRITE_ZEROES_MAY_UNMAP, EOPNOTSUPP, FAST_CAPACITY, MAX_BLOCK_SIZE,
    MAX_CAPACITY, MAX_TRANSFER_LIMIT, SECTOR_SIZE, ST_BLOCK, ST_BLOCK_MASK, ST_DEPTH,
    ST_FAST_CAP, ST_NFREE, ST_NSLOTS, ST_PER_REQUEST, ST_READ_ONLY, ST_SIZE_MAX,
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_WRITE_ZEROES, BlkError)
from virtio.errors import DeviceError
from virtio.virtqueue import RING_NOTIFIED


class BlkConfig:
    """The configuration side of BlkDevice (a mixin)."""

    # The discard and write-zeroes limits (5.2.4; 0 without the feature) live
    # in two tuples: a device's attributes are a hash map that MicroPython
    # fills to the brim before it grows, and in a nearly full map every
    # lookup of a method (a miss there first) probes most of it.
    max_discard_sectors = property(lambda self: self._discard[0])
    max_discard_seg = property(lambda self: self._discard[1])
    discard_sector_alignment = property(lambda self: self._discard[2])
    max_write_zeroes_sectors = property(lambda self: self._zeroes[0])
    max_write_zeroes_seg = property(lambda self: self._zeroes[1])
    write_zeroes_may_unmap = property(lambda self: self._zeroes[2])

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
        self._discard = (0, 0, 0)
        if has(VIRTIO_BLK_F_DISCARD):
            self._discard = (
                self.check_config('max_discard_sectors', t.config_read32(CFG_MAX_DISCARD_SECTORS),
                                  1, 0xFFFFFFFF),
                self.check_config('max_discard_seg', t.config_read32(CFG_MAX_DISCARD_SEG),
                                  1, 0xFFFFFFFF),
                t.config_read32(CFG_DISCARD_SECTOR_ALIGNMENT))
        self._zeroes = (0, 0, False)
        if has(VIRTIO_BLK_F_WRITE_ZEROES):
            self._zeroes = (
                self.check_config('max_write_zeroes_sectors',
                                  t.config_read32(CFG_MAX_WRITE_ZEROES_SECTORS), 1, 0xFFFFFFFF),
                self.check_config('max_write_zeroes_seg',
                                  t.config_read32(CFG_MAX_WRITE_ZEROES_SEG), 1, 0xFFFFFFFF),
                self.check_config('write_zeroes_may_unmap',
                                  t.config_read8(CFG_WRITE_ZEROES_MAY_UNMAP), 0, 1) == 1)
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

    def _set_capacity(self):
        st = self._st
        st[ST_FAST_CAP] = self.capacity if self.capacity < FAST_CAPACITY else 0
        st[ST_BLOCK_MASK] = self.block_size - 1
        st[ST_READ_ONLY] = 1 if self.read_only else 0

    def config_changed(self):
        # A configuration change notification: QEMU's block_resize, for one.
        before = self.capacity
        self.refresh()
        if self.capacity != before:
            return 'capacity'

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
            raise ValueError('%s: max_transfer %d: at most %d (the driver keeps lengths in words)'
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

    @property
    def notifications(self):
        """Available-buffer notifications sent to the device so far (2.7.10)."""
        return self._ring[RING_NOTIFIED]

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
