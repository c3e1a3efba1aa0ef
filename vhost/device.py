"""The base class of a device written in Python. A device declares what it
is and serves requests; the session (session.py) does the protocol and the
rings (ring.py, packed.py) the memory layout.

    class MyDevice(Device):
        NAME = 'virtio-rng'
        DEVICE_ID = 4                       # VirtIO device ID (spec 5)
        QUEUES = (8,)                       # maximum size of each virtqueue
        FEATURES = 0                        # device-specific feature bits offered

        def handle(self, queue, req):       # one chain taken from the ring
            req.write(b'...')               # fill the device-writable buffers

Misbehaviour switches (`misbehave=`, or set_misbehave() at run time), the list
of the in-process models (tests/host/models/virtio.py), applied after `after`
more good completions:
  'bad_used_id'     the used id names no descriptor (queue size + 1)
  'oversized_len'   the used length is 512 bytes beyond the writable buffers
  'used_idx_jump'   the used index advances by queue size + 2
  'never_complete'  chains are taken off the ring and never returned
  'garbage_config'  GET_CONFIG answers all ones
  'missing_interrupt'  the call eventfd is never signalled
  'interrupt_storm'    the call eventfd is signalled STORM times per completion,
                       wanted or not
(the last two matter to drivers that wait for interrupts; ours poll for now)
'needs_reset' (DEVICE_NEEDS_RESET mid-run) has no switch: vhost-user has no
message by which a back-end sets a status bit the guest can read (QEMU 7.2's
front-end keeps the guest-visible status itself; SET_VRING_ERR's eventfd
is only logged), see docs/vhost-user.md.
"""

F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_VERSION_1 = 32
F_RING_PACKED = 34

MISBEHAVIOURS = ('bad_used_id', 'oversized_len', 'used_idx_jump', 'never_complete',
                 'garbage_config', 'missing_interrupt', 'interrupt_storm')
STORM = 64
NOT_SIGNALLABLE = {
    'needs_reset': 'vhost-user gives a back-end no way to set DEVICE_NEEDS_RESET in the '
                   'status the guest reads (QEMU 7.2 only logs the SET_VRING_ERR eventfd)',
}


class Device:
    NAME = 'virtio'
    DEVICE_ID = 0
    QUEUES = (256,)
    FEATURES = 0
    RING_FEATURES = ((1 << F_VERSION_1) | (1 << F_INDIRECT_DESC) | (1 << F_EVENT_IDX)
                     | (1 << F_RING_PACKED))

    def __init__(self, misbehave=None, after=0):
        self.completed = 0
        self.set_misbehave(misbehave, after)
        self.features = 0           # what the front-end set (SET_FEATURES)
        self.session = None         # set by the session serving this device

    def set_misbehave(self, misbehave, after=0):
        """Switch a misbehaviour on (after `after` more good completions) or
        off (None)."""
        if misbehave in NOT_SIGNALLABLE:
            raise ValueError('misbehaviour %r: %s' % (misbehave, NOT_SIGNALLABLE[misbehave]))
        if misbehave is not None and misbehave not in MISBEHAVIOURS:
            raise ValueError('unknown misbehaviour %r (known: %s)'
                             % (misbehave, ', '.join(MISBEHAVIOURS)))
        self.misbehave = misbehave
        self.after = self.completed + after

    # -- what the device is -----------------------------------------------------
    def offered_features(self):
        return self.FEATURES | self.RING_FEATURES

    def config(self):
        """The device configuration space (bytes), or None: no GET_CONFIG."""
        return None

    def read_config(self, offset, size):
        cfg = self.config()
        if self.misbehaving('garbage_config'):
            return b'\xff' * size
        return (bytes(cfg[offset:offset + size]) + bytes(size))[:size]

    def write_config(self, offset, data):
        """SET_CONFIG: the driver wrote device configuration (override)."""
        raise ValueError('%s: configuration is read-only (write of %d bytes at %d)'
                         % (self.NAME, len(data), offset))

    def set_features(self, features):
        self.features = features

    def has(self, bit):
        return bool(self.features >> bit & 1)

    # -- serving ------------------------------------------------------------------
    def handle(self, queue, req):
        """Serve one request: read req.data() / req.read_views(), write with
        req.write() or into req.write_views() (then set req.written). Return
        False to keep it (a receive buffer waiting for data) and hand it back
        later with self.complete(queue, req)."""
        raise NotImplementedError

    def complete(self, queue, req):
        """Return a request kept by handle(); False if its ring was stopped."""
        return self.session.complete(queue, req)

    def reset(self):
        """RESET_OWNER / RESET_DEVICE: forget state."""
        for q in range(len(self.QUEUES)):
            self.stopped(q)

    def stopped(self, queue):
        """The queue's ring was stopped (GET_VRING_BASE): drop requests kept
        from it, they are the driver's again."""

    def misbehaving(self, which):
        return self.misbehave == which and self.completed >= self.after

    def used_entry(self, ring, req):
        """(id, length, jump) to put in the used ring for a served request:
        the truth, unless a misbehaviour switch says otherwise."""
        rid, length, jump = req.id, req.written, 0
        if self.misbehaving('bad_used_id'):
            rid = ring.size + 1
        elif self.misbehaving('oversized_len'):
            length = req.writable_size + 512
        elif self.misbehaving('used_idx_jump'):
            jump = ring.size + 1
        return rid, length, jump
