// The interrupt descriptor table (all 256 vectors), and what a CPU exception
// does here: print what happened and end QEMU with a non-zero status. Every
// other vector goes to irq.c.
#include "x86.h"

#define IDT_ENTRIES     256

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

static const char *const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow",
    "#BR bound range", "#UD invalid opcode", "#NM device not available",
    "#DF double fault", "coprocessor segment overrun", "#TS invalid TSS",
    "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved", "#MF x87 floating point", "#AC alignment check",
    "#MC machine check", "#XM SIMD floating point", "#VE virtualization",
    "#CP control protection",
};

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
    irq_dispatch(f->vector);
}
