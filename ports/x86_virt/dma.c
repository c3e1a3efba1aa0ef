// DMA memory: x86.dma_alloc(size, align=4096) and x86.dma_free(addr).
//
// main.c sets the DMA area aside outside the GC heap, so a block never moves
// while a device holds its address. Blocks are handed out first fit from the
// free extents, kept sorted by address; a freed block is merged with the free
// extents it touches, so memory given back by a device (virtio.probe() frees the
// rings of the devices it replaces) serves the next one whole.
//
// The bookkeeping is all on the GC heap, none of it in the DMA area: whatever is
// written into free DMA memory (a test dirtying it, a late device write) cannot
// damage the allocator.
//  - blocks: a dict, address -> size of each block in use. It makes dma_free(addr)
//    exact: an address that is not a live block is refused (a double free too).
//  - extents: an array of free (start, size) pairs in address order. Free extents
//    are never adjacent (they are merged), so there are at most blocks + 1 of
//    them: dma_alloc grows the array to that bound before it changes anything,
//    and dma_free never needs heap memory.
// A soft reset drops both with the rest of the heap, and the area is free again.
// Extents and blocks are multiples of GRANULE bytes at GRANULE-aligned addresses.
#include <string.h>

#include "py/runtime.h"
#include "py/smallint.h"
#include "py/objint.h"
#include "x86.h"

#define GRANULE     16u
#define MIN_EXTENTS 16

typedef struct {
    uint32_t start;
    uint32_t size;
} extent_t;

MP_REGISTER_ROOT_POINTER(mp_obj_t x86_dma_blocks);
MP_REGISTER_ROOT_POINTER(void *x86_dma_extents);
#define BLOCKS MP_STATE_VM(x86_dma_blocks)
#define EXTENTS ((extent_t *)MP_STATE_VM(x86_dma_extents))

static size_t n_extents, cap_extents;
static bool started;        // false: the whole area is free and nothing is on the heap yet

void dma_init(void) {
    BLOCKS = MP_OBJ_NULL;
    MP_STATE_VM(x86_dma_extents) = NULL;
    n_extents = cap_extents = 0;
    started = false;
}

static mp_obj_t uint_obj(uintptr_t v) {
    return v <= MP_SMALL_INT_MAX ? MP_OBJ_NEW_SMALL_INT(v) : mp_obj_new_int_from_uint(v);
}

// Room for n extents (MemoryError before anything changed if the heap has none).
static void reserve_extents(size_t n) {
    if (n <= cap_extents) {
        return;
    }
    size_t cap = n < MIN_EXTENTS ? MIN_EXTENTS : 2 * n;
    extent_t *e = m_new(extent_t, cap);
    if (n_extents) {
        memcpy(e, EXTENTS, n_extents * sizeof(extent_t));
    }
    MP_STATE_VM(x86_dma_extents) = e;       // the old array is garbage now
    cap_extents = cap;
}

static mp_map_t *blocks_map(void) {
    if (BLOCKS == MP_OBJ_NULL) {
        BLOCKS = mp_obj_new_dict(0);
    }
    return mp_obj_dict_get_map(BLOCKS);
}

// Replace extent i by the pieces [start, addr) and [addr + size, end) that are not empty.
static void carve(size_t i, uintptr_t addr, uintptr_t size) {
    extent_t *x = EXTENTS;
    uintptr_t start = x[i].start, end = start + x[i].size;
    extent_t pieces[2];
    size_t k = 0;
    if (addr > start) {
        pieces[k++] = (extent_t) { start, addr - start };
    }
    if (addr + size < end) {
        pieces[k++] = (extent_t) { addr + size, end - addr - size };
    }
    memmove(&x[i + k], &x[i + 1], (n_extents - i - 1) * sizeof(extent_t));
    memcpy(&x[i], pieces, k * sizeof(extent_t));
    n_extents = n_extents - 1 + k;
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
    if (!started) {
        reserve_extents(MIN_EXTENTS);
        uintptr_t start = (dma_area_start + GRANULE - 1) & ~(uintptr_t)(GRANULE - 1);
        n_extents = 0;
        if (dma_area_end > start + GRANULE) {
            EXTENTS[0] = (extent_t) { start, (dma_area_end - start) & ~(uintptr_t)(GRANULE - 1) };
            n_extents = 1;
        }
        started = true;
    }
    uintptr_t a = (uintptr_t)align < GRANULE ? GRANULE : (uintptr_t)align;
    uintptr_t size = ((uintptr_t)asked + GRANULE - 1) & ~(uintptr_t)(GRANULE - 1);
    uintptr_t total = 0, largest = 0, addr = 0;
    size_t i;
    for (i = 0; i < n_extents; i++) {
        uintptr_t start = EXTENTS[i].start, end = start + EXTENTS[i].size;
        addr = (start + a - 1) & ~(a - 1);
        if (addr >= start && addr < end && size <= end - addr) {
            break;
        }
        total += EXTENTS[i].size;
        largest = EXTENTS[i].size > largest ? EXTENTS[i].size : largest;
    }
    if (i == n_extents) {
        mp_raise_msg_varg(&mp_type_MemoryError,
            MP_ERROR_TEXT("DMA area exhausted: %u bytes aligned to %u asked, "
                "%u bytes free, largest piece %u"),
            (unsigned)asked, (unsigned)align, (unsigned)total, (unsigned)largest);
    }
    // What needs heap memory comes first (a MemoryError then changes nothing): room for
    // one extent more than blocks after this one, then the block's entry.
    mp_map_t *blocks = blocks_map();
    reserve_extents(blocks->used + 2);
    mp_map_lookup(blocks, uint_obj(addr), MP_MAP_LOOKUP_ADD_IF_NOT_FOUND)->value =
        MP_OBJ_NEW_SMALL_INT(size);
    carve(i, addr, size);
    memset((void *)addr, 0, size);
    return uint_obj(addr);
}
MP_DEFINE_CONST_FUN_OBJ_KW(x86_dma_alloc_obj, 1, x86_dma_alloc);

// ---- dma_free -----------------------------------------------------------------

// The address dma_free was given: an int below 2**32 (OverflowError above, TypeError
// for what is no int); a negative one is no block's (0).
static uintptr_t block_addr(mp_obj_t o) {
    if (!mp_obj_is_int(o)) {
        return (uintptr_t)mp_obj_get_int(o);
    }
    return mp_obj_int_sign(o) < 0 ? 0 : mp_obj_int_get_uint_checked(o);
}

static mp_obj_t x86_dma_free(mp_obj_t addr_in) {
    uintptr_t addr = block_addr(addr_in);
    mp_map_elem_t *slot = BLOCKS == MP_OBJ_NULL ? NULL
        : mp_map_lookup(blocks_map(), uint_obj(addr), MP_MAP_LOOKUP_REMOVE_IF_FOUND);
    if (slot == NULL) {
        mp_raise_msg_varg(&mp_type_ValueError,
            MP_ERROR_TEXT("dma_free: 0x%x is not a DMA block in use (not from dma_alloc, "
                "or freed already)"), (unsigned)addr);
    }
    uintptr_t size = MP_OBJ_SMALL_INT_VALUE(slot->value);
    // Insert [addr, addr + size) in address order, merged with the extents it touches.
    extent_t *x = EXTENTS;
    size_t i = 0;
    while (i < n_extents && x[i].start < addr) {
        i++;
    }
    bool joins_prev = i > 0 && x[i - 1].start + x[i - 1].size == addr;
    bool joins_next = i < n_extents && addr + size == x[i].start;
    if (joins_prev && joins_next) {
        x[i - 1].size += size + x[i].size;
        memmove(&x[i], &x[i + 1], (n_extents - i - 1) * sizeof(extent_t));
        n_extents--;
    } else if (joins_prev) {
        x[i - 1].size += size;
    } else if (joins_next) {
        x[i].start = addr;
        x[i].size += size;
    } else {
        // n_extents < cap_extents: at most blocks + 1 extents, reserved by dma_alloc.
        memmove(&x[i + 1], &x[i], (n_extents - i) * sizeof(extent_t));
        x[i] = (extent_t) { addr, size };
        n_extents++;
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
    dma_init();
}
