// DMA memory: x86.dma_alloc(size, align=4096) and x86.dma_free(addr).
//
// main.c sets the DMA area aside outside the GC heap, so a block never moves
// while a device holds its address. Blocks are handed out first fit from a list
// of free extents sorted by address; a freed block is merged with the free
// neighbours it touches, so memory given back by a device (virtio.probe() frees
// the rings of the devices it replaces) serves the next one whole.
//
// Where the bookkeeping lives:
//  - each free extent describes itself in its own first bytes (a node: next
//    extent, size, check word), so freeing never allocates;
//  - the size of each block in use is in a dict on the GC heap (address ->
//    size), reachable from a root pointer. It is what makes dma_free(addr)
//    exact: an address that is not a live block is refused, a double free too.
//    A soft reset drops the dict together with the rest of the heap.
// Extents and blocks are multiples of GRANULE bytes at GRANULE-aligned addresses.
#include <string.h>

#include "py/runtime.h"
#include "py/smallint.h"
#include "py/objint.h"
#include "x86.h"

#define GRANULE     16u

typedef struct _free_extent_t {
    struct _free_extent_t *next;    // the next free extent, at a higher address, or NULL
    uint32_t size;                  // bytes, a multiple of GRANULE
    uint32_t check;                 // node_check(): a stray write here is noticed
} free_extent_t;

static free_extent_t *free_list;

MP_REGISTER_ROOT_POINTER(mp_obj_t x86_dma_blocks);
#define BLOCKS MP_STATE_VM(x86_dma_blocks)

static uint32_t node_check(const free_extent_t *e) {
    return ~((uintptr_t)e ^ (uintptr_t)e->next ^ e->size ^ 0x444d4121u);
}

static void set_node(free_extent_t *e, free_extent_t *next, uint32_t size) {
    e->next = next;
    e->size = size;
    e->check = node_check(e);
}

// A node that lies outside the area or fails its check means something wrote into
// free DMA memory (a device still running, a write past a block's end): stop with
// a clear error rather than hand out memory twice.
static free_extent_t *checked(free_extent_t *e) {
    uintptr_t a = (uintptr_t)e;
    if (a < dma_area_start || a >= dma_area_end || (a & (GRANULE - 1))
        || e->check != node_check(e) || e->size > dma_area_end - a
        || (e->next != NULL && (uintptr_t)e->next <= a)) {
        mp_raise_msg_varg(&mp_type_RuntimeError,
            MP_ERROR_TEXT("DMA free list damaged at 0x%x (memory written after dma_free?)"),
            (unsigned)a);
    }
    return e;
}

void dma_init(void) {
    free_list = NULL;
    BLOCKS = MP_OBJ_NULL;
    uintptr_t start = (dma_area_start + GRANULE - 1) & ~(uintptr_t)(GRANULE - 1);
    if (start < dma_area_end && dma_area_end - start >= GRANULE) {
        free_list = (free_extent_t *)start;
        set_node(free_list, NULL, (dma_area_end - start) & ~(GRANULE - 1));
    }
}

static mp_map_t *blocks_map(void) {
    if (BLOCKS == MP_OBJ_NULL) {
        BLOCKS = mp_obj_new_dict(0);
    }
    return mp_obj_dict_get_map(BLOCKS);
}

static mp_obj_t uint_obj(uintptr_t v) {
    return v <= MP_SMALL_INT_MAX ? MP_OBJ_NEW_SMALL_INT(v) : mp_obj_new_int_from_uint(v);
}

// ---- dma_alloc ----------------------------------------------------------------

static mp_obj_t x86_dma_alloc(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    enum { ARG_size, ARG_align };
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_size, MP_ARG_REQUIRED | MP_ARG_INT, {.u_int = 0} },
        { MP_QSTR_align, MP_ARG_INT, {.u_int = 4096} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
    mp_int_t asked = args[ARG_size].u_int;
    mp_int_t align = args[ARG_align].u_int;
    if (asked <= 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("size must be positive"));
    }
    if (align <= 0 || (align & (align - 1)) != 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("align must be a power of two"));
    }
    if ((uintptr_t)align < GRANULE) {
        align = GRANULE;
    }
    uintptr_t size = ((uintptr_t)asked + GRANULE - 1) & ~(uintptr_t)(GRANULE - 1);
    uintptr_t total = 0, largest = 0;
    free_extent_t *prev = NULL, *e;
    uintptr_t addr = 0;
    for (e = free_list; e != NULL; prev = e, e = e->next) {
        checked(e);
        uintptr_t start = (uintptr_t)e, end = start + e->size;
        addr = (start + align - 1) & ~(uintptr_t)(align - 1);
        if (addr >= start && addr < end && size <= end - addr) {
            break;
        }
        total += e->size;
        largest = e->size > largest ? e->size : largest;
    }
    if (e == NULL) {
        mp_raise_msg_varg(&mp_type_MemoryError,
            MP_ERROR_TEXT("DMA area exhausted: %u bytes aligned to %u asked, "
                "%u bytes free, largest piece %u"),
            (unsigned)asked, (unsigned)align, (unsigned)total, (unsigned)largest);
    }
    // Record the block first: the dict may need heap memory (MemoryError), and then
    // nothing has changed yet.
    mp_map_lookup(blocks_map(), uint_obj(addr), MP_MAP_LOOKUP_ADD_IF_NOT_FOUND)->value =
        MP_OBJ_NEW_SMALL_INT(size);
    // Carve: the extent becomes [start, addr) and [addr + size, end), each if non-empty.
    uintptr_t start = (uintptr_t)e, end = start + e->size;
    free_extent_t *next = e->next;
    if (addr + size < end) {
        free_extent_t *tail = (free_extent_t *)(addr + size);
        set_node(tail, next, end - (addr + size));
        next = tail;
    }
    if (addr > start) {
        set_node(e, next, addr - start);
        next = e;
    }
    if (prev == NULL) {
        free_list = next;
    } else {
        set_node(prev, next, prev->size);
    }
    memset((void *)addr, 0, size);
    return uint_obj(addr);
}
MP_DEFINE_CONST_FUN_OBJ_KW(x86_dma_alloc_obj, 1, x86_dma_alloc);

// ---- dma_free -----------------------------------------------------------------

static mp_obj_t x86_dma_free(mp_obj_t addr_in) {
    uintptr_t addr = mp_obj_get_int_truncated(addr_in);
    if (mp_obj_int_sign(addr_in) < 0) {
        addr = 0;       // no block there: refused below
    }
    mp_map_elem_t *slot = BLOCKS == MP_OBJ_NULL ? NULL
        : mp_map_lookup(blocks_map(), uint_obj(addr), MP_MAP_LOOKUP_REMOVE_IF_FOUND);
    if (slot == NULL) {
        mp_raise_msg_varg(&mp_type_ValueError,
            MP_ERROR_TEXT("dma_free: 0x%x is not a DMA block in use (not from dma_alloc, "
                "or freed already)"), (unsigned)addr);
    }
    uintptr_t size = MP_OBJ_SMALL_INT_VALUE(slot->value);
    // Insert [addr, addr + size) in address order, merged with touching neighbours.
    free_extent_t *prev = NULL, *next = free_list;
    while (next != NULL && (uintptr_t)checked(next) < addr) {
        prev = next;
        next = next->next;
    }
    free_extent_t *e = (free_extent_t *)addr;
    if (next != NULL && addr + size == (uintptr_t)next) {
        set_node(e, next->next, size + next->size);
    } else {
        set_node(e, next, size);
    }
    if (prev == NULL) {
        free_list = e;
    } else if ((uintptr_t)prev + prev->size == addr) {
        set_node(prev, e->next, prev->size + e->size);
    } else {
        set_node(prev, e, prev->size);
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(x86_dma_free_obj, x86_dma_free);

// ---- Soft reset -----------------------------------------------------------------

// At a soft reset Python's objects are gone, so nothing of ours still uses the DMA
// memory they allocated, but a device may still be writing into it (a posted receive
// buffer). Stop every PCI function's DMA (clear Bus Master Enable, PCI 3.0 6.2.2: the
// drivers set it again when they bind a device, after resetting it), then hand out
// the DMA area afresh. Without this, each soft reset (mpremote does one per command)
// followed by virtio.probe() would leak the rings of every device.
#define PCI_COMMAND             0x04
#define PCI_COMMAND_BUS_MASTER  0x0004
#define PCI_HEADER_TYPE_REG     0x0c
void dma_reclaim(void) {
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
    dma_init();
}
