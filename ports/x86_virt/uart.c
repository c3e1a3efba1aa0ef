// The console: a 16550 UART at COM1. Received bytes arrive by interrupt
// (IRQ 4) into a ring buffer; the keyboard-interrupt character (Ctrl-C
// while Python runs) is turned into a KeyboardInterrupt instead.
//
// The FIFO control register is never written: on QEMU, enabling or clearing
// the FIFO drops bytes that were already received.
#include "py/mpconfig.h"
#include "py/runtime.h"
#include "py/stream.h"
#include "shared/runtime/interrupt_char.h"
#include "x86.h"

#define COM1        0x3f8
#define UART_RBR    0           // receive buffer (read, DLAB=0)
#define UART_THR    0           // transmit holding (write, DLAB=0)
#define UART_DLL    0           // divisor latch low (DLAB=1)
#define UART_IER    1           // interrupt enable (DLAB=0)
#define UART_DLM    1           // divisor latch high (DLAB=1)
#define UART_LCR    3           // line control
#define UART_MCR    4           // modem control
#define UART_LSR    5           // line status

#define IER_RX_AVAILABLE    0x01
#define LCR_8N1             0x03
#define LCR_DLAB            0x80
#define MCR_DTR             0x01
#define MCR_RTS             0x02
#define MCR_OUT2            0x08    // gates the UART's interrupt line on a PC
#define LSR_DATA_READY      0x01
#define LSR_THR_EMPTY       0x20

#define RX_BUF_SIZE 4096        // a power of two

static volatile uint8_t rx_buf[RX_BUF_SIZE];
static volatile uint32_t rx_head;   // written by the interrupt handler only
static volatile uint32_t rx_tail;   // written by the reader only

static void uart_rx_irq(void) {
    while (inb(COM1 + UART_LSR) & LSR_DATA_READY) {
        int c = inb(COM1 + UART_RBR);
        #if MICROPY_KBD_EXCEPTION
        if (c == mp_interrupt_char) {
            mp_sched_keyboard_interrupt();
            continue;
        }
        #endif
        if (rx_head - rx_tail < RX_BUF_SIZE) {
            rx_buf[rx_head % RX_BUF_SIZE] = c;
            rx_head++;
        }
        // else: the reader has fallen 4 KiB behind; the byte is lost.
    }
}

void uart_init(void) {
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, LCR_DLAB);
    outb(COM1 + UART_DLL, 1);           // 115200 baud
    outb(COM1 + UART_DLM, 0);
    outb(COM1 + UART_LCR, LCR_8N1);
    outb(COM1 + UART_MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
    irq_set_handler(IRQ_COM1, uart_rx_irq);
    outb(COM1 + UART_IER, IER_RX_AVAILABLE);
    irq_unmask(IRQ_COM1);
    // Bytes that arrived before the interrupt was enabled raise none.
    uart_rx_irq();
}

int uart_rx_pop(void) {
    if (rx_tail == rx_head) {
        return -1;
    }
    int c = rx_buf[rx_tail % RX_BUF_SIZE];
    rx_tail++;
    return c;
}

bool uart_rx_empty(void) {
    return rx_tail == rx_head;
}

void uart_putc(char c) {
    while (!(inb(COM1 + UART_LSR) & LSR_THR_EMPTY)) {
    }
    outb(COM1 + UART_THR, c);
}

void uart_write(const char *s, size_t n) {
    while (n--) {
        uart_putc(*s++);
    }
}

void uart_puts(const char *s) {
    while (*s) {
        uart_putc(*s++);
    }
}

void uart_put_hex(uint32_t v) {
    static const char digits[] = "0123456789abcdef";
    uart_puts("0x");
    for (int shift = 28; shift >= 0; shift -= 4) {
        uart_putc(digits[(v >> shift) & 0xf]);
    }
}

// ---- MicroPython's console HAL --------------------------------------------

// Input and output also go through a terminal attached with x86.dupterm()
// (dupterm.c), which is polled: while one is attached the CPU wakes every
// millisecond (the PIT) to look at it, not only on a UART interrupt.
int mp_hal_stdin_rx_chr(void) {
    for (;;) {
        int c = uart_rx_pop();
        if (c >= 0) {
            return c;
        }
        c = dupterm_rx_chr();
        if (c >= 0) {
            return c;
        }
        mp_handle_pending(true);
        // Sleep until the next interrupt, unless a byte came in meanwhile.
        cpu_cli();
        if (!uart_rx_empty()) {
            cpu_sti();
        } else if (dupterm_attached()) {
            timer_wait_event(1);
        } else {
            cpu_sti_hlt();
        }
    }
}

mp_uint_t mp_hal_stdout_tx_strn(const char *str, size_t len) {
    uart_write(str, len);
    dupterm_tx_strn(str, len);
    return len;
}

uintptr_t mp_hal_stdio_poll(uintptr_t poll_flags) {
    uintptr_t ret = 0;
    if ((poll_flags & MP_STREAM_POLL_RD) && !uart_rx_empty()) {
        ret |= MP_STREAM_POLL_RD;
    }
    if (poll_flags & MP_STREAM_POLL_WR) {
        ret |= MP_STREAM_POLL_WR;
    }
    return ret;
}
