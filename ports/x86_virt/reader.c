// What MicroPython's import asks of a port: what a path is, and a reader of
// a file's bytes. sys.path is MicroPython's usual ['', '.frozen', '/lib']:
// paths under ".frozen/" are the image's ROM (rom.c), every other path is
// looked up on the mounted file systems (vfs.c), so a module on the disk
// (or in a folder mpremote mounts) is found first, as on any board.
#include <string.h>

#include "py/builtin.h"
#include "py/lexer.h"
#include "py/mperrno.h"
#include "py/reader.h"
#include "py/runtime.h"
#include "rom.h"
#include "vfs.h"

#define FROZEN_PREFIX ".frozen/"
#define FROZEN_PREFIX_LEN (sizeof(FROZEN_PREFIX) - 1)

// The ROM path for a ".frozen/..." path, else NULL.
static const char *rom_path(const char *path) {
    return strncmp(path, FROZEN_PREFIX, FROZEN_PREFIX_LEN) == 0 ? path + FROZEN_PREFIX_LEN : NULL;
}

mp_import_stat_t mp_import_stat(const char *path) {
    const char *rp = rom_path(path);
    if (rp == NULL) {
        return vfs_import_stat(path);
    }
    const uint8_t *data;
    size_t len;
    if (rom_file(rp, &data, &len)) {
        return MP_IMPORT_STAT_FILE;
    }
    return rom_dir(rp) ? MP_IMPORT_STAT_DIR : MP_IMPORT_STAT_NO_EXIST;
}

void mp_reader_new_file(mp_reader_t *reader, qstr filename) {
    const char *path = qstr_str(filename);
    const char *rp = rom_path(path);
    const uint8_t *data;
    size_t len;
    if (rp != NULL) {
        if (!rom_file(rp, &data, &len)) {
            mp_raise_OSError(MP_ENOENT);
        }
        mp_reader_new_mem(reader, data, len, 0);     // 0: nothing to free on close
        return;
    }
    // From a file system: the whole file, read by its own read() (any file
    // object will do, mpremote's RemoteFile included).
    mp_obj_t f = vfs_open(MP_OBJ_NEW_QSTR(filename), MP_OBJ_NEW_QSTR(MP_QSTR_rb));
    mp_obj_t content = mp_call_function_0(mp_load_attr(f, MP_QSTR_read));
    mp_call_function_0(mp_load_attr(f, MP_QSTR_close));
    mp_buffer_info_t buf;
    mp_get_buffer_raise(content, &buf, MP_BUFFER_READ);
    // The reader keeps a pointer to the data, which keeps it alive.
    mp_reader_new_mem(reader, buf.buf, buf.len, 0);
}

mp_lexer_t *mp_lexer_new_from_file(qstr filename) {
    mp_reader_t reader;
    mp_reader_new_file(&reader, filename);
    return mp_lexer_new(filename, reader);
}
