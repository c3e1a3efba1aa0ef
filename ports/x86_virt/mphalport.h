// HAL for the x86_virt port: console on COM1, time from the TSC (see timer.c).
#ifndef X86_VIRT_MPHALPORT_H
#define X86_VIRT_MPHALPORT_H

#include "py/obj.h"
#include "shared/runtime/interrupt_char.h"

// No pins on this machine; defining this keeps py/mphal.h from wanting
// extmod/virtpin.h (absent from the source tree we build from).
#define mp_hal_pin_obj_t void *

mp_uint_t mp_hal_ticks_ms(void);
mp_uint_t mp_hal_ticks_us(void);
mp_uint_t mp_hal_ticks_cpu(void);
void mp_hal_delay_ms(mp_uint_t ms);
void mp_hal_delay_us(mp_uint_t us);
uint64_t mp_hal_time_ns(void);

#endif
