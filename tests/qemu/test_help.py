"""help() and open() tell the truth about where modules live: help('modules') lists
the built-in modules and the ROM's (firmware/manifest.py), and open() says that
there is no filesystem, not that it is read-only."""
import os
import re

import pytest

from tests.qemu.harness import ROOT, GuestError

pytestmark = pytest.mark.qemu


def rom_modules():
    """The top-level names firmware/manifest.py puts in the ROM, found on the host."""
    drivers = os.path.join(ROOT, 'drivers')
    names = set()
    for name in os.listdir(drivers):
        if os.path.isfile(os.path.join(drivers, name, '__init__.py')):
            names.add(name)
        elif name.endswith('.py'):
            names.add(name[:-3])
    with open(os.path.join(ROOT, 'firmware', 'manifest.py')) as f:
        names.update(re.findall(r'^module\("(\w+)\.py"\)', f.read(), re.M))
    return names


def test_help_modules_lists_the_rom_and_the_builtins(guest):
    out = guest.exec("help('modules')")
    builtin, _, rom = out.partition('Modules in the ROM (firmware/manifest.py, read-only):\n')
    assert builtin.startswith('Built-in modules:\n')
    assert set(rom.split()) == rom_modules()
    assert {'virtio', 'inet', 'random', 'fwcfg'} <= set(rom.split())
    assert {'x86', 'time', 'gc', 'sys', 'math'} <= set(builtin.split())
    assert 'filesystem' not in out


def test_help_of_an_object_lists_its_members(guest):
    out = guest.exec('import x86\nhelp(x86)')
    assert out.startswith("object <module 'x86'> is of type module\n")
    assert '  poweroff -- <function>' in out.splitlines()


def test_open_says_there_is_no_filesystem(guest):
    for call in ("open('boot.py')", "open('new.txt', 'w')"):
        with pytest.raises(GuestError) as e:
            guest.exec(call)
        assert e.value.exc_type == 'OSError'
        assert 'no filesystem' in e.value.traceback
        assert 'writable' not in e.value.traceback


def test_help_modules_survives_a_soft_reset(boot):
    g = boot()
    g.enter_raw_repl(soft_reset=True)
    assert 'Modules in the ROM' in g.exec("help('modules')")
