# virtio-blk's hot paths in viper, for the target: a one-segment read or
# write into a free slot, the vector batch, and reaping completions. They do
# what the plain methods of BlkDevice do (virtio.blk.requests, the reference
# the host tests run) on the same state, and hand anything unusual (bad
# input to explain, a wait for room, an error, a bounce) to those methods.
# The ring itself is reached only through its format's steps (post, kick,
# pop: virtio.split.ring or virtio.packed.ring), which run as viper too.
#
# Viper builds in constants of its own module only: the names below are
# those of virtio.blk.consts (and the common ring words of virtio.virtqueue),
# repeated as literals; a host test checks every one against its original.
# Viper ints are 32-bit machine words: every address is below 4 GiB, and
# only sectors below FAST_CAPACITY take these paths.

try:
    import micropython
    from micropython import const
    NATIVE = True
except ImportError:
    NATIVE = False

    def const(x):
        return x

ST_STATUS = const(0)
ST_BLOCK = const(1)
ST_NSLOTS = const(2)
ST_NFREE = const(3)
ST_DEPTH = const(4)
ST_SYNC = const(5)
ST_HDRS = const(6)
ST_FAST_CAP = const(7)
ST_BLOCK_MASK = const(8)
ST_PER_REQUEST = const(9)
ST_SIZE_MAX = const(10)
ST_READ_ONLY = const(11)
ST_CHECK_LEN = const(12)
ST_NDONE = const(13)
ST_POSTED = const(14)
ST_WORDS = const(15)
S_FLAGS = const(0)
S_LEN = const(1)
S_TAG = const(2)
S_FREE = const(3)
S_DONE = const(4)
S_ADDR = const(5)
SLOT_WORDS = const(6)
F_BUSY = const(1)
F_SIMPLE = const(2)
F_SYNC = const(4)
F_BATCH = const(8)
VIRTIO_BLK_T_IN = const(0)
VIRTIO_BLK_T_OUT = const(1)
VIRTIO_BLK_T_GET_ID = const(8)
VIRTIO_BLK_S_OK = const(0)
STATUS_UNSET = const(0xFF)
SLOT_BYTES = const(32)
CHAIN_DATA = const(1)
SIMPLE_BLOCK = const(3)         # header, one data segment, status: the chains these paths use
RING_LEN = const(1)             # virtio.virtqueue.RING_LEN
VIRTQ_DESC_F_NEXT = const(1)
VIRTQ_DESC_F_WRITE = const(2)

if NATIVE:
    from virtio.blk.consts import _SYNC, FAST_CAPACITY

    # Objects the viper code compares with (viper compares objects with
    # objects only; int() of a big int would silently truncate it).
    _ZERO = 0
    _LIMIT = FAST_CAPACITY
    _NONE = None
    _BYTEARRAY = bytearray      # the buffers these paths take (an item is a byte)
    _BYTES = bytes
    # Builtins under names of this module: viper looks a name up at each use,
    # and a builtin's name first misses in the module's globals (type() and
    # len() cost 0.6-0.8k instructions more that way). In loops, locals.
    _TYPE = type
    _LEN = len

    @micropython.viper
    def reap(self) -> int:
        ring = self._ring
        pop = self._steps.pop
        hw = self.hw
        who = self._who
        slot = int(pop(hw, ring, who))
        if slot < 0:
            return 0                # (most calls: the rest is loaded only when needed)
        st = ptr32(self._st)
        r = ptr32(ring)
        hdrs = st[ST_HDRS]
        status = ptr8(st[ST_STATUS])
        check_len = int(st[ST_CHECK_LEN])
        objs = self._objs
        finished = self._finished
        none = _NONE
        n = 0
        while slot >= 0:
            length = int(r[RING_LEN])
            rec = ST_WORDS + SLOT_WORDS * slot
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
                    slot = int(pop(hw, ring, who))
                    continue
            self._complete(slot, length)    # errors, bounces, split transfers
            n += 1
            slot = int(pop(hw, ring, who))
        return n

    @micropython.viper
    def _submit1(self, op: int, sector, buf, tag):
        # One request of one segment into a free slot, from the caller's
        # memory as it is; whatever this does not cover goes to the plain
        # submit(), which also explains bad input. Nothing is taken before
        # every check has passed.
        st = ptr32(self._st)
        kind = _TYPE(buf)
        if tag is _NONE or sector < _ZERO or sector >= _LIMIT \
                or (kind is not _BYTEARRAY and kind is not _BYTES) \
                or int(st[ST_BLOCK]) != SIMPLE_BLOCK:
            return self.submit(op, sector, buf, tag)    # (it counts bytes of typed arrays)
        sec = int(sector)
        n = int(_LEN(buf))
        bmask = int(st[ST_BLOCK_MASK])
        if n <= 0 or (n & bmask) or ((sec << 9) & bmask) or n > int(st[ST_PER_REQUEST]) \
                or sec + (n >> 9) > int(st[ST_FAST_CAP]):
            return self.submit(op, sector, buf, tag)
        flags = VIRTQ_DESC_F_NEXT
        if op == VIRTIO_BLK_T_OUT:
            if st[ST_READ_ONLY]:
                return self.submit(op, sector, buf, tag)
        else:
            buf[0] = buf[0]                 # TypeError now for a read-only buffer
            flags |= VIRTQ_DESC_F_WRITE
        addr = uint(ptr8(buf))
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
        hdr = ptr32(st[ST_HDRS] + uint(slot * SLOT_BYTES))
        hdr[0] = op
        hdr[2] = sec
        hdr[3] = 0
        ptr8(st[ST_STATUS])[slot] = STATUS_UNSET
        # The ring's post step, for a batch of one
        reqs = self._posting
        q = ptr32(reqs)
        q[0] = slot
        q[1] = addr
        q[2] = n
        self._steps.post(self.hw, self._ring, reqs, 1, SIMPLE_BLOCK, CHAIN_DATA, flags)
        st[ST_POSTED] = (int(st[ST_POSTED]) + 1) & 0xFFFF
        return tag

    @micropython.viper
    def submit_read(self, sector, buf, tag):
        return _submit1(self, VIRTIO_BLK_T_IN, sector, buf, tag)

    @micropython.viper
    def submit_write(self, sector, buf, tag):
        return _submit1(self, VIRTIO_BLK_T_OUT, sector, buf, tag)

    @micropython.viper
    def submit_batch(self, op: int, tags, count: int, sectors, bufs) -> int:
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
                or count > int(_LEN(tags)) or nslots - nfree + count > room \
                or (op == VIRTIO_BLK_T_OUT and st[ST_READ_ONLY]) \
                or int(st[ST_BLOCK]) != SIMPLE_BLOCK:
            return int(self._submit_batch(op, tags, count, sectors, bufs))
        tp = ptr32(tags)
        sp = ptr32(sectors)
        nbufs = int(_LEN(bufs))
        nsec = int(_LEN(sectors))
        bmask = int(st[ST_BLOCK_MASK])
        per = int(st[ST_PER_REQUEST])
        cap = uint(st[ST_FAST_CAP])
        # First check every request, noting what it needs in the record of
        # the slot it will take (the free stack says which); nothing is on
        # the ring until the second loop.
        objs = self._objs
        bytearray_ = _BYTEARRAY
        bytes_ = _BYTES
        type_ = _TYPE
        len_ = _LEN
        j = 0
        while j < count:
            t = int(tp[j])
            if uint(t) > uint(0xFFFF) or t >= nbufs or t >= nsec:
                return int(self._submit_batch(op, tags, count, sectors, bufs))
            sec = uint(sp[t])
            buf = bufs[t]
            kind = type_(buf)
            if kind is not bytearray_ and kind is not bytes_:
                return int(self._submit_batch(op, tags, count, sectors, bufs))
            n = int(len_(buf))
            if n <= 0 or (n & bmask) or (int(sec << 9) & bmask) or n > per \
                    or sec >= cap or sec + uint(n >> 9) > cap:
                return int(self._submit_batch(op, tags, count, sectors, bufs))
            if op == VIRTIO_BLK_T_IN:
                buf[0] = buf[0]             # TypeError now for a read-only buffer
            slot = int(st[ST_WORDS + SLOT_WORDS * (nfree - 1 - j) + S_FREE])
            rec = ST_WORDS + SLOT_WORDS * slot
            st[rec + S_LEN] = n
            st[rec + S_TAG] = t
            st[rec + S_ADDR] = uint(ptr8(buf))
            objs[2 * slot + 1] = buf
            j += 1
        flags = VIRTQ_DESC_F_NEXT
        if op == VIRTIO_BLK_T_IN:
            flags |= VIRTQ_DESC_F_WRITE
        hdrs = st[ST_HDRS]
        status = ptr8(st[ST_STATUS])
        reqs = self._posting
        q = ptr32(reqs)
        j = 0
        while j < count:
            nfree -= 1
            slot = int(st[ST_WORDS + SLOT_WORDS * nfree + S_FREE])
            rec = ST_WORDS + SLOT_WORDS * slot
            st[rec + S_FLAGS] = F_BUSY | F_SIMPLE | F_BATCH
            hdr = ptr32(hdrs + uint(slot * SLOT_BYTES))
            hdr[0] = op
            hdr[2] = sp[st[rec + S_TAG]]
            hdr[3] = 0
            status[slot] = STATUS_UNSET
            q[3 * j] = slot
            q[3 * j + 1] = st[rec + S_ADDR]
            q[3 * j + 2] = st[rec + S_LEN]
            st[rec + S_ADDR] = 0            # (scratch of the first loop: the state as plain leaves it)
            j += 1
        st[ST_NFREE] = nfree
        self._steps.post(self.hw, self._ring, reqs, count, SIMPLE_BLOCK, CHAIN_DATA, flags)
        st[ST_POSTED] = (int(st[ST_POSTED]) + count) & 0xFFFF
        return count

    @micropython.viper
    def take_done(self, out) -> int:
        st = ptr32(self._st)
        n = int(st[ST_NDONE])
        m = int(_LEN(out))
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
