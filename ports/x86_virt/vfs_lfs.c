// os.VfsLfs2: littlefs v2 (fetched from the littlefs-python sdist) on any
// block device. littlefs is power-loss resilient: a file's new contents
// become visible atomically at flush()/close(), so a cut power leaves every
// file as it was at its last close.
//     vfs = os.VfsLfs2(bdev); os.VfsLfs2.mkfs(bdev); os.mount(vfs, "/")
// MicroPython's keyword arguments readsize, progsize and lookahead are
// accepted; by default reads and writes are whole blocks (fastest on a disk,
// and a device with only the two-argument readblocks/writeblocks works).
#include <string.h>

#include "py/mperrno.h"
#include "py/runtime.h"
#include "lfs.h"
#include "vfs.h"

#define LFS_BLOCK_CYCLES        (100)       // wear levelling: move metadata after this many erases
#define LFS_DEFAULT_LOOKAHEAD   (256)       // bytes: 2048 blocks found free per scan

typedef struct _lfs_vfs_t {
    mp_obj_base_t base;
    blockdev_t bd;
    struct lfs_config cfg;
    lfs_t lfs;
    bool mounted;
    bool readonly;
    vfs_file_t *files;
} lfs_vfs_t;

typedef struct {
    vfs_file_t base;
    lfs_file_t file;
    struct lfs_file_config cfg;
} lfs_vfile_t;

// ---- errors ------------------------------------------------------------------------

static int lfs_errno(int err) {
    if (err == LFS_ERR_CORRUPT) {
        return MP_EIO;
    }
    return -err;    // littlefs's codes are negative errno values
}

// Raise for a littlefs result (an I/O error: what the block device raised).
// Operations end here: a Ctrl-C held back during one is raised (see
// blockdev.c), so nothing of ours may be left to do after a check.
static void check(lfs_vfs_t *self, int err) {
    if (err == LFS_ERR_IO) {
        blockdev_raise(&self->bd, MP_EIO);
    }
    if (err < 0) {
        blockdev_deliver(&self->bd);
        mp_raise_OSError(lfs_errno(err));
    }
    blockdev_interrupt_point(&self->bd);
}

// ---- the block device, as littlefs asks for it ------------------------------------

static int bd_read(const struct lfs_config *c, lfs_block_t block, lfs_off_t off, void *buf, lfs_size_t size) {
    lfs_vfs_t *self = c->context;
    return blockdev_read(&self->bd, block, off, buf, size) ? LFS_ERR_IO : 0;
}

static int bd_prog(const struct lfs_config *c, lfs_block_t block, lfs_off_t off, const void *buf, lfs_size_t size) {
    lfs_vfs_t *self = c->context;
    return blockdev_write(&self->bd, block, off, buf, size) ? LFS_ERR_IO : 0;
}

static int bd_erase(const struct lfs_config *c, lfs_block_t block) {
    lfs_vfs_t *self = c->context;
    return blockdev_ioctl(&self->bd, BLOCKDEV_IOCTL_BLOCK_ERASE, block, NULL) ? LFS_ERR_IO : 0;
}

static int bd_sync(const struct lfs_config *c) {
    lfs_vfs_t *self = c->context;
    return blockdev_ioctl(&self->bd, BLOCKDEV_IOCTL_SYNC, 0, NULL) ? LFS_ERR_IO : 0;
}

// ---- construction, mkfs, mount ---------------------------------------------------

static mp_obj_t lfs_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *all) {
    enum { ARG_bdev, ARG_readsize, ARG_progsize, ARG_lookahead, ARG_mtime };
    static const mp_arg_t allowed[] = {
        { MP_QSTR_, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_readsize, MP_ARG_INT, {.u_int = 0} },
        { MP_QSTR_progsize, MP_ARG_INT, {.u_int = 0} },
        { MP_QSTR_lookahead, MP_ARG_INT, {.u_int = LFS_DEFAULT_LOOKAHEAD} },
        { MP_QSTR_mtime, MP_ARG_BOOL, {.u_bool = false} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed)];
    mp_arg_parse_all_kw_array(n_args, n_kw, all, MP_ARRAY_SIZE(allowed), allowed, args);

    lfs_vfs_t *self = mp_obj_malloc(lfs_vfs_t, type);
    blockdev_init(&self->bd, args[ARG_bdev].u_obj);
    uint32_t bs = self->bd.block_size;
    uint32_t rs = args[ARG_readsize].u_int ? args[ARG_readsize].u_int : bs;
    uint32_t ps = args[ARG_progsize].u_int ? args[ARG_progsize].u_int : bs;
    uint32_t la = (args[ARG_lookahead].u_int + 7) & ~7;
    if (rs == 0 || ps == 0 || bs % rs || bs % ps || la == 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("readsize and progsize must divide the block size"));
    }
    struct lfs_config *c = &self->cfg;
    c->context = self;
    c->read = bd_read;
    c->prog = bd_prog;
    c->erase = bd_erase;
    c->sync = bd_sync;
    c->read_size = rs;
    c->prog_size = ps;
    c->block_size = bs;
    c->block_count = self->bd.block_count;
    c->block_cycles = LFS_BLOCK_CYCLES;
    c->cache_size = rs > ps ? rs : ps;
    c->lookahead_size = la;
    c->read_buffer = m_new(uint8_t, c->cache_size);
    c->prog_buffer = m_new(uint8_t, c->cache_size);
    c->lookahead_buffer = m_new(uint8_t, la);
    mp_obj_t ro[2];
    mp_load_method_maybe(args[ARG_bdev].u_obj, MP_QSTR_read_only, ro);
    self->readonly = ro[0] != MP_OBJ_NULL && mp_obj_is_true(ro[0]);
    return MP_OBJ_FROM_PTR(self);
}

static mp_obj_t lfs_mkfs_fun(size_t n_args, const mp_obj_t *pos, mp_map_t *kw) {
    // Rebuild a flat argument array (positional then key/value pairs).
    mp_obj_t all[2 + 2 * 4];
    size_t n_kw = 0;
    if (n_args > 2 || kw->used > 4) {
        mp_raise_TypeError(NULL);
    }
    memcpy(all, pos, n_args * sizeof(mp_obj_t));
    for (size_t i = 0; i < kw->alloc; i++) {
        if (mp_map_slot_is_filled(kw, i)) {
            all[n_args + 2 * n_kw] = kw->table[i].key;
            all[n_args + 2 * n_kw + 1] = kw->table[i].value;
            n_kw++;
        }
    }
    lfs_vfs_t *self = MP_OBJ_TO_PTR(lfs_make_new(&vfs_lfs2_type, n_args, n_kw, all));
    vfs_check_writable(self->readonly);
    check(self, lfs_format(&self->lfs, &self->cfg));
    check(self, bd_sync(&self->cfg));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_KW(lfs_mkfs_fun_obj, 1, lfs_mkfs_fun);
static MP_DEFINE_CONST_STATICMETHOD_OBJ(lfs_mkfs_obj, MP_ROM_PTR(&lfs_mkfs_fun_obj));

// mount(readonly, mkfs): reads the superblock; a device without littlefs
// raises OSError(ENODEV) and is not written.
static mp_obj_t lfs_mount_m(mp_obj_t self_in, mp_obj_t readonly, mp_obj_t mkfs) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->mounted) {
        mp_raise_OSError(MP_EBUSY);
    }
    self->readonly |= mp_obj_is_true(readonly);
    int err = lfs_mount(&self->lfs, &self->cfg);
    if ((err == LFS_ERR_CORRUPT || err == LFS_ERR_INVAL) && mp_obj_is_true(mkfs) && !self->readonly) {
        check(self, lfs_format(&self->lfs, &self->cfg));
        err = lfs_mount(&self->lfs, &self->cfg);
    }
    if (err == LFS_ERR_CORRUPT || err == LFS_ERR_INVAL) {
        blockdev_deliver(&self->bd);
        mp_raise_OSError(MP_ENODEV);
    }
    if (err >= 0) {
        self->mounted = true;
        blockdev_deliver(&self->bd);    // mounted: os.mount must still record it
        return mp_const_none;
    }
    check(self, err);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(lfs_mount_obj, lfs_mount_m);

static void need_mounted(lfs_vfs_t *self) {
    if (!self->mounted) {
        mp_raise_OSError(MP_ENODEV);
    }
}

static mp_obj_t lfs_umount_m(mp_obj_t self_in) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    if (!self->mounted) {
        return mp_const_none;
    }
    int err = file_list_close_all(&self->files);
    self->mounted = false;
    lfs_unmount(&self->lfs);
    if (!err && self->bd.dirty && bd_sync(&self->cfg)) {
        err = MP_EIO;
    }
    if (err) {
        blockdev_raise(&self->bd, err);
    }
    check(self, 0);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(lfs_umount_obj, lfs_umount_m);

static mp_obj_t lfs_sync_m(mp_obj_t self_in) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->mounted) {
        int err = file_list_sync_all(self->files);
        if (err) {
            blockdev_raise(&self->bd, err);
        }
        check(self, 0);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(lfs_sync_obj, lfs_sync_m);

// ---- directories ----------------------------------------------------------------------

static const char *lpath(lfs_vfs_t *self, mp_obj_t path) {
    need_mounted(self);
    return mp_obj_str_get_str(path);
}

static mp_obj_t lfs_ilistdir(size_t n_args, const mp_obj_t *args) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(args[0]);
    const char *path = lpath(self, n_args > 1 ? args[1] : MP_OBJ_NEW_QSTR(MP_QSTR__slash_));
    lfs_dir_t dir;
    check(self, lfs_dir_open(&self->lfs, &dir, path));
    mp_obj_t list = mp_obj_new_list(0, NULL);
    struct lfs_info info;
    int r;
    while ((r = lfs_dir_read(&self->lfs, &dir, &info)) > 0) {
        if (info.name[0] == '.' && (info.name[1] == '\0' || (info.name[1] == '.' && info.name[2] == '\0'))) {
            continue;
        }
        mp_obj_t t[4] = {
            mp_obj_new_str(info.name, strlen(info.name)),
            MP_OBJ_NEW_SMALL_INT(info.type == LFS_TYPE_DIR ? VFS_S_IFDIR : VFS_S_IFREG),
            MP_OBJ_NEW_SMALL_INT(0),
            mp_obj_new_int_from_uint(info.size),
        };
        mp_obj_list_append(list, mp_obj_new_tuple(4, t));
    }
    lfs_dir_close(&self->lfs, &dir);
    check(self, r);
    return mp_getiter(list, NULL);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(lfs_ilistdir_obj, 1, 2, lfs_ilistdir);

static mp_obj_t lfs_stat_m(mp_obj_t self_in, mp_obj_t path) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    struct lfs_info info;
    check(self, lfs_stat(&self->lfs, lpath(self, path), &info));
    mp_obj_t t[10];
    for (int i = 0; i < 10; i++) {
        t[i] = MP_OBJ_NEW_SMALL_INT(0);
    }
    t[0] = MP_OBJ_NEW_SMALL_INT(info.type == LFS_TYPE_DIR ? VFS_S_IFDIR : VFS_S_IFREG);
    t[6] = mp_obj_new_int_from_uint(info.type == LFS_TYPE_DIR ? 0 : info.size);
    return mp_obj_new_tuple(10, t);
}
static MP_DEFINE_CONST_FUN_OBJ_2(lfs_stat_obj, lfs_stat_m);

static mp_obj_t lfs_statvfs_m(mp_obj_t self_in, mp_obj_t path) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    (void)path;
    need_mounted(self);
    lfs_ssize_t used = lfs_fs_size(&self->lfs);
    check(self, used);
    mp_uint_t nfree = self->cfg.block_count - used;
    mp_obj_t t[10] = {
        MP_OBJ_NEW_SMALL_INT(self->cfg.block_size), MP_OBJ_NEW_SMALL_INT(self->cfg.block_size),
        mp_obj_new_int_from_uint(self->cfg.block_count), mp_obj_new_int_from_uint(nfree),
        mp_obj_new_int_from_uint(nfree), MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_NEW_SMALL_INT(0),
        MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_NEW_SMALL_INT(self->readonly ? 1 : 0),
        MP_OBJ_NEW_SMALL_INT(LFS_NAME_MAX),
    };
    return mp_obj_new_tuple(10, t);
}
static MP_DEFINE_CONST_FUN_OBJ_2(lfs_statvfs_obj, lfs_statvfs_m);

static mp_obj_t lfs_mkdir_m(mp_obj_t self_in, mp_obj_t path) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    const char *p = lpath(self, path);
    vfs_check_writable(self->readonly);
    check(self, lfs_mkdir(&self->lfs, p));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(lfs_mkdir_obj, lfs_mkdir_m);

static void lfs_unlink(lfs_vfs_t *self, mp_obj_t path, bool want_dir) {
    const char *p = lpath(self, path);
    vfs_check_writable(self->readonly);
    struct lfs_info info;
    check(self, lfs_stat(&self->lfs, p, &info));
    bool is_dir = info.type == LFS_TYPE_DIR;
    if (is_dir != want_dir) {
        mp_raise_OSError(is_dir ? MP_EISDIR : MP_ENOTDIR);  // (check() delivered)
    }
    check(self, lfs_remove(&self->lfs, p));
}

static mp_obj_t lfs_rmdir_m(mp_obj_t self_in, mp_obj_t path) {
    lfs_unlink(MP_OBJ_TO_PTR(self_in), path, true);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(lfs_rmdir_obj, lfs_rmdir_m);

static mp_obj_t lfs_remove_m(mp_obj_t self_in, mp_obj_t path) {
    lfs_unlink(MP_OBJ_TO_PTR(self_in), path, false);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(lfs_remove_obj, lfs_remove_m);

static mp_obj_t lfs_rename_m(mp_obj_t self_in, mp_obj_t old, mp_obj_t new) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    const char *a = lpath(self, old), *b = lpath(self, new);
    vfs_check_writable(self->readonly);
    check(self, lfs_rename(&self->lfs, a, b));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(lfs_rename_obj, lfs_rename_m);

// ---- files --------------------------------------------------------------------------

static blockdev_t *file_bd(lfs_vfile_t *f) {
    return &((lfs_vfs_t *)MP_OBJ_TO_PTR(f->base.fs))->bd;
}

// (A Ctrl-C held back stays held: file.c raises it when the call is over.)
static int file_result(lfs_vfile_t *f, int r) {
    if (r == LFS_ERR_IO) {
        blockdev_raise(file_bd(f), MP_EIO);
    }
    return r < 0 ? lfs_errno(r) : 0;
}

static lfs_t *file_lfs(vfs_file_t *vf) {
    return &((lfs_vfs_t *)MP_OBJ_TO_PTR(vf->fs))->lfs;
}

// A long read or write goes to littlefs in parts of FILE_PART bytes: a
// Ctrl-C held back during one (see blockdev.c) is raised before the next.
static mp_uint_t lfs_file_read_op(vfs_file_t *vf, void *buf, mp_uint_t size, int *err) {
    lfs_vfile_t *f = (lfs_vfile_t *)vf;
    mp_uint_t done = 0;
    for (;;) {
        mp_uint_t want = size - done < FILE_PART ? size - done : FILE_PART;
        lfs_ssize_t n = lfs_file_read(file_lfs(vf), &f->file, (uint8_t *)buf + done, want);
        if (n < 0 || (mp_uint_t)n < want || done + n == size) {
            *err = file_result(f, n);
            return *err ? MP_STREAM_ERROR : done + n;
        }
        done += n;
        blockdev_interrupt_point(file_bd(f));
    }
}

static mp_uint_t lfs_file_write_op(vfs_file_t *vf, const void *buf, mp_uint_t size, int *err) {
    lfs_vfile_t *f = (lfs_vfile_t *)vf;
    mp_uint_t done = 0;
    for (;;) {
        mp_uint_t want = size - done < FILE_PART ? size - done : FILE_PART;
        lfs_ssize_t n = lfs_file_write(file_lfs(vf), &f->file, (const uint8_t *)buf + done, want);
        if (n < 0 || (mp_uint_t)n < want || done + n == size) {
            *err = file_result(f, n);
            return *err ? MP_STREAM_ERROR : done + n;
        }
        done += n;
        blockdev_interrupt_point(file_bd(f));
    }
}

static int lfs_file_seek_op(vfs_file_t *vf, mp_off_t *offset, int whence) {
    lfs_vfile_t *f = (lfs_vfile_t *)vf;
    if (whence < 0 || whence > 2) {
        return MP_EINVAL;
    }
    lfs_soff_t pos = lfs_file_seek(file_lfs(vf), &f->file, *offset, whence);
    int err = file_result(f, pos);
    if (!err) {
        *offset = pos;
    }
    return err;
}

static int lfs_file_sync_op(vfs_file_t *vf) {
    lfs_vfile_t *f = (lfs_vfile_t *)vf;
    return file_result(f, lfs_file_sync(file_lfs(vf), &f->file));
}

static int lfs_file_close_op(vfs_file_t *vf) {
    lfs_vfile_t *f = (lfs_vfile_t *)vf;
    lfs_vfs_t *self = MP_OBJ_TO_PTR(vf->fs);
    file_list_remove(&self->files, vf);
    return file_result(f, lfs_file_close(&self->lfs, &f->file));
}

static const file_ops_t lfs_file_ops = {
    lfs_file_read_op, lfs_file_write_op, lfs_file_seek_op, lfs_file_sync_op, lfs_file_close_op,
};

static mp_obj_t lfs_open_m(mp_obj_t self_in, mp_obj_t path, mp_obj_t mode_in) {
    lfs_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    const char *p = lpath(self, path);
    int flags = file_parse_mode(mp_obj_str_get_str(mode_in));
    if (flags & FILE_WRITE) {
        vfs_check_writable(self->readonly);
    }
    int lflags = ((flags & FILE_READ) ? LFS_O_RDONLY : 0) | ((flags & FILE_WRITE) ? LFS_O_WRONLY : 0)
        | ((flags & FILE_CREATE) ? LFS_O_CREAT : 0) | ((flags & FILE_TRUNCATE) ? LFS_O_TRUNC : 0)
        | ((flags & FILE_APPEND) ? LFS_O_APPEND : 0) | ((flags & FILE_EXCL) ? LFS_O_EXCL : 0);
    lfs_vfile_t *f = (lfs_vfile_t *)file_new(sizeof(lfs_vfile_t), flags, &lfs_file_ops, self_in);
    f->cfg.buffer = m_new(uint8_t, self->cfg.cache_size);
    f->base.bd = &self->bd;
    int err = lfs_file_opencfg(&self->lfs, &f->file, p, lflags, &f->cfg);
    if (err >= 0) {
        // Ours (and littlefs's list of open files holds it) before check()
        // may raise a held-back Ctrl-C: umount closes it.
        f->base.open = true;
        file_list_add(&self->files, &f->base);
    }
    check(self, err);
    return MP_OBJ_FROM_PTR(f);
}
static MP_DEFINE_CONST_FUN_OBJ_3(lfs_open_obj, lfs_open_m);

static const mp_rom_map_elem_t lfs_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_mkfs), MP_ROM_PTR(&lfs_mkfs_obj) },
    { MP_ROM_QSTR(MP_QSTR_mount), MP_ROM_PTR(&lfs_mount_obj) },
    { MP_ROM_QSTR(MP_QSTR_umount), MP_ROM_PTR(&lfs_umount_obj) },
    { MP_ROM_QSTR(MP_QSTR_sync), MP_ROM_PTR(&lfs_sync_obj) },
    { MP_ROM_QSTR(MP_QSTR_open), MP_ROM_PTR(&lfs_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_ilistdir), MP_ROM_PTR(&lfs_ilistdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_stat), MP_ROM_PTR(&lfs_stat_obj) },
    { MP_ROM_QSTR(MP_QSTR_statvfs), MP_ROM_PTR(&lfs_statvfs_obj) },
    { MP_ROM_QSTR(MP_QSTR_mkdir), MP_ROM_PTR(&lfs_mkdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_rmdir), MP_ROM_PTR(&lfs_rmdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_remove), MP_ROM_PTR(&lfs_remove_obj) },
    { MP_ROM_QSTR(MP_QSTR_rename), MP_ROM_PTR(&lfs_rename_obj) },
};
static MP_DEFINE_CONST_DICT(lfs_locals_dict, lfs_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    vfs_lfs2_type,
    MP_QSTR_VfsLfs2,
    MP_TYPE_FLAG_NONE,
    make_new, lfs_make_new,
    locals_dict, &lfs_locals_dict
    );
