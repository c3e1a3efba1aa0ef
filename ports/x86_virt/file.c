// File objects, as open() returns them (MicroPython's io.FileIO for binary
// modes, io.TextIOWrapper for text): the stream methods of py/stream.c on
// top of each file system's five operations (file_ops_t in vfs.h).
//
// A file knows whether it is open. It is closed by close(), by leaving a
// `with` block, and by the umount of its file system (which first writes out
// what it holds), so a file used after umount raises OSError(EBADF) instead
// of touching a disk that may belong to someone else by then.
#include <string.h>

#include "py/mperrno.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "vfs.h"

int file_parse_mode(const char *mode) {
    int flags = 0, kinds = 0;
    bool binary = false, text = false;
    for (const char *m = mode; *m; m++) {
        switch (*m) {
            case 'r': flags |= FILE_READ; kinds++; break;
            case 'w': flags |= FILE_WRITE | FILE_CREATE | FILE_TRUNCATE; kinds++; break;
            case 'a': flags |= FILE_WRITE | FILE_CREATE | FILE_APPEND; kinds++; break;
            case 'x': flags |= FILE_WRITE | FILE_CREATE | FILE_EXCL; kinds++; break;
            case '+': flags |= FILE_READ | FILE_WRITE; break;
            case 'b': binary = true; break;
            case 't': text = true; break;
            default: kinds = -100; break;
        }
    }
    if (kinds != 1 || (binary && text)) {
        mp_raise_msg_varg(&mp_type_ValueError, MP_ERROR_TEXT("invalid mode: '%s'"), mode);
    }
    return binary ? flags : flags | FILE_TEXT;
}

vfs_file_t *file_new(size_t size, int flags, const file_ops_t *ops, mp_obj_t fs) {
    vfs_file_t *f = m_malloc0(size);
    f->base.type = (flags & FILE_TEXT) ? &vfs_type_textio : &vfs_type_fileio;
    f->ops = ops;
    f->fs = fs;
    f->flags = flags;
    return f;
}

void file_list_add(vfs_file_t **list, vfs_file_t *f) {
    f->next = *list;
    *list = f;
}

void file_list_remove(vfs_file_t **list, vfs_file_t *f) {
    for (; *list != NULL; list = &(*list)->next) {
        if (*list == f) {
            *list = f->next;
            f->next = NULL;
            return;
        }
    }
}

// Close every file (each writes out what it holds); the first error.
int file_list_close_all(vfs_file_t **list) {
    int first = 0;
    while (*list != NULL) {
        vfs_file_t *f = *list;
        *list = f->next;
        f->next = NULL;
        int err = f->ops->close(f);
        f->open = false;
        first = first ? first : err;
    }
    return first;
}

int file_list_sync_all(vfs_file_t *list) {
    int first = 0;
    for (; list != NULL; list = list->next) {
        int err = list->ops->sync(list);
        first = first ? first : err;
    }
    return first;
}

// ---- the stream protocol ----------------------------------------------------
// A Ctrl-C held back while the file system updated the disk (blockdev.c) is
// raised once the call is over (not by file_list_*: umount and sync go on
// with the other files and raise it at their end).

static void held_interrupt(vfs_file_t *f) {
    if (f->bd != NULL) {
        blockdev_interrupt_point(f->bd);
    }
}

static mp_uint_t file_read(mp_obj_t self_in, void *buf, mp_uint_t size, int *err) {
    vfs_file_t *f = MP_OBJ_TO_PTR(self_in);
    if (!f->open) {
        *err = MP_EBADF;
        return MP_STREAM_ERROR;
    }
    if (!(f->flags & FILE_READ)) {
        *err = MP_EBADF;    // as CPython: not readable
        return MP_STREAM_ERROR;
    }
    mp_uint_t n = f->ops->read(f, buf, size, err);
    held_interrupt(f);
    return n;
}

static mp_uint_t file_write(mp_obj_t self_in, const void *buf, mp_uint_t size, int *err) {
    vfs_file_t *f = MP_OBJ_TO_PTR(self_in);
    if (!f->open || !(f->flags & FILE_WRITE)) {
        *err = MP_EBADF;
        return MP_STREAM_ERROR;
    }
    mp_uint_t n = f->ops->write(f, buf, size, err);
    held_interrupt(f);
    return n;
}

static mp_uint_t file_ioctl(mp_obj_t self_in, mp_uint_t request, uintptr_t arg, int *err) {
    vfs_file_t *f = MP_OBJ_TO_PTR(self_in);
    if (request == MP_STREAM_CLOSE) {
        if (!f->open) {
            return 0;       // closing twice is allowed
        }
        f->open = false;
        int e = f->ops->close(f);
        held_interrupt(f);
        if (e) {
            *err = e;
            return MP_STREAM_ERROR;
        }
        return 0;
    }
    if (!f->open) {
        *err = MP_EBADF;
        return MP_STREAM_ERROR;
    }
    int e;
    switch (request) {
        case MP_STREAM_FLUSH:
            e = f->ops->sync(f);
            break;
        case MP_STREAM_SEEK: {
            struct mp_stream_seek_t *s = (struct mp_stream_seek_t *)arg;
            mp_off_t off = s->offset;
            e = f->ops->seek(f, &off, s->whence);
            s->offset = off;
            break;
        }
        default:
            e = MP_EINVAL;
            break;
    }
    held_interrupt(f);
    if (e) {
        *err = e;
        return MP_STREAM_ERROR;
    }
    return 0;
}

static void file_print(const mp_print_t *print, mp_obj_t self_in, mp_print_kind_t kind) {
    vfs_file_t *f = MP_OBJ_TO_PTR(self_in);
    mp_printf(print, "<io.%s %s>", (f->flags & FILE_TEXT) ? "TextIOWrapper" : "FileIO",
        f->open ? "open" : "closed");
}

static mp_obj_t file___exit__(size_t n_args, const mp_obj_t *args) {
    (void)n_args;
    return mp_stream_close(args[0]);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(file___exit___obj, 4, 4, file___exit__);

static const mp_rom_map_elem_t file_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_read), MP_ROM_PTR(&mp_stream_read_obj) },
    { MP_ROM_QSTR(MP_QSTR_readinto), MP_ROM_PTR(&mp_stream_readinto_obj) },
    { MP_ROM_QSTR(MP_QSTR_readline), MP_ROM_PTR(&mp_stream_unbuffered_readline_obj) },
    { MP_ROM_QSTR(MP_QSTR_readlines), MP_ROM_PTR(&mp_stream_unbuffered_readlines_obj) },
    { MP_ROM_QSTR(MP_QSTR_write), MP_ROM_PTR(&mp_stream_write_obj) },
    { MP_ROM_QSTR(MP_QSTR_flush), MP_ROM_PTR(&mp_stream_flush_obj) },
    { MP_ROM_QSTR(MP_QSTR_close), MP_ROM_PTR(&mp_stream_close_obj) },
    { MP_ROM_QSTR(MP_QSTR_seek), MP_ROM_PTR(&mp_stream_seek_obj) },
    { MP_ROM_QSTR(MP_QSTR_tell), MP_ROM_PTR(&mp_stream_tell_obj) },
    { MP_ROM_QSTR(MP_QSTR___enter__), MP_ROM_PTR(&mp_identity_obj) },
    { MP_ROM_QSTR(MP_QSTR___exit__), MP_ROM_PTR(&file___exit___obj) },
};
static MP_DEFINE_CONST_DICT(file_locals_dict, file_locals_dict_table);

static const mp_stream_p_t fileio_stream_p = {
    .read = file_read,
    .write = file_write,
    .ioctl = file_ioctl,
};

MP_DEFINE_CONST_OBJ_TYPE(
    vfs_type_fileio,
    MP_QSTR_FileIO,
    MP_TYPE_FLAG_ITER_IS_STREAM,
    print, file_print,
    protocol, &fileio_stream_p,
    locals_dict, &file_locals_dict
    );

static const mp_stream_p_t textio_stream_p = {
    .read = file_read,
    .write = file_write,
    .ioctl = file_ioctl,
    .is_text = true,
};

MP_DEFINE_CONST_OBJ_TYPE(
    vfs_type_textio,
    MP_QSTR_TextIOWrapper,
    MP_TYPE_FLAG_ITER_IS_STREAM,
    print, file_print,
    protocol, &textio_stream_p,
    locals_dict, &file_locals_dict
    );
