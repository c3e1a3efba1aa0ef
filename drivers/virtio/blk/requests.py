# virtio-blk's requests (spec 5.2.6): a transfer checked whole, split into
# requests no bigger than the device's limits, each request in a slot with a
# prebuilt chain (header -> data segments -> status byte: 2.7.5, with an
# indirect table of its own when negotiated, 2.7.5.3 / 2.8.7), posted and
# completed through the ring module's steps (virtio.split.ring, virtio.packed.ring),
# its status byte checked on completion. The plain reference of what the
# fast paths (virtio.blk.fast, viper) do on the target.

import struct

from virtio import wait
from virtio.blk.consts import (
    BOUNCE_BYTES, BOUNCE_SLOTS, CHAIN_DATA, EARLY_KICK_BYTES, EOPNOTSUPP, EIO, F_BATCH, F_BUSY,
    F_SIMPLE, F_SYNC, HEADER_BYTES, OP_NAMES, S_DONE, S_FLAGS, S_FREE, S_LEN, S_TAG, SECTOR_SIZE,
    SEGMENT_BYTES, SLOT_BYTES, STATUS_UNSET, ST_CHECK_LEN, ST_DEPTH, ST_HDRS, ST_NDONE, ST_NFREE,
    ST_NSLOTS, ST_PER_REQUEST, ST_SIZE_MAX, ST_STATUS, ST_SYNC, VIRTIO_BLK_F_DISCARD,
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
    VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, EROFS, FEATURE_NAMES, ST_POSTED,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES, BlkError, _ABANDONED,
    _ABANDONED_SYNC, _SYNC, sectors_text, slot_word)
from virtio.buffers import byte_length, byte_view
from virtio.errors import DeviceError, VirtioError
from virtio.virtqueue import RING_LEN, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE


class BlkRequests:
    """The request machinery of BlkDevice (a mixin: it uses the device's
    hw, _st, _ring, _steps, _post, _pop, _who, ...)."""

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

    # -- transfers into requests ----------------------------------------------------------------
    def _submit_data(self, op, sector, buf, tag):
        write = op == VIRTIO_BLK_T_OUT
        what = 'write' if write else 'read'
        if buf is None:
            raise ValueError('%s: %s needs a buffer' % (self._who, what))
        nbytes = byte_length(buf, '%s: %s', self._who, what)
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
        addressof = getattr(self.hw, 'addressof', None)
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
        posted = self._st[ST_POSTED]
        try:
            self._fill(slot, op, sector, count, buf, off, nbytes, tag, xfer, addr, batch)
        except BaseException:
            # Taken and not on the ring (a Ctrl-C, a bad buffer): given back.
            if self._st[ST_POSTED] == posted:
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
        self._write_request(slot, op, sector, addr, nbytes)

    # -- a request into its slot's chain, on the ring --------------------------------------
    def _write_request(self, slot, op, sector, addr, nbytes):
        """Fill slot's header and status byte (5.2.6: the status set to a
        value no device writes) and its chain: the data descriptors, at most
        size_max bytes each, then the status byte's (2.7.5); then post it
        (not yet published). The fast paths do the same for one segment."""
        hw = self.hw
        st = self._st
        hdr = st[ST_HDRS] + slot * SLOT_BYTES
        hw.write32(hdr, op)
        hw.write32(hdr + 8, sector & 0xFFFFFFFF)
        hw.write32(hdr + 12, sector >> 32)
        hw.write8(st[ST_STATUS] + slot, STATUS_UNSET)
        st[slot_word(slot, S_LEN)] = nbytes
        steps, ring = self._steps, self._ring
        j = CHAIN_DATA
        if nbytes:
            flags = VIRTQ_DESC_F_NEXT
            if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID:
                flags |= VIRTQ_DESC_F_WRITE
            seg = st[ST_SIZE_MAX] or nbytes
            while nbytes:
                n = min(seg, nbytes)
                steps.set_desc(hw, ring, slot, j, addr, n, flags)
                addr += n
                nbytes -= n
                j += 1
        steps.set_desc(hw, ring, slot, j, st[ST_STATUS] + slot, 1, VIRTQ_DESC_F_WRITE)
        one = self._posting
        one[0] = slot
        steps.post(hw, ring, one, 1, j + 1, -1, 0)
        st[ST_POSTED] = (st[ST_POSTED] + 1) & 0xFFFF

    def _reap(self):
        """Take every completion off the used ring (2.7.14, 2.8.14); returns
        how many."""
        pop, hw, ring, who, used = self._steps.pop, self.hw, self._ring, self._who, self._s_used
        n = 0
        while True:
            slot = pop(hw, ring, who)
            # Recorded before any jump, as _complete does (slot -1, none
            # left, lands in the spare last entry and counts nothing).
            used[slot] = ring[RING_LEN]
            self._cut += slot >= 0
            if slot < 0:
                return n
            self._account(slot)
            n += 1

    # -- completions ---------------------------------------------------------------------------
    # A completion is off the ring once pop() returned it: nothing on the
    # ring says it again. So its used length is recorded first, with no jump
    # in between (MicroPython delivers a pending Ctrl-C only at a jump of
    # Python code, never inside viper code, so none lands before the record),
    # and it counts in _cut until it is accounted. _account may be cut anywhere
    # (a Ctrl-C at a jump, a MemoryError where it allocates): until its commit
    # it changes nothing but what is safe to redo (the bounced data copied
    # home, the bounce buffer given back with its mark); its commit, from the
    # first change to the end, has no jump and allocates (if at all) only in
    # its first step. What a cut leaves recorded, _finish_cut accounts at the
    # next poll(), collect(), poll_batch() or wait.
    def _complete(self, slot, length):
        """A request came back (the viper reap's way in: errors, bounces,
        split transfers): record it, then account it."""
        self._s_used[slot] = length
        self._cut += 1
        self._account(slot)

    def _finish_cut(self):
        """Account the completions a Ctrl-C or MemoryError cut short;
        returns how many."""
        used = self._s_used
        n = 0
        for slot in range(len(used) - 1):
            if used[slot] >= 0:
                self._account(slot)
                n += 1
        return n

    def _account(self, slot):
        """Check a recorded completion's used length and status byte, copy
        bounced data home, free the slot, account it to its transfer."""
        hw = self.hw
        st = self._st
        hdr = st[ST_HDRS] + slot * SLOT_BYTES
        op = hw.read32(hdr)
        nbytes = st[slot_word(slot, S_LEN)]
        status = hw.read8(st[ST_STATUS] + slot)
        written = 1 + (nbytes if op == VIRTIO_BLK_T_IN or op == VIRTIO_BLK_T_GET_ID else 0)
        length = self._s_used[slot]
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
            # Given back once: the mark is cleared in the same step (a redo
            # finds it cleared, and the data home already).
            self._bounce_free.append(bounce)
            self._s_bounce[slot] = -1
        tag = self._objs[2 * slot]
        xfer = self._s_xfer[slot]
        batch = st[slot_word(slot, S_FLAGS)] & F_BATCH
        if batch:
            tag = st[slot_word(slot, S_TAG)]
        if err is not None:
            err.tag = tag
        if batch and err is None:
            n = st[ST_NDONE]
            st[slot_word(n, S_DONE)] = tag
            st[ST_NDONE] = n + 1
            self._retire(slot)
            return
        # A request of a split transfer counts down its transfer, the first
        # error kept; the last ends it. (A lone request: a scratch count.)
        x = self._no_xfer if xfer is None else xfer
        left = 0 if xfer is None else xfer[0] - 1
        first = err if xfer is None or xfer[1] is None else xfer[1]
        end = x[2] if xfer is not None else tag
        if left > 0 or end is _ABANDONED:
            x[0] = left
            x[1] = first
            self._retire(slot)
        elif end is _SYNC:
            self._sync_err = first
            x[0] = left
            x[1] = first
            st[ST_SYNC] = 0
            self._retire(slot)
        elif end is _ABANDONED_SYNC:
            x[0] = left
            x[1] = first
            st[ST_SYNC] = 0
            self._retire(slot)
        elif first is None:
            self._finished.append(end)      # (may raise MemoryError: nothing changed yet)
            x[0] = left
            x[1] = first
            self._retire(slot)
        else:
            self._failed.append(first)
            x[0] = left
            x[1] = first
            self._retire(slot)

    def _retire(self, slot):
        """The end of a completion's commit: its slot free, its record gone."""
        self._release(slot)
        self._s_used[slot] = -1
        self._cut -= 1

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
        reported as such). Completions a cut left recorded count."""
        if self._cut and self._finish_cut():
            return
        if self._reap():
            return
        if self.in_flight == 0:
            raise VirtioError('%s: nothing in flight to wait for' % self._who)
        if timeout_ms is None:
            timeout_ms = self.timeout_ms
        wait.until(self.hw, self._reap, timeout_ms, self.check, self._late,
                   self.requestq.sleeper)

    def _late(self, timeout_ms):
        return ('%s: no completion within %d ms (%d requests in flight)'
                % (self._who, timeout_ms, self.in_flight))

