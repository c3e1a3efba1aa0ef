// os.VfsFat: FAT12/16/32 with long names on any block device (512-byte
// blocks), through ChaN's FatFs (fetched from the fatfs sdist; our
// configuration is ffconf.h). MicroPython's interface:
//     vfs = os.VfsFat(bdev); os.VfsFat.mkfs(bdev); os.mount(vfs, "/")
// FatFs names volumes by number ("0:/path"): a VfsFat takes a free number
// when it is mounted and gives it back at umount; the disk_* functions
// FatFs calls (diskio.h) find the block device by that number.
#include <string.h>

#include "py/mperrno.h"
#include "py/runtime.h"
#include "shared/timeutils/timeutils.h"
#include "ff.h"
#include "diskio.h"
#include "vfs.h"
#include "x86.h"

#define FAT_SECTOR_SIZE     (512)
#define MKFS_WORK_SIZE      (16 * 1024)     // bigger: fewer writes while formatting
#define FAT_NAME_MAX        (255)
// FatFs moves file data one cluster at a time (often 4 KiB), and each call is
// a request through the Python driver. So consecutive writes are gathered
// and sent as one, and a multi-sector read reads ahead (see "runs" below).
#define RUN_SECTORS         (256)           // 128 KiB per gathered write / read-ahead

// A run of consecutive sectors held in RAM: start, count, and the bytes.
typedef struct {
    uint8_t *buf;           // RUN_SECTORS sectors
    LBA_t start;
    UINT count;             // 0: empty
} run_t;

typedef struct _fat_vfs_t {
    mp_obj_base_t base;
    blockdev_t bd;
    FATFS fatfs;
    int vol;                // FatFs volume number while mounted, else -1
    bool readonly;
    vfs_file_t *files;      // open files
    run_t pending;          // written by FatFs, not yet sent to the device
    run_t ahead;            // read from the device ahead of FatFs
} fat_vfs_t;

typedef struct {
    vfs_file_t base;
    FIL fil;
} fat_file_t;

MP_REGISTER_ROOT_POINTER(struct _fat_vfs_t *fat_volumes[FF_VOLUMES]);
#define VOLUMES (MP_STATE_VM(fat_volumes))

void vfs_fat_reset(void) {
    memset(VOLUMES, 0, sizeof(VOLUMES));
}

// ---- errors ------------------------------------------------------------------------

static int fr_errno(FRESULT res) {
    switch (res) {
        case FR_NO_FILE: case FR_NO_PATH: return MP_ENOENT;
        case FR_INVALID_NAME: case FR_INVALID_PARAMETER: return MP_EINVAL;
        case FR_DENIED: return MP_EACCES;
        case FR_EXIST: return MP_EEXIST;
        case FR_INVALID_OBJECT: return MP_EBADF;
        case FR_WRITE_PROTECTED: return MP_EROFS;
        case FR_INVALID_DRIVE: case FR_NOT_ENABLED: case FR_NO_FILESYSTEM: return MP_ENODEV;
        case FR_LOCKED: return MP_EBUSY;
        case FR_NOT_ENOUGH_CORE: return MP_ENOMEM;
        case FR_TOO_MANY_OPEN_FILES: return MP_EMFILE;
        case FR_TIMEOUT: return MP_ETIMEDOUT;
        default: return MP_EIO;     // FR_DISK_ERR, FR_INT_ERR, FR_NOT_READY, FR_MKFS_ABORTED
    }
}

// Raise for a FatFs result; a disk error raises what the block device raised.
// Operations end here: a Ctrl-C held back during one is raised (see
// blockdev.c), so nothing of ours may be left to do after a check.
static void check(fat_vfs_t *self, FRESULT res) {
    if (res == FR_DISK_ERR) {
        blockdev_raise(&self->bd, MP_EIO);
    }
    if (res != FR_OK) {
        blockdev_deliver(&self->bd);
        mp_raise_OSError(fr_errno(res));
    }
    blockdev_interrupt_point(&self->bd);
}

// ---- what FatFs asks of us (diskio.h, get_fattime) -----------------------------------

static fat_vfs_t *volume(BYTE pdrv) {
    return pdrv < FF_VOLUMES ? VOLUMES[pdrv] : NULL;
}

DSTATUS disk_initialize(BYTE pdrv) {
    return disk_status(pdrv);
}

DSTATUS disk_status(BYTE pdrv) {
    fat_vfs_t *v = volume(pdrv);
    if (v == NULL) {
        return STA_NOINIT;
    }
    return v->readonly ? STA_PROTECT : 0;
}

// ---- runs: gathered writes and read-ahead ---------------------------------------------
// Writes: a write that continues the pending run joins it; any other write,
// a read of a sector in it, a sync and umount send it first. So what FatFs
// wrote reaches the device by the time a file is closed or flushed (FatFs
// syncs then), as before; only between two syncs is it held in RAM.
// Reads: a read of 2 sectors or more (file data) fetches RUN_SECTORS at once;
// the next reads are served from them. A write over them drops them.

static bool overlaps(const run_t *r, LBA_t sector, UINT count) {
    return r->count && sector < r->start + r->count && r->start < sector + count;
}

static int send_pending(fat_vfs_t *v) {
    run_t *r = &v->pending;
    if (r->count == 0) {
        return 0;
    }
    // Kept when the write fails (Ctrl-C, an I/O error): sent again next time.
    int err = blockdev_write(&v->bd, r->start, 0, r->buf, r->count * FAT_SECTOR_SIZE);
    if (err == 0) {
        r->count = 0;
    }
    return err;
}

// Everything written, out of RAM and out of the device's write cache.
static int flush_device(fat_vfs_t *v) {
    int err = send_pending(v);
    if (err == 0 && v->bd.dirty) {
        err = blockdev_ioctl(&v->bd, BLOCKDEV_IOCTL_SYNC, 0, NULL);
    }
    return err;
}

static void runs_init(fat_vfs_t *v) {
    if (v->pending.buf == NULL) {
        v->pending.buf = m_new(uint8_t, RUN_SECTORS * FAT_SECTOR_SIZE);
        v->ahead.buf = m_new(uint8_t, RUN_SECTORS * FAT_SECTOR_SIZE);
    }
    v->pending.count = v->ahead.count = 0;
}

DRESULT disk_read(BYTE pdrv, BYTE *buff, LBA_t sector, UINT count) {
    fat_vfs_t *v = volume(pdrv);
    if (v == NULL) {
        return RES_NOTRDY;
    }
    if (overlaps(&v->pending, sector, count) && send_pending(v)) {
        return RES_ERROR;
    }
    run_t *a = &v->ahead;
    if (a->buf != NULL && count >= 2 && count < RUN_SECTORS
        && !(a->count && sector >= a->start && sector + count <= a->start + a->count)) {
        // Not in the read-ahead: fetch RUN_SECTORS from here (or to the end).
        UINT n = v->bd.block_count - sector < RUN_SECTORS ? v->bd.block_count - sector : RUN_SECTORS;
        a->count = 0;
        if (n >= count) {
            // What is still pending in that range must reach the disk first.
            if (overlaps(&v->pending, sector, n) && send_pending(v)) {
                return RES_ERROR;
            }
            if (blockdev_read(&v->bd, sector, 0, a->buf, n * FAT_SECTOR_SIZE)) {
                return RES_ERROR;
            }
            a->start = sector;
            a->count = n;
        }
    }
    if (a->count && sector >= a->start && sector + count <= a->start + a->count) {
        memcpy(buff, a->buf + (sector - a->start) * FAT_SECTOR_SIZE, count * FAT_SECTOR_SIZE);
        return RES_OK;
    }
    return blockdev_read(&v->bd, sector, 0, buff, count * FAT_SECTOR_SIZE) ? RES_ERROR : RES_OK;
}

DRESULT disk_write(BYTE pdrv, const BYTE *buff, LBA_t sector, UINT count) {
    fat_vfs_t *v = volume(pdrv);
    if (v == NULL) {
        return RES_NOTRDY;
    }
    if (v->readonly) {
        return RES_WRPRT;
    }
    if (overlaps(&v->ahead, sector, count)) {
        v->ahead.count = 0;
    }
    run_t *r = &v->pending;
    if (r->buf == NULL || count > RUN_SECTORS) {
        if (send_pending(v)) {
            return RES_ERROR;
        }
        return blockdev_write(&v->bd, sector, 0, buff, count * FAT_SECTOR_SIZE) ? RES_ERROR : RES_OK;
    }
    if (r->count && (sector != r->start + r->count || r->count + count > RUN_SECTORS)) {
        if (send_pending(v)) {
            return RES_ERROR;
        }
    }
    if (r->count == 0) {
        r->start = sector;
    }
    memcpy(r->buf + r->count * FAT_SECTOR_SIZE, buff, count * FAT_SECTOR_SIZE);
    r->count += count;
    return RES_OK;
}

DRESULT disk_ioctl(BYTE pdrv, BYTE cmd, void *buff) {
    fat_vfs_t *v = volume(pdrv);
    if (v == NULL) {
        return RES_NOTRDY;
    }
    switch (cmd) {
        case CTRL_SYNC:
            // FatFs syncs at every close, mkdir, rename, remove: what it
            // wrote goes to the device. The device's own cache is flushed by
            // flush(), os.sync() and umount (flush_device), as Linux does at
            // fsync/sync/umount but not at close.
            return send_pending(v) ? RES_ERROR : RES_OK;
        case GET_SECTOR_COUNT:
            *(LBA_t *)buff = v->bd.block_count;
            return RES_OK;
        case GET_SECTOR_SIZE:
            *(WORD *)buff = FAT_SECTOR_SIZE;
            return RES_OK;
        case GET_BLOCK_SIZE:
            *(DWORD *)buff = 1;     // erase block unknown: no alignment
            return RES_OK;
        default:
            return RES_PARERR;
    }
}

// FAT time stamps are local time; the guest's clock is the RTC's (UTC).
DWORD get_fattime(void) {
    timeutils_struct_time_t tm;
    timeutils_seconds_since_epoch_to_struct_time(timer_epoch_us() / 1000000, &tm);
    if (tm.tm_year < 1980) {
        return (DWORD)1 << 21 | (DWORD)1 << 16;     // 1980-01-01
    }
    return (DWORD)(tm.tm_year - 1980) << 25 | (DWORD)tm.tm_mon << 21 | (DWORD)tm.tm_mday << 16
           | (DWORD)tm.tm_hour << 11 | (DWORD)tm.tm_min << 5 | (DWORD)(tm.tm_sec / 2);
}

static mp_uint_t fat_time_to_epoch(WORD date, WORD time) {
    return timeutils_mktime(1980 + (date >> 9), (date >> 5) & 0xf, date & 0x1f,
        time >> 11, (time >> 5) & 0x3f, 2 * (time & 0x1f));
}

// ---- volumes and paths ----------------------------------------------------------------

// "N:" + path, for FatFs.
static const char *fat_path(fat_vfs_t *self, mp_obj_t path_in, vstr_t *out) {
    if (self->vol < 0) {
        mp_raise_OSError(MP_ENODEV);     // not mounted
    }
    const char *path = mp_obj_str_get_str(path_in);
    vstr_init(out, strlen(path) + 3);
    vstr_add_char(out, '0' + self->vol);
    vstr_add_char(out, ':');
    vstr_add_str(out, path);
    return vstr_null_terminated_str(out);
}

static bool is_root(mp_obj_t path_in) {
    const char *p = mp_obj_str_get_str(path_in);
    return p[0] == '\0' || (p[0] == '/' && p[1] == '\0');
}

static int take_volume(fat_vfs_t *self) {
    for (int i = 0; i < FF_VOLUMES; i++) {
        if (VOLUMES[i] == NULL) {
            VOLUMES[i] = self;
            self->vol = i;
            return i;
        }
    }
    mp_raise_OSError(MP_EMFILE);    // FF_VOLUMES FAT volumes mounted already
}

static void give_volume(fat_vfs_t *self) {
    if (self->vol >= 0) {
        char drive[3] = {'0' + self->vol, ':', 0};
        f_mount(NULL, drive, 0);
        VOLUMES[self->vol] = NULL;
        self->vol = -1;
    }
}

static mp_obj_t fat_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 1, 1, false);
    fat_vfs_t *self = mp_obj_malloc(fat_vfs_t, type);
    self->vol = -1;
    blockdev_init(&self->bd, args[0]);
    if (self->bd.block_size != FAT_SECTOR_SIZE) {
        mp_raise_msg_varg(&mp_type_OSError, MP_ERROR_TEXT("VfsFat needs 512-byte blocks, not %u"),
            (unsigned)self->bd.block_size);
    }
    // A disk that refuses writes (virtio-blk with VIRTIO_BLK_F_RO) is
    // mounted read-only whatever mount() is asked.
    mp_obj_t ro[2];
    mp_load_method_maybe(args[0], MP_QSTR_read_only, ro);
    self->readonly = ro[0] != MP_OBJ_NULL && mp_obj_is_true(ro[0]);
    return MP_OBJ_FROM_PTR(self);
}

// VfsFat.mkfs(bdev): a new, empty FAT file system on the whole device.
static mp_obj_t fat_mkfs(mp_obj_t bdev) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(fat_make_new(&vfs_fat_type, 1, 0, &bdev));
    vfs_check_writable(self->readonly);
    take_volume(self);
    char drive[3] = {'0' + self->vol, ':', 0};
    const MKFS_PARM opt = {FM_ANY | FM_SFD, 0, 0, 0, 0};
    uint8_t *work = m_new(uint8_t, MKFS_WORK_SIZE);
    FRESULT res = f_mkfs(drive, &opt, work, MKFS_WORK_SIZE);
    m_del(uint8_t, work, MKFS_WORK_SIZE);
    if (res == FR_OK && flush_device(self)) {
        res = FR_DISK_ERR;
    }
    give_volume(self);
    check(self, res);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(fat_mkfs_fun_obj, fat_mkfs);
static MP_DEFINE_CONST_STATICMETHOD_OBJ(fat_mkfs_obj, MP_ROM_PTR(&fat_mkfs_fun_obj));

// mount(readonly, mkfs): called by os.mount. Reads the boot sector: a disk
// without a FAT file system raises OSError(ENODEV) and is not written.
static mp_obj_t fat_mount(mp_obj_t self_in, mp_obj_t readonly, mp_obj_t mkfs) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->vol >= 0) {
        mp_raise_OSError(MP_EBUSY);     // mounted already
    }
    self->readonly |= mp_obj_is_true(readonly);
    runs_init(self);
    take_volume(self);
    char drive[3] = {'0' + self->vol, ':', 0};
    FRESULT res = f_mount(&self->fatfs, drive, 1);
    if (res == FR_NO_FILESYSTEM && mp_obj_is_true(mkfs) && !self->readonly) {
        give_volume(self);
        fat_mkfs(self->bd.obj);
        take_volume(self);
        drive[0] = '0' + self->vol;
        res = f_mount(&self->fatfs, drive, 1);
    }
    if (res == FR_OK) {
        blockdev_deliver(&self->bd);    // mounted: os.mount must still record it
        return mp_const_none;
    }
    give_volume(self);
    check(self, res);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(fat_mount_obj, fat_mount);

// umount(): close the open files (writing out what they hold), flush the
// disk's cache if anything was written since the last flush (an umount that
// has nothing to write does not touch the device), and give the volume back.
static mp_obj_t fat_umount(mp_obj_t self_in) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->vol < 0) {
        return mp_const_none;
    }
    int err = file_list_close_all(&self->files);
    if (flush_device(self)) {
        err = err ? err : MP_EIO;
    }
    give_volume(self);
    if (err) {
        blockdev_raise(&self->bd, err);
    }
    blockdev_interrupt_point(&self->bd);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(fat_umount_obj, fat_umount);

static mp_obj_t fat_sync(mp_obj_t self_in) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->vol >= 0) {
        int err = file_list_sync_all(self->files);
        if (err) {
            blockdev_raise(&self->bd, err);
        }
        check(self, !self->readonly && flush_device(self) ? FR_DISK_ERR : FR_OK);
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(fat_sync_obj, fat_sync);

// ---- directories ----------------------------------------------------------------------

static mp_obj_t fat_ilistdir(size_t n_args, const mp_obj_t *args) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(args[0]);
    vstr_t p;
    fat_path(self, n_args > 1 ? args[1] : MP_OBJ_NEW_QSTR(MP_QSTR__slash_), &p);
    DIR dir;
    check(self, f_opendir(&dir, vstr_str(&p)));
    mp_obj_t list = mp_obj_new_list(0, NULL);
    for (;;) {
        FILINFO fno;
        FRESULT res = f_readdir(&dir, &fno);
        if (res != FR_OK) {
            f_closedir(&dir);
            check(self, res);
        }
        if (fno.fname[0] == '\0') {
            break;
        }
        mp_obj_t t[4] = {
            mp_obj_new_str(fno.fname, strlen(fno.fname)),
            MP_OBJ_NEW_SMALL_INT((fno.fattrib & AM_DIR) ? VFS_S_IFDIR : VFS_S_IFREG),
            MP_OBJ_NEW_SMALL_INT(0),
            mp_obj_new_int_from_uint(fno.fsize),
        };
        mp_obj_list_append(list, mp_obj_new_tuple(4, t));
    }
    f_closedir(&dir);
    check(self, FR_OK);
    return mp_getiter(list, NULL);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(fat_ilistdir_obj, 1, 2, fat_ilistdir);

// f_stat, with the root (which FatFs cannot stat) a directory.
static bool fat_stat_info(fat_vfs_t *self, mp_obj_t path, FILINFO *fno) {
    if (is_root(path)) {
        return false;
    }
    vstr_t p;
    check(self, f_stat(fat_path(self, path, &p), fno));
    return true;
}

static mp_obj_t fat_stat(mp_obj_t self_in, mp_obj_t path) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    FILINFO fno;
    mp_obj_t t[10];
    for (int i = 0; i < 10; i++) {
        t[i] = MP_OBJ_NEW_SMALL_INT(0);
    }
    if (!fat_stat_info(self, path, &fno)) {
        t[0] = MP_OBJ_NEW_SMALL_INT(VFS_S_IFDIR);
    } else {
        t[0] = MP_OBJ_NEW_SMALL_INT((fno.fattrib & AM_DIR) ? VFS_S_IFDIR : VFS_S_IFREG);
        t[6] = mp_obj_new_int_from_uint(fno.fsize);
        t[7] = t[8] = t[9] = mp_obj_new_int_from_uint(fat_time_to_epoch(fno.fdate, fno.ftime));
    }
    return mp_obj_new_tuple(10, t);
}
static MP_DEFINE_CONST_FUN_OBJ_2(fat_stat_obj, fat_stat);

static mp_obj_t fat_statvfs(mp_obj_t self_in, mp_obj_t path) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    vstr_t p;
    fat_path(self, MP_OBJ_NEW_QSTR(MP_QSTR__slash_), &p);
    (void)path;
    DWORD nfree;
    FATFS *fs;
    check(self, f_getfree(vstr_str(&p), &nfree, &fs));
    mp_int_t bsize = fs->csize * FAT_SECTOR_SIZE;
    mp_obj_t t[10] = {
        MP_OBJ_NEW_SMALL_INT(bsize), MP_OBJ_NEW_SMALL_INT(bsize),
        mp_obj_new_int_from_uint(fs->n_fatent - 2), mp_obj_new_int_from_uint(nfree),
        mp_obj_new_int_from_uint(nfree), MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_NEW_SMALL_INT(0),
        MP_OBJ_NEW_SMALL_INT(0), MP_OBJ_NEW_SMALL_INT(self->readonly ? 1 : 0),
        MP_OBJ_NEW_SMALL_INT(FAT_NAME_MAX),
    };
    return mp_obj_new_tuple(10, t);
}
static MP_DEFINE_CONST_FUN_OBJ_2(fat_statvfs_obj, fat_statvfs);

static mp_obj_t fat_mkdir(mp_obj_t self_in, mp_obj_t path) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    vfs_check_writable(self->readonly);
    if (is_root(path)) {
        mp_raise_OSError(MP_EEXIST);
    }
    vstr_t p;
    check(self, f_mkdir(fat_path(self, path, &p)));
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(fat_mkdir_obj, fat_mkdir);

// rmdir and remove: f_unlink removes both, so check the kind first
// (and a directory that is not empty is ENOTEMPTY, not FatFs's "denied").
static void fat_unlink(fat_vfs_t *self, mp_obj_t path, bool want_dir) {
    vfs_check_writable(self->readonly);
    FILINFO fno;
    if (!fat_stat_info(self, path, &fno)) {
        mp_raise_OSError(MP_EBUSY);     // the root
    }
    bool is_dir = fno.fattrib & AM_DIR;
    if (is_dir != want_dir) {
        mp_raise_OSError(is_dir ? MP_EISDIR : MP_ENOTDIR);
    }
    vstr_t p;
    FRESULT res = f_unlink(fat_path(self, path, &p));
    if (res == FR_DENIED && want_dir) {
        check(self, FR_OK);
        mp_raise_OSError(VFS_ENOTEMPTY);
    }
    check(self, res);
}

static mp_obj_t fat_rmdir(mp_obj_t self_in, mp_obj_t path) {
    fat_unlink(MP_OBJ_TO_PTR(self_in), path, true);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(fat_rmdir_obj, fat_rmdir);

static mp_obj_t fat_remove(mp_obj_t self_in, mp_obj_t path) {
    fat_unlink(MP_OBJ_TO_PTR(self_in), path, false);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(fat_remove_obj, fat_remove);

// rename(old, new): an existing file `new` is replaced, as on POSIX.
static mp_obj_t fat_rename(mp_obj_t self_in, mp_obj_t old, mp_obj_t new) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    vfs_check_writable(self->readonly);
    vstr_t a, b;
    fat_path(self, old, &a);
    fat_path(self, new, &b);
    FRESULT res = f_rename(vstr_str(&a), vstr_str(&b));
    if (res == FR_EXIST) {
        FILINFO fno;
        check(self, f_stat(vstr_str(&b), &fno));
        if (fno.fattrib & AM_DIR) {
            check(self, FR_OK);
            mp_raise_OSError(MP_EEXIST);
        }
        check(self, f_unlink(vstr_str(&b)));
        res = f_rename(vstr_str(&a), vstr_str(&b));
    }
    check(self, res);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(fat_rename_obj, fat_rename);

// ---- files --------------------------------------------------------------------------

static blockdev_t *file_bd(fat_file_t *f) {
    return &((fat_vfs_t *)MP_OBJ_TO_PTR(f->base.fs))->bd;
}

// (A Ctrl-C held back stays held: file.c raises it when the call is over.)
static int file_result(fat_file_t *f, FRESULT res) {
    if (res == FR_DISK_ERR) {
        // Raise what the device raised.
        blockdev_raise(file_bd(f), MP_EIO);
    }
    return res == FR_OK ? 0 : fr_errno(res);
}

static mp_uint_t fat_file_read(vfs_file_t *vf, void *buf, mp_uint_t size, int *err) {
    fat_file_t *f = (fat_file_t *)vf;
    mp_uint_t done = 0;
    for (;;) {
        UINT want = size - done < FILE_PART ? size - done : FILE_PART, n;
        FRESULT res = f_read(&f->fil, (uint8_t *)buf + done, want, &n);
        done += n;
        if (res != FR_OK || n < want || done == size) {
            *err = file_result(f, res);
            return *err ? MP_STREAM_ERROR : done;
        }
        blockdev_interrupt_point(file_bd(f));
    }
}

// FatFs reports a full disk as a short write: that is ENOSPC here (what
// was written stays in the file).
static mp_uint_t fat_file_write(vfs_file_t *vf, const void *buf, mp_uint_t size, int *err) {
    fat_file_t *f = (fat_file_t *)vf;
    if ((vf->flags & FILE_APPEND) && f_tell(&f->fil) != f_size(&f->fil)) {
        if ((*err = file_result(f, f_lseek(&f->fil, f_size(&f->fil))))) {
            return MP_STREAM_ERROR;
        }
    }
    mp_uint_t done = 0;
    for (;;) {
        UINT want = size - done < FILE_PART ? size - done : FILE_PART, n;
        FRESULT res = f_write(&f->fil, (const uint8_t *)buf + done, want, &n);
        done += n;
        if (res != FR_OK || n < want || done == size) {
            *err = file_result(f, res);
            if (*err == 0 && n < want) {
                *err = MP_ENOSPC;
            }
            return *err ? MP_STREAM_ERROR : done;
        }
        blockdev_interrupt_point(file_bd(f));
    }
}

static int fat_file_seek(vfs_file_t *vf, mp_off_t *offset, int whence) {
    fat_file_t *f = (fat_file_t *)vf;
    mp_off_t base = whence == 1 ? (mp_off_t)f_tell(&f->fil) : whence == 2 ? (mp_off_t)f_size(&f->fil) : 0;
    mp_off_t pos = base + *offset;
    if (whence < 0 || whence > 2 || pos < 0) {
        return MP_EINVAL;
    }
    int err = file_result(f, f_lseek(&f->fil, pos));
    *offset = f_tell(&f->fil);
    return err;
}

// flush(): the file's data and entry to the device, and the device's cache
// flushed (close() does the first only, see disk_ioctl).
static int fat_file_sync(vfs_file_t *vf) {
    fat_file_t *f = (fat_file_t *)vf;
    if (!(vf->flags & FILE_WRITE)) {
        return 0;
    }
    int err = file_result(f, f_sync(&f->fil));
    if (err == 0 && flush_device(MP_OBJ_TO_PTR(vf->fs))) {
        blockdev_raise(file_bd(f), MP_EIO);
    }
    return err;
}

static int fat_file_close(vfs_file_t *vf) {
    fat_file_t *f = (fat_file_t *)vf;
    fat_vfs_t *self = MP_OBJ_TO_PTR(vf->fs);
    file_list_remove(&self->files, vf);
    return file_result(f, f_close(&f->fil));
}

static const file_ops_t fat_file_ops = {
    fat_file_read, fat_file_write, fat_file_seek, fat_file_sync, fat_file_close,
};

static mp_obj_t fat_open(mp_obj_t self_in, mp_obj_t path, mp_obj_t mode_in) {
    fat_vfs_t *self = MP_OBJ_TO_PTR(self_in);
    int flags = file_parse_mode(mp_obj_str_get_str(mode_in));
    if (flags & FILE_WRITE) {
        vfs_check_writable(self->readonly);
    }
    BYTE mode = ((flags & FILE_READ) ? FA_READ : 0) | ((flags & FILE_WRITE) ? FA_WRITE : 0);
    mode |= (flags & FILE_EXCL) ? FA_CREATE_NEW : (flags & FILE_TRUNCATE) ? FA_CREATE_ALWAYS
        : (flags & FILE_APPEND) ? FA_OPEN_APPEND : 0;
    if (is_root(path)) {
        mp_raise_OSError(MP_EISDIR);
    }
    vstr_t p;
    fat_path(self, path, &p);
    fat_file_t *f = (fat_file_t *)file_new(sizeof(fat_file_t), flags, &fat_file_ops, self_in);
    FRESULT res = f_open(&f->fil, vstr_str(&p), mode);
    if (res == FR_NO_FILE) {
        // FatFs says "no file" for a directory too.
        FILINFO fno;
        if (f_stat(vstr_str(&p), &fno) == FR_OK && (fno.fattrib & AM_DIR)) {
            check(self, FR_OK);
            mp_raise_OSError(MP_EISDIR);
        }
    }
    f->base.bd = &self->bd;
    if (res == FR_OK) {
        // Ours before check() may raise a held-back Ctrl-C: umount closes it.
        f->base.open = true;
        file_list_add(&self->files, &f->base);
    }
    check(self, res);
    return MP_OBJ_FROM_PTR(f);
}
static MP_DEFINE_CONST_FUN_OBJ_3(fat_open_obj, fat_open);

static const mp_rom_map_elem_t fat_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_mkfs), MP_ROM_PTR(&fat_mkfs_obj) },
    { MP_ROM_QSTR(MP_QSTR_mount), MP_ROM_PTR(&fat_mount_obj) },
    { MP_ROM_QSTR(MP_QSTR_umount), MP_ROM_PTR(&fat_umount_obj) },
    { MP_ROM_QSTR(MP_QSTR_sync), MP_ROM_PTR(&fat_sync_obj) },
    { MP_ROM_QSTR(MP_QSTR_open), MP_ROM_PTR(&fat_open_obj) },
    { MP_ROM_QSTR(MP_QSTR_ilistdir), MP_ROM_PTR(&fat_ilistdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_stat), MP_ROM_PTR(&fat_stat_obj) },
    { MP_ROM_QSTR(MP_QSTR_statvfs), MP_ROM_PTR(&fat_statvfs_obj) },
    { MP_ROM_QSTR(MP_QSTR_mkdir), MP_ROM_PTR(&fat_mkdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_rmdir), MP_ROM_PTR(&fat_rmdir_obj) },
    { MP_ROM_QSTR(MP_QSTR_remove), MP_ROM_PTR(&fat_remove_obj) },
    { MP_ROM_QSTR(MP_QSTR_rename), MP_ROM_PTR(&fat_rename_obj) },
};
static MP_DEFINE_CONST_DICT(fat_locals_dict, fat_locals_dict_table);

MP_DEFINE_CONST_OBJ_TYPE(
    vfs_fat_type,
    MP_QSTR_VfsFat,
    MP_TYPE_FLAG_NONE,
    make_new, fat_make_new,
    locals_dict, &fat_locals_dict
    );
