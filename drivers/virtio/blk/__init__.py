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
#     blk.on_event = lambda blk, what: ...  # 'capacity': QEMU's block_resize
#     data = blk.read(0, 8)               # 8 sectors from sector 0
#     blk.write(8, data); blk.flush()
#     blk.submit_read(0, buf, 'a'); blk.submit_read(8, buf2, 'b'); blk.poll()
#
# The package, by concern:
#   blk/__init__.py  the API (this file): simple calls, submit/poll, the
#                    vector batch interface, the block-device protocol
#   blk/config.py    the configuration and the limits a request keeps to
#   blk/requests.py  transfers into requests, slots, completions (plain)
#   blk/fast.py      the same hot paths in viper, for the target
#   blk/consts.py     the names and numbers of 5.2, the driver's state words
#
# A slot is prebuilt once: a chain of descriptors header -> data segments ->
# status byte, with the header and the status byte in DMA memory of their
# own (in an indirect table of its own when INDIRECT_DESC is negotiated). A
# request rewrites the header and the data descriptors and posts the chain,
# through the steps of its ring's format (virtio.split.ring, or
# virtio.packed.ring when RING_PACKED is negotiated); nothing is allocated.
#
# Data moves without a copy when the hardware interface can tell a buffer's
# physical address (hw.addressof: the target, where all RAM is reachable by
# DMA); otherwise through bounce buffers in DMA memory (qtest, models).

from array import array

from virtio import features
from virtio.blk.config import BlkConfig
from virtio.blk.consts import *          # noqa: F401,F403 (the package's public names)
from virtio.blk.consts import _SYNC, words
from virtio.blk.requests import BlkRequests
from virtio.buffers import byte_length, byte_view
from virtio.device import VirtioDevice
from virtio.virtqueue import (DESC_SIZE, RING_CHAINS, RING_INDIRECT, VIRTQ_DESC_F_NEXT,
                              VIRTQ_DESC_F_WRITE)


class BlkDevice(BlkConfig, BlkRequests, VirtioDevice):
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
        self.timeout_ms = DEFAULT_TIMEOUT_MS
        self._max_transfer = MAX_TRANSFER
        self.requestq = None
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
        # No indirect area of the queue's own: our slots have theirs.
        self.requestq = self.setup_queue(REQUESTQ, None, 0)
        self._setup_slots()

    def _setup_slots(self):
        """A slot per request in flight, each with its chain built once:
        header -> data segments -> status (2.7.5); the ring handed over."""
        hw = self.hw
        vq = self.requestq
        seg, per = self._limits()
        nseg = (per + seg - 1) // seg if seg else 1
        block = nseg + 2
        indirect = self.has(features.INDIRECT_DESC)
        nslots = vq.size if indirect else vq.size // block
        steps = vq.take_over('the %s driver' % self.NAME, nslots, block, indirect)
        self._steps = steps
        self._ring = vq.st
        self._notifier = vq.notifier
        self._posting = words(3 * nslots)      # (slot, addr, length) triples, for the ring's post
        st = self._st = words(ST_WORDS + SLOT_WORDS * nslots)
        st[ST_BLOCK] = block
        st[ST_NSLOTS] = nslots
        st[ST_NFREE] = nslots
        st[ST_SIZE_MAX] = seg
        st[ST_PER_REQUEST] = per
        st[ST_CHECK_LEN] = 0 if self.transport.legacy_interface else 1
        st[ST_HDRS] = hw.dma_alloc(SLOT_BYTES * nslots, 16)
        st[ST_STATUS] = hw.dma_alloc(nslots, 4)
        self._set_capacity()
        self.depth = self._depth
        # Per slot: its tag, and its buffer, held until completion (the
        # device may write it, the GC must not reuse it).
        self._objs = [None] * (2 * nslots)
        self._s_xfer = [None] * nslots      # [requests outstanding, first error, tag]
        self._s_off = [0] * nslots          # where the bounced data goes in the buffer
        self._s_bounce = [-1] * nslots
        # A completion's used length from when it is taken off the ring until
        # it is accounted (-1: none; the spare last entry takes pop()'s -1),
        # and how many such are recorded: see BlkRequests._complete.
        self._s_used = [-1] * (nslots + 1)
        self._cut = 0
        self._no_xfer = [0, None, None]     # the count a lone request's commit writes
        self._finished = []                 # tags done, for poll()
        self._failed = []                   # errors of failed transfers, for poll()
        self._sync_err = None
        self._tag_seq = 0
        self._bounce = 0
        self._bounce_free = []
        self._id_buf = hw.dma_alloc(VIRTIO_BLK_ID_BYTES, 4)
        self._word_arrays = []
        self.native = False
        if NATIVE and getattr(hw, '__name__', None) == 'x86' and hasattr(hw, 'addressof'):
            # The target: the viper fast paths (virtio.blk.fast).
            self.native = True
            self._reap = self._reap_v
            self.submit_read = self._submit_read_v
            self.submit_write = self._submit_write_v
        steps.build(hw, self._ring, self._template(nslots, block))
        free = ST_WORDS + S_FREE
        for k in range(nslots):
            st[free + SLOT_WORDS * k] = nslots - 1 - k      # (slot_word, inline: 256 calls)

    def _template(self, nslots, block):
        """Every slot's descriptors as (addr, len, flags) words: its header,
        data placeholders, its status byte. One slot's pattern repeated,
        then the addresses (a loop over every word cost 1.5M instructions
        at boot)."""
        st = self._st
        one = [0, HEADER_BYTES, VIRTQ_DESC_F_NEXT] + [0, 0, VIRTQ_DESC_F_NEXT] * (block - 2) \
            + [0, 1, VIRTQ_DESC_F_WRITE]
        t = array('I', bytes(array('I', one)) * nslots)     # (bytes repeat: no long list)
        hdrs = st[ST_HDRS]
        status = st[ST_STATUS]
        last = 3 * (block - 1)
        per = 3 * block
        for k in range(nslots):
            o = per * k
            t[o] = hdrs + k * SLOT_BYTES
            t[o + last] = status + k
        return t

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
        posted = self._st[ST_POSTED]
        try:
            # Set inside the try: the end of the elif above is a jump, where a
            # Ctrl-C is raised, and one raised between setting this and the
            # try would have left it set with nothing posted.
            if tag is _SYNC:
                self._st[ST_SYNC] = 1
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
            if tag is _SYNC:
                self._sync_failed(posted)
            raise
        return tag

    def _sync_failed(self, posted):
        """The submit of a read()/write()/... raised. If it posted nothing
        the simple call is over; else what it posted ends it."""
        if self._st[ST_POSTED] == posted:
            self._st[ST_SYNC] = 0

    def submit_read(self, sector, buf, tag):
        """submit(VIRTIO_BLK_T_IN, sector, buf, tag), the lean way (in
        viper on MicroPython for one-request transfers)."""
        return self.submit(VIRTIO_BLK_T_IN, sector, buf, tag)

    def submit_write(self, sector, buf, tag):
        """submit(VIRTIO_BLK_T_OUT, sector, buf, tag), the lean way."""
        return self.submit(VIRTIO_BLK_T_OUT, sector, buf, tag)

    def kick(self):
        """Publish what is queued and notify the device unless it said it
        need not be (spec 2.7.10, 2.8.10); True if a notification was sent.
        The notification counts as sent only once it was: a kick cut short
        (Ctrl-C, MemoryError) is completed by the next."""
        return self._steps.kick(self.hw, self._ring, self._notifier) != 0

    def poll(self):
        """Notify the device of what is queued and return the tags of the
        transfers finished since the last poll, without waiting. A failed
        transfer raises its error (BlkError, or DeviceError for a device
        that broke the protocol) with its `tag`; the others are kept for
        the next poll."""
        self.kick()
        if self._cut:
            self._finish_cut()
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
        if self._cut:
            self._finish_cut()
        self._reap()
        st = self._st
        if timeout_ms:
            while not st[ST_NDONE] and not self._failed and self.in_flight:
                self._wait_some(timeout_ms)
        if self._failed:
            raise self._failed.pop(0)
        if self.native:
            seen = self._word_arrays     # the array of the last poll, most often: no call
            if (seen and seen[-1] is out) or self._words(out):
                return self._take_done_v(out)
        return self._take_done(out)

    def _words(self, a):
        """Whether `a` is an array of 32-bit words (what the viper code may
        index raw); the last few arrays seen are remembered."""
        seen = self._word_arrays
        for x in seen:
            if x is a:
                seen.remove(x)          # last: where poll_batch looks first
                seen.append(x)
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
        ring = self._ring
        vq = self.requestq
        block = st[ST_BLOCK]
        write('%s: %s ring of %d, %d slots (%s of %d descriptors), %d in flight, depth %d'
              % (self._who, vq.kind, vq.size, st[ST_NSLOTS],
                 'indirect tables' if ring[RING_INDIRECT] else 'chains in the ring', block,
                 self.in_flight, st[ST_DEPTH]))
        write('  %s  notifications %d' % (vq.indices(), self.notifications))
        for k in range(st[ST_NSLOTS]):
            if not st[slot_word(k, S_FLAGS)] & F_BUSY:
                continue
            op = hw.read32(st[ST_HDRS] + k * SLOT_BYTES)
            data = ''
            if st[slot_word(k, S_LEN)]:
                # the data descriptor's address: offset 0 in either format
                chain = ring[RING_CHAINS] + (k * block + CHAIN_DATA) * DESC_SIZE
                data = ' -> 0x%x (%d bytes)' % (hw.read32(chain), st[slot_word(k, S_LEN)])
            write('  slot %d: %s%s, status 0x%02x' % (k, self._describe(k, op)[0], data,
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
        posted = self._st[ST_POSTED]
        try:
            self._st[ST_SYNC] = 1
            self._queue(VIRTIO_BLK_T_GET_ID, 0, 0, None, 0, VIRTIO_BLK_ID_BYTES, _SYNC, None,
                        self._id_buf)
        except BaseException:
            self._sync_failed(posted)
            raise
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
            # A look first (the transfer is often done by now), the wait only if
            # it found nothing; with a cut to finish, the wait does that first.
            if self._cut or not self._reap():
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


DRIVER = BlkDevice

# The target: the viper fast paths replace the plain methods (setup() binds
# them only where the hardware interface is the x86 module).
try:
    from virtio.blk import fast
    NATIVE = fast.NATIVE
except ImportError:
    NATIVE = False
if NATIVE:
    BlkDevice._reap_v = fast.reap
    BlkDevice._submit_read_v = fast.submit_read
    BlkDevice._submit_write_v = fast.submit_write
    BlkDevice._submit_batch_v = fast.submit_batch
    BlkDevice._take_done_v = fast.take_done
