"""The console: banner, friendly REPL, raw REPL, control characters, memory sizing."""
import os

import pytest

from tests.qemu.harness import BANNER, IMAGE, GuestError

pytestmark = pytest.mark.qemu


def test_stripped_image_fits_in_384_kib(image):
    # The limit of README.md and the port's Makefile (IMAGE_LIMIT).
    assert os.path.getsize(image) <= 384 * 1024


def test_boots_to_the_banner_after_the_boot_report(boot):
    g = boot()
    out = g.output
    assert 'MicroPython v1.23.0' in out and 'x86_virt with i686' in out
    # The boot report comes first: the PCI host bridge of -machine pc is listed
    # by the fallback (no drivers), or the drivers report their devices.
    assert out.index('virtio') < out.index('MicroPython v1.23.0')
    assert out.rstrip().endswith('>>>')


def test_friendly_repl_evaluates_a_line(guest):
    guest.exit_raw_repl()
    guest.write('6 * 7\r')
    assert guest.read_until(b'>>> ').endswith(b'42\r\n>>> ')


def test_friendly_repl_paste_mode(guest):
    guest.exit_raw_repl()
    guest.write(b'\x05')                            # Ctrl-E: paste mode
    guest.read_until(b'=== ')
    guest.write(b'def f(x):\r    return x * 3\r\rprint(f(14))\r\x04')
    assert b'42\r\n' in guest.read_until(b'>>> ')


def test_raw_repl_round_trips(guest):
    assert guest.exec('print("hello")') == 'hello\n'
    guest.exec('x = [i * i for i in range(10)]')
    assert guest.eval('sum(x)') == 285
    assert guest.exec('for i in range(3):\n    print(i)\n') == '0\n1\n2\n'


def test_raw_repl_reports_the_guest_traceback(guest):
    with pytest.raises(GuestError) as e:
        guest.exec('print("before")\n{}["missing"]')
    assert e.value.exc_type == 'KeyError'
    assert 'line 2' in e.value.traceback
    assert e.value.output == 'before\n'
    assert guest.eval('1 + 1') == 2            # the REPL is still usable


def test_a_large_paste_arrives_intact(guest):
    # 20 KB of source through the UART: nothing may be dropped.
    lines = ['v%d = %d' % (i, i * 7) for i in range(2000)]
    guest.exec('\n'.join(lines), timeout=30)
    assert guest.eval('v1999 + v0 + v1000') == 1999 * 7 + 1000 * 7


def test_ctrl_c_interrupts_running_code(boot):
    g = boot()
    g.write('for i in range(10 ** 9): print("spinning") if i == 0 else None\r')
    g.read_until(b'... ')                      # a compound statement: one more Enter
    g.write('\r')
    g.read_until(b'spinning\r\n')             # running now, Ctrl-C armed
    g.write(b'\x03')
    out = g.read_until(b'>>> ', timeout=10)
    assert b'KeyboardInterrupt' in out


def test_ctrl_d_soft_resets(boot):
    g = boot()
    g.write('forget_me = 1\r')
    g.read_until(b'>>> ')
    g.write(b'\x04')
    out = g.read_until(BANNER, timeout=10)
    assert b'MPY: soft reboot' in out
    g.write('forget_me\r')
    assert b'NameError' in g.read_until(b'>>> ')


def test_soft_reset_in_raw_repl_keeps_raw_mode(boot):
    g = boot()
    g.enter_raw_repl(soft_reset=True)
    assert g.exec('print("again")') == 'again\n'


@pytest.mark.parametrize('mem', [64, 512])
def test_heap_is_sized_from_the_memory_map(boot, mem):
    g = boot(mem=mem)
    free = g.eval('__import__("gc").mem_free()')
    # About three quarters of RAM goes to the heap, the rest to DMA memory.
    assert mem * 2 ** 20 * 0.5 < free < mem * 2 ** 20
    size = min(free // 2, 96 << 20)             # and it is really usable: with -m 512,
    g.exec('big = bytearray(%d)' % size)        # more than all of a -m 64 machine
    assert g.eval('len(big)') == size


def test_help_names_the_port_module(guest):
    assert 'x86.poweroff()' in guest.exec('help()')


def test_help_says_ctrl_a_is_qemus_escape_on_mon_stdio(guest):
    assert 'Ctrl-A Ctrl-A sends Ctrl-A' in guest.exec('help()')


def test_qemu_system_x86_64_boots_the_same_image(boot):
    g = boot(qemu='qemu-system-x86_64', machine='q35')
    assert g.eval('__import__("sys").platform') == 'x86_virt'
    assert g.exec_until_exit('import x86; x86.poweroff(9)') == 19
