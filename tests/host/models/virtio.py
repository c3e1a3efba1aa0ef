"""VirtIO PCI function models: legacy, transitional and modern, laid out as
QEMU 7.2 lays them out (see /work/shared/qemu-virtio-facts.md), with a
generic device behaviour that subclasses (rng.py, blk.py) specialise.

Spec references: 4.1 (VirtIO over PCI: capabilities, common configuration,
notifications, ISR, PCI configuration access, the legacy register block),
2.1 (device status), 2.2 (features), 2.7 / 2.8 (rings, see rings.py).

Misbehaviours, one knob each (`misbehave=` or set `.misbehave` later):
  'bad_used_id'        used id out of the descriptor table
  'used_id_not_head'   used id names the second descriptor of the chain
  'oversized_len'      used length 512 bytes beyond the writable buffers
  'double_used'        every completion is reported twice
  'never_complete'     buffers are taken but never returned
  'used_idx_jump'      used idx advances by queue size + 2 per completion
  'refuse_features_ok' FEATURES_OK never sticks
  'needs_reset'        a notification sets DEVICE_NEEDS_RESET, nothing runs
  'garbage_config'     device config reads as all ones
  'stuck_reset'        device_status never reads 0 after a reset
  'irq_storm'          every MSI-X message is sent IRQ_STORM times; INTx stays
                       asserted after the ISR read
  'empty_irq'          a notification raises a queue interrupt before anything is
                       in the used ring
  'no_irq'             no interrupt at all (the driver's deadline must end its wait)
  'refuse_msix'        config_msix_vector / queue_msix_vector read back NO_VECTOR

Interrupts (4.1.4.5, 4.1.4.8): with MSI-X enabled an event sends the message of the
table entry its vector register names (none for NO_VECTOR; a masked entry sets its
pending bit and is sent when unmasked); otherwise INTx is asserted (unless the command
register's INTx disable bit is set) until the ISR status is read. Used-buffer events
follow the ring's notification suppression (rings.py: push() says whether to notify).
"""

import random
import struct

from tests.host.models.interrupts import IRQ_STORM, Interrupting, MsixTable  # noqa: F401
from tests.host.models.pci import PciDevice, RamBacked
from tests.host.models.rings import Dma, PackedRing, RingError, SplitRing

VENDOR = 0x1AF4
# Status bits (spec 2.1).
ACKNOWLEDGE = 1
DRIVER = 2
DRIVER_OK = 4
FEATURES_OK = 8
DEVICE_NEEDS_RESET = 0x40
FAILED = 0x80
# Shared feature bits (spec 6).
F_NOTIFY_ON_EMPTY = 1 << 24
F_ANY_LAYOUT = 1 << 27
F_INDIRECT_DESC = 1 << 28
F_EVENT_IDX = 1 << 29
F_BAD_FEATURE = 1 << 30
F_VERSION_1 = 1 << 32
F_RING_PACKED = 1 << 34
F_RING_RESET = 1 << 40
LEGACY_ONLY_BITS = F_NOTIFY_ON_EMPTY | F_ANY_LAYOUT | F_BAD_FEATURE

TRANSITIONAL_ID = {1: 0x1000, 2: 0x1001, 5: 0x1002, 3: 0x1003, 8: 0x1004, 4: 0x1005, 9: 0x1009}
CLASS_CODE = {1: 0x020000, 2: 0x010000, 3: 0x078000, 4: 0x00FF00}

# Capability types (4.1.4).
VIRTIO_PCI_CAP_COMMON_CFG = 1
VIRTIO_PCI_CAP_NOTIFY_CFG = 2
VIRTIO_PCI_CAP_ISR_CFG = 3
VIRTIO_PCI_CAP_DEVICE_CFG = 4
VIRTIO_PCI_CAP_PCI_CFG = 5

# Regions of the modern BAR, as QEMU places them.
COMMON_OFF, ISR_OFF, DEVICE_OFF, NOTIFY_OFF = 0x0000, 0x1000, 0x2000, 0x3000
REGION_SIZE = 0x1000

# Common configuration layout (4.1.4.3): offset -> (width, name).
COMMON_REGS = {
    0x00: (4, 'device_feature_select'), 0x04: (4, 'device_feature'),
    0x08: (4, 'driver_feature_select'), 0x0C: (4, 'driver_feature'),
    0x10: (2, 'config_msix_vector'), 0x12: (2, 'num_queues'),
    0x14: (1, 'device_status'), 0x15: (1, 'config_generation'),
    0x16: (2, 'queue_select'), 0x18: (2, 'queue_size'),
    0x1A: (2, 'queue_msix_vector'), 0x1C: (2, 'queue_enable'),
    0x1E: (2, 'queue_notify_off'),
    0x20: (4, 'queue_desc_lo'), 0x24: (4, 'queue_desc_hi'),
    0x28: (4, 'queue_driver_lo'), 0x2C: (4, 'queue_driver_hi'),
    0x30: (4, 'queue_device_lo'), 0x34: (4, 'queue_device_hi'),
    0x38: (2, 'queue_notify_data'), 0x3A: (2, 'queue_reset'),
}
NO_VECTOR = 0xFFFF


class QueueState:
    """The device's state for one virtqueue."""

    def __init__(self, index, max_size):
        self.index = index
        self.max_size = max_size
        self.reset()

    def reset(self):
        self.size = self.max_size
        self.desc = self.driver = self.device = 0
        self.enabled = False
        self.pfn = 0
        self.msix_vector = NO_VECTOR
        self.ring = None
        self.pending = []
        self.notifications = 0
        self.interrupts = 0
        self.completed = 0


class _Region:
    """Dispatch of one modern BAR to its regions."""

    def __init__(self, model):
        self.model = model

    def read(self, off, size):
        return self.model.modern_read(off, size)

    def write(self, off, size, value):
        self.model.modern_write(off, size, value)


class _Legacy:
    def __init__(self, model):
        self.model = model

    def read(self, off, size):
        return self.model.legacy_read(off, size)

    def write(self, off, size, value):
        self.model.legacy_write(off, size, value)


class VirtioPciModel(Interrupting, PciDevice):
    """A VirtIO PCI function. mode: 'legacy' (legacy-only, like QEMU's
    disable-modern=on), 'transitional' (QEMU's default) or 'modern'
    (disable-legacy=on). features: device-specific bits offered (the shared
    ring bits are added from indirect/event_idx/packed). config: the device
    configuration bytes. completion: 'immediate' (served on notify),
    'deferred' (taken from the ring on notify, returned by complete() or,
    with auto_complete, at the next machine tick) or 'lazy' (the ring is not
    even looked at before complete()/tick: a device running behind).
    order: 'fifo', 'lifo' or 'random' for deferred completion."""

    DEVICE_TYPE = 0
    NAME = 'virtio'

    def __init__(self, device_type=None, mode='transitional', features=0,
                 queue_sizes=(256,), config=b'', indirect=True, event_idx=True,
                 packed=False, ring_reset=True, misbehave=None,
                 completion='immediate', order='fifo', auto_complete=False,
                 modern_bar=4, modern_bar64=True, notify_multiplier=4,
                 msix_vectors=None, pci_cfg_cap=True, packed_write_flag=False, seed=1):
        if device_type is None:
            device_type = self.DEVICE_TYPE
        assert mode in ('legacy', 'transitional', 'modern'), mode
        self.device_type = device_type
        self.mode = mode
        if mode == 'modern':
            did, rev, subsys = 0x1040 + device_type, 1, 0x1100
        else:
            did, rev, subsys = TRANSITIONAL_ID[device_type], 0, device_type
        PciDevice.__init__(self, VENDOR, did, CLASS_CODE.get(device_type, 0xFF0000),
                           revision=rev, subsystem_vendor_id=VENDOR,
                           subsystem_id=subsys)
        offered = features
        if indirect:
            offered |= F_INDIRECT_DESC
        if event_idx:
            offered |= F_EVENT_IDX
        if mode != 'legacy':
            offered |= F_VERSION_1
            if packed:
                offered |= F_RING_PACKED
            if ring_reset:
                offered |= F_RING_RESET
        self.features = offered
        self.cfg = bytearray(config)
        self.queues = [QueueState(i, n) for i, n in enumerate(queue_sizes)]
        self.misbehave = misbehave
        self.completion = completion
        self.order = order
        self.auto_complete = auto_complete
        self.notify_multiplier = notify_multiplier
        self._want_pci_cfg = pci_cfg_cap
        self.packed_write_flag = packed_write_flag
        self.rng = random.Random(seed)
        self.errors = []             # spec violations the device saw
        self.status_writes = []      # every value written to device_status
        self.feature_writes = []     # every driver feature word written: (select, value)
        self.resets = 0
        self.config_interrupts = 0
        self.dma = Dma(self)
        self._state_reset()
        # BAR1: the MSI-X table and PBA (as QEMU). Vectors: queues + config.
        nvec = msix_vectors if msix_vectors is not None else len(queue_sizes) + 1
        self.msix = MsixTable(self)
        self.msix_vectors = nvec
        self.add_bar(1, 0x1000, 'mem32', handler=self.msix)
        if mode != 'modern':
            size = 32
            while size < 0x18 + len(self.cfg):
                size *= 2
            self.add_bar(0, size, 'io', handler=_Legacy(self))
        if mode != 'legacy':
            self.modern_bar = modern_bar
            kind = 'mem64' if modern_bar64 else 'mem32'
            self.add_bar(modern_bar, 0x4000, kind, prefetchable=modern_bar64,
                         handler=_Region(self))
            self._add_modern_caps(modern_bar)
        # MSI-X capability last, so it heads the list (as QEMU).
        body = struct.pack('<HII', nvec - 1, 0x0000 | 1, 0x0800 | 1)
        self.msix_cap = self.add_capability(0x11, body, offset=0x98,
                                            writable=[(3, 0xC0)])

    # -- construction helpers ------------------------------------------------
    def _vcap(self, offset, cfg_type, bar, off, length, extra=b''):
        body = struct.pack('<BBBBxxII', 16 + len(extra), cfg_type, bar, 0, off, length) + extra
        return self.add_capability(0x09, body, offset=offset)

    def _add_modern_caps(self, bar):
        self._vcap(0x40, VIRTIO_PCI_CAP_COMMON_CFG, bar, COMMON_OFF, REGION_SIZE)
        self._vcap(0x50, VIRTIO_PCI_CAP_ISR_CFG, bar, ISR_OFF, REGION_SIZE)
        self._vcap(0x60, VIRTIO_PCI_CAP_DEVICE_CFG, bar, DEVICE_OFF, REGION_SIZE)
        self._vcap(0x70, VIRTIO_PCI_CAP_NOTIFY_CFG, bar, NOTIFY_OFF, REGION_SIZE,
                   struct.pack('<I', self.notify_multiplier))
        if not self._want_pci_cfg:
            return
        self.pci_cfg_cap = self._vcap(0x84, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, bytes(4))
        c = self.pci_cfg_cap
        self.wmask[c + 4] = 0xFF                      # cap.bar
        for i in range(8, 20):                        # offset, length, data
            self.wmask[c + i] = 0xFF

    def _state_reset(self):
        self.status = 0
        self.driver_features = 0
        self.device_feature_select = 0
        self.driver_feature_select = 0
        self.queue_select = 0
        self.isr = 0
        self.config_generation = getattr(self, 'config_generation', 0)
        self.config_msix_vector = NO_VECTOR
        self.legacy_in_use = False
        for q in self.queues:
            q.reset()
        if getattr(self, 'machine', None) is not None:
            self.machine.set_intx(self, False)

    # -- helpers for tests -------------------------------------------------------
    @property
    def interrupts(self):
        return sum(q.interrupts for q in self.queues)

    @property
    def notifications(self):
        return [q.notifications for q in self.queues]

    def set_config(self, offset, data):
        """The device changes its configuration (spec 2.5.1): generation
        moves on and a configuration change interrupt is raised."""
        self.cfg[offset:offset + len(data)] = data
        self.config_generation = (self.config_generation + 1) & 0xFF
        self.isr |= 2
        self.config_interrupts += 1
        self.interrupt(self.config_msix_vector)

    def set_needs_reset(self):
        self.status |= DEVICE_NEEDS_RESET
        self.isr |= 2
        self.config_interrupts += 1
        self.interrupt(self.config_msix_vector)

    def _error(self, msg):
        """A driver bug the device noticed: log it and stop (QEMU marks the
        device broken with DEVICE_NEEDS_RESET)."""
        self.errors.append(msg)
        self.status |= DEVICE_NEEDS_RESET

    def _msix_enabled(self):
        return bool(self.config[self.msix_cap + 3] & 0x80)

    def negotiated(self, bits):
        return (self.driver_features & bits) == bits

    # -- PCI configuration access capability (4.1.4) ---------------------------
    def config_read(self, offset, size):
        c = getattr(self, 'pci_cfg_cap', None)
        if c is not None and offset >= c + 16 and offset < c + 20:
            self._pci_cfg_access(None)
        return PciDevice.config_read(self, offset, size)

    def config_write(self, offset, size, value):
        PciDevice.config_write(self, offset, size, value)
        c = getattr(self, 'pci_cfg_cap', None)
        if c is not None and offset >= c + 16 and offset < c + 20:
            self._pci_cfg_access(int.from_bytes(self.config[c + 16:c + 20], 'little'))

    def _pci_cfg_access(self, value):
        c = self.pci_cfg_cap
        bar = self.config[c + 4]
        off, length = struct.unpack_from('<II', self.config, c + 8)
        if length not in (1, 2, 4) or off % length or bar not in self.bars:
            self.errors.append('PCI_CFG access: bar %d offset 0x%x length %d' % (bar, off, length))
            return
        handler = self.bars[bar].handler
        if value is None:
            v = handler.read(off, length)
            self.config[c + 16:c + 20] = v.to_bytes(4, 'little')
        else:
            handler.write(off, length, value & ((1 << (8 * length)) - 1))

    # -- device status (2.1) and reset ---------------------------------------------
    def read_status(self):
        return self.status

    def write_status(self, v):
        self.status_writes.append(v)
        if v == 0:
            self.resets += 1
            if self.misbehave == 'stuck_reset':
                return
            self._state_reset()
            return
        old = self.status
        if v & FEATURES_OK and not old & FEATURES_OK:
            if not self._accept_features():
                v &= ~FEATURES_OK
        self.status = v | (old & DEVICE_NEEDS_RESET)

    def _accept_features(self):
        if self.misbehave == 'refuse_features_ok':
            return False
        if self.driver_features & ~self.features:
            self.errors.append('driver accepted unoffered features 0x%x'
                               % (self.driver_features & ~self.features))
            return False
        if not self.driver_features & F_VERSION_1:
            self.errors.append('FEATURES_OK on the modern interface without VERSION_1')
            return False
        return True

    # -- modern interface (4.1.4) ---------------------------------------------------
    def modern_read(self, off, size):
        if COMMON_OFF <= off < COMMON_OFF + REGION_SIZE:
            return self.common_read(off - COMMON_OFF, size)
        if ISR_OFF <= off < ISR_OFF + REGION_SIZE:
            return self._read_isr()
        if DEVICE_OFF <= off < DEVICE_OFF + REGION_SIZE:
            return self.device_config_read(off - DEVICE_OFF, size)
        return 0

    def modern_write(self, off, size, value):
        if COMMON_OFF <= off < COMMON_OFF + REGION_SIZE:
            self.common_write(off - COMMON_OFF, size, value)
        elif DEVICE_OFF <= off < DEVICE_OFF + REGION_SIZE:
            self.device_config_write(off - DEVICE_OFF, size, value)
        elif NOTIFY_OFF <= off < NOTIFY_OFF + REGION_SIZE:
            self._modern_notify(off - NOTIFY_OFF, size, value)
        else:
            self.errors.append('write to ISR or unused BAR offset 0x%x' % off)

    def _common_reg(self, off, size):
        reg = COMMON_REGS.get(off)
        if reg is None or reg[0] != size:
            self.errors.append('common cfg access at 0x%x width %d' % (off, size))
            return None
        return reg[1]

    def _selected(self):
        if self.queue_select < len(self.queues):
            return self.queues[self.queue_select]
        return None

    def common_read(self, off, size):
        name = self._common_reg(off, size)
        q = self._selected()
        if name is None:
            return 0
        if name == 'device_feature':
            return (self.features >> (32 * self.device_feature_select)) & 0xFFFFFFFF \
                if self.device_feature_select < 2 else 0
        if name == 'driver_feature':
            return (self.driver_features >> (32 * self.driver_feature_select)) & 0xFFFFFFFF \
                if self.driver_feature_select < 2 else 0
        if name == 'num_queues':
            return len(self.queues)
        if name == 'device_status':
            return self.read_status()
        if name == 'config_msix_vector':
            return self.config_msix_vector
        if name in ('device_feature_select', 'driver_feature_select', 'queue_select',
                    'config_generation'):
            return getattr(self, name)
        if q is None:
            return 0                # the queue does not exist: size 0
        if name == 'queue_size':
            return q.size
        if name == 'queue_enable':
            return 1 if q.enabled else 0
        if name == 'queue_notify_off':
            return q.index
        if name == 'queue_msix_vector':
            return q.msix_vector
        if name == 'queue_notify_data':
            return q.index
        if name == 'queue_reset':
            return 0
        field, half = name[:-3], name[-2:]
        v = getattr(q, field[6:])
        return (v & 0xFFFFFFFF) if half == 'lo' else (v >> 32)

    def common_write(self, off, size, value):
        name = self._common_reg(off, size)
        if name is None:
            return
        q = self._selected()
        if name in ('device_feature_select', 'driver_feature_select', 'queue_select'):
            setattr(self, name, value)
        elif name == 'driver_feature':
            self.feature_writes.append((self.driver_feature_select, value))
            if self.driver_feature_select < 2:
                shift = 32 * self.driver_feature_select
                self.driver_features &= ~(0xFFFFFFFF << shift)
                self.driver_features |= value << shift
        elif name == 'device_status':
            self.write_status(value)
        elif name == 'config_msix_vector':
            self.config_msix_vector = self._vector_written(value)
        elif name in ('device_feature', 'num_queues', 'config_generation',
                      'queue_notify_off', 'queue_notify_data'):
            self.errors.append('driver wrote read-only %s' % name)
        elif q is None:
            self.errors.append('%s written with queue_select %d out of range'
                               % (name, self.queue_select))
        elif name == 'queue_size':
            packed = self.negotiated(F_RING_PACKED)
            if value == 0 or value > q.max_size or (not packed and value & (value - 1)):
                self.errors.append('queue %d: invalid queue_size %d' % (q.index, value))
            else:
                q.size = value
        elif name == 'queue_enable':
            if value != 1:
                self.errors.append('queue_enable written with %d' % value)
            else:
                self._enable_queue(q)
        elif name == 'queue_msix_vector':
            q.msix_vector = self._vector_written(value)
        elif name == 'queue_reset':
            pass
        else:
            field, half = name[:-3], name[-2:]
            attr = field[6:]
            v = getattr(q, attr)
            if half == 'lo':
                v = (v & ~0xFFFFFFFF) | value
            else:
                v = (v & 0xFFFFFFFF) | (value << 32)
            setattr(q, attr, v)

    def _enable_queue(self, q):
        packed = self.negotiated(F_RING_PACKED)
        args = (self.dma, q.size, q.desc, q.driver, q.device,
                self.negotiated(F_EVENT_IDX), self.negotiated(F_INDIRECT_DESC))
        for addr, align, part in ((q.desc, 16, 'descriptor area'),
                                  (q.driver, 4 if packed else 2, 'driver area'),
                                  (q.device, 4, 'device area')):
            if addr % align:
                self.errors.append('queue %d: %s 0x%x not %d-aligned' % (q.index, part, addr, align))
        if packed:
            q.ring = PackedRing(*args, write_flag=self.packed_write_flag)
        else:
            q.ring = SplitRing(*args)
        q.enabled = True

    def _modern_notify(self, off, size, value):
        if size != 2:
            self.errors.append('notify written with width %d' % size)
        if value >= len(self.queues):
            self.errors.append('notify of queue %d out of range' % value)
            return
        if off != value * self.notify_multiplier:
            self.errors.append('queue %d notified at offset 0x%x, expected 0x%x'
                               % (value, off, value * self.notify_multiplier))
        self.notify(value)

    # -- legacy interface (4.1.4 "Legacy Interfaces: A Note on PCI Device Layout")
    def _legacy_config_base(self):
        return 0x18 if self._msix_enabled() else 0x14

    def legacy_read(self, off, size):
        self.legacy_in_use = True
        q = self._selected()
        base = self._legacy_config_base()
        if off >= base:
            return self.device_config_read(off - base, size)
        if off == 0x00 and size == 4:
            return (self.features & 0xFFFFFFFF) | LEGACY_ONLY_BITS
        if off == 0x04 and size == 4:
            return self.driver_features & 0xFFFFFFFF
        if off == 0x08 and size == 4:
            return q.pfn if q else 0
        if off == 0x0C and size == 2:
            return q.max_size if q else 0
        if off == 0x0E and size == 2:
            return self.queue_select
        if off == 0x12 and size == 1:
            return self.read_status()
        if off == 0x13 and size == 1:
            return self._read_isr()
        if off == 0x14 and size == 2 and base == 0x18:
            return self.config_msix_vector
        if off == 0x16 and size == 2 and base == 0x18:
            return q.msix_vector if q else NO_VECTOR
        self.errors.append('legacy read at 0x%x width %d' % (off, size))
        return 0

    def legacy_write(self, off, size, value):
        self.legacy_in_use = True
        q = self._selected()
        base = self._legacy_config_base()
        if off >= base:
            self.device_config_write(off - base, size, value)
        elif off == 0x04 and size == 4:
            self.feature_writes.append((0, value))
            if value & F_BAD_FEATURE:
                self.errors.append('driver acknowledged BAD_FEATURE')
            if value & ~((self.features & 0xFFFFFFFF) | LEGACY_ONLY_BITS):
                self.errors.append('driver accepted unoffered features 0x%x' % value)
            self.driver_features = value
        elif off == 0x08 and size == 4:
            if q is None:
                self.errors.append('queue address for missing queue %d' % self.queue_select)
            elif value == 0:
                q.reset()
            else:
                self._legacy_queue(q, value)
        elif off == 0x0E and size == 2:
            self.queue_select = value
        elif off == 0x10 and size == 2:
            if value < len(self.queues):
                self.notify(value)
            else:
                self.errors.append('notify of queue %d out of range' % value)
        elif off == 0x12 and size == 1:
            self.write_status(value)
        elif off == 0x14 and size == 2 and base == 0x18:
            self.config_msix_vector = self._vector_written(value)
        elif off == 0x16 and size == 2 and base == 0x18:
            if q:
                q.msix_vector = self._vector_written(value)
        else:
            self.errors.append('legacy write 0x%x at 0x%x width %d' % (value, off, size))

    def _legacy_queue(self, q, pfn):
        # Legacy layout (2.7.2): one block from pfn * 4096; the used ring on
        # the next 4096 boundary after the available ring.
        q.pfn = pfn
        q.size = q.max_size
        q.desc = pfn * 4096
        q.driver = q.desc + 16 * q.size
        q.device = (q.driver + 6 + 2 * q.size + 4095) & ~4095
        q.ring = SplitRing(self.dma, q.size, q.desc, q.driver, q.device,
                           bool(self.driver_features & F_EVENT_IDX),
                           bool(self.driver_features & F_INDIRECT_DESC))
        q.enabled = True

    # -- device-specific configuration (2.5) ---------------------------------------
    def device_config_read(self, off, size):
        if self.misbehave == 'garbage_config':
            return (1 << (8 * size)) - 1
        if off + size > len(self.cfg):
            self.errors.append('device config read at 0x%x width %d beyond %d bytes'
                               % (off, size, len(self.cfg)))
            return 0
        return int.from_bytes(self.cfg[off:off + size], 'little')

    def device_config_write(self, off, size, value):
        if off + size > len(self.cfg):
            self.errors.append('device config write at 0x%x width %d beyond %d bytes'
                               % (off, size, len(self.cfg)))
            return
        self.cfg[off:off + size] = value.to_bytes(size, 'little')
        self.config_written(off, size, value)

    def config_written(self, off, size, value):
        """Hook: the driver wrote device config (subclasses react)."""

    # -- queue processing ---------------------------------------------------------------
    def notify(self, index):
        q = self.queues[index]
        q.notifications += 1
        if self.misbehave == 'needs_reset':
            self.set_needs_reset()
            return
        if not self.status & DRIVER_OK or self.status & DEVICE_NEEDS_RESET:
            return
        if q.ring is None:
            self.errors.append('queue %d notified before it was set up' % index)
            return
        if self.misbehave == 'empty_irq':
            self.isr |= 1
            self.interrupt(q.msix_vector)
        if self.completion == 'lazy':
            return              # looks at the ring only in complete()
        self.process(q)

    def process(self, q):
        try:
            while True:
                req = q.ring.pop(q.index)
                if req is None:
                    break
                if self.misbehave == 'never_complete':
                    continue
                if self.completion != 'immediate':
                    q.pending.append(req)
                else:
                    self._complete(q, req)
        except RingError as e:
            self._error('queue %d: %s' % (q.index, e))

    def complete(self, count=None, order=None, queue=None):
        """Complete deferred requests: `count` of them (all by default), in
        `order` ('fifo', 'lifo', 'random', or a list of pending positions)."""
        done = 0
        for q in self.queues:
            if queue is not None and q.index != queue:
                continue
            if self.completion == 'lazy' and q.ring is not None and self.status & DRIVER_OK:
                self.process(q)
            picks = self._pick(q, order if order is not None else self.order, count)
            for req in picks:
                q.pending.remove(req)
                try:
                    self._complete(q, req)
                except RingError as e:
                    self._error('queue %d: %s' % (q.index, e))
                done += 1
        return done

    def _pick(self, q, order, count):
        reqs = list(q.pending)
        if isinstance(order, (list, tuple)):
            reqs = [q.pending[i] for i in order]
        elif order == 'lifo':
            reqs.reverse()
        elif order == 'random':
            self.rng.shuffle(reqs)
        if count is not None:
            reqs = reqs[:count]
        return reqs

    def tick(self):
        if self.auto_complete and (self.completion == 'lazy'
                                   or any(q.pending for q in self.queues)):
            self.complete()

    def _complete(self, q, req):
        self.handle(q.index, req)
        length = req.written
        rid = req.id
        jump = 0
        mis = self.misbehave
        if mis == 'bad_used_id':
            rid = q.size + 1
        elif mis == 'used_id_not_head':
            rid = (req.id + 1) % q.size
        elif mis == 'oversized_len':
            length = req.writable_size + 512
        elif mis == 'used_idx_jump':
            jump = q.size + 1
        times = 2 if mis == 'double_used' else 1
        for _ in range(times):
            if isinstance(q.ring, PackedRing):
                notify = q.ring.push(rid, length, req.ndesc)
            else:
                notify = q.ring.push(rid, length, jump)
            q.completed += 1
            if notify:
                q.interrupts += 1
                self.isr |= 1
                self.interrupt(q.msix_vector)

    def handle(self, queue, req):
        """Serve one request (subclasses override). The generic device
        echoes the readable bytes into the writable buffers; with nothing
        to read it fills them with 0xA5."""
        data = req.data()
        if not data:
            data = b'\xa5' * req.writable_size
        req.write(data[:req.writable_size])

    def ring_no_notify(self, index, on=True):
        """Ask the driver not to notify this queue (VIRTQ_USED_F_NO_NOTIFY /
        RING_EVENT_FLAGS_DISABLE)."""
        self.queues[index].ring.set_no_notify(on)


class GenericModel(VirtioPciModel):
    """A device for ring and transport tests. Type 4 (entropy) IDs by default
    so transitional mode has a legacy ID; any type works in modern mode."""

    DEVICE_TYPE = 4
    NAME = 'generic'
