// Entry point: a multiboot v1 kernel, entered by QEMU's -kernel loader in
// 32-bit protected mode with paging off (Multiboot Specification 0.6.96, 3.2).
// We load our own flat GDT, clear .bss, switch to our stack and call kmain.

#define MB_MAGIC        0x1BADB002
#define MB_PAGE_ALIGN   (1 << 0)
#define MB_MEMORY_INFO  (1 << 1)
#define MB_FLAGS        (MB_PAGE_ALIGN | MB_MEMORY_INFO)

#define STACK_SIZE      (64 * 1024)

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text.boot, "ax"
    .global _start
_start:
    cli
    cld
    // Keep the multiboot magic (eax) and info pointer (ebx) across set-up.
    movl    %eax, %esi
    movl    %ebx, %edi

    lgdt    gdt_descriptor
    ljmp    $0x08, $1f
1:  movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %fs
    movw    %ax, %gs
    movw    %ax, %ss
    movl    $stack_top, %esp

    // Zero .bss (the loader should, the specification does not promise it).
    movl    %edi, %ebx
    movl    $__bss_start, %edi
    movl    $__bss_end, %ecx
    subl    %edi, %ecx
    xorl    %eax, %eax
    rep stosb
    movl    %ebx, %edi

    pushl   %edi            // multiboot info
    pushl   %esi            // magic
    call    kmain
2:  cli
    hlt
    jmp     2b

    .section .rodata
    .align 8
gdt:
    .quad   0x0000000000000000      // null
    .quad   0x00cf9a000000ffff      // 0x08: code, base 0, limit 4 GiB, ring 0
    .quad   0x00cf92000000ffff      // 0x10: data, base 0, limit 4 GiB, ring 0
gdt_end:
gdt_descriptor:
    .word   gdt_end - gdt - 1
    .long   gdt

    .section .bss
    .align 16
    .global stack_bottom, stack_top
stack_bottom:
    .skip   STACK_SIZE
stack_top:
