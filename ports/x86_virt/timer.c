// Time: the TSC, calibrated once at boot against the PIT (8254, 1.193182 MHz),
// gives microseconds; the PIT's periodic interrupt wakes a sleeping CPU; the
// CMOS RTC gives the wall-clock time at boot.
#include "py/mpconfig.h"
#include "py/runtime.h"
#include "shared/timeutils/timeutils.h"
#include "x86.h"

#define PIT_HZ          1193182
#define PIT_CH0         0x40
#define PIT_CMD         0x43
#define PIT_CMD_CH0_LOHI_RATE   0x34    // channel 0, lobyte/hibyte, mode 2
#define PIT_CMD_CH0_LOHI_ONESHOT 0x30   // channel 0, lobyte/hibyte, mode 0
#define PIT_CMD_CH0_LATCH       0x00
#define WAKE_MAX_US     50000           // one PIT count (16 bits) lasts 54.9 ms
#define CALIBRATE_PIT_TICKS (PIT_HZ / 50)   // 20 ms

#define CMOS_INDEX      0x70
#define CMOS_DATA       0x71

static uint64_t tsc_at_boot;
static uint32_t tsc_khz;
static uint32_t us_per_tsc_q32;         // microseconds per TSC tick, 0.32 fixed point
static uint64_t epoch_us_at_boot;

static uint16_t pit_read_ch0(void) {
    outb(PIT_CMD, PIT_CMD_CH0_LATCH);
    uint8_t lo = inb(PIT_CH0);
    uint8_t hi = inb(PIT_CH0);
    return lo | (hi << 8);
}

static void pit_set_ch0(uint16_t reload) {
    outb(PIT_CMD, PIT_CMD_CH0_LOHI_RATE);
    outb(PIT_CH0, reload & 0xff);
    outb(PIT_CH0, reload >> 8);
}

static void calibrate_tsc(void) {
    pit_set_ch0(0);     // free-running, period 65536
    uint16_t prev = pit_read_ch0();
    uint64_t tsc0 = rdtsc();
    uint32_t elapsed = 0;
    while (elapsed < CALIBRATE_PIT_TICKS) {
        uint16_t now = pit_read_ch0();
        elapsed += (uint16_t)(prev - now);  // the counter counts down
        prev = now;
    }
    uint64_t tsc_hz = (rdtsc() - tsc0) * PIT_HZ / elapsed;
    if (tsc_hz < 1000000) {
        tsc_hz = 1000000;   // a TSC slower than 1 MHz is not a TSC we can use
    }
    tsc_khz = tsc_hz / 1000;
    us_per_tsc_q32 = ((uint64_t)1000000 << 32) / tsc_hz;
}

static uint8_t cmos_read(uint8_t reg) {
    outb(CMOS_INDEX, reg);
    return inb(CMOS_DATA);
}

static unsigned from_bcd(uint8_t v, bool bcd) {
    return bcd ? (v >> 4) * 10 + (v & 0xf) : v;
}

static void read_rtc(void) {
    // Wait out an update in progress (status A, bit 7), then read once.
    for (int i = 0; i < 100000 && (cmos_read(0x0a) & 0x80); i++) {
    }
    uint8_t status_b = cmos_read(0x0b);
    bool bcd = !(status_b & 0x04);
    unsigned sec = from_bcd(cmos_read(0x00), bcd);
    unsigned min = from_bcd(cmos_read(0x02), bcd);
    uint8_t hour_raw = cmos_read(0x04);
    unsigned hour = from_bcd(hour_raw & 0x7f, bcd);
    if (!(status_b & 0x02) && (hour_raw & 0x80)) {
        hour = (hour % 12) + 12;    // 12-hour mode, PM
    }
    unsigned mday = from_bcd(cmos_read(0x07), bcd);
    unsigned month = from_bcd(cmos_read(0x08), bcd);
    unsigned year = 2000 + from_bcd(cmos_read(0x09), bcd);
    if (month < 1 || month > 12 || mday < 1 || mday > 31) {
        return;     // no usable RTC: time() counts from 1970
    }
    epoch_us_at_boot = timeutils_seconds_since_epoch(year, month, mday, hour, min, sec) * 1000000ULL;
}

// Mode 0 ("interrupt on terminal count") fires once and then stays quiet,
// so an idle machine has no timer ticking at all (QEMU idles at ~0% CPU).
void pit_oneshot_us(uint32_t us) {
    uint32_t count = (uint64_t)us * PIT_HZ / 1000000;
    count = count < 1 ? 1 : count > 0xffff ? 0xffff : count;
    outb(PIT_CMD, PIT_CMD_CH0_LOHI_ONESHOT);
    outb(PIT_CH0, count & 0xff);
    outb(PIT_CH0, count >> 8);
}

static void pit_wake_irq(void) {
    // Nothing to do: the interrupt itself ends the CPU's hlt.
}

void timer_init(void) {
    tsc_at_boot = rdtsc();
    calibrate_tsc();
    read_rtc();
    pit_oneshot_us(1);      // stop the free-running count used to calibrate
    irq_set_handler(IRQ_PIT, pit_wake_irq);
}

uint32_t timer_tsc_khz(void) {
    return tsc_khz;
}

uint64_t timer_us64(void) {
    uint64_t t = rdtsc() - tsc_at_boot;
    uint32_t hi = t >> 32, lo = (uint32_t)t;
    return (uint64_t)hi * us_per_tsc_q32 + (((uint64_t)lo * us_per_tsc_q32) >> 32);
}

uint64_t timer_epoch_us(void) {
    return epoch_us_at_boot + timer_us64();
}

// Sleep with hlt until the next interrupt, or, with a timeout, at most that
// long (a PIT one-shot on IRQ 0, unmasked only meanwhile). Interrupts are
// off from arming to the sti;hlt pair, so the wake-up cannot be missed.
void timer_halt_us(uint32_t us) {
    pit_oneshot_us(us < WAKE_MAX_US ? us : WAKE_MAX_US);
    irq_unmask(IRQ_PIT);
    cpu_sti_hlt();
    irq_mask(IRQ_PIT);
}

static void wait_us(uint32_t us) {
    cpu_cli();
    timer_halt_us(us);
}

void timer_wait_event(int32_t timeout_ms) {
    if (timeout_ms < 0) {
        cpu_sti_hlt();
    } else {
        wait_us(timeout_ms * 1000);
    }
}

void timer_wait_us(uint32_t us) {
    uint64_t deadline = timer_us64() + us;
    for (;;) {
        uint64_t now = timer_us64();
        if (now >= deadline) {
            break;
        }
        if (deadline - now >= 1000) {
            mp_handle_pending(true);        // Ctrl-C ends a long sleep
            wait_us(deadline - now - 500);  // wake a little early, then spin
        }
    }
}

// ---- MicroPython's time HAL -----------------------------------------------

mp_uint_t mp_hal_ticks_us(void) {
    return (mp_uint_t)timer_us64();
}

mp_uint_t mp_hal_ticks_ms(void) {
    return (mp_uint_t)(timer_us64() / 1000);
}

mp_uint_t mp_hal_ticks_cpu(void) {
    return (mp_uint_t)rdtsc();
}

uint64_t mp_hal_time_ns(void) {
    return timer_epoch_us() * 1000;
}

void mp_hal_delay_us(mp_uint_t us) {
    timer_wait_us(us);
}

void mp_hal_delay_ms(mp_uint_t ms) {
    while (ms > 1000000) {      // keep us within 32 bits
        timer_wait_us(1000000000);
        ms -= 1000000;
    }
    timer_wait_us(ms * 1000);
}
