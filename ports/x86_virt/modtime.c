// The `time` module, with MicroPython's names and semantics: ticks_* are
// wrap-around counters (period MICROPY_PY_TIME_TICKS_PERIOD) compared only
// through ticks_diff(); time() is seconds since 1970 from the RTC.
#include "py/runtime.h"
#include "py/mphal.h"
#include "py/smallint.h"
#include "modtime.h"
#include "x86.h"

#define TICKS_PERIOD    MICROPY_PY_TIME_TICKS_PERIOD
#define TICKS_MAX       (TICKS_PERIOD - 1)
#define TICKS_HALF      (TICKS_PERIOD / 2)

static mp_obj_t time_ticks_ms(void) {
    return MP_OBJ_NEW_SMALL_INT(mp_hal_ticks_ms() & TICKS_MAX);
}
MP_DEFINE_CONST_FUN_OBJ_0(mp_time_ticks_ms_obj, time_ticks_ms);

static mp_obj_t time_ticks_us(void) {
    return MP_OBJ_NEW_SMALL_INT(mp_hal_ticks_us() & TICKS_MAX);
}
MP_DEFINE_CONST_FUN_OBJ_0(mp_time_ticks_us_obj, time_ticks_us);

static mp_obj_t time_ticks_cpu(void) {
    return MP_OBJ_NEW_SMALL_INT(mp_hal_ticks_cpu() & TICKS_MAX);
}
MP_DEFINE_CONST_FUN_OBJ_0(mp_time_ticks_cpu_obj, time_ticks_cpu);

static mp_obj_t time_ticks_diff(mp_obj_t end_in, mp_obj_t start_in) {
    // Both are values from ticks_*(), in [0, TICKS_MAX].
    mp_uint_t start = mp_obj_get_int(start_in);
    mp_uint_t end = mp_obj_get_int(end_in);
    mp_int_t diff = ((end - start + TICKS_HALF) & TICKS_MAX) - TICKS_HALF;
    return MP_OBJ_NEW_SMALL_INT(diff);
}
MP_DEFINE_CONST_FUN_OBJ_2(mp_time_ticks_diff_obj, time_ticks_diff);

static mp_obj_t time_ticks_add(mp_obj_t ticks_in, mp_obj_t delta_in) {
    mp_uint_t ticks = mp_obj_get_int(ticks_in);
    mp_int_t delta = mp_obj_get_int(delta_in);
    if (delta < -(mp_int_t)TICKS_HALF || delta >= (mp_int_t)TICKS_HALF) {
        mp_raise_msg(&mp_type_OverflowError, MP_ERROR_TEXT("ticks interval overflow"));
    }
    return MP_OBJ_NEW_SMALL_INT((ticks + delta) & TICKS_MAX);
}
MP_DEFINE_CONST_FUN_OBJ_2(mp_time_ticks_add_obj, time_ticks_add);

static mp_int_t get_non_negative(mp_obj_t arg) {
    mp_int_t v = mp_obj_get_int(arg);
    if (v < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative sleep length"));
    }
    return v;
}

static mp_obj_t time_sleep_ms(mp_obj_t arg) {
    mp_hal_delay_ms(get_non_negative(arg));
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(mp_time_sleep_ms_obj, time_sleep_ms);

static mp_obj_t time_sleep_us(mp_obj_t arg) {
    mp_hal_delay_us(get_non_negative(arg));
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(mp_time_sleep_us_obj, time_sleep_us);

static mp_obj_t time_sleep(mp_obj_t arg) {
    mp_float_t s = mp_obj_get_float(arg);
    if (s < 0) {
        mp_raise_ValueError(MP_ERROR_TEXT("negative sleep length"));
    }
    mp_hal_delay_ms((mp_uint_t)(s * 1000));
    return mp_const_none;
}
MP_DEFINE_CONST_FUN_OBJ_1(mp_time_sleep_obj, time_sleep);

static mp_obj_t time_time(void) {
    return mp_obj_new_int_from_ull(timer_epoch_us() / 1000000);
}
MP_DEFINE_CONST_FUN_OBJ_0(mp_time_time_obj, time_time);

static mp_obj_t time_time_ns(void) {
    return mp_obj_new_int_from_ull(mp_hal_time_ns());
}
MP_DEFINE_CONST_FUN_OBJ_0(mp_time_time_ns_obj, time_time_ns);

static const mp_rom_map_elem_t mp_module_time_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_time) },
    { MP_ROM_QSTR(MP_QSTR_ticks_ms), MP_ROM_PTR(&mp_time_ticks_ms_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_us), MP_ROM_PTR(&mp_time_ticks_us_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_cpu), MP_ROM_PTR(&mp_time_ticks_cpu_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_diff), MP_ROM_PTR(&mp_time_ticks_diff_obj) },
    { MP_ROM_QSTR(MP_QSTR_ticks_add), MP_ROM_PTR(&mp_time_ticks_add_obj) },
    { MP_ROM_QSTR(MP_QSTR_sleep_ms), MP_ROM_PTR(&mp_time_sleep_ms_obj) },
    { MP_ROM_QSTR(MP_QSTR_sleep_us), MP_ROM_PTR(&mp_time_sleep_us_obj) },
    { MP_ROM_QSTR(MP_QSTR_sleep), MP_ROM_PTR(&mp_time_sleep_obj) },
    { MP_ROM_QSTR(MP_QSTR_time), MP_ROM_PTR(&mp_time_time_obj) },
    { MP_ROM_QSTR(MP_QSTR_time_ns), MP_ROM_PTR(&mp_time_time_ns_obj) },
};
static MP_DEFINE_CONST_DICT(mp_module_time_globals, mp_module_time_globals_table);

const mp_obj_module_t mp_module_time = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&mp_module_time_globals,
};

MP_REGISTER_MODULE(MP_QSTR_time, mp_module_time);
