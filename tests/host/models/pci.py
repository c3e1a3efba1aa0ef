"""PCI function models: configuration space (type 0 and type 1 headers) with
write masks, BARs of every kind, capability lists, and bridges with a
secondary bus. The Machine (machine.py) routes configuration cycles, port I/O
and memory accesses to them."""

import struct

COMMAND = 0x04
STATUS = 0x06
HEADER_TYPE = 0x0E
BAR0 = 0x10
CAPABILITIES_POINTER = 0x34
STATUS_CAPABILITIES_LIST = 0x10
COMMAND_IO = 0x1
COMMAND_MEMORY = 0x2
COMMAND_BUS_MASTER = 0x4
# Writable bits of the command register: I/O, memory, bus master, parity,
# SERR, INTx disable.
COMMAND_WRITABLE = 0x0547


class BarModel:
    """One BAR: `kind` is 'io', 'mem32' or 'mem64'; `handler` gets
    read(offset, size) / write(offset, size, value) for accesses inside."""

    def __init__(self, index, size, kind, prefetchable=False, handler=None):
        assert size & (size - 1) == 0, 'BAR sizes are powers of two'
        self.index = index
        self.size = size
        self.kind = kind
        self.prefetchable = prefetchable
        self.handler = handler
        self.base = 0

    @property
    def io(self):
        return self.kind == 'io'

    def flags(self):
        if self.io:
            return 1
        f = 0x4 if self.kind == 'mem64' else 0
        if self.prefetchable:
            f |= 0x8
        return f


class RamBacked:
    """A BAR handler that is plain storage (e.g. an MSI-X table), sparse so
    a huge BAR costs nothing."""

    def __init__(self, size):
        self.size = size
        self.data = {}

    def read(self, off, size):
        return sum(self.data.get(off + i, 0) << (8 * i) for i in range(size))

    def write(self, off, size, value):
        for i in range(size):
            self.data[off + i] = (value >> (8 * i)) & 0xFF


class PciDevice:
    """A PCI function with a type 0 header. Subclasses add BARs and
    capabilities and may intercept config accesses (config_hook_*)."""

    header_type = 0

    def __init__(self, vendor_id, device_id, class_code, revision=0,
                 subsystem_vendor_id=0, subsystem_id=0, interrupt_pin=1):
        self.config = bytearray(256)
        self.wmask = bytearray(256)
        struct.pack_into('<HH', self.config, 0, vendor_id, device_id)
        self.config[0x08] = revision
        self.config[0x09:0x0C] = class_code.to_bytes(3, 'little')
        self.config[HEADER_TYPE] = self.header_type
        struct.pack_into('<H', self.wmask, COMMAND, COMMAND_WRITABLE)
        self.wmask[0x0C] = 0xFF      # cache line size
        self.wmask[0x0D] = 0xFF      # latency timer
        self.wmask[0x3C] = 0xFF      # interrupt line
        self.config[0x3D] = interrupt_pin
        if self.header_type == 0:
            struct.pack_into('<HH', self.config, 0x2C, subsystem_vendor_id, subsystem_id)
        self.bars = {}
        self._cap_tail = None        # offset of the last capability added
        self._cap_next_free = 0x40
        self.machine = None
        self.bus = None              # the PciBusModel holding this function
        self.slot = None
        self.function = None

    # -- construction ---------------------------------------------------------
    def add_bar(self, index, size, kind, prefetchable=False, handler=None):
        bar = BarModel(index, size, kind, prefetchable, handler)
        self.bars[index] = bar
        off = BAR0 + 4 * index
        struct.pack_into('<I', self.config, off, bar.flags())
        if bar.io:
            mask = (~(size - 1)) & 0xFFFFFFFC
        else:
            mask = (~(size - 1)) & 0xFFFFFFF0
        struct.pack_into('<I', self.wmask, off, mask)
        if kind == 'mem64':
            struct.pack_into('<I', self.wmask, off + 4, ((~(size - 1)) >> 32) & 0xFFFFFFFF)
        return bar

    def add_capability(self, cap_id, body, offset=None, writable=None):
        """Append a capability; `body` is the bytes after (id, next).
        Capabilities are linked so the last one added is found first (as
        QEMU lists them). Returns its offset."""
        length = 2 + len(body)
        if offset is None:
            offset = self._cap_next_free
        self._cap_next_free = max(self._cap_next_free, (offset + length + 3) & ~3)
        self.config[offset] = cap_id
        self.config[offset + 1] = self.config[CAPABILITIES_POINTER]
        self.config[offset + 2:offset + length] = body
        self.config[CAPABILITIES_POINTER] = offset
        self.config[STATUS] |= STATUS_CAPABILITIES_LIST
        if writable:
            for rel, mask in writable:
                self.wmask[offset + rel] = mask
        return offset

    # -- state ------------------------------------------------------------------
    @property
    def address(self):
        bus = self.bus.number if self.bus is not None else 0
        return '%02x:%02x.%d' % (bus, self.slot or 0, self.function or 0)

    def command(self):
        return struct.unpack_from('<H', self.config, COMMAND)[0]

    def io_enabled(self):
        return bool(self.command() & COMMAND_IO)

    def memory_enabled(self):
        return bool(self.command() & COMMAND_MEMORY)

    def bus_master(self):
        """True when this function and every bridge above it may master."""
        if not self.command() & COMMAND_BUS_MASTER:
            return False
        bridge = self.bus.bridge if self.bus is not None else None
        while bridge is not None:
            if not bridge.command() & COMMAND_BUS_MASTER:
                return False
            bridge = bridge.bus.bridge
        return True

    def bar_base(self, bar):
        off = BAR0 + 4 * bar.index
        lo = struct.unpack_from('<I', self.config, off)[0]
        if bar.io:
            return lo & 0xFFFFFFFC
        base = lo & 0xFFFFFFF0
        if bar.kind == 'mem64':
            base |= struct.unpack_from('<I', self.config, off + 4)[0] << 32
        return base

    def decoded_ranges(self):
        """(kind 'io'|'mem', base, size, bar) for every BAR this function
        currently decodes (assigned and enabled in the command register)."""
        out = []
        for bar in self.bars.values():
            base = self.bar_base(bar)
            if base == 0:
                continue
            if bar.io and self.io_enabled():
                out.append(('io', base, bar.size, bar))
            elif not bar.io and self.memory_enabled():
                out.append(('mem', base, bar.size, bar))
        return out

    # -- configuration cycles -------------------------------------------------
    def config_read(self, offset, size):
        return int.from_bytes(self.config[offset:offset + size], 'little')

    def config_write(self, offset, size, value):
        for i in range(size):
            m = self.wmask[offset + i]
            if m:
                b = (value >> (8 * i)) & 0xFF
                self.config[offset + i] = (self.config[offset + i] & ~m) | (b & m)
        if self.machine is not None:
            self.machine.decode_changed()

    def reset(self):
        """Device-level reset hook (virtio models override)."""


class PciBusModel:
    """One PCI bus: slots of functions; `bridge` is the bridge above it."""

    def __init__(self, number=0, bridge=None):
        self._number = number
        self.bridge = bridge
        self.functions = {}          # (slot, function) -> PciDevice

    @property
    def number(self):
        """Bus 0, or the secondary bus number its bridge holds right now (as
        configuration space says, however it was written)."""
        if self.bridge is not None:
            return self.bridge.secondary_number
        return self._number

    def place(self, dev, slot=None, function=0):
        if slot is None:
            slot = self.first_free_slot()
        key = (slot, function)
        assert key not in self.functions, 'slot %d.%d taken' % key
        self.functions[key] = dev
        dev.bus = self
        dev.slot = slot
        dev.function = function
        # Function 0 announces the others through the multifunction bit.
        if (slot, 0) in self.functions:
            fn0 = self.functions[(slot, 0)]
            if any(k[0] == slot and k[1] != 0 for k in self.functions):
                fn0.config[HEADER_TYPE] |= 0x80
        return dev

    def first_free_slot(self, start=0):
        slot = start
        while any(k[0] == slot for k in self.functions):
            slot += 1
        assert slot < 32, 'bus full'
        return slot

    def lookup(self, slot, function):
        # A function other than 0 is only visible if function 0 exists.
        if (slot, 0) not in self.functions:
            return None
        if function and not self.functions[(slot, 0)].config[HEADER_TYPE] & 0x80:
            return None
        return self.functions.get((slot, function))


class HostBridge(PciDevice):
    """00:00.0, as on QEMU's pc machine (i440FX)."""

    def __init__(self):
        PciDevice.__init__(self, 0x8086, 0x1237, 0x060000, revision=2, interrupt_pin=0)


class PlainDevice(PciDevice):
    """A non-VirtIO function with chosen BARs, for scan and sizing tests:
    bars is a list of (index, size, kind, prefetchable)."""

    def __init__(self, vendor_id=0x8086, device_id=0x100E, class_code=0x020000,
                 bars=(), revision=0):
        PciDevice.__init__(self, vendor_id, device_id, class_code, revision=revision)
        for index, size, kind, pref in bars:
            self.add_bar(index, size, kind, pref, RamBacked(size))


class PciBridge(PciDevice):
    """A PCI-to-PCI bridge (type 1 header, like QEMU's pci-bridge 1b36:0001,
    or a PCIe root port with pcie=True) with its own secondary bus.
    `devices` are placed on the secondary bus like Machine(devices=...)."""

    header_type = 1

    def __init__(self, devices=(), vendor_id=0x1B36, device_id=0x0001, pcie=False):
        if pcie:
            vendor_id, device_id = 0x1B36, 0x000C
        PciDevice.__init__(self, vendor_id, device_id, 0x060400, interrupt_pin=1)
        self.config[0x3D] = 1
        # Bus numbers, I/O and memory windows, prefetchable window (64-bit
        # capable), bridge control: writable.
        for off in (0x18, 0x19, 0x1A, 0x1B):
            self.wmask[off] = 0xFF
        self.wmask[0x1C] = 0xF0
        self.wmask[0x1D] = 0xF0
        self.config[0x1C] = 0x01     # 32-bit I/O addressing
        self.config[0x1D] = 0x01
        struct.pack_into('<HH', self.wmask, 0x20, 0xFFF0, 0xFFF0)
        struct.pack_into('<HH', self.wmask, 0x24, 0xFFF0, 0xFFF0)
        struct.pack_into('<HH', self.config, 0x24, 0x0001, 0x0001)   # 64-bit pref
        struct.pack_into('<II', self.wmask, 0x28, 0xFFFFFFFF, 0xFFFFFFFF)
        struct.pack_into('<HH', self.wmask, 0x30, 0xFFFF, 0xFFFF)
        struct.pack_into('<H', self.wmask, 0x3E, 0x0FFF)
        if pcie:
            # PCI Express capability: version 2, root port.
            self.add_capability(0x10, bytes([0x42, 0x00]) + bytes(56))
        self.secondary = PciBusModel(bridge=self)
        self.pending = list(devices)

    @property
    def secondary_number(self):
        return self.config[0x19]

    @property
    def subordinate_number(self):
        return self.config[0x1A]

    def windows(self):
        """The forwarding windows: list of ('io'|'mem', base, limit)."""
        c = self.config
        out = []
        io_base = ((c[0x1C] & 0xF0) << 8) | (struct.unpack_from('<H', c, 0x30)[0] << 16)
        io_limit = ((c[0x1D] & 0xF0) << 8) | 0xFFF | (struct.unpack_from('<H', c, 0x32)[0] << 16)
        if io_base <= io_limit:
            out.append(('io', io_base, io_limit))
        mb, ml = struct.unpack_from('<HH', c, 0x20)
        if (mb & 0xFFF0) <= (ml & 0xFFF0):
            out.append(('mem', (mb & 0xFFF0) << 16, ((ml & 0xFFF0) << 16) | 0xFFFFF))
        pb, pl = struct.unpack_from('<HH', c, 0x24)
        pbu, plu = struct.unpack_from('<II', c, 0x28)
        pbase = ((pb & 0xFFF0) << 16) | (pbu << 32)
        plimit = ((pl & 0xFFF0) << 16) | 0xFFFFF | (plu << 32)
        if pbase <= plimit:
            out.append(('mem', pbase, plimit))
        return out
