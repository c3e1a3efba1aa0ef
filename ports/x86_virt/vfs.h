// The virtual file system (docs/files.md): a mount table of objects that
// implement MicroPython's VFS methods (open, ilistdir, stat, mkdir, ...),
// whether our C file systems (vfs_fat.c, vfs_lfs.c) or Python objects (such
// as mpremote's RemoteFS), and the file objects they return (file.c).
#ifndef X86_VIRT_VFS_H
#define X86_VIRT_VFS_H
#include "py/obj.h"
#include "py/stream.h"

// MicroPython's block-device protocol (os.AbstractBlockDev.ioctl ops).
#define BLOCKDEV_IOCTL_INIT         (1)
#define BLOCKDEV_IOCTL_DEINIT       (2)
#define BLOCKDEV_IOCTL_SYNC         (3)
#define BLOCKDEV_IOCTL_BLOCK_COUNT  (4)
#define BLOCKDEV_IOCTL_BLOCK_SIZE   (5)
#define BLOCKDEV_IOCTL_BLOCK_ERASE  (6)

// stat()'s st_mode file types.
#define VFS_S_IFDIR     (0x4000)
#define VFS_S_IFREG     (0x8000)

// Errno values MicroPython's mperrno.h does not name.
#define VFS_ENAMETOOLONG    (36)
#define VFS_ENOTEMPTY       (39)

// ---- blockdev.c: calling a Python block device --------------------------
typedef struct _blockdev_t {
    mp_obj_t obj;
    mp_obj_t readblocks[2];     // the bound methods (mp_load_method), looked up once
    mp_obj_t writeblocks[2];
    mp_obj_t ioctl[2];
    uint32_t block_size, block_count;
    bool dirty;                 // written since the last successful sync
    int last_errno;             // of the last failed call (EIO when unknown)
    mp_obj_t last_exc;          // ... and that exception, re-raised later
    mp_obj_t deferred;          // a KeyboardInterrupt held back until the operation ends
} blockdev_t;

void blockdev_init(blockdev_t *bd, mp_obj_t obj);
// These never raise: 0 on success, else an errno (the exception is kept
// in bd->last_exc), so that the C file systems never unwind mid-update.
int blockdev_read(blockdev_t *bd, uint32_t block, uint32_t offset, void *buf, size_t len);
int blockdev_write(blockdev_t *bd, uint32_t block, uint32_t offset, const void *buf, size_t len);
int blockdev_ioctl(blockdev_t *bd, int op, uint32_t arg, mp_int_t *result);
// Raise what the last failing call raised (or OSError(err)).
NORETURN void blockdev_raise(blockdev_t *bd, int err);
// A KeyboardInterrupt that arrived during a call is held back until the file
// system's operation is over (blockdev.c says why). At the end of an
// operation, or between the parts of a long read or write: raise it now.
void blockdev_interrupt_point(blockdev_t *bd);
// Where raising would leave our own bookkeeping half-done (a mount, an
// error being raised): make it pending again, raised at the next jump of
// Python code.
void blockdev_deliver(blockdev_t *bd);
// The part a file system's file read or write takes at a time (64 KiB: a few
// ms of the driver's time), so a held-back Ctrl-C waits for one part only.
#define FILE_PART   (64 * 1024)

// ---- file.c: file objects ----------------------------------------------
// Mode flags parsed from open()'s mode string.
#define FILE_READ       (1)
#define FILE_WRITE      (2)
#define FILE_CREATE     (4)
#define FILE_TRUNCATE   (8)
#define FILE_APPEND     (16)
#define FILE_EXCL       (32)
#define FILE_TEXT       (64)

struct _vfs_file_t;
typedef struct _file_ops_t {
    // read/write return bytes moved or MP_STREAM_ERROR with *err set.
    mp_uint_t (*read)(struct _vfs_file_t *f, void *buf, mp_uint_t size, int *err);
    mp_uint_t (*write)(struct _vfs_file_t *f, const void *buf, mp_uint_t size, int *err);
    int (*seek)(struct _vfs_file_t *f, mp_off_t *offset, int whence);  // 0 or errno
    int (*sync)(struct _vfs_file_t *f);
    int (*close)(struct _vfs_file_t *f);
} file_ops_t;

// The part every file system's file shares; each adds its own state after it.
typedef struct _vfs_file_t {
    mp_obj_base_t base;
    const file_ops_t *ops;
    struct _vfs_file_t *next;   // in its file system's list of open files
    mp_obj_t fs;                // the file system object it belongs to
    bool open;
    uint8_t flags;              // FILE_*
    blockdev_t *bd;             // its file system's block device (NULL: none)
} vfs_file_t;

extern const mp_obj_type_t vfs_type_fileio;
extern const mp_obj_type_t vfs_type_textio;
// Parse an open() mode string ("r", "wb", "a+", "x", ...) into FILE_* flags.
int file_parse_mode(const char *mode);
// A new file object of size bytes (>= sizeof(vfs_file_t)), not yet open.
vfs_file_t *file_new(size_t size, int flags, const file_ops_t *ops, mp_obj_t fs);
// Link into / unlink from a list of open files; close every file in a list.
void file_list_add(vfs_file_t **list, vfs_file_t *f);
void file_list_remove(vfs_file_t **list, vfs_file_t *f);
int file_list_close_all(vfs_file_t **list);
int file_list_sync_all(vfs_file_t *list);

// ---- vfs.c: the mount table and the path functions of os --------------
typedef struct _vfs_mount_t {
    const char *path;           // "/" or "/name" (no trailing slash)
    size_t len;
    mp_obj_t obj;
    bool readonly;
    struct _vfs_mount_t *next;
} vfs_mount_t;

void vfs_init(void);            // after mp_init: empty table, cwd "/"
void vfs_fat_reset(void);       // (vfs_fat.c) no FAT volume in use
void vfs_deinit(void);          // before a soft reset: unmount everything
// open(): the builtin.
mp_obj_t vfs_open(mp_obj_t path, mp_obj_t mode);
// The iterator of (name, type, inode[, size]) tuples a mounted object gives.
mp_obj_t vfs_ilistdir_of(mp_obj_t path_in);
// For import: what path is on the mounted file systems (never raises).
#include "py/builtin.h"
mp_import_stat_t vfs_import_stat(const char *path);
// Raise OSError(EROFS) when a read-only file system is asked to write.
void vfs_check_writable(bool readonly);

MP_DECLARE_CONST_FUN_OBJ_KW(vfs_mount_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_umount_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(vfs_ilistdir_obj);
MP_DECLARE_CONST_FUN_OBJ_VAR_BETWEEN(vfs_listdir_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_mkdir_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_rmdir_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_remove_obj);
MP_DECLARE_CONST_FUN_OBJ_2(vfs_rename_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_stat_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_statvfs_obj);
MP_DECLARE_CONST_FUN_OBJ_0(vfs_getcwd_obj);
MP_DECLARE_CONST_FUN_OBJ_1(vfs_chdir_obj);
MP_DECLARE_CONST_FUN_OBJ_0(vfs_sync_obj);

// ---- the file system types ------------------------------------------------
extern const mp_obj_type_t vfs_fat_type;
extern const mp_obj_type_t vfs_lfs2_type;
#endif
