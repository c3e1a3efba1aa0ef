"""tools/run's decisions without QEMU: how QEMU's exit status becomes the runner's,
and the hint it prints for each serial line (README.md, "Ending a session")."""
import importlib.machinery
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def runner():
    path = os.path.join(ROOT, 'tools', 'run')
    loader = importlib.machinery.SourceFileLoader('tools_run', path)
    spec = importlib.util.spec_from_loader('tools_run', loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize('qemu_status, exit_status', [
    (0, 0), (3, 1), (15, 7), (253, 126), (255, 127),     # the guest's codes
    (1, 200), (2, 200),                                   # QEMU's own errors
    (-9, 137), (-2, 130),                                 # signals
])
def test_qemu_status_to_exit_status(runner, qemu_status, exit_status):
    assert runner.decode(qemu_status)[0] == exit_status


def test_a_missing_program_is_not_started_never_a_shell_127(runner, capsys):
    # No shell in between: a missing QEMU is named, not decoded from a shell's 127.
    assert runner.run(['qemu-sytem-i386', '-m', '64']) == 201
    assert capsys.readouterr().err == ('run: qemu-sytem-i386: no such program on PATH '
                                       '(the default QEMU is qemu-system-i386)\n')


def test_the_mon_stdio_hint_says_ctrl_a_is_qemus(runner):
    h = runner.hint(['qemu-system-i386', '-serial', 'mon:stdio'])
    assert 'Ctrl-A X quits QEMU' in h and 'Ctrl-A Ctrl-A' in h


def test_the_pty_hint_does_not_promise_ctrl_a_x(runner):
    h = runner.hint(['qemu-system-i386', '-serial', 'pty'])
    assert 'Ctrl-A' not in h
    assert 'mpremote connect /dev/pts/N' in h and 'Ctrl-C here' in h


def test_the_hint_names_the_status_page_when_port_80_is_forwarded(runner):
    net = ['-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80']
    h = runner.hint(['qemu-system-i386', '-serial', 'mon:stdio'] + net)
    assert h.endswith('(status page: import webstatus; webstatus.serve(80) in the guest, '
                      'then http://127.0.0.1:8080/)')
    assert 'status page' not in runner.hint(['qemu-system-i386', '-netdev', 'user,id=net0'])
