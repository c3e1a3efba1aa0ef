// The `x86` module: the machine as the VirtIO drivers see it.
//
// It exports exactly the names of docs/hardware-interface.md (port I/O,
// physical memory, DMA memory, barrier, ticks, interrupts: irq.c) plus
// mem8/mem16/mem32, addressof(), poweroff(), dupterm() (a second terminal,
// dupterm.c) and irq_controller().
// Memory is identity mapped: an address is a physical address. read*/write* are on the drivers' ring hot paths, so
// they take the small-int fast path first.
#include <string.h>

#include "py/runtime.h"
#include "py/objint.h"
#include "py/smallint.h"
#include "py/mphal.h"
#include "shared/runtime/pyexec.h"
#include "modtime.h"
#include "x86.h"

// ---- Argument conversion --------------------------------------------------

// An address or port: a non-negative int below 2**32.
static inline uintptr_t get_addr(mp_obj_t o) {
    if (mp_obj_is_small_int(o)) {
        mp_int_t v = MP_OBJ_SMALL_INT_VALUE(o);
        if (v >= 0) {
            return v;
        }
    } else if (mp_obj_is_int(o)) {
        return mp_obj_int_get_uint_checked(o);     // OverflowError if out of range
    } else {
        mp_obj_get_int(o);                          // TypeError naming the type
    }
    mp_raise_ValueError(MP_ERROR_TEXT("negative address"));
}

// The address of an n-byte range, which must end at or below 4 GiB: on a 32-bit
// machine a range past the top would silently wrap around to address 0.
static inline uintptr_t get_range(mp_obj_t o, size_t n) {
    uintptr_t a = get_addr(o);
    if (n > 1 && a > UINTPTR_MAX - (n - 1)) {
        mp_raise_msg_varg(&mp_type_ValueError,
            MP_ERROR_TEXT("%u bytes at 0x%x run past the 4 GiB address space"), (unsigned)n, (unsigned)a);
    }
    return a;
}

static inline uint16_t get_port(mp_obj_t o) {
    // Small ints take the fast path; a long int (e.g. the result of masking
    // with 0xFFFFFFFC on 32-bit MicroPython) is fine if its value is in range.
    mp_int_t v = mp_obj_is_small_int(o) ? MP_OBJ_SMALL_INT_VALUE(o) : mp_obj_get_int(o);
    if (v < 0 || v > 0xffff) {
        mp_raise_ValueError(MP_ERROR_TEXT("port must be 0-0xffff"));
    }
    return v;
}

// A value to store: any int, masked to the access width (two's complement).
static inline uint32_t get_value32(mp_obj_t o) {
    if (mp_obj_is_small_int(o)) {
        return MP_OBJ_SMALL_INT_VALUE(o);
    }
    return mp_obj_get_int_truncated(o);
}

static uint64_t get_value64(mp_obj_t o) {
    if (mp_obj_is_small_int(o)) {
        return (int64_t)MP_OBJ_SMALL_INT_VALUE(o);
    }
    if (!mp_obj_is_int(o)) {
        mp_obj_get_int(o);
    }
    uint64_t v;
    mp_obj_int_to_bytes_impl(o, false, sizeof(v), (byte *)&v);
    return v;
}

static inline mp_obj_t new_uint32(uint32_t v) {
    return v <= MP_SMALL_INT_MAX ? MP_OBJ_NEW_SMALL_INT(v) : mp_obj_new_int_from_uint(v);
}

// ---- Port I/O -------------------------------------------------------------

static mp_obj_t x86_inb(mp_obj_t port) {
    return MP_OBJ_NEW_SMALL_INT(inb(get_port(port)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_inb_obj, x86_inb);

static mp_obj_t x86_inw(mp_obj_t port) {
    return MP_OBJ_NEW_SMALL_INT(inw(get_port(port)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_inw_obj, x86_inw);

static mp_obj_t x86_inl(mp_obj_t port) {
    return new_uint32(inl(get_port(port)));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_inl_obj, x86_inl);

static mp_obj_t x86_outb(mp_obj_t port, mp_obj_t value) {
    outb(get_port(port), get_value32(value));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_outb_obj, x86_outb);

static mp_obj_t x86_outw(mp_obj_t port, mp_obj_t value) {
    outw(get_port(port), get_value32(value));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_outw_obj, x86_outw);

static mp_obj_t x86_outl(mp_obj_t port, mp_obj_t value) {
    outl(get_port(port), get_value32(value));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_outl_obj, x86_outl);

// ---- Physical memory, little-endian ---------------------------------------
// volatile: each call is exactly one access of its width (MMIO registers).

static mp_obj_t x86_read8(mp_obj_t addr) {
    return MP_OBJ_NEW_SMALL_INT(*(volatile uint8_t *)get_addr(addr));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_read8_obj, x86_read8);

static mp_obj_t x86_read16(mp_obj_t addr) {
    return MP_OBJ_NEW_SMALL_INT(*(volatile uint16_t *)get_range(addr, 2));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_read16_obj, x86_read16);

static mp_obj_t x86_read32(mp_obj_t addr) {
    return new_uint32(*(volatile uint32_t *)get_range(addr, 4));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_read32_obj, x86_read32);

static mp_obj_t x86_read64(mp_obj_t addr) {
    // Two 32-bit accesses, low half first (VirtIO 1.2, 4.1.3.1: a driver
    // may access 64-bit fields as two 32-bit halves).
    volatile uint32_t *p = (volatile uint32_t *)get_range(addr, 8);
    uint32_t lo = p[0];
    uint32_t hi = p[1];
    if (hi == 0) {
        return new_uint32(lo);
    }
    return mp_obj_new_int_from_ull(((uint64_t)hi << 32) | lo);
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_read64_obj, x86_read64);

static mp_obj_t x86_write8(mp_obj_t addr, mp_obj_t value) {
    *(volatile uint8_t *)get_addr(addr) = get_value32(value);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write8_obj, x86_write8);

static mp_obj_t x86_write16(mp_obj_t addr, mp_obj_t value) {
    *(volatile uint16_t *)get_range(addr, 2) = get_value32(value);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write16_obj, x86_write16);

static mp_obj_t x86_write32(mp_obj_t addr, mp_obj_t value) {
    *(volatile uint32_t *)get_range(addr, 4) = get_value32(value);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write32_obj, x86_write32);

static mp_obj_t x86_write64(mp_obj_t addr, mp_obj_t value) {
    volatile uint32_t *p = (volatile uint32_t *)get_range(addr, 8);
    uint64_t v = get_value64(value);
    p[0] = (uint32_t)v;
    p[1] = (uint32_t)(v >> 32);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write64_obj, x86_write64);

static mp_obj_t x86_read(mp_obj_t addr, mp_obj_t n_in) {
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative length"));
    }
    return mp_obj_new_bytes((const byte *)get_range(addr, n), n);
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_read_obj, x86_read);

static mp_obj_t x86_write(mp_obj_t addr, mp_obj_t data) {
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(data, &bufinfo, MP_BUFFER_READ);
    uintptr_t a = get_range(addr, bufinfo.len);
    memmove((void *)a, bufinfo.buf, bufinfo.len);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write_obj, x86_write);

// ---- DMA memory -----------------------------------------------------------
// dma_alloc and dma_free are in dma.c.
extern const mp_obj_fun_builtin_var_t x86_dma_alloc_obj;
extern const mp_obj_fun_builtin_fixed_t x86_dma_free_obj;

static mp_obj_t x86_bytearray_at(mp_obj_t addr, mp_obj_t n_in) {
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative length"));
    }
    return mp_obj_new_bytearray_by_ref(n, (void *)get_range(addr, n));
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_bytearray_at_obj, x86_bytearray_at);

static mp_obj_t x86_addressof(mp_obj_t buf) {
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(buf, &bufinfo, MP_BUFFER_READ);
    return new_uint32((uintptr_t)bufinfo.buf);
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_addressof_obj, x86_addressof);

static mp_obj_t x86_barrier(void) {
    cpu_barrier();
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_0(x86_barrier_obj, x86_barrier);

// ---- mem8 / mem16 / mem32 -------------------------------------------------
// Like MicroPython's machine.mem8/16/32 (aligned access by subscript), but
// the values read are unsigned.

typedef struct {
    mp_obj_base_t base;
    unsigned width;         // bytes
} x86_mem_obj_t;

static void x86_mem_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    (void)kind;
    x86_mem_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_printf(print, "<%u-bit memory>", 8 * self->width);
}

static mp_obj_t x86_mem_subscr(mp_obj_t self_in, mp_obj_t index, mp_obj_t value) {
    x86_mem_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (value == MP_OBJ_NULL) {
        return MP_OBJ_NULL;     // delete: not supported
    }
    uintptr_t addr = get_addr(index);
    if (addr & (self->width - 1)) {
        mp_raise_msg_varg(&mp_type_ValueError,
            MP_ERROR_TEXT("memory address not aligned to %d bytes"), self->width);
    }
    if (value == MP_OBJ_SENTINEL) {
        switch (self->width) {
            case 1:
                return MP_OBJ_NEW_SMALL_INT(*(volatile uint8_t *)addr);
            case 2:
                return MP_OBJ_NEW_SMALL_INT(*(volatile uint16_t *)addr);
            default:
                return new_uint32(*(volatile uint32_t *)addr);
        }
    }
    uint32_t v = get_value32(value);
    switch (self->width) {
        case 1:
            *(volatile uint8_t *)addr = v;
            break;
        case 2:
            *(volatile uint16_t *)addr = v;
            break;
        default:
            *(volatile uint32_t *)addr = v;
            break;
    }
    return mp_const_none;
}

static MP_DEFINE_CONST_OBJ_TYPE(
    x86_mem_type,
    MP_QSTR_mem,
    MP_TYPE_FLAG_NONE,
    print, x86_mem_print,
    subscr, x86_mem_subscr
    );

static const x86_mem_obj_t x86_mem8_obj = { { &x86_mem_type }, 1 };
static const x86_mem_obj_t x86_mem16_obj = { { &x86_mem_type }, 2 };
static const x86_mem_obj_t x86_mem32_obj = { { &x86_mem_type }, 4 };

// ---- Power ----------------------------------------------------------------

// From the raw REPL (mpremote) the host waits for the end of the code's output
// and error (Ctrl-D, Ctrl-D) and then closes its end of the serial line; if QEMU
// went away first, mpremote ends in a pyserial traceback. So end the output as
// the raw REPL does and give the host this long to let go.
#define RAW_REPL_GOODBYE_MS     200

static mp_obj_t x86_poweroff_py(size_t n_args, const mp_obj_t *args) {
    mp_int_t code = n_args > 0 ? mp_obj_get_int(args[0]) : 0;
    if (code < 0 || code > 127) {
        mp_raise_ValueError(MP_ERROR_TEXT("exit code must be 0-127"));
    }
    if (pyexec_mode_kind == PYEXEC_MODE_RAW_REPL) {
        mp_hal_stdout_tx_strn("\x04\x04", 2);
        mp_hal_delay_ms(RAW_REPL_GOODBYE_MS);
    }
    x86_poweroff(code);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(x86_poweroff_obj, 0, 1, x86_poweroff_py);

// ---- The module -----------------------------------------------------------

extern const mp_obj_fun_builtin_var_t x86_dupterm_obj;     // dupterm.c
// irq.c: interrupts (docs/hardware-interface.md, "Interrupts")
extern const mp_obj_fun_builtin_fixed_t x86_msi_alloc_obj, x86_msi_free_obj, x86_msi_message_obj,
    x86_intx_vector_obj, x86_irq_attach_obj, x86_irq_detach_obj, x86_irq_mask_obj,
    x86_irq_unmask_obj, x86_irq_count_obj, x86_irq_wait_obj, x86_irq_controller_obj;

static const mp_rom_map_elem_t x86_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_x86) },
    { MP_ROM_QSTR(MP_QSTR_inb), MP_ROM_PTR(&x86_inb_obj) },
    { MP_ROM_QSTR(MP_QSTR_inw), MP_ROM_PTR(&x86_inw_obj) },
    { MP_ROM_QSTR(MP_QSTR_inl), MP_ROM_PTR(&x86_inl_obj) },
    { MP_ROM_QSTR(MP_QSTR_outb), MP_ROM_PTR(&x86_outb_obj) },
    { MP_ROM_QSTR(MP_QSTR_outw), MP_ROM_PTR(&x86_outw_obj) },
    { MP_ROM_QSTR(MP_QSTR_outl), MP_ROM_PTR(&x86_outl_obj) },
    { MP_ROM_QSTR(MP_QSTR_read8), MP_ROM_PTR(&x86_read8_obj) },
    { MP_ROM_QSTR(MP_QSTR_read16), MP_ROM_PTR(&x86_read16_obj) },
    { MP_ROM_QSTR(MP_QSTR_read32), MP_ROM_PTR(&x86_read32_obj) },
    { MP_ROM_QSTR(MP_QSTR_read64), MP_ROM_PTR(&x86_read64_obj) },
    { MP_ROM_QSTR(MP_QSTR_write8), MP_ROM_PTR(&x86_write8_obj) },
    { MP_ROM_QSTR(MP_QSTR_write16), MP_ROM_PTR(&x86_write16_obj) },
    { MP_ROM_QSTR(MP_QSTR_write32), MP_ROM_PTR(&x86_write32_obj) },
    { MP_ROM_QSTR(MP_QSTR_write64), MP_ROM_PTR(&x86_write64_obj) },
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&x86_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_write), MP_ROM_PTR(&x86_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_dma_alloc), MP_ROM_PTR(&x86_dma_alloc_obj) },
    { MP_ROM_QSTR(MP_QSTR_dma_free), MP_ROM_PTR(&x86_dma_free_obj) },
    { MP_ROM_QSTR(MP_QSTR_bytearray_at), MP_ROM_PTR(&x86_bytearray_at_obj) },
    { MP_ROM_QSTR(MP_QSTR_barrier), MP_ROM_PTR(&x86_barrier_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_ms), MP_ROM_PTR(&mp_time_ticks_ms_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_us), MP_ROM_PTR(&mp_time_ticks_us_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_diff), MP_ROM_PTR(&mp_time_ticks_diff_obj) },
    { MP_ROM_QSTR(MP_QSTR_mem8), MP_ROM_PTR(&x86_mem8_obj) },
    { MP_ROM_QSTR(MP_QSTR_mem16), MP_ROM_PTR(&x86_mem16_obj) },
    { MP_ROM_QSTR(MP_QSTR_mem32), MP_ROM_PTR(&x86_mem32_obj) },
    { MP_ROM_QSTR(MP_QSTR_addressof), MP_ROM_PTR(&x86_addressof_obj) },
    { MP_ROM_QSTR(MP_QSTR_poweroff), MP_ROM_PTR(&x86_poweroff_obj) },
    { MP_ROM_QSTR(MP_QSTR_dupterm), MP_ROM_PTR(&x86_dupterm_obj) },
    { MP_ROM_QSTR(MP_QSTR_msi_alloc), MP_ROM_PTR(&x86_msi_alloc_obj) },
    { MP_ROM_QSTR(MP_QSTR_msi_free), MP_ROM_PTR(&x86_msi_free_obj) },
    { MP_ROM_QSTR(MP_QSTR_msi_message), MP_ROM_PTR(&x86_msi_message_obj) },
    { MP_ROM_QSTR(MP_QSTR_intx_vector), MP_ROM_PTR(&x86_intx_vector_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_attach), MP_ROM_PTR(&x86_irq_attach_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_detach), MP_ROM_PTR(&x86_irq_detach_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_mask), MP_ROM_PTR(&x86_irq_mask_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_unmask), MP_ROM_PTR(&x86_irq_unmask_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_count), MP_ROM_PTR(&x86_irq_count_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_wait), MP_ROM_PTR(&x86_irq_wait_obj) },
    { MP_ROM_QSTR(MP_QSTR_irq_controller), MP_ROM_PTR(&x86_irq_controller_obj) },
};
static MP_DEFINE_CONST_DICT(x86_module_globals, x86_module_globals_table);

const mp_obj_module_t mp_module_x86 = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&x86_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_x86, mp_module_x86);
