"""virtio-mmio register windows (spec 4.2), version 1 (legacy, 4.2.4) and
version 2 (4.2.2), in front of the device logic of the PCI models: a
VirtioPciModel subclass (RngModel, BlkModel, ...) keeps its queues, status,
features, configuration, completion modes and misbehaviours; the window only
translates registers, as QEMU's virtio-mmio proxy does for its VirtIODevice.

    rng = MmioModel(RngModel(mode='modern'), version=2)
    m = Machine(host_bridge=False, mmio=[rng])      # at 0xfeb00000 + 512 * n

Window-level misbehaviours are constructor values: magic= (a bad magic value),
version= (an unknown one), device=None (an empty slot, device ID 0).
Errors a driver makes (a non-32-bit control access, a write to a read-only
register, the wrong version's registers) go to the device's `errors`.
"""

from tests.host.models.rings import SplitRing
from tests.host.models.virtio import F_BAD_FEATURE, LEGACY_ONLY_BITS

MAGIC_VALUE = 0x74726976
QEMU_VENDOR = 0x554D4551           # 'QEMU', what QEMU's windows report
WINDOW_SIZE = 0x200
MICROVM_BASE = 0xFEB00000
CONFIG = 0x100

REGS = {
    0x000: 'magic', 0x004: 'version', 0x008: 'device_id', 0x00C: 'vendor_id',
    0x010: 'device_features', 0x014: 'device_features_sel',
    0x020: 'driver_features', 0x024: 'driver_features_sel',
    0x028: 'guest_page_size', 0x030: 'queue_sel', 0x034: 'queue_num_max',
    0x038: 'queue_num', 0x03C: 'queue_align', 0x040: 'queue_pfn', 0x044: 'queue_ready',
    0x050: 'queue_notify', 0x060: 'interrupt_status', 0x064: 'interrupt_ack',
    0x070: 'status',
    0x080: 'queue_desc_lo', 0x084: 'queue_desc_hi',
    0x090: 'queue_driver_lo', 0x094: 'queue_driver_hi',
    0x0A0: 'queue_device_lo', 0x0A4: 'queue_device_hi',
    0x0FC: 'config_generation',
}
V1_ONLY = ('guest_page_size', 'queue_align', 'queue_pfn')
V2_ONLY = ('queue_ready', 'queue_desc_lo', 'queue_desc_hi', 'queue_driver_lo',
           'queue_driver_hi', 'queue_device_lo', 'queue_device_hi', 'config_generation')
READ_ONLY = ('magic', 'version', 'device_id', 'vendor_id', 'device_features',
             'queue_num_max', 'interrupt_status', 'config_generation')
WRITE_ONLY = ('device_features_sel', 'driver_features', 'driver_features_sel',
              'guest_page_size', 'queue_sel', 'queue_num', 'queue_align',
              'queue_notify', 'interrupt_ack')


class _NoDevice:
    """What an empty window fronts: nothing (QEMU's unplugged transport)."""

    def __init__(self):
        self.errors = []
        self.queues = []
        self.machine = None

    def tick(self):
        pass


class MmioModel:
    """One virtio-mmio window. `device` is a VirtioPciModel (its PCI side is
    never seen); version 1 or 2; base is set when the Machine places it."""

    def __init__(self, device, version=2, magic=MAGIC_VALUE, vendor_id=QEMU_VENDOR,
                 size=WINDOW_SIZE):
        self.device = device if device is not None else _NoDevice()
        self.version = version
        self.magic = magic
        self.vendor_id = vendor_id
        self.size = size
        self.base = None
        self.guest_page_size = 0
        self.aligns = {}               # queue index -> QueueAlign written (version 1)
        self.interrupt_acks = []
        if device is not None:
            # No command register on MMIO: the device may always master the bus.
            device.bus_master = lambda: True
            if version == 1 and device.features >> 32:
                device.features &= 0xFFFFFFFF      # a legacy window has 32 bits

    @property
    def device_id(self):
        return getattr(self.device, 'device_type', 0)

    @property
    def errors(self):
        return self.device.errors

    def tick(self):
        self.device.tick()

    # -- dispatch ---------------------------------------------------------------------
    def _reg(self, off, size, writing):
        name = REGS.get(off)
        what = 'write' if writing else 'read'
        if name is None:
            self.errors.append('mmio %s at unknown offset 0x%x' % (what, off))
            return None
        if size != 4:
            # 4.2.2.2: control registers take 32-bit accesses only.
            self.errors.append('mmio %s of %s with width %d' % (what, name, size))
            return None
        if (self.version == 1 and name in V2_ONLY) or (self.version == 2 and name in V1_ONLY):
            self.errors.append('mmio %s of %s on a version %d window' % (what, name, self.version))
            return None
        if writing and name in READ_ONLY:
            self.errors.append('driver wrote read-only %s' % name)
            return None
        if not writing and name in WRITE_ONLY:
            self.errors.append('driver read write-only %s' % name)
            return None
        return name

    def read(self, off, size):
        if off >= CONFIG:
            return self.device.device_config_read(off - CONFIG, size)
        name = self._reg(off, size, False)
        if name is None:
            return 0
        if name in ('magic', 'version', 'device_id', 'vendor_id'):
            return getattr(self, name)
        d = self.device
        q = d._selected()
        if name == 'device_features':
            sel = d.device_feature_select
            if self.version == 1:
                return (d.features & 0xFFFFFFFF) | LEGACY_ONLY_BITS if sel == 0 else 0
            return (d.features >> (32 * sel)) & 0xFFFFFFFF if sel < 2 else 0
        if name == 'status':
            return d.read_status()
        if name == 'interrupt_status':
            return d.isr            # reading does not clear it: InterruptACK does
        if name == 'config_generation':
            return d.config_generation
        if name == 'queue_num_max':
            return q.max_size if q else 0
        if name == 'queue_pfn':
            return q.pfn if q else 0
        if name == 'queue_ready':
            return 1 if q and q.enabled else 0
        field, half = name[:-3], name[-2:]
        v = getattr(q, field[6:]) if q else 0
        return (v & 0xFFFFFFFF) if half == 'lo' else (v >> 32)

    def write(self, off, size, value):
        d = self.device
        if off >= CONFIG:
            d.device_config_write(off - CONFIG, size, value)
            return
        name = self._reg(off, size, True)
        if name is None:
            return
        q = d._selected()
        if name == 'device_features_sel':
            d.device_feature_select = value
        elif name == 'driver_features_sel':
            d.driver_feature_select = value
        elif name == 'driver_features':
            self._driver_features(value)
        elif name == 'guest_page_size':
            self.guest_page_size = value
        elif name == 'queue_sel':
            d.queue_select = value
        elif name == 'status':
            d.write_status(value)
        elif name == 'interrupt_ack':
            self.interrupt_acks.append(value)
            d.isr &= ~value
        elif name == 'queue_notify':
            if value < len(d.queues):
                d.notify(value)
            else:
                self.errors.append('notify of queue %d out of range' % value)
        elif q is None:
            self.errors.append('%s written with QueueSel %d out of range'
                               % (name, d.queue_select))
        else:
            self._queue_write(d, q, name, value)

    def _driver_features(self, value):
        d = self.device
        sel = d.driver_feature_select
        d.feature_writes.append((sel, value))
        if self.version == 1:
            if sel:
                return
            if value & F_BAD_FEATURE:
                self.errors.append('driver acknowledged BAD_FEATURE')
            if value & ~((d.features & 0xFFFFFFFF) | LEGACY_ONLY_BITS):
                self.errors.append('driver accepted unoffered features 0x%x' % value)
            d.driver_features = value
        elif sel < 2:
            d.driver_features &= ~(0xFFFFFFFF << (32 * sel))
            d.driver_features |= value << (32 * sel)

    def _queue_write(self, d, q, name, value):
        if name == 'queue_num':
            packed = self.version == 2 and d.negotiated(1 << 34)
            if value == 0 or value > q.max_size or (not packed and value & (value - 1)):
                self.errors.append('queue %d: invalid QueueNum %d' % (q.index, value))
            else:
                q.size = value
        elif name == 'queue_align':
            self.aligns[q.index] = value
        elif name == 'queue_pfn':
            if value == 0:
                d.write_status(0)     # as QEMU: QueuePFN 0 resets the device
            else:
                self._legacy_queue(d, q, value)
        elif name == 'queue_ready':
            if value == 1:
                d._enable_queue(q)
            elif value == 0:
                q.enabled = False
                q.ring = None
            else:
                self.errors.append('QueueReady written with %d' % value)
        else:
            field, half = name[:-3], name[-2:]
            attr = field[6:]
            v = getattr(q, attr)
            if half == 'lo':
                v = (v & ~0xFFFFFFFF) | value
            else:
                v = (v & 0xFFFFFFFF) | (value << 32)
            setattr(q, attr, v)

    def _legacy_queue(self, d, q, pfn):
        # 4.2.4: the ring is one block at pfn * GuestPageSize, the used ring
        # on the next QueueAlign boundary after the available ring (2.7.2).
        page, align = self.guest_page_size, self.aligns.get(q.index, 0)
        if not page or page & (page - 1):
            self.errors.append('queue %d: QueuePFN written with GuestPageSize %d'
                               % (q.index, page))
            return
        if not align or align & (align - 1):
            self.errors.append('queue %d: QueuePFN written with QueueAlign %d'
                               % (q.index, align))
            return
        q.pfn = pfn
        q.desc = pfn * page
        q.driver = q.desc + 16 * q.size
        q.device = (q.driver + 6 + 2 * q.size + align - 1) & ~(align - 1)
        q.ring = SplitRing(d.dma, q.size, q.desc, q.driver, q.device,
                           bool(d.driver_features & (1 << 29)),
                           bool(d.driver_features & (1 << 28)))
        q.enabled = True



# Test parametrization: the PCI modes plus the two window versions.
MMIO_MODES = {'mmio-v1': ('legacy', 1), 'mmio-v2': ('modern', 2)}


def place(model_cls, mode=None, machine=None, **kw):
    """(machine, model): `model_cls(mode=mode, **kw)` on a PCI bus, or, for mode
    'mmio-v1' / 'mmio-v2', built with the interface that version implies and put
    behind a virtio-mmio window of a machine without PCI chipset. `machine` is the
    Machine class (default Machine)."""
    if machine is None:
        from tests.host.models.machine import Machine as machine
    if mode in MMIO_MODES:
        pci_mode, version = MMIO_MODES[mode]
        model = model_cls(mode=pci_mode, **kw)
        return machine([], host_bridge=False, mmio=[MmioModel(model, version)]), model
    if mode is not None:
        kw['mode'] = mode
    model = model_cls(**kw)
    return machine([model]), model
