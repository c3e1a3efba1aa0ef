// `_select`: MicroPython's poll interface for streams (sys.stdin.buffer, or
// anything whose stream ioctl answers MP_STREAM_POLL); the `select` module
// (firmware/select.py) uses it for every object that is not one of inet's
// sockets. mpremote's `mount` waits on the console with it:
//     p = select.poll(); p.register(sys.stdin.buffer, select.POLLIN)
//     p.poll(1000)  -> [(obj, POLLIN)] or [] after 1000 ms;  p.ipoll(ms)
// The CPU sleeps between checks until the next interrupt or millisecond.
#include "py/mperrno.h"
#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "x86.h"

#define POLL_IN     (MP_STREAM_POLL_RD)
#define POLL_OUT    (MP_STREAM_POLL_WR)
#define POLL_ERR    (MP_STREAM_POLL_ERR)
#define POLL_HUP    (MP_STREAM_POLL_HUP)

typedef struct {
    mp_obj_base_t base;
    mp_obj_t map;       // dict: stream -> event mask
} poll_obj_t;

static const mp_obj_type_t poll_type;

static mp_obj_t select_poll(void) {
    poll_obj_t *self = mp_obj_malloc(poll_obj_t, &poll_type);
    self->map = mp_obj_new_dict(0);
    return MP_OBJ_FROM_PTR(self);
}
static MP_DEFINE_CONST_FUN_OBJ_0(select_poll_obj, select_poll);

static mp_obj_t poll_register(size_t n_args, const mp_obj_t *args) {
    poll_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_get_stream_raise(args[1], MP_STREAM_OP_IOCTL);
    mp_obj_t mask = n_args > 2 ? args[2] : MP_OBJ_NEW_SMALL_INT(POLL_IN | POLL_OUT);
    mp_obj_dict_store(self->map, args[1], mask);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(poll_register_obj, 2, 3, poll_register);

static mp_obj_t poll_unregister(mp_obj_t self_in, mp_obj_t obj) {
    poll_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_obj_dict_delete(self->map, obj);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(poll_unregister_obj, poll_unregister);

static mp_obj_t poll_modify(mp_obj_t self_in, mp_obj_t obj, mp_obj_t mask) {
    poll_obj_t *self = MP_OBJ_TO_PTR(self_in);
    mp_obj_subscr(self->map, obj, MP_OBJ_SENTINEL);     // KeyError if not registered
    mp_obj_dict_store(self->map, obj, mask);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_3(poll_modify_obj, poll_modify);

// The ready streams as a list of (obj, events) tuples; empty if none.
static mp_obj_t poll_once(poll_obj_t *self) {
    mp_obj_t ready = mp_obj_new_list(0, NULL);
    mp_map_t *map = mp_obj_dict_get_map(self->map);
    for (size_t i = 0; i < map->alloc; i++) {
        if (!mp_map_slot_is_filled(map, i)) {
            continue;
        }
        mp_obj_t obj = map->table[i].key;
        mp_uint_t want = mp_obj_get_int(map->table[i].value) | POLL_ERR | POLL_HUP;
        int err;
        mp_uint_t got = mp_get_stream(obj)->ioctl(obj, MP_STREAM_POLL, want, &err);
        if (got == MP_STREAM_ERROR) {
            got = POLL_ERR;
        }
        if (got & want) {
            mp_obj_t t[2] = {obj, MP_OBJ_NEW_SMALL_INT(got & want)};
            mp_obj_list_append(ready, mp_obj_new_tuple(2, t));
        }
    }
    return ready;
}

static mp_obj_t poll_poll(size_t n_args, const mp_obj_t *args) {
    poll_obj_t *self = MP_OBJ_TO_PTR(args[0]);
    mp_int_t timeout = n_args > 1 && args[1] != mp_const_none ? mp_obj_get_int(args[1]) : -1;
    mp_uint_t start = mp_hal_ticks_ms();
    for (;;) {
        mp_obj_t ready = poll_once(self);
        if (mp_obj_get_int(mp_obj_len(ready)) > 0
            || (timeout >= 0 && mp_hal_ticks_ms() - start >= (mp_uint_t)timeout)) {
            return ready;
        }
        mp_handle_pending(true);
        timer_wait_event(1);
    }
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(poll_poll_obj, 1, 3, poll_poll);

static mp_obj_t poll_ipoll(size_t n_args, const mp_obj_t *args) {
    return mp_getiter(poll_poll(n_args, args), NULL);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(poll_ipoll_obj, 1, 3, poll_ipoll);

static const mp_rom_map_elem_t poll_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_register), MP_ROM_PTR(&poll_register_obj) },
    { MP_ROM_QSTR(MP_QSTR_unregister), MP_ROM_PTR(&poll_unregister_obj) },
    { MP_ROM_QSTR(MP_QSTR_modify), MP_ROM_PTR(&poll_modify_obj) },
    { MP_ROM_QSTR(MP_QSTR_poll), MP_ROM_PTR(&poll_poll_obj) },
    { MP_ROM_QSTR(MP_QSTR_ipoll), MP_ROM_PTR(&poll_ipoll_obj) },
};
static MP_DEFINE_CONST_DICT(poll_locals_dict, poll_locals_dict_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    poll_type,
    MP_QSTR_poll,
    MP_TYPE_FLAG_NONE,
    locals_dict, &poll_locals_dict
    );

static const mp_rom_map_elem_t select_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__select) },
    { MP_ROM_QSTR(MP_QSTR_poll), MP_ROM_PTR(&select_poll_obj) },
    { MP_ROM_QSTR(MP_QSTR_POLLIN), MP_ROM_INT(POLL_IN) },
    { MP_ROM_QSTR(MP_QSTR_POLLOUT), MP_ROM_INT(POLL_OUT) },
    { MP_ROM_QSTR(MP_QSTR_POLLERR), MP_ROM_INT(POLL_ERR) },
    { MP_ROM_QSTR(MP_QSTR_POLLHUP), MP_ROM_INT(POLL_HUP) },
};
static MP_DEFINE_CONST_DICT(select_module_globals, select_module_globals_table);

const mp_obj_module_t mp_module_select = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&select_module_globals,
};
MP_REGISTER_MODULE(MP_QSTR__select, mp_module_select);
