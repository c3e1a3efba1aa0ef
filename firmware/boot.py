# The boot script (in the image's ROM; main.c imports it once per power-on).
#
# 1. Report what the machine has: the VirtIO devices as the drivers see them
#    (virtio.probe: PCI functions by bus address, virtio-mmio windows as
#    mmio@<base>, each with its transport), virtio-mmio windows skipped for a
#    reason, or, when the drivers are missing or fail, the PCI functions read
#    straight from configuration space.
# 2. If QEMU was given a script (make run SCRIPT=x.py, delivered through
#    fw_cfg as opt/script), run it and power off with its status:
#    0 on success, sys.exit(n) -> n, an uncaught exception -> 1 (after the
#    traceback). Otherwise return, and main.c starts the REPL.
import sys
import x86
import fwcfg

SCRIPT_FILE = "opt/script"
SCRIPT_NAME_FILE = "opt/script-name"

PCI_CONFIG_ADDRESS = 0xCF8
PCI_CONFIG_DATA = 0xCFC
PCI_HEADER_TYPE_BRIDGE = 1


def pci_read32(bus, dev, fn, offset):
    x86.outl(PCI_CONFIG_ADDRESS, 0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | (offset & 0xFC))
    return x86.inl(PCI_CONFIG_DATA)


def pci_functions(bus=0, seen=None):
    """Yield (bus, dev, fn, vendor, device, class_code) for every function, bridges followed."""
    seen = seen if seen is not None else set()
    seen.add(bus)
    for dev in range(32):
        for fn in range(8):
            ids = pci_read32(bus, dev, fn, 0x00)
            if ids & 0xFFFF == 0xFFFF:
                if fn == 0:
                    break       # no device here at all
                continue
            class_code = pci_read32(bus, dev, fn, 0x08) >> 16
            yield bus, dev, fn, ids & 0xFFFF, ids >> 16, class_code
            header = (pci_read32(bus, dev, fn, 0x0C) >> 16) & 0xFF
            if header & 0x7F == PCI_HEADER_TYPE_BRIDGE:
                secondary = (pci_read32(bus, dev, fn, 0x18) >> 8) & 0xFF
                if secondary and secondary not in seen:
                    yield from pci_functions(secondary, seen)
            if fn == 0 and not header & 0x80:
                break           # single-function device


def report_pci():
    for bus, dev, fn, vendor, device, class_code in pci_functions():
        print("  %02x:%02x.%d %04x: %04x:%04x" % (bus, dev, fn, class_code, vendor, device))


def report():
    try:
        import virtio
        probe = virtio.probe
    except (ImportError, AttributeError) as e:
        print("virtio: drivers not available (%s); PCI functions:" % e)
        report_pci()
        return
    try:
        devices = probe(x86)
    except Exception as e:
        print("virtio: probe failed:")
        sys.print_exception(e)
        print("PCI functions:")
        report_pci()
        return
    print("virtio: %d device%s" % (len(devices), "" if len(devices) == 1 else "s"))
    for dev in devices:
        print("  " + str(dev))
    # virtio-mmio windows ignored for a reason worth telling (not empty slots).
    for e in getattr(virtio, "skipped", list)():
        if not e.empty:
            print("  %s skipped: %s" % (e.window.address, e.reason))


def exit_code(e):
    """The exit status for SystemExit e: sys.exit() -> 0, sys.exit(n) -> n, else print it, 1."""
    code = e.args[0] if e.args else None
    if code is None:
        return 0
    if isinstance(code, int):
        return code if 0 <= code <= 127 else 1
    print(code)
    return 1


def run_script(source, name):
    try:
        code = compile(source, name, "exec")
        exec(code, {"__name__": "__main__", "__file__": name})
    except SystemExit as e:
        x86.poweroff(exit_code(e))
    except BaseException as e:
        sys.print_exception(e)
        x86.poweroff(1)
    x86.poweroff(0)


def main():
    report()
    source = fwcfg.read_file(x86, SCRIPT_FILE)
    if source is not None:
        name = fwcfg.read_file(x86, SCRIPT_NAME_FILE)
        run_script(source.decode(), name.decode() if name else "script.py")


main()
