// The ROM: the Python modules of firmware/manifest.py as .mpy files, packed and
// DEFLATE-compressed by tools/mkrom.py (its doc string has the format),
// unpacked into RAM at boot. Imports read from it as from a file system: `import
// virtio.pci` finds "virtio" (a directory) and "virtio/pci.mpy" (a file).
#include <string.h>

#include "py/builtin.h"
#include "py/lexer.h"
#include "py/mperrno.h"
#include "py/reader.h"
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

// ---- What MicroPython's import asks of a file system ---------------------

mp_import_stat_t mp_import_stat(const char *path) {
    const uint8_t *data;
    size_t len;
    if (rom_file(path, &data, &len)) {
        return MP_IMPORT_STAT_FILE;
    }
    return rom_dir(path) ? MP_IMPORT_STAT_DIR : MP_IMPORT_STAT_NO_EXIST;
}

void mp_reader_new_file(mp_reader_t *reader, qstr filename) {
    const uint8_t *data;
    size_t len;
    if (!rom_file(qstr_str(filename), &data, &len)) {
        mp_raise_OSError(MP_ENOENT);
    }
    mp_reader_new_mem(reader, data, len, 0);     // 0: nothing to free on close
}

mp_lexer_t *mp_lexer_new_from_file(qstr filename) {
    mp_reader_t reader;
    mp_reader_new_file(&reader, filename);
    return mp_lexer_new(filename, reader);
}
