# VirtIO over MMIO (spec 4.2): one register window per device, at a fixed
# physical address, as light VMMs (QEMU's microvm, Firecracker, Arm boards)
# lay them out. Two versions of the layout: version 2 (4.2.2), and version 1,
# the legacy interface (4.2.4: GuestPageSize, QueuePFN and QueueAlign
# instead of QueueReady and 64-bit queue addresses). Where the windows are
# is not discoverable from the windows themselves: virtio.mmio_probe finds
# them (the kernel command line, else the machine's fixed window list).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import features, transport
from virtio.errors import VirtioError
from virtio.regs import MemWindow

MAGIC_VALUE = const(0x74726976)      # 'virt', little-endian
WINDOW_SIZE = const(0x200)           # QEMU's virtio-mmio window (4.2.2: 0x100 + config)

# The control registers (4.2.2, table "MMIO Device Register Layout").
MAGIC = const(0x000)
VERSION = const(0x004)
DEVICE_ID = const(0x008)
VENDOR_ID = const(0x00C)
DEVICE_FEATURES = const(0x010)
DEVICE_FEATURES_SEL = const(0x014)
DRIVER_FEATURES = const(0x020)
DRIVER_FEATURES_SEL = const(0x024)
GUEST_PAGE_SIZE = const(0x028)       # version 1 only
QUEUE_SEL = const(0x030)
QUEUE_NUM_MAX = const(0x034)
QUEUE_NUM = const(0x038)
QUEUE_ALIGN = const(0x03C)           # version 1 only
QUEUE_PFN = const(0x040)             # version 1 only
QUEUE_READY = const(0x044)           # version 2 only
QUEUE_NOTIFY = const(0x050)
INTERRUPT_STATUS = const(0x060)
INTERRUPT_ACK = const(0x064)
STATUS = const(0x070)
QUEUE_DESC_LOW = const(0x080)        # version 2: 64-bit addresses, two halves
QUEUE_DRIVER_LOW = const(0x090)
QUEUE_DEVICE_LOW = const(0x0A0)
CONFIG_GENERATION = const(0x0FC)
CONFIG = const(0x100)

VERSION_LEGACY = const(1)
VERSION_MODERN = const(2)
PAGE_SIZE = const(4096)              # what we write to GuestPageSize
PAGE_SHIFT = const(12)

REGISTER_NAMES = {
    MAGIC: 'MagicValue', VERSION: 'Version', DEVICE_ID: 'DeviceID', VENDOR_ID: 'VendorID',
    DEVICE_FEATURES: 'DeviceFeatures', DEVICE_FEATURES_SEL: 'DeviceFeaturesSel',
    DRIVER_FEATURES: 'DriverFeatures', DRIVER_FEATURES_SEL: 'DriverFeaturesSel',
    GUEST_PAGE_SIZE: 'GuestPageSize', QUEUE_SEL: 'QueueSel', QUEUE_NUM_MAX: 'QueueNumMax',
    QUEUE_NUM: 'QueueNum', QUEUE_ALIGN: 'QueueAlign', QUEUE_PFN: 'QueuePFN',
    QUEUE_READY: 'QueueReady', QUEUE_NOTIFY: 'QueueNotify',
    INTERRUPT_STATUS: 'InterruptStatus', INTERRUPT_ACK: 'InterruptACK', STATUS: 'Status',
    QUEUE_DESC_LOW: 'QueueDescLow', QUEUE_DESC_LOW + 4: 'QueueDescHigh',
    QUEUE_DRIVER_LOW: 'QueueDriverLow', QUEUE_DRIVER_LOW + 4: 'QueueDriverHigh',
    QUEUE_DEVICE_LOW: 'QueueDeviceLow', QUEUE_DEVICE_LOW + 4: 'QueueDeviceHigh',
    CONFIG_GENERATION: 'ConfigGeneration',
}


class Window:
    """Where one virtio-mmio device is: base address, window size, and the
    interrupt line when the command line said it."""

    def __init__(self, base, size=WINDOW_SIZE, irq=None, address=None):
        self.base = base
        self.size = size
        self.irq = irq
        self.address = address or 'mmio@0x%08x' % base

    def __repr__(self):
        irq = '' if self.irq is None else ' irq %d' % self.irq
        return '<virtio-mmio window 0x%x+0x%x%s>' % (self.base, self.size, irq)


class WindowSkipped(VirtioError):
    """A window that holds no usable device (4.2.2.2: the driver MUST ignore
    it). `reason` says why; `empty` is True for an empty slot (DeviceID 0),
    which the spec says is no error at all."""

    def __init__(self, window, reason, empty=False):
        super().__init__('%s: %s' % (window.address, reason))
        self.window = window
        self.reason = reason
        self.empty = empty


def identify(hw, window):
    """(version, device ID, vendor ID) of the device in `window`, or
    WindowSkipped with the reason it is to be ignored (4.2.2.2)."""
    base = window.base
    magic = hw.read32(base + MAGIC)
    if magic != MAGIC_VALUE:
        raise WindowSkipped(window, 'bad magic value 0x%08x (want 0x%08x "virt")'
                            % (magic, MAGIC_VALUE))
    version = hw.read32(base + VERSION)
    if version not in (VERSION_LEGACY, VERSION_MODERN):
        raise WindowSkipped(window, 'unknown version %d (this driver knows 1 and 2)' % version)
    device_id = hw.read32(base + DEVICE_ID)
    if device_id == 0:
        raise WindowSkipped(window, 'empty slot (device ID 0)', empty=True)
    return version, device_id, hw.read32(base + VENDOR_ID)


class MmioTransport(transport.Transport):
    """The virtio-mmio transport for the device in a Window: version 2, or
    version 1 with the legacy interface."""

    def _open(self, window):
        if window.size <= CONFIG:
            raise VirtioError('%s: a %d-byte window has no room for the registers'
                              % (window.address, window.size))
        self.window = window
        self.address = window.address
        self.irq = window.irq
        self.version, self.device_type, self.vendor_id = identify(self.hw, window)
        if self.version == VERSION_LEGACY:
            self.name = 'mmio-v1'
            self.legacy_interface = True
            self.ring_align = PAGE_SIZE     # what enable_queue writes to QueueAlign
        else:
            self.name = 'mmio-v2'

    def _windows(self):
        # Device config follows the control registers; the window size bounds it.
        self.config_length = self.window.size - CONFIG
        self._raw['regs'] = MemWindow(self.hw, self.window.base)
        self._num_queues = None
        self._feature_select = 0

    # -- status and features (4.2.2, 4.2.3.1) --------------------------------------
    # Control registers take 32-bit accesses only (4.2.2.2).
    def get_status(self):
        return self.regs.r32(STATUS) & 0xFF

    def set_status(self, v):
        self.regs.w32(STATUS, v)

    def device_features(self):
        r = self.regs
        words = 1 if self.legacy_interface else 2
        f = 0
        for sel in range(words):
            self._feature_select = sel
            r.w32(DEVICE_FEATURES_SEL, sel)
            f |= r.r32(DEVICE_FEATURES) << (32 * sel)
        return f

    def set_driver_features(self, f):
        if self.legacy_interface and f >> 32:
            raise VirtioError('%s: the legacy interface carries only feature bits 0-31 '
                              '(asked 0x%x)' % (self.address, f))
        r = self.regs
        for sel in range(1 if self.legacy_interface else 2):
            self._feature_select = sel
            r.w32(DRIVER_FEATURES_SEL, sel)
            r.w32(DRIVER_FEATURES, (f >> (32 * sel)) & 0xFFFFFFFF)

    # -- queues (4.2.3.2) ----------------------------------------------------------------
    def num_queues(self):
        return self._count_queues()

    def queue_max_size(self, i):
        self.regs.w32(QUEUE_SEL, i)
        return self.regs.r32(QUEUE_NUM_MAX)

    def enable_queue(self, i, size, desc, driver, device):
        r = self.regs
        r.w32(QUEUE_SEL, i)
        in_use = r.r32(QUEUE_PFN if self.legacy_interface else QUEUE_READY)
        if in_use:
            raise VirtioError('%s: queue %d is already in use (%s reads 0x%x)'
                              % (self.address, i,
                                 'QueuePFN' if self.legacy_interface else 'QueueReady', in_use))
        maxsize = r.r32(QUEUE_NUM_MAX)
        if not 0 < size <= maxsize:
            raise VirtioError('%s: queue %d size %d is not in 1..%d'
                              % (self.address, i, size, maxsize))
        r.w32(QUEUE_NUM, size)
        if self.legacy_interface:
            self._legacy_queue(i, size, desc, driver, device)
            return
        for reg, addr in ((QUEUE_DESC_LOW, desc), (QUEUE_DRIVER_LOW, driver),
                          (QUEUE_DEVICE_LOW, device)):
            r.w32(reg, addr & 0xFFFFFFFF)
            r.w32(reg + 4, addr >> 32)
        r.w32(QUEUE_READY, 1)

    def _legacy_queue(self, i, size, desc, driver, device):
        # 4.2.4: one block at a page number; the used ring on the QueueAlign
        # boundary after the available ring (2.7.2's legacy layout).
        avail = desc + 16 * size
        used = (avail + 6 + 2 * size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if desc % PAGE_SIZE or (driver, device) != (avail, used):
            raise VirtioError('%s: queue %d is not in the legacy single-block layout'
                              % (self.address, i))
        pfn = desc >> PAGE_SHIFT
        if pfn == 0 or pfn >> 32:
            # QueuePFN 0 means "stop the queue" (QEMU resets the whole device).
            raise VirtioError('%s: queue %d at 0x%x has no usable page number'
                              % (self.address, i, desc))
        r = self.regs
        r.w32(GUEST_PAGE_SIZE, PAGE_SIZE)
        r.w32(QUEUE_ALIGN, PAGE_SIZE)
        r.w32(QUEUE_PFN, pfn)

    def _notify_register(self, i):
        return self.regs.w32_at(QUEUE_NOTIFY)       # every queue's, the index written (4.2.3.3)

    def isr(self):
        # 4.2.2: read what is pending, then acknowledge exactly that.
        v = self.regs.r32(INTERRUPT_STATUS)
        if v:
            self.regs.w32(INTERRUPT_ACK, v)
        return v

    # -- device configuration (4.2.2, 2.5) ---------------------------------------------
    def config_generation(self):
        if self.legacy_interface:
            return 0        # version 1 has none (2.5.4)
        return self.regs.r32(CONFIG_GENERATION)

    def config_read8(self, off):
        self._check_config(off, 1)
        return self.regs.r8(CONFIG + off)

    def config_read16(self, off):
        self._check_config(off, 2)
        return self.regs.r16(CONFIG + off)

    def config_read32(self, off):
        self._check_config(off, 4)
        return self.regs.r32(CONFIG + off)

    def config_write8(self, off, v):
        self._check_config(off, 1)
        self.regs.w8(CONFIG + off, v)

    def config_write16(self, off, v):
        self._check_config(off, 2)
        self.regs.w16(CONFIG + off, v)

    def config_write32(self, off, v):
        self._check_config(off, 4)
        self.regs.w32(CONFIG + off, v)

    # -- trace ----------------------------------------------------------------------------
    def describe(self, region, off, width, value):
        if off >= CONFIG:
            return self.describe_config(off - CONFIG, width, value)
        name = REGISTER_NAMES.get(off)
        if name is None:
            return 'reg[0x%03x]' % off, ''
        if off == STATUS:
            return name, transport.status_names(value)
        if off in (DEVICE_FEATURES, DRIVER_FEATURES):
            sel = self._feature_select
            return ('%s[%d]' % (name, sel),
                    features.names(value, self.feature_table, 32 * sel))
        if off in (INTERRUPT_STATUS, INTERRUPT_ACK):
            return name, transport.isr_names(value)
        if off == QUEUE_PFN:
            return name, 'ring at 0x%x' % (value << PAGE_SHIFT) if value else 'off'
        if off == QUEUE_NOTIFY:
            return name, 'queue %d' % value
        return name, ''
