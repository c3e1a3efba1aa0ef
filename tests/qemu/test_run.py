"""tools/run, what `make run` calls: the guest's status reaches the shell; a missing
QEMU, QEMU's own failure and a KVM that cannot run the guest each end with one line
and a status of their own (README.md, "Exit codes")."""
import os
import re
import signal
import subprocess
import sys
import tempfile

import pytest

from tests.qemu.harness import ROOT

pytestmark = pytest.mark.qemu

RUN = os.path.join(ROOT, 'tools', 'run')
EXIT_QEMU_FAILED, EXIT_NOT_STARTED, EXIT_ACCEL_FAILED = 200, 201, 202


@pytest.fixture
def rundir():
    with tempfile.TemporaryDirectory(prefix='x86virt-run-') as d:
        yield d


def run(cmd, rundir, timeout=120, env=None):
    """Run `cmd` (tools/run or make) with its own disk and console socket in rundir,
    so it cannot collide with an interactive `make run`; returns (status, output)."""
    cmd = cmd + ['DISK=' + os.path.join(rundir, 'disk.img'),
                 'VCON_SOCKET=' + os.path.join(rundir, 'vcon.sock')]
    p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode, out.decode(errors='replace')


def script(rundir, source, name='s.py'):
    path = os.path.join(rundir, name)
    with open(path, 'w') as f:
        f.write(source)
    return 'SCRIPT=' + path


def run_lines(out):
    return [line for line in out.splitlines() if line.startswith('run: ')]


@pytest.mark.parametrize('source, status', [
    ('import sys\nsys.exit(7)\n', 7),
    ('import x86\nx86.poweroff(0)\n', 0),
    ('print("done")\n', 0),
    ('import x86\nx86.poweroff(127)\n', 127),
])
def test_the_guest_status_is_the_exit_status(image, rundir, source, status):
    code, out = run([RUN, script(rundir, source)], rundir)
    assert code == status, out
    if status:
        assert run_lines(out) == ['run: QEMU exited with status %d (guest exit code %d%s)'
                                  % (status * 2 + 1, status,
                                     ': CPU exception' if status == 127 else '')]
    else:
        assert run_lines(out) == []


def test_an_uncaught_exception_exits_1(image, rundir):
    code, out = run([RUN, script(rundir, 'raise OSError("disk on fire")\n')], rundir)
    assert code == 1
    assert 'OSError: disk on fire' in out
    assert run_lines(out) == ['run: QEMU exited with status 3 (guest exit code 1: '
                              'uncaught Python exception)']


def test_ci_style_make_run_fails_and_says_why(image, rundir):
    code, out = run(['make', '--no-print-directory', 'run',
                     script(rundir, 'import sys\nsys.exit(7)\n')], rundir)
    assert code == 2        # make's own status for a failed recipe: non-zero is what CI needs
    assert 'run: QEMU exited with status 15 (guest exit code 7)' in out
    code, out = run(['make', '--no-print-directory', 'run', script(rundir, 'pass\n')], rundir)
    assert code == 0, out


def test_qemu_failing_by_itself_is_not_a_guest_status(image, rundir):
    code, out = run([RUN, 'QEMU_EXTRA=-no-such-option'], rundir)
    assert code == EXIT_QEMU_FAILED
    assert 'invalid option' in out
    assert run_lines(out) == ['run: QEMU exited with status 1 (QEMU failed, not the guest)']


def test_a_mistyped_qemu_is_named_in_one_line(image, rundir):
    code, out = run([RUN, 'QEMU=qemu-sytem-i386'], rundir)
    assert code == EXIT_NOT_STARTED
    assert out.splitlines() == ['run: QEMU=qemu-sytem-i386: no such program on PATH '
                                '(the default is qemu-system-i386)']


def test_make_run_with_a_mistyped_qemu_installs_nothing(image, rundir):
    # An apt-get first on PATH that records being called: it must not be.
    fakebin = os.path.join(rundir, 'bin')
    os.mkdir(fakebin)
    called = os.path.join(rundir, 'apt-called')
    with open(os.path.join(fakebin, 'apt-get'), 'w') as f:
        f.write('#!/bin/sh\necho "$@" >> %s\nexit 1\n' % called)
    os.chmod(os.path.join(fakebin, 'apt-get'), 0o755)
    env = dict(os.environ, PATH=fakebin + os.pathsep + os.environ['PATH'])
    code, out = run(['make', '--no-print-directory', 'run', 'QEMU=qemu-sytem-i386'], rundir,
                    env=env)
    assert code != 0
    assert not os.path.exists(called)
    ours = [line for line in out.splitlines() if not re.match(r'make(\[\d+\])?: \*\*\* ', line)]
    assert ours == ['setup: QEMU=qemu-sytem-i386: no such program on PATH: '
                    'check the name (the default is qemu-system-i386)']
    assert 'guest' not in out


def test_a_qemu_that_cannot_be_executed_is_not_a_guest_status(rundir):
    not_executable = os.path.join(rundir, 'qemu')
    open(not_executable, 'w').close()
    code, out = run([RUN, '--', not_executable, '-m', '64'], rundir)
    assert code == EXIT_NOT_STARTED
    assert run_lines(out) == ['run: %s: cannot start it: Permission denied' % not_executable]


def qemu_processes_using(path):
    """PIDs of processes whose command line mentions `path` (read-only look at /proc)."""
    pids = []
    for pid in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if path.encode() in f.read():
                    pids.append(int(pid))
        except (OSError, ValueError):
            pass
    return pids


def test_kvm_that_cannot_run_the_guest_ends_with_one_line(image, rundir):
    kvm_usable = os.access('/dev/kvm', os.R_OK | os.W_OK)
    code, out = run([RUN, 'ACCEL=kvm', script(rundir, 'print("ran")\n')], rundir, timeout=60)
    assert not qemu_processes_using(rundir)
    if not kvm_usable:
        # No KVM at all: QEMU refuses to start, which is QEMU's failure, not the guest's.
        assert code == EXIT_QEMU_FAILED and 'kvm' in out.lower()
        return
    if code == 0 and 'ran' in out:
        pytest.skip('KVM runs this guest on this host')
    assert code == EXIT_ACCEL_FAILED, out
    assert run_lines(out) == [
        'run: the accelerator cannot run this guest (KVM internal error: emulation failure); '
        'QEMU stopped; use ACCEL=tcg (QEMU\'s dump: build/logs/qemu-stderr.log)']
    assert 'EAX=' not in out        # the register dump went to the log, not the terminal


def test_paths_are_from_where_the_user_is(image, rundir):
    # tools/run hands SCRIPT=, DISK= to make in the project's folder: relative paths
    # are taken from the caller's folder.
    with open(os.path.join(rundir, 'rel.py'), 'w') as f:
        f.write('import sys\nsys.exit(9)\n')
    p = subprocess.run([RUN, 'SCRIPT=rel.py', 'DISK=rel.img', 'VCON_SOCKET=rel.sock'],
                       cwd=rundir, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    assert p.returncode == 9, p.stderr
    assert os.path.exists(os.path.join(rundir, 'rel.img'))
