// Ending the machine: ACPI soft-off for status 0, isa-debug-exit otherwise;
// and the fatal-error paths that use it. On microvm (no PC chipset) soft-off
// is the hardware-reduced ACPI sleep control register of its Generic Event
// Device; with acpi=off there is none, and a CPU reset ends QEMU (-no-reboot).
#include "py/mpconfig.h"
#include "py/runtime.h"
#include "x86.h"

#define HOST_BRIDGE_I440FX      0x12378086  // -machine pc
#define HOST_BRIDGE_Q35         0x29c08086  // -machine q35 (82G33 MCH)

// ACPI PM1a control: SLP_EN with SLP_TYP 0, which QEMU's DSDT gives S5 (ACPI 6.5, 4.8.3.2.1, 7.4.2).
#define PM1_CNT_OFFSET          4
#define PM1_CNT_SLP_EN          (1 << 13)
#define PM_BASE_DEFAULT         0x600       // where SeaBIOS puts it on both machines

// Hardware-reduced ACPI sleep control (ACPI 6.5, 4.8.3.7): SLP_TYP S5 | SLP_EN,
// in the GED register block QEMU's microvm maps at 0xfea00200 (acpi=on).
#define MICROVM_GED_SLEEP_CTL   0xfea00200u
#define GED_SLP_TYP_S5          (5 << 2)
#define GED_SLP_EN              (1 << 5)

uint32_t pci_config_read32(int bus, int dev, int fn, int offset) {
    outl(PCI_CONFIG_ADDRESS, 0x80000000u | (bus << 16) | (dev << 11) | (fn << 8) | (offset & 0xfc));
    return inl(PCI_CONFIG_DATA);
}

void pci_config_write32(int bus, int dev, int fn, int offset, uint32_t value) {
    outl(PCI_CONFIG_ADDRESS, 0x80000000u | (bus << 16) | (dev << 11) | (fn << 8) | (offset & 0xfc));
    outl(PCI_CONFIG_DATA, value);
}

// The ACPI PM I/O base: PIIX4 function 00:01.3 (PMBA, 0x40) on pc; the
// ICH9 LPC bridge 00:1f.0 (PMBASE, 0x40) on q35. SeaBIOS programs both.
static uint16_t acpi_pm_base(void) {
    uint32_t host = pci_config_read32(0, 0, 0, 0x00);
    uint32_t base = 0;
    if (host == HOST_BRIDGE_I440FX) {
        base = pci_config_read32(0, 1, 3, 0x40) & 0xffc0;
    } else if (host == HOST_BRIDGE_Q35) {
        base = pci_config_read32(0, 0x1f, 0, 0x40) & 0xff80;
    }
    return base ? base : PM_BASE_DEFAULT;
}

static void acpi_soft_off(void) {
    uint32_t host = pci_config_read32(0, 0, 0, 0x00);
    if (host != HOST_BRIDGE_I440FX && host != HOST_BRIDGE_Q35) {
        *(volatile uint8_t *)MICROVM_GED_SLEEP_CTL = GED_SLP_TYP_S5 | GED_SLP_EN;
    }
    outw(acpi_pm_base() + PM1_CNT_OFFSET, PM1_CNT_SLP_EN);
}

// A triple fault: an empty IDT, then an exception. QEMU resets the CPU,
// which -no-reboot turns into an exit with status 0.
static void cpu_reset(void) {
    static const struct __attribute__((packed)) { uint16_t limit; uint32_t base; } none = { 0, 0 };
    __asm__ volatile ("lidt %0; int3" : : "m" (none));
}

void x86_poweroff(int code) {
    cpu_cli();
    if (code == 0) {
        acpi_soft_off();
        cpu_reset();
    } else {
        // QEMU exits with status (code << 1) | 1.
        outb(ISA_DEBUG_EXIT_PORT, code);
        uart_puts("\r\npoweroff: no isa-debug-exit device at 0xf4, exit code lost\r\n");
        acpi_soft_off();
    }
    // Still here: no ACPI either. Stop the CPU for good.
    for (;;) {
        __asm__ volatile ("cli; hlt");
    }
}

void x86_fatal(const char *what) {
    uart_puts("\r\nFATAL: ");
    uart_puts(what);
    uart_puts("\r\n");
    x86_poweroff(EXIT_FATAL);
}

void nlr_jump_fail(void *val) {
    (void)val;
    x86_fatal("uncaught exception with no handler (nlr_jump_fail)");
}

void __assert_fail(const char *expr, const char *file, unsigned int line, const char *func) {
    (void)line;
    (void)func;
    uart_puts("\r\nFATAL: assertion failed: ");
    uart_puts(expr);
    uart_puts(" in ");
    uart_puts(file);
    uart_puts("\r\n");
    x86_poweroff(EXIT_FATAL);
}
