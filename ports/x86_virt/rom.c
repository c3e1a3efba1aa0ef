// The ROM: the Python modules of firmware/manifest.py as .mpy files, packed and
// DEFLATE-compressed by tools/mkrom.py (its doc string has the format),
// unpacked into RAM at boot. Imports read from it as from a file system
// (reader.c: sys.path's ".frozen" entry): `import virtio.pci` finds "virtio"
// (a directory) and "virtio/pci.mpy" (a file).
#include <string.h>

#include "py/qstr.h"
#include "py/runtime.h"
#include "inflate.h"
#include "rom.h"
#include "x86.h"

typedef struct {
    uint32_t name_offset, name_len, data_offset, data_len;
} rom_entry_t;

extern const uint8_t x86_rom_z[], x86_rom_z_end[];
static const uint8_t *rom;      // the unpacked ROM
static uint32_t rom_entries;

static uint32_t get_u32(const uint8_t *p) {
    return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
}

size_t rom_unpacked_size(void) {
    if (x86_rom_z_end - x86_rom_z < 8 || memcmp(x86_rom_z, "XRZ1", 4) != 0) {
        x86_fatal("the ROM image has no XRZ1 header (rebuild with make)");
    }
    return get_u32(x86_rom_z + 4);
}

void rom_unpack(void *dest) {
    size_t size = rom_unpacked_size();
    if (inflate(x86_rom_z + 8, x86_rom_z_end, dest, size) != size
        || memcmp(dest, "XROM", 4) != 0) {
        x86_fatal("the ROM does not unpack (rebuild with make)");
    }
    rom = dest;
    rom_entries = get_u32(rom + 4);
}

size_t rom_count(void) {
    return rom_entries;
}

// The ROM's modules (its .mpy files; the names list is not one).
size_t rom_modules(void) {
    size_t n = 0;
    for (size_t i = 0; i < rom_entries; i++) {
        size_t len;
        const char *name = rom_name(i, &len);
        n += len > 4 && memcmp(name + len - 4, ".mpy", 4) == 0;
    }
    return n;
}

static const rom_entry_t *entry(uint32_t i) {
    return (const rom_entry_t *)(rom + 8 + i * sizeof(rom_entry_t));
}

const char *rom_name(size_t i, size_t *len) {
    *len = entry(i)->name_len;
    return (const char *)rom + entry(i)->name_offset;
}

bool rom_file(const char *path, const uint8_t **data, size_t *len) {
    size_t n = strlen(path);
    for (uint32_t i = 0; i < rom_entries; i++) {
        const rom_entry_t *e = entry(i);
        if (e->name_len == n && memcmp(rom + e->name_offset, path, n) == 0) {
            *data = rom + e->data_offset;
            *len = e->data_len;
            return true;
        }
    }
    return false;
}

// A directory is any prefix "path/" of a file's name.
bool rom_dir(const char *path) {
    size_t n = strlen(path);
    for (uint32_t i = 0; i < rom_entries; i++) {
        const rom_entry_t *e = entry(i);
        const char *name = (const char *)rom + e->name_offset;
        if (e->name_len > n && name[n] == '/' && memcmp(name, path, n) == 0) {
            return true;
        }
    }
    return false;
}

// The names the modules use (tools/mkrom.py's ".qstrs": sorted, NUL-terminated),
// interned in one pool before anything imports. Loading an .mpy interns each of its
// names, and MicroPython searches the pools it added at run time one entry at a time:
// with the drivers' ~1,900 names there, an import cost ~1M guest instructions, two
// thirds of it that search, and the boot's imports ~40M. One pool marked sorted is
// binary-searched instead, and the run-time pools stay small. The list leaves out
// the names the firmware has (mkrom.py reads its qstrs), which keep their MP_QSTR_
// ids; looking each up here cost 2k instructions a name at every boot. The strings stay
// where they are, in the unpacked ROM; the pool itself is on the heap, so this runs
// after every mp_init() (a soft reset starts the pools afresh).
void rom_intern_names(void) {
    const uint8_t *data;
    size_t size;
    if (!rom_file(".qstrs", &data, &size) || size == 0 || data[size - 1] != 0) {
        return;
    }
    const char *end = (const char *)data + size;
    size_t n = 0;
    for (const char *p = (const char *)data; p < end; p += strlen(p) + 1) {
        n++;
    }
    qstr_pool_t *pool = m_malloc(sizeof(qstr_pool_t)
        + n * (sizeof(const char *) + sizeof(qstr_hash_t) + sizeof(qstr_len_t)));
    pool->hashes = (qstr_hash_t *)(pool->qstrs + n);
    pool->lengths = (qstr_len_t *)(pool->hashes + n);
    size_t k = 0;
    for (const char *p = (const char *)data; p < end; p += strlen(p) + 1, k++) {
        size_t len = strlen(p);
        pool->qstrs[k] = p;
        pool->hashes[k] = qstr_compute_hash((const byte *)p, len);
        pool->lengths[k] = len;
    }
    const qstr_pool_t *prev = MP_STATE_VM(last_pool);
    pool->prev = prev;
    pool->total_prev_len = prev->total_prev_len + prev->len;
    pool->is_sorted = 1;
    // Full (alloc == len): the next interned string starts a pool of its own, so
    // nothing is ever appended to this sorted one.
    pool->alloc = n;
    pool->len = n;
    MP_STATE_VM(last_pool) = pool;
}
