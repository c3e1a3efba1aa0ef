"""virtio-rng (entropy device, spec 5.4): one requestq; the device fills each
device-writable buffer with random bytes. Like QEMU: one queue of 8."""

from tests.host.models.virtio import VirtioPciModel


class RngDevice(VirtioPciModel):
    DEVICE_TYPE = 4
    NAME = 'virtio-rng'

    def __init__(self, mode='transitional', max_bytes=None, **kw):
        """max_bytes: give at most this many bytes per request (a device may
        return fewer than asked)."""
        kw.setdefault('queue_sizes', (8,))
        VirtioPciModel.__init__(self, mode=mode, **kw)
        self.max_bytes = max_bytes
        self.given = 0

    def handle(self, queue, req):
        n = req.writable_size
        if self.max_bytes is not None:
            n = min(n, self.max_bytes)
        data = bytes(self.rng.getrandbits(8) for _ in range(n))
        req.write(data)
        self.given += n
