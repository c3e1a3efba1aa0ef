// The ROM: a read-only file system of .mpy files, unpacked into RAM at boot.
#ifndef X86_VIRT_ROM_H
#define X86_VIRT_ROM_H
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

size_t rom_unpacked_size(void);
void rom_unpack(void *dest);                // dest: rom_unpacked_size() bytes
bool rom_file(const char *path, const uint8_t **data, size_t *len);
bool rom_dir(const char *path);
size_t rom_count(void);                     // entries (the modules and the names list)
size_t rom_modules(void);                   // .mpy files
void rom_intern_names(void);                // after mp_init(): the modules' names, one sorted pool
const char *rom_name(size_t i, size_t *len);   // the i-th file's path, not NUL-ended
#endif
