"""QtestMachine itself: errors are clear and name their cause, nothing hangs, nothing is
left behind (no QEMU process, no temp files)."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.host.qtest import (MAX_PENDING, QemuExited, QtestCommandError, QtestError,
                              QtestMachine, QtestTimeout, qtest_factory)  # noqa: F401

pytestmark = pytest.mark.qemu


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


def host_bridge_vendor(hw):
    hw.outl(0xCF8, 0x80000000)
    return hw.inw(0xCFC)


def test_close_kills_qemu_and_removes_its_files(qtest_factory):
    hw = qtest_factory()
    pid, tmpdir = hw.pid, hw._dir
    assert alive(pid) and os.path.isdir(tmpdir)
    hw.close()
    assert not alive(pid)
    assert not os.path.exists(tmpdir)
    hw.close()                                  # idempotent
    with pytest.raises(QtestError, match='closed'):
        hw.read32(0x100000)


def test_context_manager_closes(qtest_factory):
    with qtest_factory() as hw:
        pid = hw.pid
        assert host_bridge_vendor(hw) == 0x8086
    assert not alive(pid)


def test_qtest_has_no_bytearray_at(qtest_factory):
    assert not hasattr(qtest_factory(), 'bytearray_at')


def test_i386_binary_works_too(qtest_factory):
    if not __import__('shutil').which('qemu-system-i386'):
        pytest.skip('qemu-system-i386 is not installed')
    hw = qtest_factory(qemu='qemu-system-i386', machine='q35')
    hw.outl(0xCF8, 0x80000000)
    assert hw.inl(0xCFC) == 0x29C08086


def test_failed_command_names_the_command_and_the_machine_stays_usable(qtest_factory):
    hw = qtest_factory()
    with pytest.raises(QtestCommandError, match="'no_such_command 1'.*Unknown command"):
        hw.qtest('no_such_command 1')
    assert host_bridge_vendor(hw) == 0x8086


def test_failure_of_a_pipelined_command_is_reported_at_the_next_answer(qtest_factory):
    hw = qtest_factory()
    a = hw.dma_alloc(8)
    hw.write32(a, 1)
    hw._post('bogus_write 0x0')                 # as if a posted write had failed
    hw.write32(a, 2)
    with pytest.raises(QtestCommandError, match='bogus_write'):
        hw.read32(a)
    assert hw.read32(a) == 2                    # later commands still ran, in order


def test_many_pipelined_writes_keep_their_order(qtest_factory):
    hw = qtest_factory()
    a = hw.dma_alloc(8)
    for i in range(3 * MAX_PENDING + 7):
        hw.write32(a, i)
        hw.write32(a + 4, i * 3)
    assert hw.read64(a) == (3 * MAX_PENDING + 6) * 3 << 32 | 3 * MAX_PENDING + 6


@pytest.mark.parametrize('call, message', [
    (lambda hw: hw.inb(0x10000), 'port 0x10000'),
    (lambda hw: hw.outl(-1, 0), 'port'),
    (lambda hw: hw.read32(-4), 'address'),
    (lambda hw: hw.write64((1 << 64) - 4, 0), 'address'),
    (lambda hw: hw.read(0x100000, -1), 'negative length'),
    (lambda hw: hw.dma_alloc(16, 3), 'power of two'),
    (lambda hw: hw.dma_alloc(-1), 'size must be positive'),
])
def test_bad_arguments_raise_before_reaching_qemu(qtest_factory, call, message):
    # QEMU asserts (and dies) on malformed commands: they must never be sent.
    hw = qtest_factory()
    with pytest.raises(ValueError, match=message):
        call(hw)
    assert host_bridge_vendor(hw) == 0x8086


def test_dma_area_is_ram_above_1mib_and_exhaustion_says_what_is_left(qtest_factory):
    hw = qtest_factory(memory_mb=4)
    assert hw.dma_alloc(1 << 20) == 1 << 20
    with pytest.raises(MemoryError, match='DMA area exhausted: 2097153 bytes aligned to 4096 '
                                          'asked, 2097152 bytes free, largest piece 2097152'):
        hw.dma_alloc((2 << 20) + 1)
    last = hw.dma_alloc(2 << 20)                # exactly what is left still fits
    hw.write(last + (2 << 20) - 4, b'\xff' * 4)
    assert hw.read32(last + (2 << 20) - 4) == 0xFFFFFFFF


def test_qemu_that_fails_to_start_raises_with_its_stderr(qtest_factory):
    with pytest.raises(QemuExited) as info:
        qtest_factory(['-device', 'no-such-device-xyz'])
    assert 'no-such-device-xyz' in str(info.value)
    assert 'status 1' in str(info.value)


def test_qemu_that_dies_raises_instead_of_hanging(qtest_factory):
    hw = qtest_factory()
    os.kill(hw.pid, signal.SIGKILL)
    with pytest.raises(QemuExited, match='status -9'):
        host_bridge_vendor(hw)


def test_qemu_abort_on_a_raw_malformed_command_carries_its_stderr(qtest_factory):
    hw = qtest_factory()
    with pytest.raises(QemuExited, match='(?s)status -6.*assertion'):
        hw.qtest('readb')                       # no address: QEMU asserts
    assert not alive(hw.pid)


def test_qemu_that_stops_answering_times_out(qtest_factory):
    hw = qtest_factory(timeout=0.3)
    os.kill(hw.pid, signal.SIGSTOP)
    with pytest.raises(QtestTimeout, match=r"no reply to 'outl 0xcf8 0x80000000' "
                                           r"\(sent before 'inw 0xcfc'\) within 0.3 s"):
        host_bridge_vendor(hw)
    pid = hw.pid
    hw.close()                                  # SIGKILL works on a stopped process too
    assert not alive(pid)


def test_port_writes_reach_the_device_without_a_later_read(qtest_factory, tmp_path):
    """A device register write is sent at once (only RAM writes wait for the next
    command): a notify followed by host-side waiting must not stall."""
    log = tmp_path / 'debugcon.txt'
    hw = qtest_factory(['-chardev', 'file,id=dbg,path=%s' % log,
                        '-device', 'isa-debugcon,iobase=0xe9,chardev=dbg'])
    a = hw.dma_alloc(4)
    hw.write32(a, 0x12345678)                   # held: no device looks at RAM unasked
    for ch in b'sent':
        hw.outb(0xE9, ch)
    deadline = time.monotonic() + 5
    while log.read_bytes() != b'sent' and time.monotonic() < deadline:
        time.sleep(0.001)
    assert log.read_bytes() == b'sent'
    assert hw.read32(a) == 0x12345678


def test_qemu_dies_with_a_killed_test_process():
    """Even a SIGKILLed pytest (no teardown runs) leaves no QEMU behind."""
    script = ('from tests.host.qtest import QtestMachine\n'
              'import sys, time\n'
              'hw = QtestMachine()\n'
              'print(hw.pid, hw._dir, flush=True)\n'
              'time.sleep(60)\n')
    child = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                                 os.path.abspath(__file__)))))
    try:
        pid, tmpdir = child.stdout.readline().split()
        qemu_pid = int(pid)
        assert alive(qemu_pid)
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    shutil.rmtree(tmpdir)                       # nothing else could remove it
    deadline = time.monotonic() + 5
    while alive(qemu_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(qemu_pid)


def test_memory_size_outside_what_stays_below_the_pci_hole_is_refused():
    with pytest.raises(ValueError, match='memory_mb 4096'):
        QtestMachine(memory_mb=4096)
