"""virtio-rng in Python (VirtIO 1.2, 5.4): one requestq; every buffer the
driver makes available is device-writable and the device fills it with
random bytes, then returns it with the number of bytes written.

The bytes come from a seeded stream (SHA-256 of seed and block number), so
a test can predict them: the n-th byte the device ever gives is
stream(seed)[n], however the driver splits its requests. QEMU:
`-chardev socket,id=rng0,path=SOCK -device vhost-user-rng-pci,chardev=rng0`.
"""

import hashlib

from vhost.device import Device

VIRTIO_ID_ENTROPY = 4
QUEUE_SIZE = 8             # as QEMU's own virtio-rng


def stream(seed, n, start=0):
    """Bytes [start, start + n) of the device's output for `seed`."""
    out = bytearray()
    block = start // 32
    skip = start % 32
    while len(out) < n + skip:
        out += hashlib.sha256(b'%d:%d' % (seed, block)).digest()
        block += 1
    return bytes(out[skip:skip + n])


class RngDevice(Device):
    NAME = 'virtio-rng'
    DEVICE_ID = VIRTIO_ID_ENTROPY
    QUEUES = (QUEUE_SIZE,)
    FEATURES = 0               # 5.4.3: no feature bits

    def __init__(self, seed=0, max_bytes=None, record=None, **kw):
        """max_bytes: give at most this many bytes per request (5.4.6.2
        allows fewer than asked); record: a file that gets every byte given."""
        Device.__init__(self, **kw)
        self.seed = seed
        self.max_bytes = max_bytes
        self.given = 0
        self.record = record

    def handle(self, queue, req):
        n = req.writable_size
        if self.max_bytes is not None:
            n = min(n, self.max_bytes)
        data = stream(self.seed, n, self.given)
        req.write(data)
        self.given += n
        if self.record is not None:
            self.record.write(data)
            self.record.flush()
