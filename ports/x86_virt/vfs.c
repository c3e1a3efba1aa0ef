// The virtual file system: os.mount()/umount() keep a table of mounted
// objects, each at a path ("/", "/remote", ...); every path function of `os`
// and the builtin open() resolve their argument against the current
// directory, find the mount with the longest matching path, and call that
// object's method with the rest of the path (always absolute, "/..."):
//     obj.mount(readonly, mkfs)   obj.umount()
//     obj.open(path, mode)        obj.ilistdir(path)     obj.stat(path)
//     obj.mkdir(path)  obj.rmdir(path)  obj.remove(path)  obj.rename(a, b)
//     obj.statvfs(path)           obj.chdir(path) (optional)
// These are MicroPython's VFS methods (docs: "os - basic operating system
// services", section "Filesystem mounting"), so os.VfsFat, os.VfsLfs2 and
// any Python object with them (mpremote's RemoteFS) can be mounted.
// With nothing mounted at "/", the root is a directory of the mount points.
#include <string.h>

#include "py/mperrno.h"
#include "py/objstr.h"
#include "py/runtime.h"
#include "vfs.h"

MP_REGISTER_ROOT_POINTER(struct _vfs_mount_t *vfs_mounts);
MP_REGISTER_ROOT_POINTER(mp_obj_t vfs_cwd);

#define MOUNTS (MP_STATE_VM(vfs_mounts))
#define CWD (MP_STATE_VM(vfs_cwd))

void vfs_init(void) {
    MOUNTS = NULL;
    CWD = MP_OBJ_NEW_QSTR(MP_QSTR__slash_);
    vfs_fat_reset();
}

void vfs_check_writable(bool readonly) {
    if (readonly) {
        mp_raise_OSError(MP_EROFS);
    }
}

// ---- paths ---------------------------------------------------------------------

// The absolute, normalised form of path ("." and ".." applied, no double or
// trailing slashes), relative paths taken from the current directory.
static void abs_path(const char *path, vstr_t *out) {
    vstr_init(out, 32);
    if (path[0] != '/') {
        vstr_add_str(out, mp_obj_str_get_str(CWD));
    }
    vstr_add_char(out, '/');
    vstr_add_str(out, path);
    // Rebuild component by component in place.
    char *s = vstr_str(out);
    size_t len = vstr_len(out), w = 0, r = 0;
    while (r < len) {
        while (r < len && s[r] == '/') {
            r++;
        }
        size_t start = r;
        while (r < len && s[r] != '/') {
            r++;
        }
        size_t n = r - start;
        if (n == 0 || (n == 1 && s[start] == '.')) {
            continue;
        }
        if (n == 2 && s[start] == '.' && s[start + 1] == '.') {
            while (w > 0 && s[--w] != '/') {
            }
            continue;
        }
        s[w++] = '/';
        memmove(s + w, s + start, n);
        w += n;
    }
    if (w == 0) {
        s[w++] = '/';
    }
    out->len = w;
    vstr_null_terminated_str(out);
}

// The mount that holds absolute path p (longest mount path first), and the
// path inside it; NULL when only the virtual root holds it.
static vfs_mount_t *lookup(const char *p, const char **rel) {
    vfs_mount_t *best = NULL;
    for (vfs_mount_t *m = MOUNTS; m != NULL; m = m->next) {
        bool match = m->len == 1
            || (strncmp(p, m->path, m->len) == 0 && (p[m->len] == '\0' || p[m->len] == '/'));
        if (match && (best == NULL || m->len > best->len)) {
            best = m;
        }
    }
    if (best != NULL) {
        *rel = best->len == 1 ? p : (p[best->len] ? p + best->len : "/");
    }
    return best;
}

typedef struct {
    vstr_t abs;
    vfs_mount_t *mount;
    mp_obj_t rel;       // str: the path inside the mount
} resolved_t;

static bool resolve(mp_obj_t path_in, resolved_t *r) {
    abs_path(mp_obj_str_get_str(path_in), &r->abs);
    const char *rel;
    r->mount = lookup(vstr_str(&r->abs), &rel);
    r->rel = r->mount ? mp_obj_new_str(rel, strlen(rel)) : mp_const_none;
    return r->mount != NULL;
}

// Resolve, insisting on a mounted file system (the virtual root holds no files).
static vfs_mount_t *resolve_mounted(mp_obj_t path_in, resolved_t *r, int err) {
    if (!resolve(path_in, r)) {
        mp_raise_OSError(err);
    }
    return r->mount;
}

static mp_obj_t call(vfs_mount_t *m, qstr meth, size_t n, const mp_obj_t *args) {
    mp_obj_t dest[2 + 2];
    mp_load_method(m->obj, meth, dest);
    for (size_t i = 0; i < n; i++) {
        dest[2 + i] = args[i];
    }
    return mp_call_method_n_kw(n, 0, dest);
}

// ---- mount, umount ---------------------------------------------------------------

// A block device given to mount() directly: try FAT, then littlefs.
static mp_obj_t autodetect(mp_obj_t bdev, mp_obj_t readonly) {
    static const mp_obj_type_t *const types[] = {&vfs_fat_type, &vfs_lfs2_type};
    for (size_t i = 0; i < MP_ARRAY_SIZE(types); i++) {
        mp_obj_t vfs = MP_OBJ_TYPE_GET_SLOT(types[i], make_new)(types[i], 1, 0, &bdev);
        nlr_buf_t nlr;
        if (nlr_push(&nlr) == 0) {
            mp_obj_t dest[4];
            mp_load_method(vfs, MP_QSTR_mount, dest);
            dest[2] = readonly;
            dest[3] = mp_const_false;
            mp_call_method_n_kw(2, 0, dest);
            nlr_pop();
            return vfs;
        }
        mp_obj_t exc = MP_OBJ_FROM_PTR(nlr.ret_val);
        if (!mp_obj_exception_match(exc, MP_OBJ_FROM_PTR(&mp_type_OSError))
            || mp_obj_get_int(mp_load_attr(exc, MP_QSTR_errno)) != MP_ENODEV) {
            nlr_jump(nlr.ret_val);
        }
    }
    mp_raise_OSError(MP_ENODEV);
}

// mount() with no arguments: the table, as [(obj, path), ...] (mpremote df).
static mp_obj_t mount_list(void) {
    mp_obj_t list = mp_obj_new_list(0, NULL);
    for (vfs_mount_t *m = MOUNTS; m != NULL; m = m->next) {
        mp_obj_t t[2] = {m->obj, mp_obj_new_str(m->path, m->len)};
        mp_obj_list_append(list, mp_obj_new_tuple(2, t));
    }
    return list;
}

static mp_obj_t vfs_mount(size_t n_args, const mp_obj_t *pos, mp_map_t *kw) {
    if (n_args == 0 && kw->used == 0) {
        return mount_list();
    }
    enum { ARG_obj, ARG_path, ARG_readonly, ARG_mkfs };
    static const mp_arg_t allowed[] = {
        { MP_QSTR_, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
        { MP_QSTR_readonly, MP_ARG_KW_ONLY | MP_ARG_BOOL, {.u_bool = false} },
        { MP_QSTR_mkfs, MP_ARG_KW_ONLY | MP_ARG_BOOL, {.u_bool = false} },
    };
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed)];
    mp_arg_parse_all(n_args, pos, kw, MP_ARRAY_SIZE(allowed), allowed, args);

    vstr_t abs;
    abs_path(mp_obj_str_get_str(args[ARG_path].u_obj), &abs);
    for (vfs_mount_t *m = MOUNTS; m != NULL; m = m->next) {
        if (strcmp(m->path, vstr_str(&abs)) == 0) {
            mp_raise_OSError(MP_EPERM);     // something is mounted there already
        }
    }
    mp_obj_t obj = args[ARG_obj].u_obj;
    mp_obj_t readonly = mp_obj_new_bool(args[ARG_readonly].u_bool);
    mp_obj_t dest[2];
    mp_load_method_maybe(obj, MP_QSTR_mount, dest);
    if (dest[0] == MP_OBJ_NULL) {
        obj = autodetect(obj, readonly);
    } else {
        mp_obj_t margs[2] = {readonly, mp_obj_new_bool(args[ARG_mkfs].u_bool)};
        vfs_mount_t tmp = {.obj = obj};
        call(&tmp, MP_QSTR_mount, 2, margs);
    }
    vfs_mount_t *m = m_new_obj(vfs_mount_t);
    m->len = vstr_len(&abs);
    m->path = vstr_null_terminated_str(&abs);
    m->obj = obj;
    m->readonly = args[ARG_readonly].u_bool;
    m->next = MOUNTS;
    MOUNTS = m;
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_KW(vfs_mount_obj, 0, vfs_mount);

static mp_obj_t vfs_umount(mp_obj_t target) {
    vstr_t abs;
    bool by_path = mp_obj_is_str(target);
    if (by_path) {
        abs_path(mp_obj_str_get_str(target), &abs);
    }
    for (vfs_mount_t **pm = &MOUNTS; *pm != NULL; pm = &(*pm)->next) {
        vfs_mount_t *m = *pm;
        if (by_path ? strcmp(m->path, vstr_str(&abs)) == 0 : m->obj == target) {
            *pm = m->next;      // out of the table first: an umount that raises
            call(m, MP_QSTR_umount, 0, NULL);   // still leaves it unmounted
            const char *cwd = mp_obj_str_get_str(CWD);
            if (m->len > 1 && strncmp(cwd, m->path, m->len) == 0
                && (cwd[m->len] == '\0' || cwd[m->len] == '/')) {
                CWD = MP_OBJ_NEW_QSTR(MP_QSTR__slash_);
            }
            return mp_const_none;
        }
    }
    mp_raise_OSError(MP_EINVAL);
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_umount_obj, vfs_umount);

void vfs_deinit(void) {
    while (MOUNTS != NULL) {
        vfs_mount_t *m = MOUNTS;
        MOUNTS = m->next;
        nlr_buf_t nlr;
        if (nlr_push(&nlr) == 0) {
            call(m, MP_QSTR_umount, 0, NULL);
            nlr_pop();
        }
    }
    CWD = MP_OBJ_NEW_QSTR(MP_QSTR__slash_);
}

// ---- open() and the directory functions -----------------------------------------

mp_obj_t vfs_open(mp_obj_t path, mp_obj_t mode) {
    resolved_t r;
    vfs_mount_t *m = resolve_mounted(path, &r, MP_ENOENT);
    mp_obj_t args[2] = {r.rel, mode};
    return call(m, MP_QSTR_open, 2, args);
}

// builtin open(file, mode='r', ...): buffering, encoding and the rest are
// accepted and ignored (files are UTF-8, unbuffered as in MicroPython).
mp_obj_t mp_builtin_open(size_t n_args, const mp_obj_t *args, mp_map_t *kwargs) {
    mp_map_elem_t *kw_mode = mp_map_lookup(kwargs, MP_OBJ_NEW_QSTR(MP_QSTR_mode), MP_MAP_LOOKUP);
    mp_obj_t mode = n_args > 1 ? args[1] : kw_mode ? kw_mode->value : MP_OBJ_NEW_QSTR(MP_QSTR_r);
    return vfs_open(args[0], mode);
}
MP_DEFINE_CONST_FUN_OBJ_KW(mp_builtin_open_obj, 1, mp_builtin_open);

// The virtual root's listing: one directory per top-level mount point.
static mp_obj_t root_listing(void) {
    mp_obj_t list = mp_obj_new_list(0, NULL);
    for (vfs_mount_t *m = MOUNTS; m != NULL; m = m->next) {
        mp_obj_t t[3] = {
            mp_obj_new_str(m->path + 1, m->len - 1), MP_OBJ_NEW_SMALL_INT(VFS_S_IFDIR), MP_OBJ_NEW_SMALL_INT(0)
        };
        mp_obj_list_append(list, mp_obj_new_tuple(3, t));
    }
    return mp_getiter(list, NULL);
}

mp_obj_t vfs_ilistdir_of(mp_obj_t path_in) {
    resolved_t r;
    if (!resolve(path_in, &r)) {
        if (strcmp(vstr_str(&r.abs), "/") != 0) {
            mp_raise_OSError(MP_ENOENT);
        }
        return root_listing();
    }
    return call(r.mount, MP_QSTR_ilistdir, 1, &r.rel);
}

static mp_obj_t vfs_ilistdir(size_t n_args, const mp_obj_t *args) {
    return vfs_ilistdir_of(n_args ? args[0] : MP_OBJ_NEW_QSTR(MP_QSTR_));
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(vfs_ilistdir_obj, 0, 1, vfs_ilistdir);

static mp_obj_t vfs_listdir(size_t n_args, const mp_obj_t *args) {
    mp_obj_t iter = vfs_ilistdir_of(n_args ? args[0] : MP_OBJ_NEW_QSTR(MP_QSTR_));
    mp_obj_t list = mp_obj_new_list(0, NULL);
    mp_obj_t entry;
    while ((entry = mp_iternext(iter)) != MP_OBJ_STOP_ITERATION) {
        mp_obj_list_append(list, mp_obj_subscr(entry, MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_SENTINEL));
    }
    return list;
}
MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(vfs_listdir_obj, 0, 1, vfs_listdir);

static mp_obj_t path_call(mp_obj_t path, qstr meth) {
    resolved_t r;
    vfs_mount_t *m = resolve_mounted(path, &r, MP_ENOENT);
    return call(m, meth, 1, &r.rel);
}

static mp_obj_t vfs_mkdir(mp_obj_t path) {
    resolved_t r;
    if (!resolve(path, &r)) {
        // The virtual root, or a mount point's name in it.
        mp_raise_OSError(strcmp(vstr_str(&r.abs), "/") == 0 ? MP_EEXIST : MP_EROFS);
    }
    return call(r.mount, MP_QSTR_mkdir, 1, &r.rel);
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_mkdir_obj, vfs_mkdir);

static mp_obj_t vfs_rmdir(mp_obj_t path) {
    return path_call(path, MP_QSTR_rmdir);
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_rmdir_obj, vfs_rmdir);

static mp_obj_t vfs_remove(mp_obj_t path) {
    return path_call(path, MP_QSTR_remove);
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_remove_obj, vfs_remove);

static mp_obj_t vfs_rename(mp_obj_t old, mp_obj_t new) {
    resolved_t a, b;
    vfs_mount_t *m = resolve_mounted(old, &a, MP_ENOENT);
    if (resolve_mounted(new, &b, MP_EXDEV) != m) {
        mp_raise_OSError(MP_EXDEV);     // across file systems
    }
    mp_obj_t args[2] = {a.rel, b.rel};
    return call(m, MP_QSTR_rename, 2, args);
}
MP_DEFINE_CONST_FUN_OBJ_2(vfs_rename_obj, vfs_rename);

static mp_obj_t dir_stat(void) {
    mp_obj_t t[10];
    t[0] = MP_OBJ_NEW_SMALL_INT(VFS_S_IFDIR);
    for (int i = 1; i < 10; i++) {
        t[i] = MP_OBJ_NEW_SMALL_INT(0);
    }
    return mp_obj_new_tuple(10, t);
}

static mp_obj_t vfs_stat(mp_obj_t path) {
    resolved_t r;
    if (!resolve(path, &r)) {
        if (strcmp(vstr_str(&r.abs), "/") != 0) {
            mp_raise_OSError(MP_ENOENT);
        }
        return dir_stat();
    }
    return call(r.mount, MP_QSTR_stat, 1, &r.rel);
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_stat_obj, vfs_stat);

static mp_obj_t vfs_statvfs(mp_obj_t path) {
    resolved_t r;
    if (!resolve(path, &r)) {
        // The virtual root: what is mounted just below it, else all zeros.
        for (vfs_mount_t *m = MOUNTS; m != NULL; m = m->next) {
            mp_obj_t rel = MP_OBJ_NEW_QSTR(MP_QSTR__slash_);
            return call(m, MP_QSTR_statvfs, 1, &rel);
        }
        mp_obj_t t = dir_stat();
        ((mp_obj_tuple_t *)MP_OBJ_TO_PTR(t))->items[0] = MP_OBJ_NEW_SMALL_INT(0);
        return t;
    }
    return call(r.mount, MP_QSTR_statvfs, 1, &r.rel);
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_statvfs_obj, vfs_statvfs);

static mp_obj_t vfs_getcwd(void) {
    return CWD;
}
MP_DEFINE_CONST_FUN_OBJ_0(vfs_getcwd_obj, vfs_getcwd);

static mp_obj_t vfs_chdir(mp_obj_t path) {
    resolved_t r;
    if (resolve(path, &r)) {
        mp_obj_t dest[3];
        mp_load_method_maybe(r.mount->obj, MP_QSTR_chdir, dest);
        if (dest[0] != MP_OBJ_NULL) {
            dest[2] = r.rel;    // the object checks it (mpremote's RemoteFS)
            mp_call_method_n_kw(1, 0, dest);
        } else {
            mp_obj_t st = call(r.mount, MP_QSTR_stat, 1, &r.rel);
            if (!(mp_obj_get_int(mp_obj_subscr(st, MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_SENTINEL)) & VFS_S_IFDIR)) {
                mp_raise_OSError(MP_ENOTDIR);
            }
        }
    } else if (strcmp(vstr_str(&r.abs), "/") != 0) {
        mp_raise_OSError(MP_ENOENT);
    }
    CWD = mp_obj_new_str(vstr_str(&r.abs), vstr_len(&r.abs));
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(vfs_chdir_obj, vfs_chdir);

// os.sync(): every mounted file system that can, writes out what it holds.
static mp_obj_t vfs_sync(void) {
    for (vfs_mount_t *m = MOUNTS; m != NULL; m = m->next) {
        mp_obj_t dest[2];
        mp_load_method_maybe(m->obj, MP_QSTR_sync, dest);
        if (dest[0] != MP_OBJ_NULL) {
            mp_call_method_n_kw(0, 0, dest);
        }
    }
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_0(vfs_sync_obj, vfs_sync);

// ---- for import (reader.c) ----------------------------------------------------

// What a path on the mounted file systems is, for import: never raises.
mp_import_stat_t vfs_import_stat(const char *path) {
    if (MOUNTS == NULL) {
        return MP_IMPORT_STAT_NO_EXIST;
    }
    mp_import_stat_t result = MP_IMPORT_STAT_NO_EXIST;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        resolved_t r;
        if (resolve(mp_obj_new_str(path, strlen(path)), &r)) {
            mp_obj_t st = call(r.mount, MP_QSTR_stat, 1, &r.rel);
            mp_int_t mode = mp_obj_get_int(mp_obj_subscr(st, MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_SENTINEL));
            result = (mode & VFS_S_IFDIR) ? MP_IMPORT_STAT_DIR : MP_IMPORT_STAT_FILE;
        }
        nlr_pop();
    }
    return result;
}
