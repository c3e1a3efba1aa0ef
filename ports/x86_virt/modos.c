// The `os` module (MicroPython's names; docs: "os - basic operating system
// services"), and `vfs`, MicroPython 1.23's home of mount()/umount() and the
// file system types. The path functions are vfs.c's.
#include <string.h>

#include "py/mperrno.h"
#include "py/objtuple.h"
#include "py/runtime.h"
#include "genhdr/mpversion.h"
#include "vfs.h"

static const qstr uname_fields[] = {
    MP_QSTR_sysname, MP_QSTR_nodename, MP_QSTR_release, MP_QSTR_version, MP_QSTR_machine
};

static mp_obj_t os_uname(void) {
    static const char version[] = MICROPY_VERSION_STRING " on " MICROPY_BUILD_DATE;
    static const char machine[] = MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME;
    mp_obj_t items[5] = {
        MP_OBJ_NEW_QSTR(MP_QSTR_x86_virt), MP_OBJ_NEW_QSTR(MP_QSTR_x86_virt),
        mp_obj_new_str(MICROPY_VERSION_STRING, strlen(MICROPY_VERSION_STRING)),
        mp_obj_new_str(version, strlen(version)), mp_obj_new_str(machine, strlen(machine)),
    };
    return mp_obj_new_attrtuple(uname_fields, 5, items);
}
static MP_DEFINE_CONST_FUN_OBJ_0(os_uname_obj, os_uname);

// urandom(n): n bytes from the virtio-rng device (virtio.find('rng')): the
// machine's only entropy source. OSError(ENODEV) without one.
static mp_obj_t os_urandom(mp_obj_t n) {
    mp_int_t len = mp_obj_get_int(n);
    if (len < 0) {
        mp_raise_ValueError(NULL);
    }
    mp_obj_t virtio = mp_import_name(MP_QSTR_virtio, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
    mp_obj_t rng;
    nlr_buf_t nlr;
    if (nlr_push(&nlr) == 0) {
        rng = mp_call_function_1(mp_load_attr(virtio, MP_QSTR_find), MP_OBJ_NEW_QSTR(MP_QSTR_rng));
        nlr_pop();
    } else {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("urandom: no virtio-rng device"));
    }
    mp_obj_t data = mp_call_function_1(mp_load_attr(rng, MP_QSTR_read), n);
    if (mp_obj_get_int(mp_obj_len(data)) != len) {
        mp_raise_OSError(MP_EIO);
    }
    return data;
}
static MP_DEFINE_CONST_FUN_OBJ_1(os_urandom_obj, os_urandom);

static const mp_rom_map_elem_t os_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_os) },
    { MP_ROM_QSTR(MP_QSTR_uname), MP_ROM_PTR(&os_uname_obj) },
    { MP_ROM_QSTR(MP_QSTR_urandom), MP_ROM_PTR(&os_urandom_obj) },
    { MP_ROM_QSTR(MP_QSTR_sep), MP_ROM_QSTR(MP_QSTR__slash_) },
    { MP_ROM_QSTR(MP_QSTR_mount), MP_ROM_PTR(&vfs_mount_obj) },
    { MP_ROM_QSTR(MP_QSTR_umount), MP_ROM_PTR(&vfs_umount_obj) },
    { MP_ROM_QSTR(MP_QSTR_chdir), MP_ROM_PTR(&vfs_chdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_getcwd), MP_ROM_PTR(&vfs_getcwd_obj) },
    { MP_ROM_QSTR(MP_QSTR_ilistdir), MP_ROM_PTR(&vfs_ilistdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_listdir), MP_ROM_PTR(&vfs_listdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_mkdir), MP_ROM_PTR(&vfs_mkdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_rmdir), MP_ROM_PTR(&vfs_rmdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_remove), MP_ROM_PTR(&vfs_remove_obj) },
    { MP_ROM_QSTR(MP_QSTR_rename), MP_ROM_PTR(&vfs_rename_obj) },
    { MP_ROM_QSTR(MP_QSTR_stat), MP_ROM_PTR(&vfs_stat_obj) },
    { MP_ROM_QSTR(MP_QSTR_statvfs), MP_ROM_PTR(&vfs_statvfs_obj) },
    { MP_ROM_QSTR(MP_QSTR_sync), MP_ROM_PTR(&vfs_sync_obj) },
    { MP_ROM_QSTR(MP_QSTR_VfsFat), MP_ROM_PTR(&vfs_fat_type) },
    { MP_ROM_QSTR(MP_QSTR_VfsLfs2), MP_ROM_PTR(&vfs_lfs2_type) },
};
static MP_DEFINE_CONST_DICT(os_module_globals, os_module_globals_table);

const mp_obj_module_t mp_module_os = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&os_module_globals,
};
MP_REGISTER_MODULE(MP_QSTR_os, mp_module_os);

static const mp_rom_map_elem_t vfs_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_vfs) },
    { MP_ROM_QSTR(MP_QSTR_mount), MP_ROM_PTR(&vfs_mount_obj) },
    { MP_ROM_QSTR(MP_QSTR_umount), MP_ROM_PTR(&vfs_umount_obj) },
    { MP_ROM_QSTR(MP_QSTR_VfsFat), MP_ROM_PTR(&vfs_fat_type) },
    { MP_ROM_QSTR(MP_QSTR_VfsLfs2), MP_ROM_PTR(&vfs_lfs2_type) },
};
static MP_DEFINE_CONST_DICT(vfs_module_globals, vfs_module_globals_table);

const mp_obj_module_t mp_module_vfs = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&vfs_module_globals,
};
MP_REGISTER_MODULE(MP_QSTR_vfs, mp_module_vfs);
