// The `x86` module: the machine as the VirtIO drivers see it.
//
// It exports exactly the names of docs/hardware-interface.md (port I/O,
// physical memory, DMA memory, barrier, ticks) plus mem8/mem16/mem32,
// addressof(), poweroff() and dupterm() (a second terminal, dupterm.c).
// Memory is identity mapped: an address is a physical address. read*/write* are on the drivers' ring hot paths, so
// they take the small-int fast path first.
#include <string.h>

#include "py/runtime.h"
#include "py/objint.h"
#include "py/smallint.h"
#include "py/mphal.h"
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
    return MP_OBJ_NEW_SMALL_INT(*(volatile uint16_t *)get_addr(addr));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_read16_obj, x86_read16);

static mp_obj_t x86_read32(mp_obj_t addr) {
    return new_uint32(*(volatile uint32_t *)get_addr(addr));
}
static MP_DEFINE_CONST_FUN_OBJ_1(x86_read32_obj, x86_read32);

static mp_obj_t x86_read64(mp_obj_t addr) {
    // Two 32-bit accesses, low half first (VirtIO 1.2, 4.1.3.1: a driver
    // may access 64-bit fields as two 32-bit halves).
    volatile uint32_t *p = (volatile uint32_t *)get_addr(addr);
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
    *(volatile uint16_t *)get_addr(addr) = get_value32(value);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write16_obj, x86_write16);

static mp_obj_t x86_write32(mp_obj_t addr, mp_obj_t value) {
    *(volatile uint32_t *)get_addr(addr) = get_value32(value);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write32_obj, x86_write32);

static mp_obj_t x86_write64(mp_obj_t addr, mp_obj_t value) {
    volatile uint32_t *p = (volatile uint32_t *)get_addr(addr);
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
    return mp_obj_new_bytes((const byte *)get_addr(addr), n);
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_read_obj, x86_read);

static mp_obj_t x86_write(mp_obj_t addr, mp_obj_t data) {
    uintptr_t a = get_addr(addr);
    mp_buffer_info_t bufinfo;
    mp_get_buffer_raise(data, &bufinfo, MP_BUFFER_READ);
    memmove((void *)a, bufinfo.buf, bufinfo.len);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(x86_write_obj, x86_write);

// ---- DMA memory -----------------------------------------------------------

// A bump allocator over the DMA area that main.c set aside outside the GC
// heap: never moved, never freed, so a device may hold it for good.
static mp_obj_t x86_dma_alloc(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_size, ARG_align };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_size, MP_ARG_REQUIRED | MP_ARG_INT, {.u_int = 0} },
        { MP_QSTR_align, MP_ARG_INT, {.u_int = 4096} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    mp_int_t size = args[ARG_size].u_int;
    mp_int_t align = args[ARG_align].u_int;
    if (size <= 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("size must be positive"));
    }
    if (align <= 0 || (align & (align - 1)) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("align must be a power of two"));
    }
    uintptr_t addr = (dma_area_next + align - 1) & ~(uintptr_t)(align - 1);
    if (addr < dma_area_next || addr > dma_area_end || (uintptr_t)size > dma_area_end - addr) {
        mp_raise_msg_varg(&mp_type_MemoryError,
            MP_ERROR_TEXT("DMA area exhausted: %u bytes asked, %u left"),
            (unsigned)size, (unsigned)(dma_area_end - dma_area_next));
    }
    dma_area_next = addr + size;
    memset((void *)addr, 0, size);
    return new_uint32(addr);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(x86_dma_alloc_obj, 1, x86_dma_alloc);

// At a soft reset Python's objects are gone, so nothing of ours still uses the DMA
// memory they allocated, but a device may still be writing into it (a posted receive
// buffer). Stop every PCI function's DMA (clear Bus Master Enable, PCI 3.0 6.2.2: the
// drivers set it again when they bind a device, after resetting it), then hand out
// the DMA area afresh. Without this, each soft reset (mpremote does one per command)
// followed by virtio.probe() would leak the rings of every device.
#define PCI_COMMAND             0x04
#define PCI_COMMAND_BUS_MASTER  0x0004
#define PCI_HEADER_TYPE_REG     0x0c
// virtio-mmio devices have no bus master bit: a reset (Status 0, spec 4.2.2)
// stops them. Only on machines without a PC chipset, where QEMU's microvm
// puts its window list (on pc and q35 those addresses may be a PCI BAR).
#define HOST_I440FX             0x12378086
#define HOST_Q35                0x29c08086
#define MMIO_WINDOWS            0xfeb00000u
#define MMIO_WINDOW_SIZE        0x200
#define MMIO_SLOTS              24
#define MMIO_MAGIC              0x74726976  // 'virt'
#define MMIO_DEVICE_ID          0x008
#define MMIO_STATUS             0x070
static void mmio_reset_all(void) {
    uint32_t host = pci_config_read32(0, 0, 0, 0);
    if (host == HOST_I440FX || host == HOST_Q35) {
        return;
    }
    for (int n = 0; n < MMIO_SLOTS; n++) {
        volatile uint32_t *w = (volatile uint32_t *)(MMIO_WINDOWS + n * MMIO_WINDOW_SIZE);
        if (w[0] != MMIO_MAGIC) {
            break;
        }
        if (w[MMIO_DEVICE_ID / 4] != 0) {
            w[MMIO_STATUS / 4] = 0;
        }
    }
}

void dma_reclaim(void) {
    mmio_reset_all();
    for (int bus = 0; bus < 256; bus++) {
        for (int dev = 0; dev < 32; dev++) {
            if ((pci_config_read32(bus, dev, 0, 0) & 0xffff) == 0xffff) {
                continue;
            }
            bool multi = (pci_config_read32(bus, dev, 0, PCI_HEADER_TYPE_REG) >> 16) & 0x80;
            for (int fn = 0; fn < (multi ? 8 : 1); fn++) {
                if ((pci_config_read32(bus, dev, fn, 0) & 0xffff) == 0xffff) {
                    continue;
                }
                uint32_t cmd = pci_config_read32(bus, dev, fn, PCI_COMMAND) & 0xffff;
                if (cmd & PCI_COMMAND_BUS_MASTER) {
                    // The status half written as 0: its bits are write-1-to-clear.
                    pci_config_write32(bus, dev, fn, PCI_COMMAND, cmd & ~PCI_COMMAND_BUS_MASTER);
                }
            }
        }
    }
    dma_area_next = dma_area_start;
}

static mp_obj_t x86_bytearray_at(mp_obj_t addr, mp_obj_t n_in) {
    mp_int_t n = mp_obj_get_int(n_in);
    if (n < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative length"));
    }
    return mp_obj_new_bytearray_by_ref(n, (void *)get_addr(addr));
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

static mp_obj_t x86_poweroff_py(size_t n_args, const mp_obj_t *args) {
    mp_int_t code = n_args > 0 ? mp_obj_get_int(args[0]) : 0;
    if (code < 0 || code > 127) {
        mp_raise_ValueError(MP_ERROR_TEXT("exit code must be 0-127"));
    }
    x86_poweroff(code);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(x86_poweroff_obj, 0, 1, x86_poweroff_py);

// ---- The module -----------------------------------------------------------

extern const mp_obj_fun_builtin_var_t x86_dupterm_obj;     // dupterm.c

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
};
static MP_DEFINE_CONST_DICT(x86_module_globals, x86_module_globals_table);

const mp_obj_module_t mp_module_x86 = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&x86_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR_x86, mp_module_x86);
