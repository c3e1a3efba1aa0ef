// MicroPython configuration for the x86_virt port: i686, multiboot, QEMU pc/q35.
//
// Start from the "extra features" ROM level (f-strings, errno, scheduler,
// memoryview, ordered dicts, ...), then switch off what needs source that the
// 1.23 tree we build from does not ship (extmod/, lib/).

#include <stdint.h>
#include <alloca.h>

#define MICROPY_CONFIG_ROM_LEVEL            (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)

// Compiler and emitters: bytecode plus the x86 native emitter, so that
// @micropython.native and @micropython.viper work at the REPL and in the ROM.
#define MICROPY_ENABLE_COMPILER             (1)
#define MICROPY_EMIT_X86                    (1)
#define MICROPY_PERSISTENT_CODE_LOAD        (1)
#define MICROPY_ENABLE_GC                   (1)
#define MICROPY_ENABLE_FINALISER            (0)
#define MICROPY_STACK_CHECK                 (1)
#define MICROPY_HELPER_REPL                 (1)
#define MICROPY_REPL_INFO                   (0)
#define MICROPY_ENABLE_EMERGENCY_EXCEPTION_BUF (1)
#define MICROPY_EMERGENCY_EXCEPTION_BUF_SIZE (256)
#define MICROPY_KBD_EXCEPTION               (1)
#define MICROPY_ENABLE_SCHEDULER            (1)
#define MICROPY_LONGINT_IMPL                (MICROPY_LONGINT_IMPL_MPZ)
#define MICROPY_FLOAT_IMPL                  (MICROPY_FLOAT_IMPL_DOUBLE)
#define MICROPY_USE_INTERNAL_ERRNO          (1)
#define MICROPY_USE_INTERNAL_PRINTF         (1)
#define MICROPY_ERROR_REPORTING             (MICROPY_ERROR_REPORTING_NORMAL)
#define MICROPY_ENABLE_SOURCE_LINE          (1)
#define MICROPY_GCREGS_SETJMP               (0)
#define MICROPY_NLR_X86                     (1)
#define MICROPY_EPOCH_IS_1970               (1)

// Modules and builtins.
#define MICROPY_PY_SYS_PLATFORM             "x86_virt"
#define MICROPY_PY_SYS_STDFILES             (1)
#define MICROPY_PY_SYS_STDIO_BUFFER         (1)
#define MICROPY_PY_SYS_EXIT                 (1)
#define MICROPY_PY_MATH_SPECIAL_FUNCTIONS   (1)
#define MICROPY_PY_BUILTINS_COMPLEX         (0)
// memoryview.itemsize, as CPython has it: the drivers count a buffer's bytes
// (virtio/buffers.py) without a copy of its first item.
#define MICROPY_PY_BUILTINS_MEMORYVIEW_ITEMSIZE (1)
#define MICROPY_QSTR_BYTES_IN_HASH          (1)
#define MICROPY_PY_ASYNC_AWAIT              (0)
#define MICROPY_PY_CMATH                    (0)
#define MICROPY_PY_BUILTINS_HELP            (1)
#define MICROPY_PY_BUILTINS_HELP_TEXT       x86_virt_help_text
// help.c puts the port's help() over the core's (builtins.help, at each
// start): its help('modules') lists the ROM's modules too.
#define MICROPY_CAN_OVERRIDE_BUILTINS       (1)
#define MICROPY_PY_MICROPYTHON_MEM_INFO     (1)
// io.IOBase: Python classes that are streams (mpremote's RemoteFile).
#define MICROPY_PY_IO_IOBASE                (1)
// Our own `time` (ports/x86_virt/modtime.c): upstream's lives in extmod/.
#define MICROPY_PY_TIME                     (0)
// Not in the 1.23 source we build from (extmod/ is absent). `os`, `vfs`
// and open() are our own (modos.c, vfs.c; docs/files.md).
#define MICROPY_PY_VFS                      (0)
#define MICROPY_PY_OS                       (0)
#define MICROPY_PY_ASYNCIO                  (0)
#define MICROPY_PY_BINASCII                 (0)
#define MICROPY_PY_DEFLATE                  (0)
#define MICROPY_PY_FRAMEBUF                 (0)
#define MICROPY_PY_HASHLIB                  (0)
#define MICROPY_PY_HEAPQ                    (0)
#define MICROPY_PY_JSON                     (0)
#define MICROPY_PY_PLATFORM                 (0)
#define MICROPY_PY_RANDOM                   (0)
#define MICROPY_PY_RE                       (0)
#define MICROPY_PY_SELECT                   (0)
#define MICROPY_PY_UCTYPES                  (0)
#define MICROPY_PY_MACHINE                  (0)
#define MICROPY_READER_VFS                  (0)

// Python modules are imported from the ROM (rom.c): .mpy files, loaded into
// the heap on import, including native (x86) code.
#define MICROPY_ENABLE_EXTERNAL_IMPORT      (1)
#define MICROPY_MODULE_FROZEN               (0)
#define MICROPY_HAS_FILE_READER             (1)

// Board identity, printed in the banner and sys.implementation._machine.
#define MICROPY_HW_BOARD_NAME               "x86_virt"
#define MICROPY_HW_MCU_NAME                 "i686"

// Type definitions for the specific machine.
typedef int32_t mp_int_t;
typedef uint32_t mp_uint_t;
typedef long mp_off_t;

#define MICROPY_MAKE_POINTER_CALLABLE(p)    (p)

// The scheduler's queue is shared with interrupt handlers (irq.c, uart.c):
// its critical sections run with interrupts off.
static inline mp_uint_t x86_atomic_begin(void) {
    mp_uint_t flags;
    __asm__ volatile ("pushfl; popl %0; cli" : "=r" (flags) : : "memory");
    return flags;
}
static inline void x86_atomic_end(mp_uint_t flags) {
    __asm__ volatile ("pushl %0; popfl" : : "r" (flags) : "memory", "cc");
}
#define MICROPY_BEGIN_ATOMIC_SECTION()      x86_atomic_begin()
#define MICROPY_END_ATOMIC_SECTION(state)   x86_atomic_end(state)
#define MP_SSIZE_MAX                        (0x7fffffff)

// Idle with interrupts enabled: run pending callbacks/exceptions, then hlt
// until the next interrupt (UART receive, PIT during a sleep).
#define MICROPY_EVENT_POLL_HOOK \
    do { \
        extern void mp_handle_pending(bool); \
        mp_handle_pending(true); \
        x86_idle(); \
    } while (0);
void x86_idle(void);

#define MP_STATE_PORT MP_STATE_VM

#define MICROPY_PORT_ROOT_POINTERS
