// Interrupts: lines and vectors, what a handler records, and the x86
// module's interrupt calls (docs/hardware-interface.md, "Interrupts").
//
// Routing. ISA IRQ / PCI INTx line n (the interrupt_line the firmware wrote
// in configuration space) arrives at vector IRQ_BASE + n, through the 8259s
// when they reach the CPU (pc, q35), else through the I/O APIC (a machine
// without a working PIC, e.g. -M microvm). MSI vectors are handed out from
// MSI_FIRST to MSI_LAST; a device raises one by writing the vector to the
// local APIC's MSI address.
//
// What an interrupt does: the handler here only counts it, marks it pending
// (for irq_wait) and, if Python handlers are attached, schedules one run of
// them through micropython.schedule: Python never runs inside the interrupt.
// PCI INTx is level triggered and shared: its line is masked when it fires
// and unmasked after the attached handlers ran (they read their devices' ISR,
// which lowers the line), or by irq_unmask().
#include "py/runtime.h"
#include "py/mperrno.h"
#include "py/mphal.h"
#include "x86.h"

#define VECTORS         256
#define LINES_PIC       16
#define LINES_MAX       24
#define MSI_FIRST       64
#define MSI_LAST        239
#define WORDS           (VECTORS / 32)
#define WAKE_MAX_US     50000       // the PIT's one-shot reach (timer.c)
#define LINE_CASCADE    2           // the slave PIC; GSI 2 is the PIT's on the I/O APIC

enum { KIND_FREE, KIND_INTX, KIND_MSI };

static bool use_ioapic;
static int lines;                   // INTx lines that can be routed
static irq_handler_t line_handlers[LINES_MAX];  // the port's own lines (PIT, UART)
static uint8_t kind[VECTORS];
static volatile uint32_t count[VECTORS];
// Bit v of each set: pending (for irq_wait), to_run (handlers), masked, held
// (fired while masked: reported at irq_unmask).
static volatile uint32_t pending[WORDS], to_run[WORDS], masked[WORDS], held[WORDS];
static volatile bool run_scheduled;

MP_REGISTER_ROOT_POINTER(mp_obj_t x86_irq_handlers[256]);
#define HANDLERS MP_STATE_VM(x86_irq_handlers)

static inline bool bit_get(volatile uint32_t *set, int v) {
    return set[v >> 5] & (1u << (v & 31));
}
static inline void bit_set(volatile uint32_t *set, int v) {
    set[v >> 5] |= 1u << (v & 31);
}
static inline void bit_clear(volatile uint32_t *set, int v) {
    set[v >> 5] &= ~(1u << (v & 31));
}

static inline uint32_t irq_save(void) {
    uint32_t flags;
    __asm__ volatile ("pushfl; popl %0; cli" : "=r" (flags) : : "memory");
    return flags;
}
static inline void irq_restore(uint32_t flags) {
    __asm__ volatile ("pushl %0; popfl" : : "r" (flags) : "memory", "cc");
}

// ---- Lines ----------------------------------------------------------------

static void line_route(int irq, bool level) {
    if (use_ioapic) {
        ioapic_route(ioapic_gsi(irq), IRQ_BASE + irq, level);
    } else if (level) {
        pic_set_level(irq);
    }
}

void irq_mask(int irq) {
    if (use_ioapic) {
        ioapic_mask(ioapic_gsi(irq));
    } else {
        pic_mask(irq);
    }
}

void irq_unmask(int irq) {
    if (use_ioapic) {
        ioapic_unmask(ioapic_gsi(irq));
    } else {
        pic_unmask(irq);
    }
}

void irq_set_handler(int irq, irq_handler_t handler) {
    line_handlers[irq] = handler;
    line_route(irq, false);         // the port's own lines are ISA: edge
}

// Does an interrupt through the 8259s reach the CPU? The PIT fires once in
// 1 ms with interrupts on; on microvm the PIC answers but is not wired.
static volatile bool probe_seen;
static void probe_irq(void) {
    probe_seen = true;
}

static bool pic_delivers(void) {
    irq_handler_t saved = line_handlers[IRQ_PIT];
    line_handlers[IRQ_PIT] = probe_irq;
    probe_seen = false;
    uint64_t deadline = timer_us64() + 20000;
    pit_oneshot_us(1000);
    pic_unmask(IRQ_PIT);
    cpu_sti();                      // no hlt: nothing might ever wake it
    while (!probe_seen && timer_us64() < deadline) {
        __asm__ volatile ("pause");
    }
    cpu_cli();
    pic_mask(IRQ_PIT);
    line_handlers[IRQ_PIT] = saved;
    return probe_seen;
}

// Called once at boot after timer_init (the probe needs the PIT calibrated)
// with interrupts off. Lines the port registered before (the console) are
// routed again here, on whichever controller won.
void irq_init(void) {
    bool pic = pic_init();
    apic_init(pic);
    int entries = ioapic_init();
    use_ioapic = false;
    lines = LINES_PIC;
    if (entries > 0 && !(pic && pic_delivers())) {
        pic_disable();
        use_ioapic = true;
        lines = entries < LINES_MAX ? entries : LINES_MAX;
    }
    for (int irq = 0; irq < LINES_PIC; irq++) {
        if (line_handlers[irq]) {
            line_route(irq, false);
            if (irq != IRQ_PIT) {   // the timer unmasks its line only while it waits
                irq_unmask(irq);
            }
        }
    }
}

// ---- What an interrupt does -------------------------------------------------

static mp_obj_t irq_run(mp_obj_t unused);
static MP_DEFINE_CONST_FUN_OBJ_1(irq_run_obj, irq_run);

static void report(int v) {
    bit_set(pending, v);
    if (HANDLERS[v] != MP_OBJ_NULL) {
        bit_set(to_run, v);
        if (!run_scheduled) {
            run_scheduled = mp_sched_schedule(MP_OBJ_FROM_PTR(&irq_run_obj), mp_const_none);
        }
    }
}

static void record(int v) {
    count[v]++;
    if (kind[v] == KIND_INTX) {
        irq_mask(v - IRQ_BASE);     // level: quiet until its devices are served
    }
    if (bit_get(masked, v)) {
        bit_set(held, v);
    } else {
        report(v);
    }
}

void irq_dispatch(int vector) {
    if (vector == APIC_SPURIOUS_VECTOR) {
        return;                     // no EOI for the APIC's spurious vector
    }
    int line = vector - IRQ_BASE;
    bool from_pic = !use_ioapic && line >= 0 && line < LINES_PIC;
    if (from_pic && pic_spurious(line)) {
        return;
    }
    if (line >= 0 && line < LINES_MAX && line_handlers[line]) {
        line_handlers[line]();
    } else {
        record(vector);
    }
    if (from_pic) {
        pic_eoi(line);
    } else if (apic_present()) {
        apic_eoi();
    }
}

// The scheduled run of the attached handlers, outside any interrupt. A
// handler that raises is reported and the others still run.
static void call_handlers(int v) {
    mp_obj_t list = HANDLERS[v];
    if (list == MP_OBJ_NULL) {
        return;
    }
    size_t n;
    mp_obj_t *items;
    mp_obj_list_get(list, &n, &items);
    for (size_t i = 0; i < n; i++) {
        nlr_buf_t nlr;
        if (nlr_push(&nlr) == 0) {
            mp_call_function_1(items[i], MP_OBJ_NEW_SMALL_INT(v));
            nlr_pop();
        } else {
            mp_printf(&mp_plat_print, "interrupt handler for vector %d raised: ", v);
            mp_obj_print_exception(&mp_plat_print, MP_OBJ_FROM_PTR(nlr.ret_val));
        }
        mp_obj_list_get(list, &n, &items);     // a handler may have detached itself
    }
}

static mp_obj_t irq_run(mp_obj_t unused) {
    (void)unused;
    run_scheduled = false;
    for (int w = 0; w < WORDS; w++) {
        uint32_t flags = irq_save();
        uint32_t bits = to_run[w];
        to_run[w] = 0;
        irq_restore(flags);
        for (int b = 0; bits; b++, bits >>= 1) {
            if (bits & 1) {
                int v = w * 32 + b;
                call_handlers(v);
                if (kind[v] == KIND_INTX && !bit_get(masked, v)) {
                    irq_unmask(v - IRQ_BASE);
                }
            }
        }
    }
    return mp_const_none;
}

void irq_reset(void) {
    uint32_t flags = irq_save();
    for (int v = 0; v < VECTORS; v++) {
        if (kind[v] == KIND_INTX) {
            irq_mask(v - IRQ_BASE);
        }
        kind[v] = KIND_FREE;
        count[v] = 0;
        HANDLERS[v] = MP_OBJ_NULL;
    }
    for (int w = 0; w < WORDS; w++) {
        pending[w] = to_run[w] = masked[w] = held[w] = 0;
    }
    run_scheduled = false;
    irq_restore(flags);
}

// ---- The x86 module's interrupt calls -----------------------------------------

static int get_vector(mp_obj_t o) {
    mp_int_t v = mp_obj_get_int(o);
    if (v < 0 || v >= VECTORS || kind[v] == KIND_FREE) {
        mp_raise_msg_varg(&mp_type_ValueError,
            MP_ERROR_TEXT("vector %d is neither an allocated MSI vector nor a routed INTx line"), (int)v);
    }
    return v;
}

static mp_obj_t x86_msi_alloc(void) {
    if (!apic_present()) {
        mp_raise_OSError(MP_ENODEV);
    }
    for (int v = MSI_FIRST; v <= MSI_LAST; v++) {
        if (kind[v] == KIND_FREE) {
            uint32_t flags = irq_save();
            kind[v] = KIND_MSI;
            count[v] = 0;
            bit_clear(pending, v);
            bit_clear(to_run, v);
            bit_clear(masked, v);
            bit_clear(held, v);
            irq_restore(flags);
            return MP_OBJ_NEW_SMALL_INT(v);
        }
    }
    mp_raise_OSError(MP_ENOSPC);
}
MP_DEFINE_CONST_FUN_OBJ_0(x86_msi_alloc_obj, x86_msi_alloc);

static int get_msi_vector(mp_obj_t o) {
    int v = get_vector(o);
    if (kind[v] != KIND_MSI) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("vector %d is an INTx line, not MSI"), v);
    }
    return v;
}

static mp_obj_t x86_msi_free(mp_obj_t vector) {
    int v = get_msi_vector(vector);
    uint32_t flags = irq_save();
    kind[v] = KIND_FREE;
    bit_clear(pending, v);
    bit_clear(to_run, v);
    HANDLERS[v] = MP_OBJ_NULL;
    irq_restore(flags);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_msi_free_obj, x86_msi_free);

static mp_obj_t x86_msi_message(mp_obj_t vector) {
    int v = get_msi_vector(vector);
    mp_obj_t msg[2] = { mp_obj_new_int_from_uint(apic_msi_address()), MP_OBJ_NEW_SMALL_INT(v) };
    return mp_obj_new_tuple(2, msg);
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_msi_message_obj, x86_msi_message);

static mp_obj_t x86_intx_vector(mp_obj_t line_in) {
    mp_int_t line = mp_obj_get_int(line_in);
    if (line < 0 || line >= lines || line == LINE_CASCADE || line_handlers[line]) {
        mp_raise_msg_varg(&mp_type_ValueError,
            MP_ERROR_TEXT("no INTx line %d here (lines 0-%d, less the timer, cascade and console)"),
            (int)line, lines - 1);
    }
    int v = IRQ_BASE + line;
    if (kind[v] != KIND_INTX) {
        kind[v] = KIND_INTX;
        line_route(line, true);
    }
    if (!bit_get(masked, v)) {
        irq_unmask(line);
    }
    return MP_OBJ_NEW_SMALL_INT(v);
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_intx_vector_obj, x86_intx_vector);

static mp_obj_t x86_irq_attach(mp_obj_t vector, mp_obj_t handler) {
    int v = get_vector(vector);
    if (!mp_obj_is_callable(handler)) {
        mp_raise_TypeError(MP_ERROR_TEXT("handler must be callable"));
    }
    if (HANDLERS[v] == MP_OBJ_NULL) {
        HANDLERS[v] = mp_obj_new_list(0, NULL);
    }
    mp_obj_list_append(HANDLERS[v], handler);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(x86_irq_attach_obj, x86_irq_attach);

static mp_obj_t x86_irq_detach(mp_obj_t vector, mp_obj_t handler) {
    int v = get_vector(vector);
    mp_obj_t list = HANDLERS[v];
    if (list == MP_OBJ_NULL) {
        mp_raise_ValueError(MP_ERROR_TEXT("handler not attached"));
    }
    mp_obj_list_remove(list, handler);     // ValueError if it is not there
    size_t n;
    mp_obj_t *items;
    mp_obj_list_get(list, &n, &items);
    if (n == 0) {
        HANDLERS[v] = MP_OBJ_NULL;
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_2(x86_irq_detach_obj, x86_irq_detach);

static mp_obj_t x86_irq_mask(mp_obj_t vector) {
    int v = get_vector(vector);
    uint32_t flags = irq_save();
    bit_set(masked, v);
    if (kind[v] == KIND_INTX) {
        irq_mask(v - IRQ_BASE);
    }
    irq_restore(flags);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_irq_mask_obj, x86_irq_mask);

static mp_obj_t x86_irq_unmask(mp_obj_t vector) {
    int v = get_vector(vector);
    uint32_t flags = irq_save();
    bit_clear(masked, v);
    if (bit_get(held, v)) {
        bit_clear(held, v);
        report(v);
    }
    if (kind[v] == KIND_INTX) {
        irq_unmask(v - IRQ_BASE);   // a line still asserted fires again now
    }
    irq_restore(flags);
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_irq_unmask_obj, x86_irq_unmask);

static mp_obj_t x86_irq_count(mp_obj_t vector) {
    return mp_obj_new_int_from_uint(count[get_vector(vector)]);
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_irq_count_obj, x86_irq_count);

// Take the pending set (called with interrupts off; returns with them on
// when it took some): a tuple of vectors, or NULL. If the tuple cannot be
// allocated (MemoryError, or Ctrl-C meanwhile) what was taken goes back.
static mp_obj_t take_pending(void) {
    uint32_t got[WORDS];
    int n = 0;
    for (int w = 0; w < WORDS; w++) {
        got[w] = pending[w];
        pending[w] = 0;
        n += __builtin_popcount(got[w]);
    }
    if (n == 0) {
        return MP_OBJ_NULL;
    }
    cpu_sti();
    nlr_buf_t nlr;
    if (nlr_push(&nlr) != 0) {
        uint32_t flags = irq_save();
        for (int w = 0; w < WORDS; w++) {
            pending[w] |= got[w];
        }
        irq_restore(flags);
        nlr_jump(nlr.ret_val);
    }
    mp_obj_tuple_t *t = MP_OBJ_TO_PTR(mp_obj_new_tuple(n, NULL));
    nlr_pop();
    int i = 0;
    for (int v = 0; v < VECTORS; v++) {
        if (got[v >> 5] & (1u << (v & 31))) {
            t->items[i++] = MP_OBJ_NEW_SMALL_INT(v);
        }
    }
    return MP_OBJ_FROM_PTR(t);
}

// Halt (sti;hlt) until an interrupt is pending or the deadline passes; the
// PIT wakes the CPU at least every 50 ms to look at the clock. Scheduled
// handlers and Ctrl-C run meanwhile.
static mp_obj_t x86_irq_wait(mp_obj_t timeout_in) {
    mp_int_t timeout_ms = mp_obj_get_int(timeout_in);
    uint64_t deadline = timer_us64() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
    for (;;) {
        mp_handle_pending(true);
        cpu_cli();
        mp_obj_t got = take_pending();      // turns interrupts back on when it has some
        if (got != MP_OBJ_NULL) {
            mp_handle_pending(true);        // the handlers of what fired run before we return
            return got;
        }
        uint64_t now = timer_us64();
        if (timeout_ms >= 0 && now >= deadline) {
            cpu_sti();
            return mp_const_empty_tuple;
        }
        if (timeout_ms < 0) {
            cpu_sti_hlt();
        } else {
            uint64_t left = deadline - now;
            timer_halt_us(left < WAKE_MAX_US ? (uint32_t)left : WAKE_MAX_US);
        }
    }
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_irq_wait_obj, x86_irq_wait);

// How the lines are carried, for tests and the curious: 'pic' or 'ioapic'.
static mp_obj_t x86_irq_controller(void) {
    return MP_OBJ_NEW_QSTR(use_ioapic ? MP_QSTR_ioapic : MP_QSTR_pic);
}
MP_DEFINE_CONST_FUN_OBJ_0(x86_irq_controller_obj, x86_irq_controller);
