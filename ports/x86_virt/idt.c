// The interrupt descriptor table, the 8259 PICs, and what a CPU exception
// does here: print what happened and end QEMU with a non-zero status.
#include "x86.h"

#define IDT_ENTRIES     48
#define PIC1_CMD        0x20
#define PIC1_DATA       0x21
#define PIC2_CMD        0xa0
#define PIC2_DATA       0xa1
#define PIC_EOI         0x20
#define IRQ_BASE        32      // IRQ n arrives at vector IRQ_BASE + n

typedef struct __attribute__((packed)) {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t zero;
    uint8_t type_attr;          // present, ring 0, 32-bit interrupt gate
    uint16_t offset_high;
} idt_entry_t;

typedef struct __attribute__((packed)) {
    uint16_t limit;
    uint32_t base;
} idt_descriptor_t;

extern const uint32_t isr_stub_table[IDT_ENTRIES];
static idt_entry_t idt[IDT_ENTRIES];
static irq_handler_t irq_handlers[16];

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved", "#MF x87 floating point", "#AC alignment check",
    "#MC machine check", "#XM SIMD floating point", "#VE virtualization",
    "#CP control protection",
};

static void pic_remap(void) {
    // ICW1: edge triggered, cascade, ICW4 follows. ICW2: vector base.
    // ICW3: slave on IRQ2. ICW4: 8086 mode.
    outb(PIC1_CMD, 0x11);
    outb(PIC2_CMD, 0x11);
    outb(PIC1_DATA, IRQ_BASE);
    outb(PIC2_DATA, IRQ_BASE + 8);
    outb(PIC1_DATA, 0x04);
    outb(PIC2_DATA, 0x02);
    outb(PIC1_DATA, 0x01);
    outb(PIC2_DATA, 0x01);
    // Everything masked except the cascade line; drivers unmask their IRQ.
    outb(PIC1_DATA, 0xff & ~(1 << 2));
    outb(PIC2_DATA, 0xff);
}

void irq_unmask(int irq) {
    uint16_t port = irq < 8 ? PIC1_DATA : PIC2_DATA;
    outb(port, inb(port) & ~(1 << (irq & 7)));
}

void irq_mask(int irq) {
    uint16_t port = irq < 8 ? PIC1_DATA : PIC2_DATA;
    outb(port, inb(port) | (1 << (irq & 7)));
}

void irq_set_handler(int irq, irq_handler_t handler) {
    irq_handlers[irq] = handler;
}

void idt_init(void) {
    for (int i = 0; i < IDT_ENTRIES; i++) {
        uint32_t addr = isr_stub_table[i];
        idt[i].offset_low = addr & 0xffff;
        idt[i].selector = 0x08;
        idt[i].zero = 0;
        idt[i].type_attr = 0x8e;
        idt[i].offset_high = addr >> 16;
    }
    idt_descriptor_t desc = { sizeof(idt) - 1, (uint32_t)idt };
    __asm__ volatile ("lidt %0" : : "m" (desc));
    pic_remap();
}

static void print_reg(const char *name, uint32_t v) {
    uart_puts(name);
    uart_put_hex(v);
}

static void cpu_exception(isr_frame_t *f) {
    uart_puts("\r\nFATAL: CPU exception ");
    uart_put_hex(f->vector);
    uart_puts(" (");
    const char *name = f->vector < 32 ? exception_names[f->vector] : 0;
    uart_puts(name ? name : "reserved");
    uart_puts(")");
    print_reg(" error=", f->error_code);
    print_reg(" eip=", f->eip);
    uart_puts("\r\n");
    print_reg("  eax=", f->eax);
    print_reg(" ebx=", f->ebx);
    print_reg(" ecx=", f->ecx);
    print_reg(" edx=", f->edx);
    uart_puts("\r\n");
    print_reg("  esi=", f->esi);
    print_reg(" edi=", f->edi);
    print_reg(" ebp=", f->ebp);
    print_reg(" esp=", f->esp_at_pusha + 20);
    print_reg(" eflags=", f->eflags);
    uart_puts("\r\n");
    x86_poweroff(EXIT_CPU_EXCEPTION);
}

void isr_dispatch(isr_frame_t *f) {
    if (f->vector < IRQ_BASE) {
        cpu_exception(f);
    }
    int irq = f->vector - IRQ_BASE;
    if (irq == 7 || irq == 15) {
        // A spurious IRQ leaves its in-service bit clear: no EOI for it
        // on that PIC (OCW3 0x0b reads the in-service register).
        uint16_t cmd = irq == 7 ? PIC1_CMD : PIC2_CMD;
        outb(cmd, 0x0b);
        if (!(inb(cmd) & 0x80)) {
            if (irq == 15) {
                outb(PIC1_CMD, PIC_EOI);
            }
            return;
        }
    }
    if (irq_handlers[irq]) {
        irq_handlers[irq]();
    }
    if (irq >= 8) {
        outb(PIC2_CMD, PIC_EOI);
    }
    outb(PIC1_CMD, PIC_EOI);
}
