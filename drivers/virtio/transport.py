# The transport interface every VirtIO device driver sits on (spec 4), declared
# as the Transport base class below; the device status bits (2.1) and ISR
# bits; and, for PCI (4.1), how a function is recognised and which of its two
# interfaces drives it (open_transport).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import trace
from virtio import wait
from virtio.errors import VirtioError

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
MAX_QUEUES = const(1024)             # bound on counting queues by their size


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
    """The transport interface (spec 4: "Virtio Transport Options"): how a
    driver reaches one device's status, features, queues, notifications and
    configuration. Drivers and VirtioDevice use only what is declared here,
    and ask capabilities (legacy_interface, ring_align), never which
    transport they have. PCI (4.1) has two implementations, virtio.legacy
    and virtio.modern; MMIO (4.2) is virtio.mmio. A new transport is
    one module with a subclass that passes tests/host/test_transport_contract.py.

    A subclass sets, in _windows() (called by __init__):
      address          where the device is, for messages ('00:04.0')
      device_type      the VirtIO device ID (spec 5: 1 net, 2 blk, ...)
      config_length    bytes of device-specific configuration
      and its register windows in self._raw (region name -> window), which
      trace can wrap."""

    name = None                 # 'legacy', 'modern', ...: for people, never tested by drivers
    # The legacy interface is in use (spec 2.2 and 3.1.2's legacy notes):
    # 32 feature bits, no FEATURES_OK step, no VERSION_1, no packed rings.
    legacy_interface = False
    # 0: the three ring areas are placed independently (2.7); else the
    # split ring must be one block with the used ring on this boundary
    # (2.7.2, "Legacy Interfaces: A Note on Virtqueue Layout").
    ring_align = 0
    # The device sets each queue's size; the driver cannot choose a smaller one.
    fixed_queue_size = False

    def __init__(self, hw, location=None):
        self.hw = hw
        self.feature_table = None     # device-specific feature names, for trace
        self.config_length = 0
        self._num_queues = None       # counted once where no register says it
        self._raw = {}                # region name -> untraced window
        self._notifiers = {}          # queue index -> its notifier (see notifier())
        self._open(location)
        self._windows()
        for region in self._raw:
            setattr(self, region, self._raw[region])
        trace.register(self)

    def _open(self, location):
        """Remember where the device is (sets address, device_type)."""
        raise NotImplementedError

    def _windows(self):
        """Map the register windows into self._raw and enable access."""
        raise NotImplementedError

    def set_trace(self, on):
        for region in self._raw:
            w = self._raw[region]
            setattr(self, region, trace.Traced(w, self, region) if on else w)
        for i in self._notifiers:
            self.notifier(i)          # re-aimed at the windows now in place

    def __repr__(self):
        return '<%s transport %s>' % (self.name, self.address)

    # -- device status (2.1) -------------------------------------------------
    def get_status(self):
        """The device status byte (2.1)."""
        raise NotImplementedError

    def set_status(self, v):
        """Write the device status byte; 0 starts a reset (2.4)."""
        raise NotImplementedError

    def add_status(self, bits):
        self.set_status(self.get_status() | bits)

    def reset(self, timeout_ms=RESET_TIMEOUT_MS):
        """Reset the device (spec 2.4): write 0, then wait until status
        reads 0 (4.1.4.3.2 / 4.2.2.1: the device may take time)."""
        self.set_status(0)
        wait.until(self.hw, self._reset_done, timeout_ms, None, self._reset_late)

    def _reset_done(self):
        return self.get_status() == 0

    def _reset_late(self, timeout_ms):
        return ('%s: device status still 0x%02x %d ms after reset'
                % (self.address, self.get_status(), timeout_ms))

    # -- feature bits (2.2) ---------------------------------------------------------
    def device_features(self):
        """Every feature bit the device offers, as one int."""
        raise NotImplementedError

    def set_driver_features(self, f):
        """Write the features the driver accepts (an int)."""
        raise NotImplementedError

    # -- virtqueues ----------------------------------------------------------------
    def num_queues(self):
        """How many virtqueues the device has."""
        raise NotImplementedError

    def queue_max_size(self, i):
        """Queue i's maximum size; 0 when the queue does not exist."""
        raise NotImplementedError

    def _count_queues(self):
        # For transports where no register says it (legacy PCI, MMIO): the
        # queues are those whose maximum size reads non-zero, counted once.
        if self._num_queues is None:
            n = 0
            while n < MAX_QUEUES and self.queue_max_size(n):
                n += 1
            self._num_queues = n
        return self._num_queues

    def enable_queue(self, i, size, desc, driver, device):
        """Tell the device where queue i's descriptor area, driver area and
        device area are (physical addresses), its size, and enable it."""
        raise NotImplementedError

    def notifier(self, i):
        """Queue i's available buffer notification (2.7.10 / 2.8.10) as the
        list [write, where, value]: write(where, value) sends it. A queue
        keeps the list and uses it on every kick without asking again; the
        transport keeps it too, and re-aims it in place when the register
        trace is switched or the queue is enabled again."""
        n = self._notifiers.get(i)
        if n is None:
            n = self._notifiers[i] = [None, 0, i]
        n[0], n[1] = self._notify_register(i)
        return n

    def _notify_register(self, i):
        """The register write that notifies queue i, as (write, where) of
        the window it is in (regs: w16_at/w32_at); the value written is the
        queue index (4.1.5.2, 4.2.3.3: no VIRTIO_F_NOTIFICATION_DATA)."""
        raise NotImplementedError

    def notify(self, i):
        """Available buffer notification for queue i (2.7.10 / 2.8.10)."""
        write, where, value = self.notifier(i)
        write(where, value)

    def isr(self):
        """Read (and so acknowledge) the interrupt status: ISR_QUEUE and
        ISR_CONFIG bits."""
        raise NotImplementedError

    # -- device configuration (2.5) ------------------------------------------------
    def config_generation(self):
        """A value that changes whenever the configuration changes (2.5.1);
        constant on a transport that has none."""
        raise NotImplementedError

    def config_read8(self, off):
        raise NotImplementedError

    def config_read16(self, off):
        raise NotImplementedError

    def config_read32(self, off):
        raise NotImplementedError

    def config_write8(self, off, v):
        raise NotImplementedError

    def config_write16(self, off, v):
        raise NotImplementedError

    def config_write32(self, off, v):
        raise NotImplementedError

    def config_read64(self, off):
        # 64-bit fields are two 32-bit halves, low first (4.1.3, 4.2.2).
        return self.config_read32(off) | (self.config_read32(off + 4) << 32)

    def config_write64(self, off, v):
        self.config_write32(off, v & 0xFFFFFFFF)
        self.config_write32(off + 4, v >> 32)

    def _check_config(self, off, width):
        if off < 0 or off + width > self.config_length:
            raise VirtioError('%s: device config access at 0x%x (%d bytes) is outside '
                              'the %d-byte configuration space'
                              % (self.address, off, width, self.config_length))

    # -- trace ------------------------------------------------------------------------
    def describe(self, region, off, width, value):
        """(register name, decoded value) of an access, for trace."""
        raise NotImplementedError

    def describe_config(self, off, width, value):
        return 'config[0x%02x]' % off, ''


class PciTransport(Transport):
    """What both PCI transports (4.1) share: the PCI function they drive."""

    def _open(self, fn):
        self.pci = fn
        self.address = fn.address
        self.device_type = device_type(fn)

    def offers_version_1(self):
        """Whether a transitional device offers VERSION_1 (so is driven
        through the modern interface by default)."""
        raise NotImplementedError


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
