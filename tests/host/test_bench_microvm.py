"""make bench's microvm rows (virtio-mmio): the workloads, the QEMU arguments both guests
get there, one boot per machine, and our side's script runner on the real image with a
small pattern disk (the figures themselves come only from make bench)."""
import os
import sys

import pytest

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'bench'))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, 'guest'))

import linux_guest  # noqa: E402
import linuxref  # noqa: E402
import ours_guest  # noqa: E402
import pattern  # noqa: E402
import qemu  # noqa: E402
import run  # noqa: E402
import workloads as W  # noqa: E402

IMAGE = os.path.join(os.path.dirname(BENCH), 'build', 'x86_virt', 'firmware.elf')


def test_microvm_rows_mirror_the_pc_ones():
    names = [w.name for w in W.WORKLOADS if W.machine_of(w) == 'microvm']
    assert names == ['boot_microvm', 'seq_read_microvm', 'read_4k_d1_microvm',
                     'read_4k_d32_microvm', 'seq_write_microvm', 'ping_rtt_microvm']
    for name in names[1:]:
        pc, mv = W.BY_NAME[name[:-len('_microvm')]], W.BY_NAME[name]
        assert (mv.kind, mv.unit, mv.better) == (pc.kind, pc.unit, pc.better)
        assert {k: v for k, v in mv.params.items() if k != 'machine'} == pc.params
    assert W.on_machine(W.WORKLOADS, 'pc')[0].name == 'boot'


def test_both_guests_get_virtio_mmio_devices_and_the_command_line_on_microvm():
    flags = qemu.machine_flags('microvm')
    assert flags[flags.index('-machine') + 1] == 'microvm,acpi=off'
    assert qemu.machine_flags('pc') == qemu.MACHINE_FLAGS
    devs = ' '.join(qemu.devices('d.img', 5555, 'microvm'))
    for name in ('virtio-blk-device', 'virtio-net-device', 'virtio-serial-device',
                 'virtio-rng-device'):
        assert name in devs
    assert 'pci' not in devs and 'romfile' not in devs
    # Linux: virtio_mmio loaded with its parameters from /proc/cmdline, its devices counted.
    assert 'virtio_mmio' in linuxref.OPTIONAL_MODULES
    assert '/sys/bus/platform/drivers/virtio-mmio/*[:.]*' in linuxref.INIT
    assert '${w#$m.}' in linuxref.INIT


def test_each_side_boots_once_per_machine_and_the_figures_merge(monkeypatch):
    calls = []

    def fake(first, disk, out, sel, machine='pc'):
        calls.append((machine, [w.name for w in sel]))
        if machine == 'microvm':
            raise RuntimeError('no prompt')
        return {w.name: {'value': 1.0, 'error': None} for w in sel}
    sel = [W.BY_NAME[n] for n in ('boot', 'seq_read', 'boot_microvm', 'seq_read_microvm')]
    monkeypatch.setattr(run, 'OUT', '/tmp')
    res = run.by_machine('ours', fake, 'img', 'disk', sel)
    assert calls == [('pc', ['boot', 'seq_read']), ('microvm', ['boot_microvm', 'seq_read_microvm'])]
    assert res['boot']['value'] == 1.0 and res['seq_read']['value'] == 1.0
    assert res['boot_microvm']['value'] is None
    assert 'boot failed: RuntimeError: no prompt' == res['seq_read_microvm']['error']
    assert '_failed' not in res


def test_boot_figure_reads_mmio_device_lines():
    report = ('virtio: 4 devices\r\n'
              + ''.join('  mmio@0xfeb00%x00 virtio-%s mmio-v1 1q\r\n' % (8 + 2 * i, k)
                        for i, k in enumerate(['rng', 'console', 'net', 'blk'])))
    b = ours_guest.boot_figure(report, 0.1)
    assert b['value'] == 0.1 and b['detail']['devices'] == ['blk', 'console', 'net', 'rng']
    b = ours_guest.boot_figure(report.replace('virtio-net mmio-v1 1q',
                                              'virtio-net mmio vendor 0x554d4551 unbound: x'), 0.1)
    assert b['value'] is None and b['error'] == 'no driver for net'


def test_our_script_runner_on_microvm_with_the_real_image(tmp_path):
    if not os.path.exists(IMAGE):
        pytest.skip('no image: make build')
    disk = str(tmp_path / 'disk.img')
    pattern.make_image(disk, 1 << 20)
    sel = [W.BY_NAME['boot_microvm'],
           W.Workload('seq_read_microvm', 't', 'MB/s', W.HIGHER, 'read', bs=65536, depth=1,
                      mode='seq', region=1 << 20, max_ops=16, max_ms=5000, machine='microvm'),
           W.Workload('seq_write_microvm', 't', 'MB/s', W.HIGHER, 'write', bs=65536,
                      offset=65536, total=131072, machine='microvm')]
    res = ours_guest.run(IMAGE, disk, str(tmp_path), sel, timeout=60, machine='microvm')
    boot = res['boot_microvm']
    assert boot['error'] is None and 0 < boot['value'] < 30
    assert boot['detail']['devices'] == ['blk', 'console', 'net', 'rng']
    assert 'mmio-v1' in boot['detail']['report']
    assert res['seq_read_microvm']['error'] is None
    assert res['seq_read_microvm']['detail']['bytes'] == 1 << 20
    assert res['seq_write_microvm']['error'] is None and res['seq_write_microvm']['value'] > 0
    assert not os.path.exists(str(tmp_path / 'ours-disk.img'))


def test_linux_on_microvm_is_na_when_its_kernel_cannot_read_the_command_line_devices():
    sel = [W.BY_NAME['boot_microvm'], W.BY_NAME['seq_read_microvm']]
    res = linux_guest.run({'virtio_mmio_cmdline': False}, 'disk', '/tmp', sel, machine='microvm')
    assert all(res[w.name]['na'] and 'VIRTIO_MMIO_CMDLINE_DEVICES' in res[w.name]['error']
               for w in sel)
