"""virtio-rng (entropy device, spec 5.4): one requestq; the device fills each
device-writable buffer with random bytes. Like QEMU: one queue of 8.

rate=(max_bytes, period_ms) limits it as QEMU's virtio-rng-pci max-bytes and
period do: at most max_bytes per period; a request that finds the quota spent
waits (on the device) for the next period, which starts on the machine clock
as the driver looks at it."""

import time

from tests.host.models.virtio import VirtioPciModel


class RngModel(VirtioPciModel):
    DEVICE_TYPE = 4
    NAME = 'virtio-rng'

    def __init__(self, mode='transitional', max_bytes=None, rate=None, **kw):
        """max_bytes: give at most this many bytes per request (a device may
        return fewer than asked)."""
        kw.setdefault('queue_sizes', (8,))
        if rate is not None:
            kw.setdefault('completion', 'deferred')
        VirtioPciModel.__init__(self, mode=mode, **kw)
        self.max_bytes = max_bytes
        self.rate = rate
        self.given = 0
        self.quota = rate[0] if rate else None
        self.period_start = time.monotonic()

    def handle(self, queue, req):
        n = req.writable_size
        if self.max_bytes is not None:
            n = min(n, self.max_bytes)
        if self.quota is not None:
            n = min(n, self.quota)
            self.quota -= n
        data = bytes(self.rng.getrandbits(8) for _ in range(n))
        req.write(data)
        self.given += n

    def notify(self, index):
        VirtioPciModel.notify(self, index)
        self.tick()

    def tick(self):
        if self.rate is None:
            VirtioPciModel.tick(self)
            return
        max_bytes, period_ms = self.rate
        now = time.monotonic()
        if (now - self.period_start) * 1000 >= period_ms:
            self.period_start = now
            self.quota = max_bytes
        q = self.queues[0]
        while q.pending and self.quota:
            self.complete(count=1)
