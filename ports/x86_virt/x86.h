// Shared declarations of the x86_virt port: port I/O, the CPU, the machine.
#ifndef X86_VIRT_X86_H
#define X86_VIRT_X86_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

// ---- Port I/O -------------------------------------------------------------

static inline void outb(uint16_t port, uint8_t v) {
    __asm__ volatile ("outb %0, %1" : : "a" (v), "Nd" (port));
}
static inline void outw(uint16_t port, uint16_t v) {
    __asm__ volatile ("outw %0, %1" : : "a" (v), "Nd" (port));
}
static inline void outl(uint16_t port, uint32_t v) {
    __asm__ volatile ("outl %0, %1" : : "a" (v), "Nd" (port));
}
static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile ("inb %1, %0" : "=a" (v) : "Nd" (port));
    return v;
}
static inline uint16_t inw(uint16_t port) {
    uint16_t v;
    __asm__ volatile ("inw %1, %0" : "=a" (v) : "Nd" (port));
    return v;
}
static inline uint32_t inl(uint16_t port) {
    uint32_t v;
    __asm__ volatile ("inl %1, %0" : "=a" (v) : "Nd" (port));
    return v;
}

// ---- CPU ------------------------------------------------------------------

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile ("rdtsc" : "=a" (lo), "=d" (hi));
    return ((uint64_t)hi << 32) | lo;
}

// A full memory barrier that every i686 has (mfence needs SSE2).
static inline void cpu_barrier(void) {
    __asm__ volatile ("lock; addl $0, (%%esp)" : : : "memory", "cc");
}

static inline void cpu_cli(void) {
    __asm__ volatile ("cli" : : : "memory");
}
static inline void cpu_sti(void) {
    __asm__ volatile ("sti" : : : "memory");
}
// sti takes effect after the next instruction, so no interrupt can slip in
// between the sti and the hlt: a wake-up is never lost.
static inline void cpu_sti_hlt(void) {
    __asm__ volatile ("sti; hlt" : : : "memory");
}

// ---- PCI configuration space (mechanism #1, ports 0xCF8/0xCFC) ------------

#define PCI_CONFIG_ADDRESS  0xcf8
#define PCI_CONFIG_DATA     0xcfc

uint32_t pci_config_read32(int bus, int dev, int fn, int offset);
void pci_config_write32(int bus, int dev, int fn, int offset, uint32_t value);

// ---- Interrupts (idt.c) ---------------------------------------------------

typedef struct _isr_frame_t {
    uint32_t edi, esi, ebp, esp_at_pusha, ebx, edx, ecx, eax;
    uint32_t vector, error_code;
    uint32_t eip, cs, eflags;
} isr_frame_t;

#define IRQ_BASE    32          // ISA IRQ / GSI n arrives at vector IRQ_BASE + n
#define IRQ_PIT     0
#define IRQ_COM1    4
#define APIC_SPURIOUS_VECTOR 0xff

void idt_init(void);

// ---- Interrupt controllers (pic.c, apic.c, ioapic.c) ---------------------

bool pic_init(void);            // false: no 8259 answers
void pic_disable(void);
void pic_mask(int irq);
void pic_unmask(int irq);
void pic_set_level(int irq);
bool pic_spurious(int irq);
void pic_eoi(int irq);

bool apic_init(bool pic_wired);
bool apic_present(void);
uint32_t apic_id(void);
void apic_eoi(void);
uint32_t apic_msi_address(void);

int ioapic_init(void);          // redirection entries, 0: no I/O APIC
int ioapic_gsi(int isa_irq);
void ioapic_route(int gsi, int vector, bool level);
void ioapic_mask(int gsi);
void ioapic_unmask(int gsi);

// ---- Interrupts (irq.c) ---------------------------------------------------
// Lines are ISA IRQ numbers (the PCI interrupt_line the firmware set); the
// 8259s or the I/O APIC carry them, whichever reaches the CPU.

typedef void (*irq_handler_t)(void);
void irq_init(void);
void irq_reset(void);           // at every soft reset: Python's vectors are gone
void irq_dispatch(int vector);  // from isr_dispatch, interrupts off
void irq_set_handler(int irq, irq_handler_t handler);   // a C handler for a line
void irq_unmask(int irq);
void irq_mask(int irq);

// ---- Console (uart.c) -----------------------------------------------------

void uart_init(void);
void uart_putc(char c);
void uart_write(const char *s, size_t n);
void uart_puts(const char *s);
void uart_put_hex(uint32_t v);
int uart_rx_pop(void);          // next received byte, or -1
bool uart_rx_empty(void);

// ---- help() (help.c) ------------------------------------------------------

void help_init(void);               // after every mp_init(): the port's help() over the core's

// ---- A second terminal (dupterm.c) ---------------------------------------

void dupterm_reset(void);           // at every soft reset: nothing attached
bool dupterm_attached(void);
int dupterm_rx_chr(void);           // a byte from the attached stream, or -1
void dupterm_tx_strn(const char *str, size_t len);

// ---- Time (timer.c) -------------------------------------------------------

void timer_init(void);
uint64_t timer_us64(void);      // microseconds since boot
void timer_wait_us(uint32_t us);
void timer_wait_event(int32_t timeout_ms);
void pit_oneshot_us(uint32_t us);   // one PIT interrupt (IRQ 0) after us
void timer_halt_us(uint32_t us);    // interrupts off: sti;hlt until an interrupt or at most us
uint64_t timer_epoch_us(void);  // wall-clock microseconds since 1970 (from the RTC)
uint32_t timer_tsc_khz(void);

// ---- Memory (main.c) ------------------------------------------------------

extern uintptr_t dma_area_start, dma_area_end;
void dma_init(void);                   // the whole DMA area free (dma.c)
void dma_reclaim(void);                // at every soft reset: devices stop DMA, the area starts afresh
extern uintptr_t heap_area_start, heap_area_end;

// ---- Power (power.c) ------------------------------------------------------

// Exit statuses the host sees (documented in README.md): poweroff(0) -> 0;
// poweroff(n), 1 <= n <= 127 -> (n << 1) | 1 through isa-debug-exit.
#define EXIT_PYTHON_EXCEPTION   1       // uncaught exception in the boot script / user script
#define EXIT_FATAL              126     // MicroPython fatal error (nlr_jump_fail, assertion)
#define EXIT_CPU_EXCEPTION      127     // CPU exception (divide error, #GP, ...)
#define ISA_DEBUG_EXIT_PORT     0xf4

__attribute__((noreturn)) void x86_poweroff(int code);
__attribute__((noreturn)) void x86_fatal(const char *what);

#endif
