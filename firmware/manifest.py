# The Python in the image (MicroPython's manifest format). tools/mkrom.py runs
# it (through MicroPython's tools/manifestfile.py, with this folder as the
# working directory), compiles each file with mpy-cross -march=x86 and packs
# them into the image's compressed ROM, from which the guest imports.
import os

DRIVERS = "../drivers"

# Every package under drivers/ (a folder with an __init__.py: virtio, inet,
# ...) and any single-file module there, stored under its own name.
for name in sorted(os.listdir(DRIVERS)):
    path = os.path.join(DRIVERS, name)
    if os.path.isfile(os.path.join(path, "__init__.py")):
        package(name, base_path=DRIVERS)
    elif name.endswith(".py") and os.path.isfile(path):
        module(name, base_path=DRIVERS)

# The boot script and what it uses.
module("fwcfg.py")
module("boot.py")
# Mounting the disk at / after every reset (main.c calls it).
module("fsboot.py")
# A small `random`, seeded from virtio-rng when it is imported.
module("random.py")
# json and binascii with MicroPython's names (the C ones are in extmod/, which
# the source we build from lacks; the micropython-lib sdists on PyPI have no
# setup.py or pyproject.toml, so pip cannot fetch them, and their json needs `re`).
module("json.py")
module("binascii.py")
# MicroPython's socket and select over drivers/inet (inet/sockets.py).
module("socket.py")
module("select.py")
