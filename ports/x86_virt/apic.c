// The local APIC (Intel SDM vol. 3, chapter 11): enabled with a spurious
// vector, LINT0 as ExtINT so the 8259s still reach the CPU, and the end of
// interrupt for what it delivered (MSI, the I/O APIC). An MSI message is a
// write of `data` (the vector, fixed delivery, edge) to 0xFEE00000 with the
// destination APIC ID in bits 12-19 (SDM 11.11).
#include "x86.h"

#define IA32_APIC_BASE_MSR      0x1b
#define APIC_BASE_ENABLE        (1 << 11)
#define APIC_ID                 0x20
#define APIC_TPR                0x80
#define APIC_EOI                0xb0
#define APIC_SVR                0xf0
#define APIC_SVR_ENABLE         0x100
#define APIC_LVT_LINT0          0x350
#define APIC_LVT_LINT1          0x360
#define APIC_LVT_ERROR          0x370
#define APIC_LVT_MASKED         0x10000
#define APIC_DM_EXTINT          0x700
#define APIC_DM_NMI             0x400
#define CPUID_1_EDX_APIC        (1 << 9)
#define MSI_ADDRESS_BASE        0xfee00000u

static volatile uint32_t *apic;

static inline uint32_t apic_read(int reg) {
    return apic[reg / 4];
}

static inline void apic_write(int reg, uint32_t v) {
    apic[reg / 4] = v;
}

static bool cpu_has_apic(void) {
    uint32_t a = 1, b, c = 0, d;
    __asm__ volatile ("cpuid" : "+a" (a), "=b" (b), "+c" (c), "=d" (d));
    return d & CPUID_1_EDX_APIC;
}

bool apic_init(bool pic_wired) {
    if (!cpu_has_apic()) {
        return false;
    }
    uint32_t lo, hi;
    __asm__ volatile ("rdmsr" : "=a" (lo), "=d" (hi) : "c" (IA32_APIC_BASE_MSR));
    lo |= APIC_BASE_ENABLE;
    __asm__ volatile ("wrmsr" : : "a" (lo), "d" (hi), "c" (IA32_APIC_BASE_MSR));
    apic = (volatile uint32_t *)(lo & 0xfffff000u);
    apic_write(APIC_TPR, 0);                            // accept every priority
    apic_write(APIC_LVT_ERROR, APIC_LVT_MASKED);
    apic_write(APIC_LVT_LINT0, pic_wired ? APIC_DM_EXTINT : APIC_LVT_MASKED);
    apic_write(APIC_LVT_LINT1, APIC_DM_NMI);
    apic_write(APIC_SVR, APIC_SVR_ENABLE | APIC_SPURIOUS_VECTOR);
    return true;
}

bool apic_present(void) {
    return apic != 0;
}

uint32_t apic_id(void) {
    return apic ? apic_read(APIC_ID) >> 24 : 0;
}

void apic_eoi(void) {
    apic_write(APIC_EOI, 0);
}

uint32_t apic_msi_address(void) {
    return MSI_ADDRESS_BASE | (apic_id() << 12);
}
