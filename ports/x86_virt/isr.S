// Interrupt entry stubs: one per vector 0-255 (CPU exceptions 0-31, then
// interrupts: the 8259s or the I/O APIC, MSI, the APIC's spurious vector).
// Each pushes a uniform frame (see isr_frame_t in x86.h) and calls
// isr_dispatch(frame). Stubs are packed (no alignment): the table below
// holds their addresses.


    .macro isr_stub n
isr_\n:
    .if ((\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30))
    .else
    pushl   $0              // dummy error code
    .endif
    pushl   $\n
    jmp     isr_common
    .endm

    .macro isr_table_entry n
    .long   isr_\n
    .endm

    .section .text
    .altmacro
    .set i, 0
    .rept 256
    isr_stub %i
    .set i, i + 1
    .endr

isr_common:
    pushal
    cld
    pushl   %esp            // isr_frame_t *
    call    isr_dispatch
    addl    $4, %esp
    popal
    addl    $8, %esp        // vector and error code
    iret

    // The table of stub addresses, used by idt_init().
    .section .rodata
    .align 4
    .global isr_stub_table
isr_stub_table:
    .set i, 0
    .rept 256
    isr_table_entry %i
    .set i, i + 1
    .endr
