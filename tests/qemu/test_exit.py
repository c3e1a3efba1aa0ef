"""How a run ends: QEMU's exit status for poweroff(), scripts, exceptions and crashes,
on -machine pc and q35; SCRIPT= through fw_cfg and through `make run`."""
import os
import signal
import subprocess
import tempfile

import pytest

from tests.qemu.harness import (EXIT_CPU_EXCEPTION, EXIT_PYTHON_EXCEPTION, ROOT,
                                decode_status, run_script)

pytestmark = pytest.mark.qemu

MACHINES = ['pc', 'q35']


@pytest.mark.parametrize('machine', MACHINES)
def test_poweroff_0_exits_0_through_acpi(boot, machine):
    g = boot(machine=machine)
    assert g.exec_until_exit('import x86; x86.poweroff()') == 0


@pytest.mark.parametrize('machine', MACHINES)
def test_poweroff_n_exits_2n_plus_1(boot, machine):
    g = boot(machine=machine)
    status = g.exec_until_exit('import x86; x86.poweroff(42)')
    assert status == 85 and decode_status(status) == 42


@pytest.mark.parametrize('machine', MACHINES)
def test_script_runs_then_powers_off_with_0(image, machine):
    r = run_script('print("from the script", 6 * 7)\n', machine=machine, image=image)
    assert r.status == 0
    assert 'from the script 42' in r.output
    assert r.output.index('virtio') < r.output.index('from the script')   # report first


def test_script_sys_exit_code_becomes_the_status(image):
    r = run_script('import sys\nsys.exit(5)\n', image=image)
    assert (r.status, r.code) == (11, 5)


def test_script_exception_exits_1_with_a_readable_traceback(image):
    r = run_script('def f():\n    raise OSError("disk on fire")\n\nf()\n',
                   script_name='fire.py', image=image)
    assert r.code == EXIT_PYTHON_EXCEPTION
    assert 'File "fire.py", line 2, in f' in r.output
    assert 'OSError: disk on fire' in r.output


def test_script_can_import_the_drivers_and_the_port_modules(image):
    r = run_script('import x86, time, fwcfg\n'
                   'print("fw_cfg", fwcfg.present(x86))\n', image=image)
    assert r.status == 0 and 'fw_cfg True' in r.output


@pytest.mark.parametrize('machine', MACHINES)
def test_cpu_exception_prints_vector_and_ends_non_zero(boot, machine):
    g = boot(machine=machine)
    # Viper's integer floor division is the CPU's idiv: dividing by zero is #DE.
    status = g.exec_until_exit('@micropython.viper\n'
                               'def div(a: int, b: int) -> int:\n'
                               '    return a // b\n'
                               'div(1, 0)\n')
    assert decode_status(status) == EXIT_CPU_EXCEPTION
    assert 'CPU exception 0x00000000 (#DE divide error)' in g.output
    assert 'eip=0x' in g.output


def test_without_a_script_there_is_a_repl_not_an_exit(boot):
    g = boot()
    assert g.eval('1 + 1') == 2
    assert g.proc.poll() is None


def test_make_run_script_exit_status(image):
    # The real `make run` (default devices) with a script; its own disk and
    # console socket, so it cannot collide with anyone's interactive run.
    with tempfile.TemporaryDirectory(prefix='x86virt-run-') as tmp:
        script = os.path.join(tmp, 'hello.py')
        with open(script, 'w') as f:
            f.write('print("hello from make run")\nimport sys\nsys.exit(3)\n')
        cmd = ['make', '--no-print-directory', 'run', 'SCRIPT=' + script,
               'DISK=' + os.path.join(tmp, 'disk.img'),
               'VCON_SOCKET=' + os.path.join(tmp, 'vcon.sock')]
        p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)     # make and the QEMU it started
                p.wait()
        out = out.decode(errors='replace')
        assert 'hello from make run' in out
        assert 'run: QEMU exited with status 7 (guest exit code 3)' in out
        assert p.returncode != 0
        # The default devices were there and reported (by the drivers or the PCI list).
        assert 'virtio-blk' in out or '1af4:1001' in out
