# PCI: configuration mechanism #1, bus scan through bridges, BAR decoding and
# sizing, the capability list, and a small resource allocator for machines on
# which no firmware assigned BARs (the host bench, QEMU under qtest).
#
# References: PCI Local Bus Specification 3.0 (6.1 configuration header,
# 6.2.5 base address registers, 6.7 capabilities list), PCI-to-PCI Bridge
# Architecture Specification 1.2 (3.2 type 1 header), and the VirtIO spec
# 4.1.2 (PCI device discovery) for what a VirtIO function looks like.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.errors import VirtioError

# Configuration mechanism #1: an address register and a data window.
CONFIG_ADDRESS = const(0xCF8)
CONFIG_DATA = const(0xCFC)
CONFIG_ENABLE = 0x80000000

# Type 0 and common header fields.
VENDOR_ID = const(0x00)
DEVICE_ID = const(0x02)
COMMAND = const(0x04)
STATUS = const(0x06)
REVISION_ID = const(0x08)
CLASS_CODE = const(0x09)        # 3 bytes: prog-if, subclass, base class
HEADER_TYPE = const(0x0E)
BAR0 = const(0x10)
SUBSYSTEM_VENDOR_ID = const(0x2C)
SUBSYSTEM_ID = const(0x2E)
CAPABILITIES_POINTER = const(0x34)
INTERRUPT_LINE = const(0x3C)
INTERRUPT_PIN = const(0x3D)

# Type 1 (PCI-to-PCI bridge) header fields.
PRIMARY_BUS = const(0x18)
SECONDARY_BUS = const(0x19)
SUBORDINATE_BUS = const(0x1A)
IO_BASE = const(0x1C)
IO_LIMIT = const(0x1D)
MEMORY_BASE = const(0x20)
MEMORY_LIMIT = const(0x22)
PREF_MEMORY_BASE = const(0x24)
PREF_MEMORY_LIMIT = const(0x26)
PREF_BASE_UPPER32 = const(0x28)
PREF_LIMIT_UPPER32 = const(0x2C)
IO_BASE_UPPER16 = const(0x30)
IO_LIMIT_UPPER16 = const(0x32)

HEADER_TYPE_NORMAL = const(0)
HEADER_TYPE_BRIDGE = const(1)
HEADER_TYPE_MULTIFUNCTION = const(0x80)

# COMMAND register bits.
COMMAND_IO_SPACE = const(0x1)
COMMAND_MEMORY_SPACE = const(0x2)
COMMAND_BUS_MASTER = const(0x4)
# STATUS register bits.
STATUS_CAPABILITIES_LIST = const(0x10)

# BAR low bits.
BAR_SPACE_IO = const(0x1)
BAR_MEM_TYPE_MASK = const(0x6)
BAR_MEM_TYPE_64 = const(0x4)
BAR_MEM_PREFETCHABLE = const(0x8)

# Capability IDs.
CAP_ID_MSIX = const(0x11)
CAP_ID_VENDOR = const(0x09)
CAP_ID_PCIE = const(0x10)
MSIX_CONTROL_ENABLE = const(0x8000)

VENDOR_ABSENT = const(0xFFFF)
MAX_CAPABILITIES = const(48)   # (256 - 64) / 4: a longer list is a loop

BRIDGE_IO_ALIGN = const(0x1000)
BRIDGE_MEM_ALIGN = const(0x100000)
FOUR_GIB = 1 << 32


def config_address(bus, device, function, offset):
    return (CONFIG_ENABLE | (bus << 16) | (device << 11) | (function << 8)
            | (offset & 0xFC))


def config_read32(hw, bus, device, function, offset):
    hw.outl(CONFIG_ADDRESS, config_address(bus, device, function, offset))
    return hw.inl(CONFIG_DATA)


class Bar:
    """One decoded Base Address Register."""

    def __init__(self, index, io, is64, prefetchable, base, size):
        self.index = index
        self.io = io
        self.is64 = is64
        self.prefetchable = prefetchable
        self.base = base
        self.size = size

    @property
    def kind(self):
        return 'io' if self.io else 'mem'

    @property
    def assigned(self):
        return self.base != 0

    def __repr__(self):
        if self.io:
            what = 'io'
        else:
            what = 'mem64' if self.is64 else 'mem32'
            if self.prefetchable:
                what += ' pref'
        return 'BAR%d %s 0x%x size 0x%x' % (self.index, what, self.base, self.size)


class PciFunction:
    """One PCI function found by scan(): identity, BARs, capabilities."""

    def __init__(self, hw, bus, device, function, parent=None):
        self.hw = hw
        self.bus = bus
        self.device = device
        self.function = function
        self.parent = parent            # the bridge above it, or None on bus 0
        ids = self.read32(VENDOR_ID)
        self.vendor_id = ids & 0xFFFF
        self.device_id = ids >> 16
        rc = self.read32(REVISION_ID)
        self.revision = rc & 0xFF
        self.class_code = rc >> 8
        raw_type = self.read8(HEADER_TYPE)
        self.multifunction = bool(raw_type & HEADER_TYPE_MULTIFUNCTION)
        self.header_type = raw_type & 0x7F
        if self.header_type == HEADER_TYPE_NORMAL:
            sub = self.read32(SUBSYSTEM_VENDOR_ID)
            self.subsystem_vendor_id = sub & 0xFFFF
            self.subsystem_id = sub >> 16
            nbars = 6
        else:
            self.subsystem_vendor_id = 0
            self.subsystem_id = 0
            nbars = 2 if self.header_type == HEADER_TYPE_BRIDGE else 0
        irq = self.read16(INTERRUPT_LINE)
        self.interrupt_line = irq & 0xFF
        self.interrupt_pin = irq >> 8
        self.secondary_bus = None
        self.subordinate_bus = None
        # BARs and capabilities are read when first asked for: a scan then
        # costs a few config reads per function, and only the functions a
        # driver binds (or the resource allocator places) are sized.
        self._nbars = nbars
        self._bars = None
        self._capabilities = None

    @property
    def bars(self):
        """The implemented BARs, decoded and sized (see _size_bars)."""
        if self._bars is None:
            self._bars = _size_bars(self, self._nbars)
        return self._bars

    @property
    def capabilities(self):
        """The capability list as (ID, config-space offset) pairs."""
        if self._capabilities is None:
            self._capabilities = self._walk_capabilities()
        return self._capabilities

    # -- configuration space access --------------------------------------
    def _select(self, offset):
        self.hw.outl(CONFIG_ADDRESS, config_address(
            self.bus, self.device, self.function, offset))

    def read8(self, offset):
        self._select(offset)
        return self.hw.inb(CONFIG_DATA + (offset & 3))

    def read16(self, offset):
        self._select(offset)
        return self.hw.inw(CONFIG_DATA + (offset & 2))

    def read32(self, offset):
        self._select(offset)
        return self.hw.inl(CONFIG_DATA)

    def write8(self, offset, value):
        self._select(offset)
        self.hw.outb(CONFIG_DATA + (offset & 3), value)

    def write16(self, offset, value):
        self._select(offset)
        self.hw.outw(CONFIG_DATA + (offset & 2), value)

    def write32(self, offset, value):
        self._select(offset)
        self.hw.outl(CONFIG_DATA, value)

    # -- identity ----------------------------------------------------------
    @property
    def address(self):
        return '%02x:%02x.%d' % (self.bus, self.device, self.function)

    @property
    def is_bridge(self):
        return self.header_type == HEADER_TYPE_BRIDGE

    def __str__(self):
        # Like `lspci -n`: address, class (base class + subclass), ids.
        s = '%s %04x: %04x:%04x' % (self.address, self.class_code >> 8,
                                    self.vendor_id, self.device_id)
        if self.revision:
            s += ' (rev %02x)' % self.revision
        return s

    def __repr__(self):
        return '<PciFunction %s>' % self

    # -- command register ----------------------------------------------------
    @property
    def command(self):
        return self.read16(COMMAND)

    def enable(self, io=False, memory=False, bus_master=False):
        """Set (never clear) the I/O space, memory space and bus master
        enable bits of the command register."""
        cmd = self.read16(COMMAND)
        if io:
            cmd |= COMMAND_IO_SPACE
        if memory:
            cmd |= COMMAND_MEMORY_SPACE
        if bus_master:
            cmd |= COMMAND_BUS_MASTER
        self.write16(COMMAND, cmd)

    # -- capabilities ----------------------------------------------------------
    def _walk_capabilities(self):
        caps = []
        if not self.read16(STATUS) & STATUS_CAPABILITIES_LIST:
            return caps
        ptr = self.read8(CAPABILITIES_POINTER) & 0xFC
        seen = 0
        while ptr >= 0x40 and seen < MAX_CAPABILITIES:
            word = self.read16(ptr)
            caps.append((word & 0xFF, ptr))
            ptr = (word >> 8) & 0xFC
            seen += 1
        return caps

    def find_capability(self, cap_id):
        """Config-space offset of the first capability with this ID, or None."""
        for cid, off in self.capabilities:
            if cid == cap_id:
                return off
        return None

    def msix_enabled(self):
        off = self.find_capability(CAP_ID_MSIX)
        if off is None:
            return False
        return bool(self.read16(off + 2) & MSIX_CONTROL_ENABLE)

    def bar(self, index):
        """The decoded BAR with this index, or None if it is not implemented."""
        for b in self.bars:
            if b.index == index:
                return b
        return None

    def set_bar(self, index, base):
        """Program a BAR's base address (both halves of a 64-bit BAR)."""
        b = self.bar(index)
        if b is None:
            raise VirtioError('%s: BAR%d is not implemented' % (self.address, index))
        off = BAR0 + 4 * index
        if b.io:
            self.write32(off, (base & 0xFFFFFFFC) | BAR_SPACE_IO)
        else:
            self.write32(off, base & 0xFFFFFFF0)
            if b.is64:
                self.write32(off + 4, base >> 32)
        b.base = base


def _size_bars(fn, count):
    """Decode and size BARs by the standard probe: write all ones, read back
    the mask of writable address bits, restore (PCI 3.0, 6.2.5.1). Decoding
    is switched off meanwhile so the probe value never claims an address."""
    bars = []
    if count == 0:
        return bars
    cmd = fn.read16(COMMAND)
    decode = cmd & (COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE)
    if decode:
        fn.write16(COMMAND, cmd & ~decode)
    i = 0
    while i < count:
        off = BAR0 + 4 * i
        orig = fn.read32(off)
        fn.write32(off, 0xFFFFFFFF)
        probe = fn.read32(off)
        fn.write32(off, orig)
        if orig & BAR_SPACE_IO:
            # x86 I/O space is 16 bits: keep the port a small int (masks like
            # 0xFFFFFFFC would make it a long int on 32-bit MicroPython).
            m = probe & 0xFFFC
            if m:
                bars.append(Bar(i, True, False, False, orig & 0xFFFC, ((~m) & 0xFFFF) + 1))
            i += 1
            continue
        is64 = (orig & BAR_MEM_TYPE_MASK) == BAR_MEM_TYPE_64 and i + 1 < count
        pref = bool(orig & BAR_MEM_PREFETCHABLE)
        base = orig & ~0xF
        m = probe & ~0xF
        if is64:
            hi = fn.read32(off + 4)
            fn.write32(off + 4, 0xFFFFFFFF)
            phi = fn.read32(off + 4)
            fn.write32(off + 4, hi)
            base |= hi << 32
            m |= phi << 32
            if m:
                bars.append(Bar(i, False, True, pref, base,
                                ((~m) & 0xFFFFFFFFFFFFFFFF) + 1))
            i += 2
            continue
        if m:
            bars.append(Bar(i, False, False, pref, base, ((~m) & 0xFFFFFFFF) + 1))
        i += 1
    if decode:
        fn.write16(COMMAND, cmd)
    return bars


def port_hw(hw=None):
    """`hw` itself, or on the target (hw=None) the port's x86 module: the
    default of every entry point a user calls from the REPL."""
    if hw is None:
        import x86
        hw = x86
    return hw


def scan(hw=None):
    """Enumerate every function on bus 0 and on every bus behind a PCI-to-PCI
    bridge, depth first. Bridges that no firmware numbered get secondary and
    subordinate bus numbers here. Returns the list of PciFunction. On the
    target hw defaults to the x86 module, as for virtio.probe()."""
    hw = port_hw(hw)
    found = []
    _scan_bus(hw, 0, None, found, [1], {})
    return found


def _scan_bus(hw, bus, parent, found, next_bus, seen):
    if bus in seen:
        return      # a second path to the same bus: firmware numbering loop
    seen[bus] = True
    for dev in range(32):
        # One read per empty slot: an absent function reads all ones.
        if config_read32(hw, bus, dev, 0, VENDOR_ID) & 0xFFFF == VENDOR_ABSENT:
            continue
        fn0 = PciFunction(hw, bus, dev, 0, parent)
        fns = [fn0]
        if fn0.multifunction:
            for f in range(1, 8):
                if config_read32(hw, bus, dev, f, VENDOR_ID) & 0xFFFF != VENDOR_ABSENT:
                    fns.append(PciFunction(hw, bus, dev, f, parent))
        for fn in fns:
            found.append(fn)
            if fn.is_bridge:
                _scan_bridge(hw, fn, found, next_bus, seen)


def _scan_bridge(hw, br, found, next_bus, seen):
    secondary = br.read8(SECONDARY_BUS)
    subordinate = br.read8(SUBORDINATE_BUS)
    if secondary > br.bus and subordinate >= secondary:
        # Numbered by firmware: keep it.
        br.secondary_bus = secondary
        br.subordinate_bus = subordinate
        if next_bus[0] <= subordinate:
            next_bus[0] = subordinate + 1
        _scan_bus(hw, secondary, br, found, next_bus, seen)
        return
    if next_bus[0] > 0xFF:
        return      # out of bus numbers: leave the bridge closed
    secondary = next_bus[0]
    next_bus[0] += 1
    br.write8(PRIMARY_BUS, br.bus)
    br.write8(SECONDARY_BUS, secondary)
    # Open every number below while scanning, then close to what was found.
    br.write8(SUBORDINATE_BUS, 0xFF)
    _scan_bus(hw, secondary, br, found, next_bus, seen)
    br.secondary_bus = secondary
    br.subordinate_bus = next_bus[0] - 1
    br.write8(SUBORDINATE_BUS, br.subordinate_bus)


def unassigned(functions):
    """True when some function has a memory or I/O BAR with no address."""
    for fn in functions:
        for b in fn.bars:
            if b.base == 0:
                return True
    return False


def firmware_assigned(functions):
    """True when some BAR has an address: a firmware (or an earlier
    assign_resources) placed the machine's resources, and reassigning them
    under running devices would be wrong."""
    for fn in functions:
        for b in fn.bars:
            if b.base != 0:
                return True
    return False


class _Window:
    """A bump allocator over [start, end)."""

    def __init__(self, name, start, end):
        self.name = name
        self.cursor = start
        self.end = end

    def align(self, a):
        self.cursor = (self.cursor + a - 1) & ~(a - 1)

    def take(self, size, align, what):
        self.align(align)
        base = self.cursor
        if base + size > self.end:
            raise VirtioError('PCI %s window exhausted assigning %s (0x%x bytes)'
                              % (self.name, what, size))
        self.cursor = base + size
        return base


def assign_resources(hw, functions, io_window=(0xC000, 0x10000),
                     mem_window=(0xE0000000, 0xFEC00000)):
    """Give every BAR an address and every bridge its I/O and memory windows,
    for machines where no firmware did (all BARs are reassigned). 64-bit
    BARs are placed below 4 GiB (upper half 0); prefetchable BARs share the
    bridge's memory window. Decoding (I/O, memory) is enabled on functions
    that got such BARs, and bridges also get bus mastering so the devices
    behind them can reach memory."""
    io = _Window('I/O', io_window[0], io_window[1])
    mem = _Window('memory', mem_window[0], mem_window[1])
    by_bus = {}
    for fn in functions:
        by_bus.setdefault(fn.bus, []).append(fn)
    _assign_bus(by_bus, 0, io, mem)


def _assign_bus(by_bus, bus, io, mem):
    fns = by_bus.get(bus, [])
    # Bridges first (their windows need 4 KiB / 1 MiB alignment), then BARs
    # by decreasing size so natural alignment wastes little.
    for br in fns:
        if br.is_bridge and br.secondary_bus is not None:
            _assign_bridge(by_bus, br, io, mem)
    bars = []
    for fn in fns:
        for b in fn.bars:
            bars.append((b.size, fn, b))
    bars.sort(key=lambda t: -t[0])
    for size, fn, b in bars:
        what = '%s BAR%d' % (fn.address, b.index)
        if b.io:
            base = io.take(size, max(size, 4), what)
        else:
            base = mem.take(size, max(size, 16), what)
        fn.set_bar(b.index, base)
    for fn in fns:
        if fn.is_bridge:
            # A bridge forwards its windows only with decoding on, and its
            # bus mastering gates the DMA of every device behind it.
            fn.enable(io=True, memory=True, bus_master=True)
            continue
        kinds = [b.io for b in fn.bars]
        fn.enable(io=True in kinds, memory=False in kinds)


def _assign_bridge(by_bus, br, io, mem):
    io.align(BRIDGE_IO_ALIGN)
    mem.align(BRIDGE_MEM_ALIGN)
    io_start = io.cursor
    mem_start = mem.cursor
    _assign_bus(by_bus, br.secondary_bus, io, mem)
    if io.cursor > io_start:
        io.align(BRIDGE_IO_ALIGN)
        br.write8(IO_BASE, (io_start >> 8) & 0xF0)
        br.write8(IO_LIMIT, ((io.cursor - 1) >> 8) & 0xF0)
        br.write16(IO_BASE_UPPER16, io_start >> 16)
        br.write16(IO_LIMIT_UPPER16, (io.cursor - 1) >> 16)
    else:
        _close_io_window(br)
    if mem.cursor > mem_start:
        mem.align(BRIDGE_MEM_ALIGN)
        br.write16(MEMORY_BASE, (mem_start >> 16) & 0xFFF0)
        br.write16(MEMORY_LIMIT, ((mem.cursor - 1) >> 16) & 0xFFF0)
    else:
        br.write16(MEMORY_BASE, 0xFFF0)
        br.write16(MEMORY_LIMIT, 0)
    # Prefetchable BARs live in the plain memory window: close this one.
    br.write16(PREF_MEMORY_BASE, 0xFFF0)
    br.write16(PREF_MEMORY_LIMIT, 0)
    br.write32(PREF_BASE_UPPER32, 0)
    br.write32(PREF_LIMIT_UPPER32, 0)


def _close_io_window(br):
    br.write8(IO_BASE, 0xF0)
    br.write8(IO_LIMIT, 0)
    br.write16(IO_BASE_UPPER16, 0)
    br.write16(IO_LIMIT_UPPER16, 0)


def bridge_windows(br):
    """Decode a bridge's windows: dict of 'io', 'mem', 'pref' -> (base, limit)
    inclusive, or None when closed."""
    out = {}
    b = br.read8(IO_BASE)
    l = br.read8(IO_LIMIT)
    base = ((b & 0xF0) << 8) | (br.read16(IO_BASE_UPPER16) << 16 if b & 1 else 0)
    limit = ((l & 0xF0) << 8) | 0xFFF | (br.read16(IO_LIMIT_UPPER16) << 16 if l & 1 else 0)
    out['io'] = (base, limit) if base <= limit else None
    base = (br.read16(MEMORY_BASE) & 0xFFF0) << 16
    limit = ((br.read16(MEMORY_LIMIT) & 0xFFF0) << 16) | 0xFFFFF
    out['mem'] = (base, limit) if base <= limit else None
    b = br.read16(PREF_MEMORY_BASE)
    l = br.read16(PREF_MEMORY_LIMIT)
    base = (b & 0xFFF0) << 16
    limit = ((l & 0xFFF0) << 16) | 0xFFFFF
    if b & 1:
        base |= br.read32(PREF_BASE_UPPER32) << 32
        limit |= br.read32(PREF_LIMIT_UPPER32) << 32
    out['pref'] = (base, limit) if base <= limit else None
    return out
