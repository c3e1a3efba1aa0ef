"""The host bench machine: guest RAM as a bytearray, a PCI bus of device
models behind configuration mechanism #1, port/MMIO dispatch to BARs,
virtio-mmio windows at fixed addresses (as QEMU's microvm) and the two
fw_cfg items that carry the kernel command line.
`Machine` implements docs/hardware-interface.md exactly, so the drivers in
drivers/virtio run on it unchanged."""

import struct
import time

from tests.host.models.dma import DmaArea
from tests.host.irqchip import MSI_ADDRESS, IrqChip
from tests.host.models.pci import HostBridge, PciBridge, PciBusModel

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC
MICROVM_MMIO_BASE = 0xFEB00000  # QEMU's microvm virtio-mmio window list
MMIO_WINDOW = 0x200
MICROVM_MMIO_END = MICROVM_MMIO_BASE + 24 * MMIO_WINDOW
FW_CFG_PORT_SEL = 0x510
FW_CFG_PORT_DATA = 0x511
TICKS_PERIOD = 1 << 30          # MicroPython's ticks wrap here
FOUR_GIB = 1 << 32
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D
# What SeaBIOS does on pc: PIRQA..D to ISA IRQs 10, 10, 11, 11; INTA# of slot s is
# PIRQ (s - 1 + pin - 1) & 3 (the PIIX3 swizzle), so slots share lines.
PIRQ_LINES = (10, 10, 11, 11)
MSI_WINDOW = 0xFFF00000         # address bits that select the local APICs' MSI window


class BusFault(Exception):
    """The driver touched an address or port nothing decodes (a wild access),
    or memory a 32-bit CPU cannot reach."""


class Machine(IrqChip):
    """A PC-like machine for the host bench.

    devices: items placed on bus 0 from slot 3 on (00:00.0 is the host
    bridge), each a device model, (slot, device) or (slot, function, device).
    A PciBridge carries its own devices on its secondary bus (slots from 0).
    No firmware runs: BARs and bridge bus numbers start unassigned.

    strict: a wild port or memory access raises BusFault (it is also logged
    in `faults`); otherwise reads see all ones and writes are dropped.

    mmio: virtio-mmio window models (tests/host/models/mmio.py), each placed
    at microvm's 0xfeb00000 + 512 * n unless it is (base, window). Reads
    from the rest of that window list see 0, as QEMU's unassigned memory.
    cmdline: the kernel command line fw_cfg hands out (keys 0x14/0x15).

    Interrupts (tests/host/irqchip.py): each function's interrupt_line is set when it
    is placed, as firmware would (PIRQ_LINES); devices raise INTx with set_intx() and
    send MSI messages with msi_write()."""

    def __init__(self, devices=(), ram_size=8 << 20, dma_base=1 << 20,
                 strict=True, first_slot=3, host_bridge=True, mmio=(), cmdline=''):
        self.ram = bytearray(ram_size)
        self.ram_size = ram_size
        self.dma_base = dma_base
        self.dma = DmaArea(dma_base, ram_size)      # the allocator (tests read its state)
        self.strict = strict
        self.faults = []
        self.config_address = 0
        self.root = PciBusModel(0)
        self._decode = None
        self.barriers = 0
        self._intx_asserted = {}    # line -> set of functions asserting it
        self._irq_setup()
        if host_bridge:
            self.attach(self.root, HostBridge(), 0, 0)
        for item in devices:
            self.add(item, bus=self.root, first_slot=first_slot)
        self.mmio = []
        for n, item in enumerate(mmio):
            base, window = item if isinstance(item, tuple) else (
                MICROVM_MMIO_BASE + MMIO_WINDOW * n, item)
            self.add_mmio(window, base)
        self.fw_cfg = FwCfgModel(cmdline)

    def add_mmio(self, window, base):
        """Map a virtio-mmio window model at `base`."""
        window.base = base
        window.device.machine = self
        self.mmio.append(window)
        return window

    # -- topology -----------------------------------------------------------------
    def add(self, item, bus=None, first_slot=0):
        """Place a device model (or (slot, dev) / (slot, fn, dev))."""
        if bus is None:
            bus = self.root
        slot, function = None, 0
        if isinstance(item, tuple):
            if len(item) == 2:
                slot, dev = item
            else:
                slot, function, dev = item
        else:
            dev = item
        if slot is None:
            slot = bus.first_free_slot(first_slot)
        self.attach(bus, dev, slot, function)
        return dev

    def attach(self, bus, dev, slot, function):
        bus.place(dev, slot, function)
        dev.machine = self
        pin = dev.config[INTERRUPT_PIN]
        if pin:
            dev.config[INTERRUPT_LINE] = PIRQ_LINES[(slot - 1 + pin - 1) & 3]
        if isinstance(dev, PciBridge):
            for item in dev.pending:
                self.add(item, bus=dev.secondary, first_slot=0)
            dev.pending = []
        self.decode_changed()

    def all_functions(self):
        out = []
        self._collect(self.root, out)
        return out

    def _collect(self, bus, out):
        for key in sorted(bus.functions):
            dev = bus.functions[key]
            out.append(dev)
            if isinstance(dev, PciBridge):
                self._collect(dev.secondary, out)

    # -- configuration mechanism #1 -----------------------------------------------
    def _config_target(self):
        a = self.config_address
        if not a & 0x80000000:
            return None, 0
        bus = (a >> 16) & 0xFF
        slot = (a >> 11) & 0x1F
        fn = (a >> 8) & 0x7
        target = self._find_bus(self.root, bus)
        if target is None:
            return None, 0
        return target.lookup(slot, fn), a & 0xFC

    def _find_bus(self, bus, number):
        if number == bus.number:
            return bus
        # Type 1 routing: a bridge claims numbers in [secondary, subordinate].
        for dev in bus.functions.values():
            if isinstance(dev, PciBridge):
                sec, sub = dev.secondary_number, dev.subordinate_number
                if sec != 0 and sec <= number <= sub:
                    return self._find_bus(dev.secondary, number)
        return None

    def _config_io(self, port, size, value=None):
        dev, reg = self._config_target()
        off = reg + (port - CONFIG_DATA)
        if value is None:
            if dev is None:
                return (1 << (8 * size)) - 1
            return dev.config_read(off, size)
        if dev is not None:
            dev.config_write(off, size, value)
        return None

    # -- decoding of BARs through bridges -----------------------------------------------
    def decode_changed(self):
        self._decode = None

    def _ranges(self):
        if self._decode is None:
            io, mem = [], []
            self._walk_decode(self.root, None, io, mem)
            self._decode = (io, mem)
        return self._decode

    def _walk_decode(self, bus, windows, io, mem):
        for dev in bus.functions.values():
            for kind, base, size, bar in dev.decoded_ranges():
                if windows is not None and not _inside(windows, kind, base, size):
                    continue
                (io if kind == 'io' else mem).append((base, base + size, dev, bar))
            if isinstance(dev, PciBridge):
                w = []
                if dev.io_enabled():
                    w += [x for x in dev.windows() if x[0] == 'io']
                if dev.memory_enabled():
                    w += [x for x in dev.windows() if x[0] == 'mem']
                if windows is not None:
                    w = [x for x in w if _inside(windows, x[0], x[1], x[2] - x[1] + 1)]
                self._walk_decode(dev.secondary, w, io, mem)

    def _claim(self, ranges, addr, size):
        for start, end, dev, bar in ranges:
            if start <= addr and addr + size <= end:
                return bar, addr - start
        return None, 0

    def _fault(self, what):
        self.faults.append(what)
        if self.strict:
            raise BusFault(what)

    # -- port I/O ---------------------------------------------------------------------
    def _in(self, port, size):
        port &= 0xFFFF
        if self.fw_cfg.decodes(port):
            return self.fw_cfg.read(port, size)
        if port == CONFIG_ADDRESS and size == 4:
            return self.config_address
        if CONFIG_DATA <= port and port + size <= CONFIG_DATA + 4:
            return self._config_io(port, size)
        bar, off = self._claim(self._ranges()[0], port, size)
        if bar is None:
            self._fault('in%d from unmapped port 0x%x' % (size * 8, port))
            return (1 << (8 * size)) - 1
        return bar.handler.read(off, size) & ((1 << (8 * size)) - 1)

    def _out(self, port, size, value):
        port &= 0xFFFF
        value &= (1 << (8 * size)) - 1
        if self.fw_cfg.decodes(port):
            self.fw_cfg.write(port, size, value)
            return
        if port == CONFIG_ADDRESS and size == 4:
            self.config_address = value
            return
        if CONFIG_DATA <= port and port + size <= CONFIG_DATA + 4:
            self._config_io(port, size, value)
            return
        bar, off = self._claim(self._ranges()[0], port, size)
        if bar is None:
            self._fault('out%d 0x%x to unmapped port 0x%x' % (size * 8, value, port))
            return
        bar.handler.write(off, size, value)

    def inb(self, port):
        return self._in(port, 1)

    def inw(self, port):
        return self._in(port, 2)

    def inl(self, port):
        return self._in(port, 4)

    def outb(self, port, value):
        self._out(port, 1, value)

    def outw(self, port, value):
        self._out(port, 2, value)

    def outl(self, port, value):
        self._out(port, 4, value)

    # -- physical memory --------------------------------------------------------------
    def _mread(self, addr, size):
        if 0 <= addr and addr + size <= self.ram_size:
            return int.from_bytes(self.ram[addr:addr + size], 'little')
        return self._mmio_read(addr, size)

    def _mwrite(self, addr, size, value):
        value &= (1 << (8 * size)) - 1
        if 0 <= addr and addr + size <= self.ram_size:
            self.ram[addr:addr + size] = value.to_bytes(size, 'little')
            return
        self._mmio_write(addr, size, value)

    def _mmio_read(self, addr, size):
        if addr < 0 or addr + size > FOUR_GIB:
            self._fault('read%d at 0x%x: beyond a 32-bit CPU' % (size * 8, addr))
            return (1 << (8 * size)) - 1
        w = self._mmio_window(addr, size)
        if w is not None:
            return w.read(addr - w.base, size)
        bar, off = self._claim(self._ranges()[1], addr, size)
        if bar is None:
            if MICROVM_MMIO_BASE <= addr < MICROVM_MMIO_END:
                return 0            # an unused slot of the window list reads 0
            self._fault('read%d from unmapped address 0x%x' % (size * 8, addr))
            return (1 << (8 * size)) - 1
        if size == 8:
            lo = bar.handler.read(off, 4)
            return lo | (bar.handler.read(off + 4, 4) << 32)
        return bar.handler.read(off, size)

    def _mmio_write(self, addr, size, value):
        if addr < 0 or addr + size > FOUR_GIB:
            self._fault('write%d 0x%x at 0x%x: beyond a 32-bit CPU' % (size * 8, value, addr))
            return
        w = self._mmio_window(addr, size)
        if w is not None:
            w.write(addr - w.base, size, value)
            return
        bar, off = self._claim(self._ranges()[1], addr, size)
        if bar is None:
            self._fault('write%d 0x%x to unmapped address 0x%x' % (size * 8, value, addr))
            return
        if size == 8:
            bar.handler.write(off, 4, value & 0xFFFFFFFF)
            bar.handler.write(off + 4, 4, value >> 32)
            return
        bar.handler.write(off, size, value)

    def _mmio_window(self, addr, size):
        for w in self.mmio:
            if w.base <= addr and addr + size <= w.base + w.size:
                return w
        return None

    def read8(self, addr):
        return self._mread(addr, 1)

    def read16(self, addr):
        return self._mread(addr, 2)

    def read32(self, addr):
        return self._mread(addr, 4)

    def read64(self, addr):
        return self._mread(addr, 8)

    def write8(self, addr, v):
        self._mwrite(addr, 1, v)

    def write16(self, addr, v):
        self._mwrite(addr, 2, v)

    def write32(self, addr, v):
        self._mwrite(addr, 4, v)

    def write64(self, addr, v):
        self._mwrite(addr, 8, v)

    def read(self, addr, n):
        if 0 <= addr and addr + n <= self.ram_size:
            return bytes(self.ram[addr:addr + n])
        return bytes(self._mmio_read(addr + i, 1) for i in range(n))

    def write(self, addr, data):
        data = memoryview(data).cast('B')       # any bytes-like object, counted in bytes
        n = len(data)
        if 0 <= addr and addr + n <= self.ram_size:
            self.ram[addr:addr + n] = data
            return
        for i in range(n):
            self._mmio_write(addr + i, 1, data[i])

    # -- DMA memory ----------------------------------------------------------------------
    def dma_alloc(self, size, align=4096):
        base = self.dma.alloc(size, align)
        self.ram[base:base + size] = bytes(size)
        return base

    def dma_free(self, addr):
        self.dma.free(addr)

    def bytearray_at(self, addr, n):
        if not (0 <= addr and addr + n <= self.ram_size):
            self._fault('bytearray_at(0x%x, %d) outside RAM' % (addr, n))
            raise BusFault('bytearray_at(0x%x, %d) outside RAM' % (addr, n))
        return memoryview(self.ram)[addr:addr + n]

    # -- device-side access to guest memory (used by the models) -----------------------
    def dma_read(self, addr, n):
        if not (0 <= addr and addr + n <= self.ram_size):
            raise BusFault('device DMA read of %d bytes at 0x%x outside RAM' % (n, addr))
        return bytes(self.ram[addr:addr + n])

    def dma_write(self, addr, data):
        n = len(data)
        if not (0 <= addr and addr + n <= self.ram_size):
            raise BusFault('device DMA write of %d bytes at 0x%x outside RAM' % (n, addr))
        self.ram[addr:addr + n] = data

    # -- interrupts, the devices' side ----------------------------------------------------
    def set_intx(self, dev, asserted):
        """A function asserts or releases its INTx pin (level triggered, wired-OR)."""
        line = dev.config[INTERRUPT_LINE]
        holders = self._intx_asserted.setdefault(line, set())
        if asserted:
            holders.add(dev)
        else:
            holders.discard(dev)
        self._irq_line(line, 1 if holders else 0)

    def msi_write(self, address, data):
        """A device's MSI write: to the APIC window it is an interrupt, elsewhere a
        plain memory write (as on a PC)."""
        if address & MSI_WINDOW == MSI_ADDRESS:
            self._irq_vector(data & 0xFF)
        else:
            self.dma_write(address, (data & 0xFFFFFFFF).to_bytes(4, 'little'))

    def _irq_msi_address(self, vector):
        return MSI_ADDRESS

    def _irq_poll(self):
        self.idle()

    def _irq_nap(self):
        time.sleep(0.0005)

    # -- ordering and time --------------------------------------------------------------------
    def barrier(self):
        self.barriers += 1

    def idle(self):
        """Let devices with deferred work make progress (called whenever the
        driver looks at the clock, i.e. while it waits)."""
        for dev in self.all_functions() + self.mmio:
            tick = getattr(dev, 'tick', None)
            if tick is not None:
                tick()

    def ticks_ms(self):
        self.idle()
        return int(time.monotonic() * 1000) % TICKS_PERIOD

    def ticks_us(self):
        self.idle()
        return int(time.monotonic() * 1000000) % TICKS_PERIOD

    def ticks_diff(self, new, old):
        half = TICKS_PERIOD // 2
        return ((new - old + half) % TICKS_PERIOD) - half


def _inside(windows, kind, base, size):
    for wkind, wbase, wlimit in windows:
        if wkind == kind and wbase <= base and base + size - 1 <= wlimit:
            return True
    return False


class FwCfgModel:
    """QEMU's fw_cfg I/O interface (docs/specs/fw_cfg.rst), just the items
    a driver here reads: the signature and the kernel command line."""

    SIGNATURE, CMDLINE_SIZE, CMDLINE_DATA = 0x00, 0x14, 0x15

    def __init__(self, cmdline=''):
        self.cmdline = cmdline
        self.key = 0
        self.pos = 0

    def decodes(self, port):
        return port in (FW_CFG_PORT_SEL, FW_CFG_PORT_DATA)

    def _item(self):
        data = self.cmdline.encode() + b'\0' if self.cmdline else b''
        if self.key == self.SIGNATURE:
            return b'QEMU'
        if self.key == self.CMDLINE_SIZE:
            return len(data).to_bytes(4, 'little')
        if self.key == self.CMDLINE_DATA:
            return data
        return b''

    def read(self, port, size):
        if port != FW_CFG_PORT_DATA or size != 1:
            return 0
        item = self._item()
        v = item[self.pos] if self.pos < len(item) else 0
        self.pos += 1
        return v

    def write(self, port, size, value):
        if port == FW_CFG_PORT_SEL:
            self.key, self.pos = value, 0
