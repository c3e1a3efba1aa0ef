"""The image's ROM (firmware/manifest.py -> tools/mkrom.py -> ports/x86_virt/rom.c):
every module in it imports in the guest, native (viper) code included, and the boot
report lists the devices `make run` gives."""
import os

import pytest

from tests.qemu.harness import ROOT, default_devices

pytestmark = pytest.mark.qemu

ROM_DIR = os.path.join(ROOT, 'build', 'x86_virt', 'rom')


def rom_modules():
    names = []
    for dirpath, _, files in os.walk(ROM_DIR):
        for f in files:
            if f.endswith('.mpy'):
                rel = os.path.relpath(os.path.join(dirpath, f), ROM_DIR)[:-4]
                name = rel.replace(os.sep, '.')
                if name.endswith('.__init__'):
                    name = name[:-len('.__init__')]
                if name != 'boot':          # importing boot would run it again
                    names.append(name)
    return sorted(names)


def test_every_rom_module_imports(guest, image):
    names = rom_modules()
    assert 'fwcfg' in names and any(n.startswith('virtio') for n in names)
    out = guest.exec('failed = []\n'
                     'for name in %r:\n'
                     '    try:\n'
                     '        __import__(name)\n'
                     '    except Exception as e:\n'
                     '        failed.append("%%s: %%r" %% (name, e))\n'
                     'print(failed)' % names, timeout=30)
    assert out == '[]\n'


def test_files_outside_the_rom_are_not_found(guest):
    # The ROM first, then the file systems (none is mounted here: no disk).
    assert guest.eval('__import__("sys").path') == ['.frozen', '', '/lib']
    assert guest.eval('__import__("os").listdir("/")') == []
    with pytest.raises(Exception, match='ImportError'):
        guest.exec('import no_such_module')
    with pytest.raises(Exception, match='OSError'):
        guest.exec('open("x.txt", "w")')


def test_boot_report_lists_the_default_devices(boot, tmp_disk):
    g = boot(devices=default_devices(tmp_disk(16 << 20)))
    report = g.output[:g.output.index('MicroPython v1.23.0')]
    for kind, ident in (('virtio-blk', '1af4:1001'), ('virtio-net', '1af4:1000'),
                        ('virtio-console', '1af4:1003'), ('virtio-rng', '1af4:1005')):
        assert kind in report or ident in report, report
