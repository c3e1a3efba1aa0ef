// The compressed ROM (tools/mkrom.py: the .mpy files firmware/manifest.py
// names), linked into the image as data. rom.c unpacks it at boot.
    .section .rodata
    .balign 4
    .global x86_rom_lz, x86_rom_lz_end
x86_rom_lz:
    .incbin ROM_FILE
x86_rom_lz_end:
