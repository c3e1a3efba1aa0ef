# The legacy interface (spec 4.1.4, "Legacy Interfaces: A Note on PCI
# Device Layout"): one register block in the I/O BAR0 of a transitional or
# legacy-only device. 32 feature bits only, no FEATURES_OK step, queue
# address given as a 4096-byte page number of a single-block ring.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import features, transport
from virtio.errors import VirtioError
from virtio.regs import PortWindow

# Register offsets in BAR0.
DEVICE_FEATURES = const(0x00)
DRIVER_FEATURES = const(0x04)
QUEUE_ADDRESS = const(0x08)
QUEUE_SIZE = const(0x0C)
QUEUE_SELECT = const(0x0E)
QUEUE_NOTIFY = const(0x10)
DEVICE_STATUS = const(0x12)
ISR_STATUS = const(0x13)
CONFIG_MSIX_VECTOR = const(0x14)     # only while MSI-X is enabled
QUEUE_MSIX_VECTOR = const(0x16)
CONFIG = const(0x14)                 # device config, MSI-X disabled
CONFIG_MSIX = const(0x18)            # device config, MSI-X enabled

QUEUE_ALIGN = const(4096)            # legacy "Queue Align" on PCI
QUEUE_ADDRESS_SHIFT = const(12)

REGISTER_NAMES = {
    DEVICE_FEATURES: 'device_feature', DRIVER_FEATURES: 'driver_feature',
    QUEUE_ADDRESS: 'queue_address', QUEUE_SIZE: 'queue_size',
    QUEUE_SELECT: 'queue_select', QUEUE_NOTIFY: 'queue_notify',
    DEVICE_STATUS: 'device_status', ISR_STATUS: 'isr_status',
}


def has_io_bar(fn):
    b = fn.bar(0)
    return b is not None and b.io


def ring_layout(desc, size):
    """(driver area, device area) of a legacy ring at `desc` (spec 2.7.2):
    the available ring follows the descriptors; the used ring starts on the
    next Queue Align boundary."""
    avail = desc + 16 * size
    used = (avail + 6 + 2 * size + QUEUE_ALIGN - 1) & ~(QUEUE_ALIGN - 1)
    return avail, used


def ring_bytes(size):
    avail, used = ring_layout(0, size)
    return used + 6 + 8 * size


class LegacyTransport(transport.PciTransport):
    name = 'legacy'
    legacy_interface = True
    ring_align = QUEUE_ALIGN
    fixed_queue_size = True

    def _windows(self):
        fn = self.pci
        bar = fn.bar(0)
        if bar is None or not bar.io:
            raise VirtioError('%s: legacy interface needs an I/O BAR0' % fn.address)
        if bar.base == 0:
            raise VirtioError('%s: BAR0 has no address (run virtio.pci.assign_resources)'
                              % fn.address)
        fn.enable(io=True, bus_master=True)
        # Device config moves by 4 bytes while MSI-X is enabled.
        self.config_base = CONFIG_MSIX if fn.msix_enabled() else CONFIG
        self.config_length = bar.size - self.config_base
        self._raw['regs'] = PortWindow(self.hw, bar.base)
        self._num_queues = None

    # -- status and features ----------------------------------------------
    def get_status(self):
        return self.regs.r8(DEVICE_STATUS)

    def set_status(self, v):
        self.regs.w8(DEVICE_STATUS, v)

    def device_features(self):
        return self.regs.r32(DEVICE_FEATURES)

    def set_driver_features(self, f):
        if f >> 32:
            raise VirtioError('%s: the legacy interface carries only feature bits 0-31 '
                              '(asked 0x%x)' % (self.address, f))
        self.regs.w32(DRIVER_FEATURES, f)

    def offers_version_1(self):
        return False

    # -- queues -------------------------------------------------------------------
    def num_queues(self):
        return self._count_queues()

    def queue_max_size(self, i):
        self.regs.w16(QUEUE_SELECT, i)
        return self.regs.r16(QUEUE_SIZE)

    def enable_queue(self, i, size, desc, driver, device):
        maxsize = self.queue_max_size(i)
        if size != maxsize:
            raise VirtioError('%s: legacy queue %d has fixed size %d, not %d'
                              % (self.address, i, maxsize, size))
        if desc % QUEUE_ALIGN or (driver, device) != ring_layout(desc, size):
            raise VirtioError('%s: queue %d is not in the legacy single-block layout'
                              % (self.address, i))
        pfn = desc >> QUEUE_ADDRESS_SHIFT
        if pfn >> 32:
            raise VirtioError('%s: queue %d at 0x%x is beyond the 44-bit legacy reach'
                              % (self.address, i, desc))
        self.regs.w32(QUEUE_ADDRESS, pfn)

    def disable_queue(self, i):
        self.regs.w16(QUEUE_SELECT, i)
        self.regs.w32(QUEUE_ADDRESS, 0)

    def _notify_register(self, i):
        return self.regs.w16_at(QUEUE_NOTIFY)       # every queue's, the index written

    def isr(self):
        return self.regs.r8(ISR_STATUS)

    # -- device configuration -------------------------------------------------------
    def config_generation(self):
        return 0        # legacy devices have none (spec 2.5.4)

    def config_read8(self, off):
        self._check_config(off, 1)
        return self.regs.r8(self.config_base + off)

    def config_read16(self, off):
        self._check_config(off, 2)
        return self.regs.r16(self.config_base + off)

    def config_read32(self, off):
        self._check_config(off, 4)
        return self.regs.r32(self.config_base + off)

    def config_write8(self, off, v):
        self._check_config(off, 1)
        self.regs.w8(self.config_base + off, v)

    def config_write16(self, off, v):
        self._check_config(off, 2)
        self.regs.w16(self.config_base + off, v)

    def config_write32(self, off, v):
        self._check_config(off, 4)
        self.regs.w32(self.config_base + off, v)

    # -- trace ------------------------------------------------------------------------
    def describe(self, region, off, width, value):
        if off >= self.config_base:
            return self.describe_config(off - self.config_base, width, value)
        name = REGISTER_NAMES.get(off)
        if off == CONFIG_MSIX_VECTOR and self.config_base == CONFIG_MSIX:
            name = 'config_msix_vector'
        elif off == QUEUE_MSIX_VECTOR and self.config_base == CONFIG_MSIX:
            name = 'queue_msix_vector'
        if name is None:
            return 'reg[0x%02x]' % off, ''
        if off == DEVICE_STATUS:
            return name, transport.status_names(value)
        if off in (DEVICE_FEATURES, DRIVER_FEATURES):
            return name, features.names(value, self.feature_table)
        if off == ISR_STATUS:
            return name, transport.isr_names(value)
        if off == QUEUE_ADDRESS:
            return name, 'ring at 0x%x' % (value << QUEUE_ADDRESS_SHIFT) if value else 'off'
        return name, ''


    # -- MSI-X vectors (4.1.4.8, legacy layout) ------------------------------------------
    # The two registers exist only while MSI-X is enabled, and the device
    # configuration moves from 0x14 to 0x18 meanwhile: call follow_msix() after
    # enabling or disabling MSI-X (virtio.msix.Msix.enable).
    def follow_msix(self):
        """Place the device configuration where it is now: 0x18 with MSI-X on, else 0x14."""
        self.config_base = CONFIG_MSIX if self.pci.msix_enabled() else CONFIG
        self.config_length = self.pci.bar(0).size - self.config_base

    def _msix_registers(self):
        if self.config_base != CONFIG_MSIX:
            raise VirtioError('%s: the legacy MSI-X vector registers exist only while MSI-X '
                              'is enabled (enable it, then call follow_msix())'
                              % self.pci.address)

    def set_config_msix_vector(self, v):
        """Map configuration change events to MSI-X entry v; returns what the device
        reads back (virtio.msix.NO_VECTOR: refused)."""
        self._msix_registers()
        self.regs.w16(CONFIG_MSIX_VECTOR, v)
        return self.regs.r16(CONFIG_MSIX_VECTOR)

    def config_msix_vector(self):
        self._msix_registers()
        return self.regs.r16(CONFIG_MSIX_VECTOR)

    def set_queue_msix_vector(self, i, v):
        """Map queue i's used-buffer events to MSI-X entry v; returns the read-back."""
        self._msix_registers()
        self.regs.w16(QUEUE_SELECT, i)
        self.regs.w16(QUEUE_MSIX_VECTOR, v)
        return self.regs.r16(QUEUE_MSIX_VECTOR)

    def queue_msix_vector(self, i):
        self._msix_registers()
        self.regs.w16(QUEUE_SELECT, i)
        return self.regs.r16(QUEUE_MSIX_VECTOR)
