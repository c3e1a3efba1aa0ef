// The ticks functions shared by the `time` and `x86` modules.
#ifndef X86_VIRT_MODTIME_H
#define X86_VIRT_MODTIME_H
#include "py/obj.h"
MP_DECLARE_CONST_FUN_OBJ_0(mp_time_ticks_ms_obj);
MP_DECLARE_CONST_FUN_OBJ_0(mp_time_ticks_us_obj);
MP_DECLARE_CONST_FUN_OBJ_2(mp_time_ticks_diff_obj);
#endif
