"""make bench's Python vhost-user-blk rows, wired without QEMU: the workloads mirror the
built-in device's, the QEMU command line swaps the device and shares RAM, a failed boot
voids only those rows. (tests/qemu/test_vhost.py runs the rows once for real, briefly.)"""
import os
import sys

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'bench'))
sys.path.insert(0, BENCH)

import ours_guest  # noqa: E402
import qemu  # noqa: E402
import vhost_guest  # noqa: E402
import workloads as W  # noqa: E402

ROWS = {'py_seq_read': 'seq_read', 'py_read_4k_d1': 'read_4k_d1',
        'py_read_4k_d32': 'read_4k_d32'}


class FakeBackend:
    def qemu_args(self):
        return ['-chardev', 'socket,id=vhost0,path=/x/blk.sock',
                '-device', 'vhost-user-blk-pci,chardev=vhost0']


def test_python_device_rows_run_the_built_in_rows_workloads():
    for name, builtin in ROWS.items():
        w, b = W.BY_NAME[name], W.BY_NAME[builtin]
        assert w.kind == 'vhost_read' and w.unit == b.unit and w.better == b.better
        assert ours_guest.call_line(vhost_guest.as_read(w)) == \
            ours_guest.call_line(b).replace("'%s'" % builtin, "'%s'" % name)


def test_qemu_line_swaps_virtio_blk_for_vhost_user_and_shares_ram():
    args = vhost_guest.qemu_args(FakeBackend(), 'fw.elf', 5555)
    assert not any(a.startswith('virtio-blk-pci') for a in args) and '-drive' not in args
    assert args.count('vhost-user-blk-pci,chardev=vhost0') == 1
    mem = args[args.index('-m') + 1]
    assert mem == '512M'
    assert 'memory-backend-memfd,id=vhostmem,size=512M,share=on' in args
    assert 'memory-backend=vhostmem' in args
    # Everything else is the bench machine, unchanged.
    devs = qemu.devices('D', 5555)
    others = devs[4:]
    assert devs[:4] == ['-drive', 'file=D,format=raw,if=none,id=disk0',
                        '-device', 'virtio-blk-pci,drive=disk0,serial=benchdisk']
    assert args[-len(others) - 2:] == others + ['-kernel', 'fw.elf']


def test_a_failed_python_device_boot_voids_only_its_rows():
    selected = W.WORKLOADS
    res = {'read_4k_d1': {'value': 5.0, 'error': None}, '_seconds': 3}
    vhost_guest.merge(res, {'_failed': 'BackendError: no', '_seconds': 1}, selected)
    assert res['read_4k_d1']['value'] == 5.0 and res['_seconds'] == 3
    for name in ROWS:
        assert res[name] == {'value': None, 'error': 'boot failed: BackendError: no'}


def test_device_cost_per_request():
    assert vhost_guest.device_cost((10, 1.0), (110, 1.5)) == {
        'device_requests': 100, 'device_us_per_request': 5000.0}
    assert vhost_guest.device_cost((10, 1.0), (10, 1.0)) == {}
