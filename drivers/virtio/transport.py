# The transport interface every VirtIO device driver sits on (spec 4.1:
# VirtIO over PCI, in two flavours). Drivers never know which one they have:
#   name                       'legacy' or 'modern'
#   reset(timeout_ms)          write 0 to device status, wait until it reads 0
#   get_status() / set_status(v) / add_status(bits)
#   device_features() -> int   set_driver_features(int)
#   num_queues()  queue_max_size(i)  enable_queue(i, size, desc, driver, device)
#   legacy_layout              True when the rings must use the legacy layout
#   notify(i)                  available buffer notification for queue i
#   config_read8/16/32/64(off) config_write8/16/32/64(off, v) config_generation()
#   isr()                      read (and so clear) the ISR status
# This module also holds the device status bits (spec 2.1) and chooses a
# transport for a PCI function (open_transport).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import trace
from virtio.errors import VirtioError, VirtioTimeout

# Device status field (spec 2.1).
ACKNOWLEDGE = const(1)
DRIVER = const(2)
DRIVER_OK = const(4)
FEATURES_OK = const(8)
DEVICE_NEEDS_RESET = const(0x40)
FAILED = const(0x80)

STATUS_NAMES = ((ACKNOWLEDGE, 'ACKNOWLEDGE'), (DRIVER, 'DRIVER'),
                (DRIVER_OK, 'DRIVER_OK'), (FEATURES_OK, 'FEATURES_OK'),
                (DEVICE_NEEDS_RESET, 'DEVICE_NEEDS_RESET'), (FAILED, 'FAILED'))

# ISR status bits (4.1.4.5).
ISR_QUEUE = const(1)
ISR_CONFIG = const(2)

VIRTIO_VENDOR_ID = const(0x1AF4)
TRANSITIONAL_FIRST = const(0x1000)
TRANSITIONAL_LAST = const(0x103F)
MODERN_FIRST = const(0x1040)
MODERN_LAST = const(0x107F)

RESET_TIMEOUT_MS = const(1000)


def status_names(v):
    if v == 0:
        return 'RESET'
    out = [name for bit, name in STATUS_NAMES if v & bit]
    rest = v & ~0xCF
    if rest:
        out.append('0x%02x' % rest)
    return '|'.join(out)


def isr_names(v):
    out = []
    if v & ISR_QUEUE:
        out.append('QUEUE')
    if v & ISR_CONFIG:
        out.append('CONFIG')
    return '|'.join(out)


def is_virtio(fn):
    return (fn.vendor_id == VIRTIO_VENDOR_ID
            and TRANSITIONAL_FIRST <= fn.device_id <= MODERN_LAST)


def device_type(fn):
    """The VirtIO device ID (1 net, 2 blk, 3 console, 4 rng, ...) of a PCI
    function (spec 4.1.2): modern IDs are 0x1040 + type; transitional IDs
    carry the type in the subsystem ID."""
    if MODERN_FIRST <= fn.device_id <= MODERN_LAST:
        return fn.device_id - MODERN_FIRST
    return fn.subsystem_id


class Transport:
    """Shared code of both transports. Subclasses provide the register
    windows (set up in _windows()) and the register-level operations."""

    name = None
    legacy_layout = False

    def __init__(self, hw, fn):
        self.hw = hw
        self.pci = fn
        self.feature_table = None     # device-specific feature names, for trace
        self.config_length = 0
        self._raw = {}                # region name -> untraced window
        self._windows()
        for region in self._raw:
            setattr(self, region, self._raw[region])
        trace.register(self)

    def set_trace(self, on):
        for region in self._raw:
            w = self._raw[region]
            setattr(self, region, trace.Traced(w, self, region) if on else w)

    def __repr__(self):
        return '<%s transport %s>' % (self.name, self.pci.address)

    # -- device status (2.1) -------------------------------------------------
    def add_status(self, bits):
        self.set_status(self.get_status() | bits)

    def reset(self, timeout_ms=RESET_TIMEOUT_MS):
        """Reset the device (spec 2.4) and wait until status reads 0."""
        self.set_status(0)
        hw = self.hw
        start = hw.ticks_ms()
        while self.get_status() != 0:
            if hw.ticks_diff(hw.ticks_ms(), start) > timeout_ms:
                raise VirtioTimeout('%s: device status still 0x%02x %d ms after reset'
                                    % (self.pci.address, self.get_status(), timeout_ms))

    # -- device configuration (2.5) ------------------------------------------------
    def _check_config(self, off, width):
        if off < 0 or off + width > self.config_length:
            raise VirtioError('%s: device config access at 0x%x (%d bytes) is outside '
                              'the %d-byte configuration space'
                              % (self.pci.address, off, width, self.config_length))

    def config_read64(self, off):
        # 64-bit fields are two 32-bit halves, low first (4.1.3).
        return self.config_read32(off) | (self.config_read32(off + 4) << 32)

    def config_write64(self, off, v):
        self.config_write32(off, v & 0xFFFFFFFF)
        self.config_write32(off + 4, v >> 32)

    def describe_config(self, off, width, value):
        return 'config[0x%02x]' % off, ''


def open_transport(hw, fn, want=None):
    """The transport for a VirtIO PCI function. A transitional device is
    driven modern when it has the VirtIO capabilities and offers VERSION_1,
    unless want='legacy'; want='modern' insists on the modern interface."""
    from virtio import legacy, modern
    has_modern = modern.has_capabilities(fn)
    has_legacy = fn.device_id <= TRANSITIONAL_LAST and legacy.has_io_bar(fn)
    if want == 'legacy':
        if not has_legacy:
            raise VirtioError('%s: no legacy interface (device %04x:%04x has no I/O BAR0 '
                              'or is modern-only)' % (fn.address, fn.vendor_id, fn.device_id))
        return legacy.LegacyTransport(hw, fn)
    if want == 'modern':
        if not has_modern:
            raise VirtioError('%s: no modern interface (no VirtIO PCI capabilities)'
                              % fn.address)
        return modern.ModernTransport(hw, fn)
    if want is not None:
        raise VirtioError("transport must be 'legacy', 'modern' or None, not %r" % (want,))
    if has_modern:
        t = modern.ModernTransport(hw, fn)
        if not has_legacy or t.offers_version_1():
            return t
    if has_legacy:
        return legacy.LegacyTransport(hw, fn)
    raise VirtioError('%s: neither a legacy I/O BAR0 nor VirtIO capabilities' % fn.address)
