// The compressed ROM (tools/mkrom.py: the .mpy files firmware/manifest.py
// names), linked into the image as data. rom.c unpacks it at boot.
    .section .rodata
    .balign 4
    .global x86_rom_z, x86_rom_z_end
x86_rom_z:
    .incbin ROM_FILE
x86_rom_z_end:
