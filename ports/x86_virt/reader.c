// What MicroPython's import asks of a port: what a path is, and a reader of
// a file's bytes. sys.path is MicroPython's usual ['', '.frozen', '/lib']:
// paths under ".frozen/" are the image's ROM (rom.c), every other path is
// looked up on the mounted file systems (vfs.c). sys.path is
// ['.frozen', '', '/lib'] (main.c): the ROM first.
//
// MicroPython searches sys.path for the "extensible" built-in modules
// (array, struct, errno, io, collections) before it falls back to the
// built-in one, at every `import array` (built-ins are not kept in
// sys.modules). The drivers import them inside functions, so that would be
// a disk access each time -- and a wait on a disk that is being reset. Here
// a built-in module's name is never looked up on a file system.
#include <string.h>

#include "py/builtin.h"
#include "py/lexer.h"
#include "py/mperrno.h"
#include "py/objmodule.h"
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

// True for "<entry>/name", "<entry>/name.py" or "<entry>/name.mpy" where
// <entry> is a sys.path entry and name a built-in module's.
static bool names_builtin(const char *path) {
    const char *slash = NULL;      // the last '/' (no strrchr in our libc)
    for (const char *p = path; *p; p++) {
        if (*p == '/') {
            slash = p;
        }
    }
    const char *base = slash ? slash + 1 : path;
    size_t dir_len = slash ? (size_t)(slash - path) : 0;
    size_t n = strlen(base);
    if (n > 3 && strcmp(base + n - 3, ".py") == 0) {
        n -= 3;
    } else if (n > 4 && strcmp(base + n - 4, ".mpy") == 0) {
        n -= 4;
    }
    qstr q = qstr_find_strn(base, n);
    if (q == MP_QSTRnull || mp_module_get_builtin(q, true) == MP_OBJ_NULL) {
        return false;
    }
    size_t len;
    mp_obj_t *entries;
    mp_obj_get_array(mp_sys_path, &len, &entries);
    for (size_t i = 0; i < len; i++) {
        size_t elen;
        const char *e = mp_obj_str_get_data(entries[i], &elen);
        if (elen == dir_len && strncmp(e, path, dir_len) == 0) {
            return true;
        }
    }
    return false;
}

mp_import_stat_t mp_import_stat(const char *path) {
    const char *rp = rom_path(path);
    if (rp == NULL) {
        return names_builtin(path) ? MP_IMPORT_STAT_NO_EXIST : vfs_import_stat(path);
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
