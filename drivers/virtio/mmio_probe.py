# Finding virtio-mmio windows. Nothing on the bus describes them, so the
# machine has to say where they are:
#   1. the kernel command line, in Linux's syntax
#      virtio_mmio.device=<size>@<base>:<irq>[:<id>] (QEMU's microvm writes one
#      per device when ACPI is off; the port reads it from fw_cfg);
#   2. else, on a machine without a PC chipset (no i440FX or Q35 host bridge at
#      00:00.0), the window list QEMU's microvm places at 0xfeb00000 + 512 * n,
#      recognised by the magic value (4.2.2). On pc and q35 these addresses
#      may belong to a PCI BAR, so they are not touched there.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.mmio import WINDOW_SIZE, Window, WindowSkipped, identify

CMDLINE_KEY = 'virtio_mmio.device='
MICROVM_BASE = const(0xFEB00000)
MICROVM_SLOTS = const(24)            # 8 by default; 24 with microvm's second I/O APIC
PC_HOST_BRIDGES = ((0x8086, 0x1237), (0x8086, 0x29C0))     # i440FX (pc), Q35 MCH (q35)
UNASSIGNED = (0, 0xFFFFFFFF)         # what reads of unassigned memory return

# fw_cfg (QEMU docs/specs/fw_cfg.rst): the kernel command line items.
FW_CFG_PORT_SEL = const(0x510)
FW_CFG_PORT_DATA = const(0x511)
FW_CFG_SIGNATURE = const(0x00)
FW_CFG_CMDLINE_SIZE = const(0x14)
FW_CFG_CMDLINE_DATA = const(0x15)
CMDLINE_MAX = const(4096)
SUFFIXES = {'K': 10, 'k': 10, 'M': 20, 'm': 20, 'G': 30, 'g': 30}


def parse_size(text):
    """A memparse-style number: decimal, 0x hex, with an optional K/M/G."""
    shift = 0
    if text and text[-1] in SUFFIXES:
        shift = SUFFIXES[text[-1]]
        text = text[:-1]
    return int(text, 0) << shift


def parse_param(spec):
    """The Window of one virtio_mmio.device= value; ValueError if it does not parse."""
    try:
        size, rest = spec.split('@')
        parts = rest.split(':')
        base = int(parts[0], 0)
        irq = int(parts[1]) if len(parts) > 1 else None
        return Window(base, parse_size(size), irq)
    except ValueError:
        raise ValueError('bad %s%s: want <size>@<base>:<irq>' % (CMDLINE_KEY, spec))


def parse_cmdline(cmdline, skipped=None):
    """The windows named by virtio_mmio.device= parameters, in order. A parameter
    that does not parse raises ValueError naming it, or, given a `skipped` list,
    is put there as a WindowSkipped and left out."""
    out = []
    for word in cmdline.split():
        if not word.startswith(CMDLINE_KEY):
            continue
        try:
            out.append(parse_param(word[len(CMDLINE_KEY):]))
        except ValueError as e:
            if skipped is None:
                raise
            skipped.append(WindowSkipped(Window(0, 0, address=word), str(e)))
    return out


def firmware_cmdline(hw):
    """The kernel command line QEMU put in fw_cfg (empty when there is none)."""
    hw.outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE)
    if bytes([hw.inb(FW_CFG_PORT_DATA) for _ in range(4)]) != b'QEMU':
        return ''
    hw.outw(FW_CFG_PORT_SEL, FW_CFG_CMDLINE_SIZE)
    n = 0
    for i in range(4):
        n |= hw.inb(FW_CFG_PORT_DATA) << (8 * i)
    n = min(n, CMDLINE_MAX)
    hw.outw(FW_CFG_PORT_SEL, FW_CFG_CMDLINE_DATA)
    data = bytes([hw.inb(FW_CFG_PORT_DATA) for _ in range(n)])
    end = data.find(b'\0')
    return (data[:end] if end >= 0 else data).decode()


def has_pc_chipset(fns):
    for fn in fns:
        if (fn.bus, fn.device, fn.function) == (0, 0, 0):
            return (fn.vendor_id, fn.device_id) in PC_HOST_BRIDGES
    return False


def microvm_windows(hw, slots=MICROVM_SLOTS):
    """The fixed window list: slots from MICROVM_BASE until one reads as
    unassigned memory."""
    out = []
    for n in range(slots):
        base = MICROVM_BASE + WINDOW_SIZE * n
        if hw.read32(base) in UNASSIGNED:
            break
        out.append(Window(base))
    return out


def discover(hw, fns=(), cmdline=None):
    """(devices, skipped): the windows holding a device, as (Window, version,
    device ID, vendor ID), and the WindowSkipped of every other window looked
    at (a command-line parameter that does not parse among them). cmdline: the
    kernel command line (None: read it from fw_cfg when the machine has no PC
    chipset), or a list of Windows. On a PC chipset only windows the command
    line names are looked at."""
    skipped = []
    if isinstance(cmdline, list):
        windows = cmdline
    else:
        pc = has_pc_chipset(fns)
        if cmdline is None:
            cmdline = '' if pc else firmware_cmdline(hw)
        windows = parse_cmdline(cmdline, skipped)
        if not windows and not pc:
            windows = microvm_windows(hw)
    found = []
    for w in windows:
        try:
            version, device_id, vendor_id = identify(hw, w)
        except WindowSkipped as e:
            skipped.append(e)
            continue
        found.append((w, version, device_id, vendor_id))
    found.sort(key=lambda f: f[0].base)     # the same order however they were found
    return found, skipped
