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


QSTR_COUNT = '''
import micropython
micropython.qstr_info()
'''


def interned(g):
    """How many strings the running MicroPython has interned beyond the firmware's."""
    out = g.exec(QSTR_COUNT)
    line = [l for l in out.splitlines() if l.startswith('qstr pool:')][0]
    return int(line.split('n_qstr=')[1].split(',')[0])


def test_importing_the_drivers_interns_almost_no_new_names_even_after_a_soft_reset(boot):
    """The ROM's names list (tools/mkrom.py's .qstrs) is interned before anything imports,
    in one sorted pool (rom.c): loading a module then finds its names by binary search
    instead of appending each to pools searched one entry at a time, which made an import
    cost ~1M guest instructions. After a soft reset (a fresh interpreter, boot.py not run
    again) importing every driver module adds only the modules' other strings."""
    g = boot()
    g.enter_raw_repl(soft_reset=True)
    before = interned(g)
    assert before > 1500                  # the names are there from the start
    g.exec('import virtio, inet, virtio.blk, virtio.net, virtio.console, virtio.rng, '
           'virtio.split, virtio.packed, virtio.mmio, virtio.legacy, virtio.modern')
    assert interned(g) - before < 300     # ~2,000 without the names list
    assert g.eval('virtio.probe(__import__("x86")) is not None')
