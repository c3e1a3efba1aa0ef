# The modern interface (spec 4.1.4, "Virtio Structure PCI Capabilities"):
# vendor capabilities locate the common configuration, notification, ISR and
# device configuration structures inside BARs. 64-bit features through
# select registers, per-queue sizes and 64-bit ring addresses, per-queue
# notification addresses.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import features, pci, transport
from virtio.errors import VirtioError
from virtio.regs import CfgWindow, MemWindow, PortWindow

# cfg_type values of struct virtio_pci_cap (4.1.4).
VIRTIO_PCI_CAP_COMMON_CFG = const(1)
VIRTIO_PCI_CAP_NOTIFY_CFG = const(2)
VIRTIO_PCI_CAP_ISR_CFG = const(3)
VIRTIO_PCI_CAP_DEVICE_CFG = const(4)
VIRTIO_PCI_CAP_PCI_CFG = const(5)
# Fields of struct virtio_pci_cap, relative to the capability.
CAP_CFG_TYPE = const(3)
CAP_BAR = const(4)
CAP_OFFSET = const(8)
CAP_LENGTH = const(12)
CAP_NOTIFY_OFF_MULTIPLIER = const(16)
MAX_BAR = const(5)
MAX_REGION = const(4096)       # drivers may map only the first 4 KiB (4.1.4)

# struct virtio_pci_common_cfg (4.1.4.3).
DEVICE_FEATURE_SELECT = const(0x00)
DEVICE_FEATURE = const(0x04)
DRIVER_FEATURE_SELECT = const(0x08)
DRIVER_FEATURE = const(0x0C)
CONFIG_MSIX_VECTOR = const(0x10)
NUM_QUEUES = const(0x12)
DEVICE_STATUS = const(0x14)
CONFIG_GENERATION = const(0x15)
QUEUE_SELECT = const(0x16)
QUEUE_SIZE = const(0x18)
QUEUE_MSIX_VECTOR = const(0x1A)
QUEUE_ENABLE = const(0x1C)
QUEUE_NOTIFY_OFF = const(0x1E)
QUEUE_DESC = const(0x20)
QUEUE_DRIVER = const(0x28)
QUEUE_DEVICE = const(0x30)
COMMON_CFG_MIN = const(0x38)

COMMON_NAMES = {
    DEVICE_FEATURE_SELECT: 'device_feature_select', DEVICE_FEATURE: 'device_feature',
    DRIVER_FEATURE_SELECT: 'driver_feature_select', DRIVER_FEATURE: 'driver_feature',
    CONFIG_MSIX_VECTOR: 'config_msix_vector', NUM_QUEUES: 'num_queues',
    DEVICE_STATUS: 'device_status', CONFIG_GENERATION: 'config_generation',
    QUEUE_SELECT: 'queue_select', QUEUE_SIZE: 'queue_size',
    QUEUE_MSIX_VECTOR: 'queue_msix_vector', QUEUE_ENABLE: 'queue_enable',
    QUEUE_NOTIFY_OFF: 'queue_notify_off',
    QUEUE_DESC: 'queue_desc.lo', QUEUE_DESC + 4: 'queue_desc.hi',
    QUEUE_DRIVER: 'queue_driver.lo', QUEUE_DRIVER + 4: 'queue_driver.hi',
    QUEUE_DEVICE: 'queue_device.lo', QUEUE_DEVICE + 4: 'queue_device.hi',
}


def virtio_caps(fn):
    """{cfg_type: (cap offset, bar, offset, length)} of the first usable
    VirtIO structure capability of each type (4.1.4: use the first one;
    ignore reserved BAR numbers)."""
    found = {}
    for cid, off in fn.capabilities:
        if cid != pci.CAP_ID_VENDOR:
            continue
        cfg_type = fn.read8(off + CAP_CFG_TYPE)
        bar = fn.read8(off + CAP_BAR)
        if cfg_type in found or bar > MAX_BAR:
            continue
        found[cfg_type] = (off, bar, fn.read32(off + CAP_OFFSET), fn.read32(off + CAP_LENGTH))
    return found


def has_capabilities(fn):
    caps = virtio_caps(fn)
    return (VIRTIO_PCI_CAP_COMMON_CFG in caps and VIRTIO_PCI_CAP_NOTIFY_CFG in caps
            and VIRTIO_PCI_CAP_ISR_CFG in caps)


class ModernTransport(transport.PciTransport):
    name = 'modern'

    def _windows(self):
        fn = self.pci
        caps = virtio_caps(fn)
        self._caps = caps
        for need in (VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG,
                     VIRTIO_PCI_CAP_ISR_CFG):
            if need not in caps:
                raise VirtioError('%s: VirtIO capability cfg_type %d missing'
                                  % (fn.address, need))
        io = mem = False
        for cfg_type in caps:
            if cfg_type == VIRTIO_PCI_CAP_PCI_CFG or cfg_type > VIRTIO_PCI_CAP_PCI_CFG:
                continue
            b = fn.bar(caps[cfg_type][1])
            if b is not None:
                if b.io:
                    io = True
                else:
                    mem = True
        fn.enable(io=io, memory=mem, bus_master=True)
        self._raw['common_cfg'] = self._window(VIRTIO_PCI_CAP_COMMON_CFG, COMMON_CFG_MIN)
        self._raw['isr_cfg'] = self._window(VIRTIO_PCI_CAP_ISR_CFG, 1)
        self._raw['notify_cfg'] = self._window(VIRTIO_PCI_CAP_NOTIFY_CFG, 2)
        self.notify_length = min(caps[VIRTIO_PCI_CAP_NOTIFY_CFG][3], MAX_REGION)
        self.notify_off_multiplier = fn.read32(caps[VIRTIO_PCI_CAP_NOTIFY_CFG][0]
                                               + CAP_NOTIFY_OFF_MULTIPLIER)
        if VIRTIO_PCI_CAP_DEVICE_CFG in caps:
            self._raw['device_cfg'] = self._window(VIRTIO_PCI_CAP_DEVICE_CFG, 0)
            self.config_length = min(caps[VIRTIO_PCI_CAP_DEVICE_CFG][3], MAX_REGION)
        self._notify_offsets = {}
        self._feature_select = 0

    def _window(self, cfg_type, minimum):
        fn = self.pci
        cap, index, offset, length = self._caps[cfg_type]
        what = '%s: VirtIO structure %d in BAR%d' % (fn.address, cfg_type, index)
        if length < minimum:
            raise VirtioError('%s is %d bytes, needs %d' % (what, length, minimum))
        bar = fn.bar(index)
        if bar is None:
            raise VirtioError('%s: the BAR is not implemented' % what)
        if bar.io:
            if bar.base == 0:
                raise VirtioError('%s: the BAR has no address' % what)
            return PortWindow(self.hw, bar.base + offset)
        if offset + min(length, MAX_REGION) > bar.size:
            raise VirtioError('%s: offset 0x%x + 0x%x runs past the BAR (0x%x bytes)'
                              % (what, offset, length, bar.size))
        if bar.base == 0:
            raise VirtioError('%s: the BAR has no address (run virtio.pci.assign_resources)'
                              % what)
        if bar.base + offset + min(length, MAX_REGION) > pci.FOUR_GIB:
            # A 32-bit CPU cannot address it: go through configuration space.
            if VIRTIO_PCI_CAP_PCI_CFG not in self._caps:
                raise VirtioError('%s at 0x%x is above 4 GiB and the device has no '
                                  'PCI configuration access capability'
                                  % (what, bar.base))
            return CfgWindow(fn, self._caps[VIRTIO_PCI_CAP_PCI_CFG][0], index, offset)
        return MemWindow(self.hw, bar.base + offset)

    # -- status and features (4.1.4.3) -----------------------------------------
    def get_status(self):
        return self.common_cfg.r8(DEVICE_STATUS)

    def set_status(self, v):
        self.common_cfg.w8(DEVICE_STATUS, v)

    def device_features(self):
        c = self.common_cfg
        self._feature_select = 0
        c.w32(DEVICE_FEATURE_SELECT, 0)
        lo = c.r32(DEVICE_FEATURE)
        self._feature_select = 1
        c.w32(DEVICE_FEATURE_SELECT, 1)
        hi = c.r32(DEVICE_FEATURE)
        return lo | (hi << 32)

    def set_driver_features(self, f):
        c = self.common_cfg
        self._feature_select = 0
        c.w32(DRIVER_FEATURE_SELECT, 0)
        c.w32(DRIVER_FEATURE, f & 0xFFFFFFFF)
        self._feature_select = 1
        c.w32(DRIVER_FEATURE_SELECT, 1)
        c.w32(DRIVER_FEATURE, (f >> 32) & 0xFFFFFFFF)

    def offers_version_1(self):
        self._feature_select = 1
        self.common_cfg.w32(DEVICE_FEATURE_SELECT, 1)
        return bool(self.common_cfg.r32(DEVICE_FEATURE) & 1)   # bit 32

    # -- queues -------------------------------------------------------------------
    def num_queues(self):
        return self.common_cfg.r16(NUM_QUEUES)

    def queue_max_size(self, i):
        self.common_cfg.w16(QUEUE_SELECT, i)
        return self.common_cfg.r16(QUEUE_SIZE)

    def enable_queue(self, i, size, desc, driver, device):
        c = self.common_cfg
        c.w16(QUEUE_SELECT, i)
        if c.r16(QUEUE_SIZE) != size:
            c.w16(QUEUE_SIZE, size)
        for reg, addr in ((QUEUE_DESC, desc), (QUEUE_DRIVER, driver), (QUEUE_DEVICE, device)):
            c.w32(reg, addr & 0xFFFFFFFF)
            c.w32(reg + 4, addr >> 32)
        off = c.r16(QUEUE_NOTIFY_OFF) * self.notify_off_multiplier
        if off + 2 > self.notify_length:
            raise VirtioError('%s: queue %d notify offset 0x%x is outside the %d-byte '
                              'notification structure'
                              % (self.address, i, off, self.notify_length))
        self._notify_offsets[i] = off
        c.w16(QUEUE_ENABLE, 1)

    def _notify_register(self, i):
        # Available buffer notification (4.1.5.2): the queue index, 16 bits,
        # at the queue's own address (learned when the queue was enabled).
        if i not in self._notify_offsets:
            raise VirtioError('%s: queue %d has no notification address before it is enabled'
                              % (self.address, i))
        return self.notify_cfg.w16_at(self._notify_offsets[i])

    def isr(self):
        return self.isr_cfg.r8(0)

    # -- device configuration (4.1.4.6) ----------------------------------------------
    def config_generation(self):
        return self.common_cfg.r8(CONFIG_GENERATION)

    def config_read8(self, off):
        self._check_config(off, 1)
        return self.device_cfg.r8(off)

    def config_read16(self, off):
        self._check_config(off, 2)
        return self.device_cfg.r16(off)

    def config_read32(self, off):
        self._check_config(off, 4)
        return self.device_cfg.r32(off)

    def config_write8(self, off, v):
        self._check_config(off, 1)
        self.device_cfg.w8(off, v)

    def config_write16(self, off, v):
        self._check_config(off, 2)
        self.device_cfg.w16(off, v)

    def config_write32(self, off, v):
        self._check_config(off, 4)
        self.device_cfg.w32(off, v)

    # -- trace ---------------------------------------------------------------------------
    def describe(self, region, off, width, value):
        if region == 'device_cfg':
            return self.describe_config(off, width, value)
        if region == 'isr_cfg':
            return 'isr_status', transport.isr_names(value)
        if region == 'notify_cfg':
            return 'queue_notify[+0x%x]' % off, 'queue %d' % value
        name = COMMON_NAMES.get(off, 'common[0x%02x]' % off)
        if off == DEVICE_STATUS:
            return name, transport.status_names(value)
        if off in (DEVICE_FEATURE, DRIVER_FEATURE):
            sel = self._feature_select
            return ('%s[%d]' % (name, sel),
                    features.names(value, self.feature_table, 32 * sel))
        return name, ''

    # -- MSI-X vectors (4.1.4.3: config_msix_vector, queue_msix_vector) ------------------
    def follow_msix(self):
        """Nothing moves on the modern interface when MSI-X is switched (4.1.4.8 is
        legacy only); here so both transports answer it."""

    def set_config_msix_vector(self, v):
        """Map configuration change events to MSI-X entry v; returns what the device
        reads back (virtio.msix.NO_VECTOR: refused)."""
        self.common_cfg.w16(CONFIG_MSIX_VECTOR, v)
        return self.common_cfg.r16(CONFIG_MSIX_VECTOR)

    def config_msix_vector(self):
        return self.common_cfg.r16(CONFIG_MSIX_VECTOR)

    def set_queue_msix_vector(self, i, v):
        """Map queue i's used-buffer events to MSI-X entry v; returns the read-back."""
        c = self.common_cfg
        c.w16(QUEUE_SELECT, i)
        c.w16(QUEUE_MSIX_VECTOR, v)
        return c.r16(QUEUE_MSIX_VECTOR)

    def queue_msix_vector(self, i):
        c = self.common_cfg
        c.w16(QUEUE_SELECT, i)
        return c.r16(QUEUE_MSIX_VECTOR)
