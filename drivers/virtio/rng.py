# virtio-rng, the entropy device (spec 5.4): one requestq; the driver offers
# device-writable buffers and the device fills them with random bytes.
#
#     rng = virtio.find('rng')
#     rng.read(16)                   # 16 random bytes, or VirtioTimeout
#
# The device may return fewer bytes than the buffer holds (5.4.6.2), or none
# for a while: QEMU's rate limit (virtio-rng-pci max-bytes=N,period=MS) holds
# requests back until the next period. read() gathers until it has n bytes
# and raises VirtioTimeout when timeout_ms passes with no byte, never hangs.
# The frozen `random` module seeds itself from here.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.device import VirtioDevice
from virtio.errors import VirtioTimeout

VIRTIO_ID_ENTROPY = const(4)
REQUESTQ = const(0)
BUFFER_SIZE = const(64)
DEFAULT_TIMEOUT_MS = const(1000)


class RngDevice(VirtioDevice):
    KIND = 'rng'
    DEVICE_TYPE = VIRTIO_ID_ENTROPY
    NAME = 'virtio-rng'
    SUPPORTED_FEATURES = 0      # the entropy device defines no feature bits
    FEATURE_NAMES = {}

    def setup(self):
        # One buffer, one descriptor: no indirect tables needed.
        self.requestq = self.setup_queue(REQUESTQ, indirect_max=0)
        self.buffer = self.hw.dma_alloc(BUFFER_SIZE, 16)
        self._chunk = [(self.buffer, BUFFER_SIZE)]
        self._busy = False      # our one buffer is with the device

    def read(self, n, timeout_ms=DEFAULT_TIMEOUT_MS):
        """n random bytes from the device. The device may return fewer bytes
        than asked per request: ask again until n are gathered or timeout_ms
        passes without any (VirtioTimeout)."""
        if n < 0:
            raise ValueError('read: negative size %d' % n)
        out = bytearray()
        hw = self.hw
        vq = self.requestq
        start = hw.ticks_ms()
        while len(out) < n:
            if not self._busy:
                vq.add((), self._chunk, self.buffer)
                self._busy = True
                vq.kick()
            try:
                _token, got = vq.wait(timeout_ms)
            except VirtioTimeout:
                # The buffer stays with the device: the next read waits for it.
                raise VirtioTimeout('%s %s: no entropy within %d ms (%d of %d bytes)'
                                    % (self.address, self.NAME, timeout_ms, len(out), n))
            self._busy = False
            take = min(got, n - len(out))
            if take:
                out.extend(hw.read(self.buffer, take))
                start = hw.ticks_ms()
            elif hw.ticks_diff(hw.ticks_ms(), start) >= timeout_ms:
                raise VirtioTimeout('%s %s: device returned no entropy for %d ms'
                                    % (self.address, self.NAME, timeout_ms))
        return bytes(out)


DRIVER = RngDevice
