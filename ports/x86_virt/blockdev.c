// Calling a block device written in Python: MicroPython's block-device
// protocol (os.AbstractBlockDev):
//     readblocks(block_num, buf[, offset])
//     writeblocks(block_num, buf[, offset])
//     ioctl(op, arg)     op: 1 init, 2 deinit, 3 sync, 4 block count,
//                            5 block size, 6 erase a block
// The offset argument (the "extended" protocol) is passed only when it is
// not 0, so a device with the simple two-argument methods works whenever
// the file system reads whole blocks.
//
// The file systems (FatFs, littlefs) are C code that must never be unwound
// half-way through an update, so a call that raises (an I/O error, a
// MemoryError) is caught here and turned into an errno; the exception is
// kept and re-raised once the file system has returned.
//
// A Ctrl-C is not an I/O error: it must neither break an update half-way
// nor be lost. FatFs ignores the result of some writes (the second FAT's
// copy, FSInfo), so a KeyboardInterrupt turned into an errno there vanished
// and a write loop ran on until the disk was full; where FatFs does see the
// error it abandons the update (lost clusters) and marks the file failed.
// So the first KeyboardInterrupt during a call is held back (bd->deferred)
// and the call made again (the driver's next call finishes what the
// interrupted one left, see docs/blk.md); the file system then completes
// its update, and blockdev_interrupt_point() raises the KeyboardInterrupt
// when the operation is over (from the call the user made, so a try around
// it catches it). A second Ctrl-C during the same operation is an error as
// before (an escape from a device or a Python block device that never
// answers).
#include <string.h>

#include "py/mperrno.h"
#include "py/nlr.h"
#include "py/objexcept.h"
#include "py/runtime.h"
#include "vfs.h"

void blockdev_init(blockdev_t *bd, mp_obj_t obj) {
    memset(bd, 0, sizeof(*bd));
    bd->obj = obj;
    bd->last_exc = MP_OBJ_NULL;
    bd->deferred = MP_OBJ_NULL;
    mp_load_method(obj, MP_QSTR_readblocks, bd->readblocks);
    mp_load_method(obj, MP_QSTR_writeblocks, bd->writeblocks);
    mp_load_method(obj, MP_QSTR_ioctl, bd->ioctl);
    mp_int_t n;
    if (blockdev_ioctl(bd, BLOCKDEV_IOCTL_INIT, 0, &n) != 0) {
        blockdev_raise(bd, MP_EIO);
    }
    // No answer to "block size" means 512 (the protocol's default).
    bd->block_size = 512;
    if (blockdev_ioctl(bd, BLOCKDEV_IOCTL_BLOCK_SIZE, 0, &n) != 0) {
        blockdev_raise(bd, MP_EIO);
    }
    if (n > 0) {
        bd->block_size = n;
    }
    if (blockdev_ioctl(bd, BLOCKDEV_IOCTL_BLOCK_COUNT, 0, &n) != 0) {
        blockdev_raise(bd, MP_EIO);
    }
    if (n <= 0) {
        mp_raise_msg(&mp_type_OSError, MP_ERROR_TEXT("block device reports no blocks (ioctl 4)"));
    }
    bd->block_count = n;
    blockdev_interrupt_point(bd);
}

// The errno an exception stands for: OSError's first argument, else EIO.
static int exception_errno(mp_obj_t exc) {
    if (mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)), MP_OBJ_FROM_PTR(&mp_type_OSError))) {
        mp_obj_exception_t *e = MP_OBJ_TO_PTR(exc);
        if (e->args->len > 0 && mp_obj_is_small_int(e->args->items[0])) {
            return MP_OBJ_SMALL_INT_VALUE(e->args->items[0]);
        }
    }
    return MP_EIO;
}

// Keep what a call raised, for blockdev_raise(); its errno.
static int caught(blockdev_t *bd, void *exc) {
    bd->last_exc = MP_OBJ_FROM_PTR(exc);
    bd->last_errno = exception_errno(bd->last_exc);
    return bd->last_errno;
}

static bool is_interrupt(mp_obj_t exc) {
    return mp_obj_is_subclass_fast(MP_OBJ_FROM_PTR(mp_obj_get_type(exc)),
        MP_OBJ_FROM_PTR(&mp_type_KeyboardInterrupt));
}

// A call raised exc: true when it is the first KeyboardInterrupt of this
// operation, held back, and the call is to be made again.
static bool hold_back(blockdev_t *bd, mp_obj_t exc) {
    if (bd->deferred != MP_OBJ_NULL || !is_interrupt(exc)) {
        return false;
    }
    bd->deferred = exc;
    return true;
}

// Everything that can raise -- the arguments' allocation included (a
// MemoryError) -- happens inside the nlr frame.
static int transfer(blockdev_t *bd, mp_obj_t *frame, uint32_t block, uint32_t offset, void *buf, size_t len) {
    for (;;) {
        nlr_buf_t nlr;
        if (nlr_push(&nlr) == 0) {
            mp_obj_t args[5] = {frame[0], frame[1], mp_obj_new_int_from_uint(block),
                                // The C buffer itself, without a copy; the device must not keep it.
                                mp_obj_new_bytearray_by_ref(len, buf), MP_OBJ_NEW_SMALL_INT(offset)};
            mp_call_method_n_kw(offset ? 3 : 2, 0, args);
            nlr_pop();
            return 0;
        }
        if (!hold_back(bd, MP_OBJ_FROM_PTR(nlr.ret_val))) {
            return caught(bd, nlr.ret_val);
        }
    }
}

int blockdev_read(blockdev_t *bd, uint32_t block, uint32_t offset, void *buf, size_t len) {
    return transfer(bd, bd->readblocks, block, offset, buf, len);
}

int blockdev_write(blockdev_t *bd, uint32_t block, uint32_t offset, const void *buf, size_t len) {
    bd->dirty = true;
    return transfer(bd, bd->writeblocks, block, offset, (void *)buf, len);
}

int blockdev_ioctl(blockdev_t *bd, int op, uint32_t arg, mp_int_t *result) {
    for (;;) {
        nlr_buf_t nlr;
        if (nlr_push(&nlr) == 0) {
            mp_obj_t args[4] = {bd->ioctl[0], bd->ioctl[1], MP_OBJ_NEW_SMALL_INT(op), mp_obj_new_int_from_uint(arg)};
            mp_obj_t r = mp_call_method_n_kw(2, 0, args);
            mp_int_t n = r == mp_const_none ? 0 : mp_obj_get_int(r);
            nlr_pop();
            if (result != NULL) {
                *result = n;
            }
            if (op == BLOCKDEV_IOCTL_SYNC) {
                bd->dirty = false;
            }
            return 0;
        }
        if (!hold_back(bd, MP_OBJ_FROM_PTR(nlr.ret_val))) {
            return caught(bd, nlr.ret_val);
        }
    }
}

// The held-back KeyboardInterrupt, taken (MP_OBJ_NULL if none), its old
// traceback dropped.
static mp_obj_t take_deferred(blockdev_t *bd) {
    mp_obj_t exc = bd->deferred;
    bd->deferred = MP_OBJ_NULL;
    if (exc != MP_OBJ_NULL) {
        mp_obj_exception_clear_traceback(exc);
    }
    return exc;
}

void blockdev_deliver(blockdev_t *bd) {
    mp_obj_t exc = take_deferred(bd);
    if (exc != MP_OBJ_NULL) {
        mp_sched_exception(exc);
    }
}

void blockdev_interrupt_point(blockdev_t *bd) {
    mp_obj_t exc = take_deferred(bd);
    if (exc != MP_OBJ_NULL) {
        nlr_raise(exc);
    }
}

NORETURN void blockdev_raise(blockdev_t *bd, int err) {
    mp_obj_t exc = bd->last_exc;
    bd->last_exc = MP_OBJ_NULL;
    if (exc != MP_OBJ_NULL && is_interrupt(exc)) {
        take_deferred(bd);      // the second Ctrl-C is raised: one is enough
    } else {
        blockdev_deliver(bd);   // the error now, the Ctrl-C at the next jump
    }
    if (exc != MP_OBJ_NULL) {
        nlr_raise(exc);
    }
    mp_raise_OSError(err);
}
