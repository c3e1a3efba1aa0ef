// The x86_virt port: from multiboot to the MicroPython REPL.
//
// Memory: the region that holds the kernel (from the multiboot memory map)
// is split after the kernel image into the unpacked ROM (the Python modules,
// rom.c), a DMA area (for devices; never moved, freed only by dma_free) and the
// garbage-collected heap.
#include <string.h>

#include "py/builtin.h"
#include "py/compile.h"
#include "py/gc.h"
#include "py/lexer.h"
#include "py/mperrno.h"
#include "py/mphal.h"
#include "py/runtime.h"
#include "py/stackctrl.h"
#include "shared/readline/readline.h"
#include "shared/runtime/gchelper.h"
#include "shared/runtime/pyexec.h"
#include "rom.h"
#include "vfs.h"
#include "x86.h"

#define MULTIBOOT_BOOTLOADER_MAGIC  0x2badb002
#define MULTIBOOT_INFO_MEMORY       (1 << 0)
#define MULTIBOOT_INFO_MEM_MAP      (1 << 6)
#define MULTIBOOT_MEMORY_AVAILABLE  1

#define STACK_SIZE          (64 * 1024)
#define KERNEL_BASE         0x100000
#define DMA_AREA_MIN        (256 * 1024)
#define DMA_AREA_MAX        (64 * 1024 * 1024)
#define PAGE_SIZE           4096
// The least RAM (QEMU -m, in MiB) this image runs in: make run's devices probed
// at boot and again from Python (each probe takes fresh rings), and the REPL
// (tests/qemu/test_memory.py holds it).
#define RAM_MIN_MIB         8
// MicroPython's small ints hold at most 2**30 - 1 on i686: a heap below 1 GiB
// keeps gc.mem_free() and every object's len() exact. RAM above it stays unused.
#define HEAP_AREA_MAX       (1023u * 1024 * 1024)

// Multiboot Specification 0.6.96, 3.3: the parts of the boot information we use.
typedef struct __attribute__((packed)) {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;      // KiB below 1 MiB / above 1 MiB
    uint32_t boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
} multiboot_info_t;

typedef struct __attribute__((packed)) {
    uint32_t size;                      // of the rest of this entry
    uint64_t base_addr, length;
    uint32_t type;
} multiboot_mmap_entry_t;

extern char __image_end[];
extern char stack_bottom[], stack_top[];

uintptr_t dma_area_start, dma_area_end;
uintptr_t heap_area_start, heap_area_end;
static uint32_t ram_unused_kib;     // above the heap (HEAP_AREA_MAX)

// One reason, one line: QEMU -m is too small (exit status as for a fatal error).
static void refuse_memory(uint32_t ram_kib) {
    mp_printf(&mp_plat_print, "\r\nFATAL: not enough memory: %u MiB of RAM, the minimum is %u MiB"
        " (QEMU -m %u, make run MEM=%u)\r\n", (unsigned)((ram_kib + 512) >> 10),
        RAM_MIN_MIB, RAM_MIN_MIB, RAM_MIN_MIB);
    x86_poweroff(EXIT_FATAL);
}

static void memory_init(uint32_t magic, const multiboot_info_t *mbi) {
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        x86_fatal("not started by a multiboot loader (use qemu -kernel)");
    }
    uint64_t end = 0;
    if (mbi->flags & MULTIBOOT_INFO_MEM_MAP) {
        // The available region that holds the kernel.
        uintptr_t p = mbi->mmap_addr;
        while (p < mbi->mmap_addr + mbi->mmap_length) {
            const multiboot_mmap_entry_t *e = (const void *)p;
            if (e->type == MULTIBOOT_MEMORY_AVAILABLE && e->base_addr <= KERNEL_BASE
                && e->base_addr + e->length > KERNEL_BASE) {
                end = e->base_addr + e->length;
            }
            p += e->size + sizeof(e->size);
        }
    } else if (mbi->flags & MULTIBOOT_INFO_MEMORY) {
        end = KERNEL_BASE + (uint64_t)mbi->mem_upper * 1024;
    }
    if (end > 0xfffff000u) {
        end = 0xfffff000u;      // 32-bit addresses only
    }
    // RAM as QEMU -m gave it, up to the first hole: the KiB above 1 MiB, plus that MiB.
    uint32_t ram_kib = (mbi->flags & MULTIBOOT_INFO_MEMORY) ? mbi->mem_upper + 1024 : (uint32_t)(end >> 10);
    uintptr_t start = (uintptr_t)__image_end;
    uintptr_t rom_size = (rom_unpacked_size() + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
    if (ram_kib < RAM_MIN_MIB * 1024 - 512 || end < start + rom_size + 4 * DMA_AREA_MIN) {
        refuse_memory(ram_kib);
    }
    rom_unpack((void *)start);
    start += rom_size;
    uintptr_t avail = (uintptr_t)end - start;
    uintptr_t dma = (avail / 4) & ~(PAGE_SIZE - 1);
    dma = dma < DMA_AREA_MIN ? DMA_AREA_MIN : dma > DMA_AREA_MAX ? DMA_AREA_MAX : dma;
    dma_area_start = start;
    dma_area_end = start + dma;
    dma_init();
    heap_area_start = dma_area_end;
    heap_area_end = (uintptr_t)end;
    if (heap_area_end - heap_area_start > HEAP_AREA_MAX) {
        heap_area_end = heap_area_start + HEAP_AREA_MAX;
        ram_unused_kib = (uint32_t)((end - heap_area_end) >> 10);
    }
}

static void fpu_init(void) {
    // CR0: clear EM (no emulation) and TS, set MP and NE (native x87 errors).
    uint32_t cr0;
    __asm__ volatile ("mov %%cr0, %0" : "=r" (cr0));
    cr0 = (cr0 & ~((1 << 2) | (1 << 3))) | (1 << 1) | (1 << 5);
    __asm__ volatile ("mov %0, %%cr0" : : "r" (cr0));
    // All x87 exceptions masked (inf and nan, no traps); precision control
    // 53 bits, so that float arithmetic rounds as on any IEEE double machine
    // (libm.c switches to 64 bits inside its functions).
    uint16_t cw = 0x027f;
    __asm__ volatile ("fninit; fldcw %0" : : "m" (cw));
}

// The boot script (firmware/boot.py, in the ROM) reports the machine and runs
// a user's script; importing it runs it. False if it raised.
static bool run_boot_script(void) {
    nlr_buf_t nlr;
    bool ok = true;
    if (nlr_push(&nlr) == 0) {
        mp_hal_set_interrupt_char(CHAR_CTRL_C);
        mp_import_name(MP_QSTR_boot, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        nlr_pop();
    } else {
        mp_obj_print_exception(&mp_plat_print, MP_OBJ_FROM_PTR(nlr.ret_val));
        ok = false;
    }
    mp_hal_set_interrupt_char(-1);
    mp_handle_pending(false);
    return ok;
}

// sys.path: the ROM (".frozen", reader.c) first, then the current directory
// and /lib as on MicroPython boards. ROM first: the drivers' imports never
// wait on the disk (nor on a disk the drivers are resetting).
static void sys_path_init(void) {
    mp_obj_list_init(MP_OBJ_TO_PTR(mp_sys_path), 0);
    mp_obj_list_append(mp_sys_path, MP_OBJ_NEW_QSTR(MP_QSTR__dot_frozen));
    mp_obj_list_append(mp_sys_path, MP_OBJ_NEW_QSTR(MP_QSTR_));
    mp_obj_list_append(mp_sys_path, MP_OBJ_NEW_QSTR(MP_QSTR__slash_lib));
}

// The disk (docs/files.md): firmware/fsboot.py mounts the first virtio-blk
// disk at / when it holds FAT or littlefs. True when boot.py and main.py
// should run from it (mounted, and not started with make run SAFE=1).
static bool mount_root(void) {
    nlr_buf_t nlr;
    bool run_scripts = false;
    if (nlr_push(&nlr) == 0) {
        mp_hal_set_interrupt_char(CHAR_CTRL_C);
        mp_obj_t fsboot = mp_import_name(MP_QSTR_fsboot, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
        run_scripts = mp_obj_is_true(mp_call_function_0(mp_load_attr(fsboot, MP_QSTR_mount_root)));
        nlr_pop();
    } else {
        mp_obj_print_exception(&mp_plat_print, MP_OBJ_FROM_PTR(nlr.ret_val));
    }
    mp_hal_set_interrupt_char(-1);
    mp_handle_pending(false);
    return run_scripts;
}

void kmain(uint32_t magic, const multiboot_info_t *mbi) {
    idt_init();
    uart_init();
    fpu_init();
    memory_init(magic, mbi);
    timer_init();
    irq_init();
    cpu_sti();
    mp_printf(&mp_plat_print, "x86_virt: heap %u KiB, DMA %u KiB, ROM %u modules, TSC %u MHz\n",
        (unsigned)((heap_area_end - heap_area_start) >> 10), (unsigned)((dma_area_end - dma_area_start) >> 10),
        (unsigned)rom_modules(), (unsigned)(timer_tsc_khz() / 1000));
    if (ram_unused_kib) {
        mp_printf(&mp_plat_print, "x86_virt: %u MiB of RAM above the heap unused (the heap is at most %u MiB)\n",
            (unsigned)(ram_unused_kib >> 10), (unsigned)(HEAP_AREA_MAX >> 20));
    }

    mp_stack_set_top(stack_top);
    mp_stack_set_limit(STACK_SIZE - 4096);
    bool cold_boot = true;

soft_reset:
    gc_init((void *)heap_area_start, (void *)heap_area_end);
    mp_init();
    rom_intern_names();
    help_init();
    sys_path_init();
    vfs_init();
    readline_init0();
    dupterm_reset();
    irq_reset();

    if (cold_boot) {
        cold_boot = false;
        if (!run_boot_script()) {
            uart_puts("boot.py failed: powering off\r\n");
            x86_poweroff(EXIT_PYTHON_EXCEPTION);
        }
    }
    // The user's boot.py on every reset, main.py when a REPL user (not a
    // raw-REPL tool such as mpremote) is waiting, as on MicroPython boards.
    if (mount_root()) {
        pyexec_file_if_exists("boot.py");
        if (pyexec_mode_kind == PYEXEC_MODE_FRIENDLY_REPL) {
            pyexec_file_if_exists("main.py");
        }
    }

    for (;;) {
        if (pyexec_mode_kind == PYEXEC_MODE_RAW_REPL) {
            if (pyexec_raw_repl() != 0) {
                break;
            }
        } else {
            if (pyexec_friendly_repl() != 0) {
                break;
            }
        }
    }

    mp_printf(&mp_plat_print, "MPY: soft reboot\n");
    vfs_deinit();       // files closed, disks' caches written out
    gc_sweep_all();
    mp_deinit();
    dma_reclaim();
    goto soft_reset;
}

// ---- Hooks MicroPython needs from a port ----------------------------------

void gc_collect(void) {
    gc_collect_start();
    gc_helper_collect_regs_and_stack();
    gc_collect_end();
}

void x86_idle(void) {
    timer_wait_event(-1);
}

const char x86_virt_help_text[] =
    "MicroPython on x86_virt: a bare-metal i686 VM for QEMU.\n"
    "\n"
    "  import x86        port I/O, physical memory, DMA memory, barrier, ticks\n"
    "  import virtio     the VirtIO drivers: virtio.probe() lists the devices\n"
    "  import time       ticks_ms(), ticks_us(), ticks_diff(), sleep_ms(), ...\n"
    "  import os         files on the disk: os.listdir(), open(), os.mount()\n"
    "  x86.poweroff()    end the session (QEMU exits with status 0)\n"
    "  x86.poweroff(n)   end with status (n << 1) | 1\n"
    "\n"
    "Control commands: Ctrl-C interrupt, Ctrl-D soft reset, Ctrl-E paste mode,\n"
    "Ctrl-A raw REPL, Ctrl-B friendly REPL. On QEMU's -serial mon:stdio (make run)\n"
    "Ctrl-A is QEMU's escape: Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A X quits QEMU.\n"
    "For a list of modules: help('modules')\n";
