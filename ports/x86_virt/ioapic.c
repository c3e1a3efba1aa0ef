// The I/O APIC (82093AA datasheet) at its PC address: redirection entry n
// sends input n (a GSI) to the local APIC as a vector. ISA IRQ n is GSI n,
// except the PIT's IRQ 0, which QEMU (like the MP tables of real PCs) wires
// to GSI 2. ISA lines are edge triggered and active high; PCI INTx is level.
#include "x86.h"

#define IOAPIC_BASE             0xfec00000u
#define IOREGSEL                0x00
#define IOWIN                   0x10
#define IOAPIC_VER              0x01
#define IOAPIC_REDTBL           0x10
#define REDIR_LEVEL             (1 << 15)
#define REDIR_MASKED            (1 << 16)

static int entries;             // redirection entries, 0: no I/O APIC

static uint32_t ioapic_read(uint8_t reg) {
    *(volatile uint32_t *)(IOAPIC_BASE + IOREGSEL) = reg;
    return *(volatile uint32_t *)(IOAPIC_BASE + IOWIN);
}

static void ioapic_write(uint8_t reg, uint32_t v) {
    *(volatile uint32_t *)(IOAPIC_BASE + IOREGSEL) = reg;
    *(volatile uint32_t *)(IOAPIC_BASE + IOWIN) = v;
}

// Absent, the window reads all ones.
int ioapic_init(void) {
    uint32_t ver = ioapic_read(IOAPIC_VER);
    entries = ver == 0xffffffffu ? 0 : ((ver >> 16) & 0xff) + 1;
    for (int i = 0; i < entries; i++) {
        ioapic_write(IOAPIC_REDTBL + 2 * i, REDIR_MASKED);
    }
    return entries;
}

int ioapic_gsi(int isa_irq) {
    return isa_irq == 0 ? 2 : isa_irq;
}

// Route a GSI (masked) to a vector on this CPU's local APIC.
void ioapic_route(int gsi, int vector, bool level) {
    if (gsi >= entries) {
        return;
    }
    ioapic_write(IOAPIC_REDTBL + 2 * gsi + 1, apic_id() << 24);
    ioapic_write(IOAPIC_REDTBL + 2 * gsi, vector | REDIR_MASKED | (level ? REDIR_LEVEL : 0));
}

void ioapic_mask(int gsi) {
    if (gsi < entries) {
        ioapic_write(IOAPIC_REDTBL + 2 * gsi, ioapic_read(IOAPIC_REDTBL + 2 * gsi) | REDIR_MASKED);
    }
}

void ioapic_unmask(int gsi) {
    if (gsi < entries) {
        ioapic_write(IOAPIC_REDTBL + 2 * gsi, ioapic_read(IOAPIC_REDTBL + 2 * gsi) & ~REDIR_MASKED);
    }
}
