"""mpremote, unchanged, against the image on a pty (QEMU -serial pty): raw REPL,
raw-paste mode and soft reset as a real board would do them."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.qemu

MPREMOTE = os.path.join(os.path.dirname(sys.executable), 'mpremote')


def mpremote(pty, *args, timeout=60):
    p = subprocess.run([MPREMOTE, 'connect', pty] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def pty_guest(boot):
    if not os.path.exists(MPREMOTE):
        pytest.fail('mpremote not in the venv: run `make setup`', pytrace=False)
    return boot(serial='pty')


def test_mpremote_exec_and_eval(pty_guest):
    assert mpremote(pty_guest.pty, 'exec', 'import sys; print(sys.platform, 6 * 7)') == \
        'x86_virt 42\n'
    assert mpremote(pty_guest.pty, 'eval', '2 ** 40') == '1099511627776\n'


def test_mpremote_run_a_host_file(pty_guest, tmp_path):
    script = tmp_path / 'probe.py'
    script.write_text('import x86\n'
                      'x86.outl(0xCF8, 0x80000000)\n'
                      'print("host bridge %08x" % x86.inl(0xCFC))\n')
    assert mpremote(pty_guest.pty, 'run', str(script)) == 'host bridge 12378086\n'


def test_mpremote_ends_the_session_cleanly_with_poweroff(pty_guest):
    # poweroff() from the raw REPL ends the output as the raw REPL does, then gives
    # mpremote time to let go of the pty: no pyserial traceback, QEMU's status kept.
    p = subprocess.run([MPREMOTE, 'connect', pty_guest.pty, 'exec', 'import x86; x86.poweroff(5)'],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, '', '')
    assert pty_guest.wait(20) == 11


@pytest.mark.parametrize('version', [1, 2])
def test_mpremote_on_microvm_finds_the_mmio_devices(boot, tmp_disk, version):
    # Issue 12: QEMU's microvm, no PCI, the devices as virtio-mmio windows; the serial
    # line takes input there (the UART's interrupt through the interrupt controller).
    from tests.qemu.harness import default_devices, mmio_version_args
    g = boot(machine='microvm,acpi=off', serial='pty',
             devices=default_devices(tmp_disk(1 << 20), bus='device') + mmio_version_args(version))
    out = mpremote(g.pty, 'exec', 'import virtio\n'
                   'print(sorted((d.KIND, d.transport.name) for d in virtio.devices()))\n'
                   'print(len(virtio.find("rng").read(16)))')
    kinds = 'mmio-v%d' % version
    assert out == "[('blk', '%s'), ('console', '%s'), ('net', '%s'), ('rng', '%s')]\n16\n" % (
        (kinds,) * 4), out
