// The two 8259 PICs of a PC (master at 0x20, slave at 0xa0 on the master's
// line 2): IRQ n arrives at vector IRQ_BASE + n. The edge/level control
// registers (ELCR, 0x4d0/0x4d1) say which lines are level triggered (PCI).
#include "x86.h"

#define PIC1_CMD        0x20
#define PIC1_DATA       0x21
#define PIC2_CMD        0xa0
#define PIC2_DATA       0xa1
#define PIC_EOI         0x20
#define PIC_READ_ISR    0x0b    // OCW3: the next read of the command port is the in-service register
#define ELCR1           0x4d0
#define ELCR2           0x4d1

static bool present;

// ICW1: cascade, ICW4 follows. ICW2: vector base. ICW3: slave on IRQ2.
// ICW4: 8086 mode. Then everything masked except the cascade line.
// A PIC is there if its mask register reads back what was written.
bool pic_init(void) {
    outb(PIC1_CMD, 0x11);
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, IRQ_BASE);
    outb(PIC2_DATA, IRQ_BASE + 8);
    outb(PIC1_DATA, 0x04);
    outb(PIC2_DATA, 0x02);
    outb(PIC1_DATA, 0x01);
    outb(PIC2_DATA, 0x01);
    outb(PIC1_DATA, 0xff & ~(1 << 2));
    outb(PIC2_DATA, 0xff);
    present = inb(PIC1_DATA) == (0xff & ~(1 << 2));
    return present;
}

// With the I/O APIC in charge the PICs stay fully masked.
void pic_disable(void) {
    if (present) {
        outb(PIC1_DATA, 0xff);
        outb(PIC2_DATA, 0xff);
    }
}

void pic_mask(int irq) {
    uint16_t port = irq < 8 ? PIC1_DATA : PIC2_DATA;
    outb(port, inb(port) | (1 << (irq & 7)));
}

void pic_unmask(int irq) {
    uint16_t port = irq < 8 ? PIC1_DATA : PIC2_DATA;
    outb(port, inb(port) & ~(1 << (irq & 7)));
}

// PCI INTx is level triggered and shared: the line stays asserted until
// every device on it has been served.
void pic_set_level(int irq) {
    uint16_t port = irq < 8 ? ELCR1 : ELCR2;
    outb(port, inb(port) | (1 << (irq & 7)));
}

// IRQ 7 or 15 with its in-service bit clear is spurious (noise, or a line
// that dropped before the CPU acknowledged): no EOI for it on that PIC.
bool pic_spurious(int irq) {
    if (irq != 7 && irq != 15) {
        return false;
    }
    uint16_t cmd = irq == 7 ? PIC1_CMD : PIC2_CMD;
    outb(cmd, PIC_READ_ISR);
    if (inb(cmd) & 0x80) {
        return false;
    }
    if (irq == 15) {
        outb(PIC1_CMD, PIC_EOI);    // the master did see the cascade line
    }
    return true;
}

void pic_eoi(int irq) {
    if (irq >= 8) {
        outb(PIC2_CMD, PIC_EOI);
    }
    outb(PIC1_CMD, PIC_EOI);
}
