"""QEMU's own devices as the hardware interface, over QEMU's qtest protocol.

`QtestMachine` implements docs/hardware-interface.md (port I/O, physical memory, DMA,
barrier, ticks) by sending qtest text commands to a QEMU whose only "firmware" is 64 KiB
of HLT instructions: no guest code runs, the CPU idles, and the VirtIO drivers run under
CPython on the host against QEMU's real devices.

    with QtestMachine(['-device', 'virtio-rng-pci']) as hw:
        functions = virtio.pci.scan(hw)

What follows from "no firmware ran": PCI BARs are unassigned and command registers are 0
(the driver side assigns them, see virtio.pci.assign_resources); RAM is fresh. The DMA area
is guest RAM from 1 MiB to the top of RAM, handed out by a bump allocator that zeroes each
block explicitly (memset) rather than trusting fresh RAM.

Speed: every command is one line and one reply. Writes (out*, write*, memset) are
pipelined: their "OK" is collected later, on the next command that needs an answer, so a
failure there is reported a little late but still names the command. Writes to RAM are
even held back and sent together with the next command that is sent (any read, any port
or MMIO write), which is the first moment a device could look at RAM. Bulk transfers
use b64read/b64write. Run this file (`python -m tests.host.qtest`) to measure.

QEMU aborts on a malformed command (it asserts), so every argument is checked here first;
a QEMU that dies or stops answering raises QemuExited / QtestTimeout carrying its stderr.
"""

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref

from tests.host.models.dma import DmaArea
from tests.host.irqchip import IrqChip

QEMU = 'qemu-system-x86_64'
HALT_BIOS = b'\xf4' * 65536         # HLT everywhere: the reset vector halts, the VM idles
DMA_BASE = 0x100000                 # 1 MiB: above the legacy VGA/BIOS holes
START_TIMEOUT = 10.0                # seconds from exec to the first reply
REPLY_TIMEOUT = 10.0                # seconds for any one reply (a blk request is synchronous)
BULK_CHUNK = 65536                  # bytes per b64read/b64write: measured fastest
MAX_PENDING = 256                   # posted writes before we stop and collect their replies
RECV_SIZE = 65536                   # bytes per recv: a bigger buffer costs its allocation
TICKS_PERIOD = 1 << 30              # as MicroPython's ticks: wrap at 2**30
TICKS_HALF = TICKS_PERIOD >> 1
MAX_MEMORY_MB = 2048                # all of it below the PCI hole on pc and q35
LOW_RAM_END = 0xA0000               # 640 KiB: the VGA window and BIOS area follow
STDERR_TAIL = 2000                  # characters of QEMU's stderr quoted in an error

_MASK = {1: 0xff, 2: 0xffff, 4: 0xffffffff, 8: 0xffffffffffffffff}
_PORT_SUFFIX = {1: 'b', 2: 'w', 4: 'l'}
_MEM_SUFFIX = {1: 'b', 2: 'w', 4: 'l', 8: 'q'}


class QtestError(Exception):
    """Something went wrong talking to QEMU over qtest."""


class QtestCommandError(QtestError):
    """QEMU answered FAIL/ERR to a command."""

    def __init__(self, command, reply):
        QtestError.__init__(self, 'qtest command %r failed: %s' % (command, reply))
        self.command = command
        self.reply = reply


class QemuExited(QtestError):
    """QEMU is gone (exited, crashed, or closed the qtest connection)."""


class QtestTimeout(QtestError):
    """QEMU is alive but did not answer in time."""


def qemu_available(qemu=QEMU):
    """True when the QEMU binary is on PATH (tests skip otherwise)."""
    return shutil.which(qemu) is not None


def _set_pdeathsig():
    """In the child: die with the parent, so a killed pytest leaves no QEMU behind."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)           # PR_SET_PDEATHSIG
    except Exception:
        pass


def _cleanup(res, tmpdir):
    """Kill QEMU by PID, close our files, remove the temp dir; runs once."""
    try:
        for name in ('sock', 'stderr'):
            if res.get(name) is not None:
                res[name].close()
        proc = res.get('proc')
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class QtestMachine(IrqChip):
    """The hardware interface of docs/hardware-interface.md, backed by QEMU over qtest.

    args: extra QEMU arguments (-device/-drive/-netdev/-chardev ...).
    machine: 'pc' or 'q35'. qemu: the binary (qemu-system-x86_64 or qemu-system-i386).
    memory_mb: guest RAM, 2..2048; the DMA area is [1 MiB, memory_mb MiB).
    timeout: seconds to wait for QEMU's start and for any one reply.

    Interrupts (tests/host/irqchip.py): INTx lines are the I/O APIC's inputs as QEMU
    reports them (irq_intercept_in); qtest cannot see writes to the APIC's MSI window,
    so msi_message() gives a mailbox in guest RAM (4 bytes per vector, as QEMU's own
    libqos tests do) and the wait reads it: a device's MSI write is a memory write.
    Messages that land before the wait looks are counted once.
    """

    def __init__(self, args=(), machine='pc', qemu=QEMU, memory_mb=64,
                 timeout=REPLY_TIMEOUT, start_timeout=START_TIMEOUT):
        if not 2 <= memory_mb <= MAX_MEMORY_MB:
            raise ValueError('memory_mb %d: 2..%d (above that q35 splits RAM around the '
                             'PCI hole)' % (memory_mb, MAX_MEMORY_MB))
        self.machine = machine
        self.timeout = timeout
        self.ram_size = memory_mb << 20
        self.dma_base = DMA_BASE
        self.dma_end = self.ram_size
        self.dma = DmaArea(DMA_BASE, self.ram_size)     # the allocator, as on the target
        self._pending = []              # commands sent whose replies are not read yet
        self._held = []                 # RAM writes not sent yet (see _in_ram)
        self._rx = bytearray()
        self._sock = None
        self.irq_levels = {}            # line -> 1/0, after intercept_irqs()
        self._intercepting = False
        self._mailbox = None            # MSI messages land here (see the class doc)
        self._irq_setup()
        self._dir = tempfile.mkdtemp(prefix='qtest-')
        self._res = {}                  # what _cleanup releases: proc, sock, stderr
        self._finalizer = weakref.finalize(self, _cleanup, self._res, self._dir)
        self._closed = False
        try:
            self._start(list(args), qemu, memory_mb, start_timeout)
        except BaseException:
            self.close()
            raise

    # -- process and connection -------------------------------------------------------

    def _start(self, args, qemu, memory_mb, start_timeout):
        bios = os.path.join(self._dir, 'halt.bin')
        with open(bios, 'wb') as f:
            f.write(HALT_BIOS)
        path = os.path.join(self._dir, 'qtest.sock')
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(0.005)
            self._stderr = self._res['stderr'] = open(os.path.join(self._dir, 'stderr'), 'w+b')
            self.argv = [qemu, '-machine', self.machine, '-accel', 'tcg', '-nodefaults',
                         '-nographic', '-m', '%dM' % memory_mb, '-bios', bios,
                         '-qtest', 'unix:' + path, '-qtest-log', '/dev/null'] + args
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                          stdout=self._stderr, stderr=self._stderr,
                                          preexec_fn=_set_pdeathsig)
            self._res['proc'] = self._proc
            self.pid = self._proc.pid
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    self._sock, _ = listener.accept()
                    self._res['sock'] = self._sock
                    break
                except socket.timeout:
                    if self._proc.poll() is not None:
                        raise QemuExited('QEMU exited with status %d before connecting\n%s'
                                         % (self._proc.returncode, self._describe()))
                    if time.monotonic() > deadline:
                        raise QtestTimeout('QEMU did not connect within %.1f s\n%s'
                                           % (start_timeout, self._describe()))
        finally:
            listener.close()
            if os.path.exists(path):
                os.unlink(path)
        self._sock.settimeout(self.timeout)
        if self.qtest('endianness') != 'little':
            raise QtestError('qtest: %s is not a little-endian target' % qemu)

    def stderr(self):
        """QEMU's stderr (and stdout) so far, as text."""
        try:
            with open(os.path.join(self._dir, 'stderr'), 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def _describe(self):
        text = self.stderr()
        if len(text) > STDERR_TAIL:
            text = '...' + text[-STDERR_TAIL:]
        return 'command: %s\nQEMU stderr: %s' % (' '.join(self.argv), text.strip() or '(empty)')

    def _gone(self, what):
        """The error for a connection that broke: QEMU's exit status and stderr."""
        try:
            status = self._proc.wait(1)
        except subprocess.TimeoutExpired:
            status = None
        if status is None:
            return QemuExited('qtest connection lost %s (QEMU pid %d still running)\n%s'
                              % (what, self.pid, self._describe()))
        return QemuExited('QEMU exited with status %d %s\n%s'
                          % (status, what, self._describe()))

    def close(self):
        """Kill QEMU by PID and remove the temp dir; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the wire ---------------------------------------------------------------------

    def _send(self, line, hold=False):
        """Queue a command; unless `hold`, send it with every command held before it."""
        if self._closed:
            raise QtestError('qtest: machine is closed (command %r)' % line[:60])
        self._pending.append(line)
        self._held.append(line)
        if hold:
            return
        data = '\n'.join(self._held).encode('ascii') + b'\n'
        del self._held[:]
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise QtestTimeout('qtest: QEMU stopped reading commands (sending %r)\n%s'
                               % (line[:60], self._describe()))
        except OSError as e:
            raise self._gone('while sending %r (%s)' % (line[:60], e))

    def _readline(self, waiting_for):
        """One line from QEMU; waiting_for describes the command(s) it would answer."""
        scanned = 0                     # a bulk reply arrives in many pieces: scan each once
        while True:
            end = self._rx.find(b'\n', scanned)
            if end >= 0:
                line = bytes(self._rx[:end]).decode('ascii', 'replace')
                del self._rx[:end + 1]
                return line
            scanned = len(self._rx)
            try:
                data = self._sock.recv(RECV_SIZE)
            except socket.timeout:
                if self._proc.poll() is not None:
                    raise self._gone('waiting for the reply to %s' % waiting_for)
                raise QtestTimeout('qtest: no reply to %s within %.1f s (QEMU pid %d)\n%s'
                                   % (waiting_for, self.timeout, self.pid,
                                      self._describe()))
            except OSError as e:
                raise self._gone('waiting for the reply to %s (%s)' % (waiting_for, e))
            if not data:
                raise self._gone('waiting for the reply to %s' % waiting_for)
            self._rx += data

    def _reply(self, then=None):
        """Read the reply to the oldest pending command; returns its value ('' if none).

        then: the command the caller is after, when it is not the oldest (for errors).
        """
        command = self._pending[0]
        waiting_for = repr(command[:60])
        if then is not None and then != command:
            waiting_for += ' (sent before %r)' % then[:60]
        while True:
            line = self._readline(waiting_for)
            if line.startswith('IRQ '):
                self._irq_event(line)
                continue
            break
        del self._pending[0]
        if line == 'OK':
            return ''
        if line.startswith('OK '):
            return line[3:]
        if line.startswith('FAIL') or line.startswith('ERR'):
            raise QtestCommandError(command[:80], line)
        raise QtestError('qtest: unexpected reply %r to %r' % (line[:80], command[:80]))

    def _call(self, line):
        """Send a command and wait for its reply (and every earlier one)."""
        self._send(line)
        while len(self._pending) > 1:
            self._reply(line)
        return self._reply()

    def _post(self, line, hold=False):
        """A command whose reply is only "OK": collected later (pipelining). With `hold`
        (RAM writes) it is not even sent until something else is."""
        self._send(line, hold)
        if len(self._pending) >= MAX_PENDING:
            self.sync()

    def sync(self):
        """Send what is held and wait until QEMU has answered every command."""
        if self._held:
            self._send('endianness')
        while self._pending:
            self._reply()

    def qtest(self, line):
        """Send one raw qtest command and return its reply value (after 'OK ').

        QEMU aborts on a malformed command: the next call then raises QemuExited.
        """
        return self._call(line)

    # -- interrupts (optional: not part of the hardware interface) --------------------

    def intercept_irqs(self, qom_path='ioapic'):
        """Have QEMU report interrupt lines of `qom_path` as IRQ raise/lower events."""
        self._call('irq_intercept_in %s' % qom_path)
        self._intercepting = True

    def _irq_event(self, line):
        words = line.split()
        if len(words) != 3 or words[1] not in ('raise', 'lower'):
            raise QtestError('qtest: malformed interrupt event %r' % line)
        line, level = int(words[2]), 1 if words[1] == 'raise' else 0
        self.irq_levels[line] = level
        self._irq_line(line, level)

    def irq_level(self, line):
        """The level of an intercepted interrupt line, after collecting pending events."""
        self._call('endianness')
        return self.irq_levels.get(line, 0)

    def intx_vector(self, line):
        if not self._intercepting:
            self.intercept_irqs()
        return IrqChip.intx_vector(self, line)

    def _irq_msi_address(self, vector):
        if self._mailbox is None:
            self._mailbox = self.dma_alloc(4 * 256, 64)
        return self._mailbox + 4 * vector

    def _irq_poll(self):
        self._call('endianness')        # a round trip: QEMU's IRQ lines so far come in
        if self._mailbox is None:
            return
        box = self.read(self._mailbox, 4 * 256)
        for v in range(256):
            data = int.from_bytes(box[4 * v:4 * v + 4], 'little')
            if data:
                self.write32(self._mailbox + 4 * v, 0)
                self._irq_vector(data & 0xFF)

    def _irq_nap(self):
        time.sleep(0.0005)

    # -- port I/O ---------------------------------------------------------------------

    @staticmethod
    def _port(port):
        if not 0 <= port <= 0xffff:
            raise ValueError('I/O port 0x%x out of range 0..0xffff' % port)
        return port

    def _in(self, width, port):
        value = self._call('in%s 0x%x' % (_PORT_SUFFIX[width], self._port(port)))
        return int(value, 16) & _MASK[width]

    def _out(self, width, port, value):
        self._post('out%s 0x%x 0x%x' % (_PORT_SUFFIX[width], self._port(port),
                                         value & _MASK[width]))

    def inb(self, port):
        return self._in(1, port)

    def inw(self, port):
        return self._in(2, port)

    def inl(self, port):
        return self._in(4, port)

    def outb(self, port, value):
        self._out(1, port, value)

    def outw(self, port, value):
        self._out(2, port, value)

    def outl(self, port, value):
        self._out(4, port, value)

    # -- physical memory --------------------------------------------------------------

    @staticmethod
    def _addr(addr, n=1):
        if addr < 0 or addr + n > 1 << 64:
            raise ValueError('physical address 0x%x (+%d) out of range' % (addr, n))
        return addr

    def _read(self, width, addr):
        value = self._call('read%s 0x%x' % (_MEM_SUFFIX[width], self._addr(addr, width)))
        return int(value, 16) & _MASK[width]

    def _in_ram(self, addr, n):
        """RAM writes can wait: a device sees RAM only after a register access (port or
        MMIO, sent at once with everything held before it), and any read sends them."""
        end = addr + n
        return end <= LOW_RAM_END or DMA_BASE <= addr and end <= self.ram_size

    def _write(self, width, addr, value):
        self._post('write%s 0x%x 0x%x' % (_MEM_SUFFIX[width], self._addr(addr, width),
                                           value & _MASK[width]), self._in_ram(addr, width))

    def read8(self, addr):
        return self._read(1, addr)

    def read16(self, addr):
        return self._read(2, addr)

    def read32(self, addr):
        return self._read(4, addr)

    def read64(self, addr):
        return self._read(8, addr)

    def write8(self, addr, value):
        self._write(1, addr, value)

    def write16(self, addr, value):
        self._write(2, addr, value)

    def write32(self, addr, value):
        self._write(4, addr, value)

    def write64(self, addr, value):
        self._write(8, addr, value)

    def read(self, addr, n):
        """n bytes of memory at addr, as bytes (b64read, pipelined in BULK_CHUNK pieces)."""
        if n < 0:
            raise ValueError('read: negative length %d' % n)
        self._addr(addr, n)
        if n == 0:
            return b''                  # QEMU asserts on an empty read
        chunks = range(0, n, BULK_CHUNK)
        for offset in chunks:
            self._send('b64read 0x%x %d' % (addr + offset, min(BULK_CHUNK, n - offset)))
        while len(self._pending) > len(chunks):
            self._reply(self._pending[-len(chunks)])
        pieces = [base64.b64decode(self._reply()) for _ in chunks]
        data = b''.join(pieces)
        if len(data) != n:
            raise QtestError('qtest: b64read of %d bytes at 0x%x returned %d bytes'
                             % (n, addr, len(data)))
        return data

    def write(self, addr, data):
        """Copy a bytes-like object into memory at addr (b64write, pipelined)."""
        data = memoryview(data).cast('B')
        self._addr(addr, len(data))
        # QEMU rescans its whole input line per 1 KiB it receives: long lines cost O(n^2)
        for offset in range(0, len(data), BULK_CHUNK):
            piece = data[offset:offset + BULK_CHUNK]
            self._post('b64write 0x%x %d %s' % (addr + offset, len(piece),
                                                 base64.b64encode(piece).decode('ascii')),
                       self._in_ram(addr, len(data)))

    def memset(self, addr, n, value=0):
        """Fill n bytes at addr with a byte value (not part of the interface)."""
        if n < 0:
            raise ValueError('memset: negative length %d' % n)
        self._post('memset 0x%x %d 0x%x' % (self._addr(addr, n), n, value & 0xff),
                   self._in_ram(addr, n))

    # -- DMA memory -------------------------------------------------------------------

    def dma_alloc(self, size, align=4096):
        """Physical address of `size` zeroed bytes aligned to `align` (tests/host/models/dma.py:
        the target's rules)."""
        addr = self.dma.alloc(size, align)
        self.memset(addr, size, 0)  # zero explicitly: RAM is fresh, but don't rely on it
        return addr

    def dma_free(self, addr):
        """Give a block from dma_alloc back (ValueError if it is not one in use)."""
        self.dma.free(addr)

    # -- ordering and time --------------------------------------------------------------

    def barrier(self):
        """No-op: qtest executes commands strictly in order, one at a time."""

    def ticks_ms(self):
        return (time.monotonic_ns() // 1000000) & (TICKS_PERIOD - 1)

    def ticks_us(self):
        return (time.monotonic_ns() // 1000) & (TICKS_PERIOD - 1)

    def ticks_diff(self, new, old):
        return ((new - old + TICKS_HALF) & (TICKS_PERIOD - 1)) - TICKS_HALF


try:
    import pytest
except ImportError:                     # usable without pytest (e.g. the benchmark below)
    pytest = None

if pytest is not None:
    @pytest.fixture
    def qtest_factory():
        """Start QtestMachines with start(args, machine=...); all killed at teardown.

        Import it into a test module to use it: `from tests.host.qtest import qtest_factory`.
        """
        if not qemu_available():
            pytest.skip('%s is not installed' % QEMU)
        machines = []

        def start(*args, **kwargs):
            m = QtestMachine(*args, **kwargs)
            machines.append(m)
            return m
        yield start
        for m in machines:
            m.close()


def _bench(rounds=2000):
    """Measure the costs quoted in the report: start, round trip, pipelined write, bulk."""
    def median_us(fn, n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e6)
        times.sort()
        return times[len(times) // 2]
    starts = []
    for _ in range(5):
        t = time.perf_counter()
        m = QtestMachine()
        starts.append((time.perf_counter() - t) * 1e3)
        m.close()
    starts.sort()
    print('start to first reply: %.1f ms (median of 5)' % starts[2])
    with QtestMachine() as hw:
        a = hw.dma_alloc(1 << 20)
        print('round trip (inl 0xcfc): %.1f us' % median_us(lambda: hw.inl(0xcfc), rounds))
        print('round trip (read32): %.1f us' % median_us(lambda: hw.read32(a), rounds))

        def posted(write):
            def run():
                for _ in range(100):
                    write()
                hw.sync()
            return median_us(run, 50) / 100
        print('held RAM write32: %.1f us each' % posted(lambda: hw.write32(a, 1)))
        print('posted port write: %.1f us each' % posted(lambda: hw.outl(0xcf8, 0x80000000)))
        print('config read (outl+inl): %.1f us'
              % median_us(lambda: (hw.outl(0xcf8, 0x80000000), hw.inl(0xcfc)), rounds))
        for size in (512, 4096, 65536, 1 << 20):
            print('read %7d bytes: %8.1f us' % (size, median_us(lambda: hw.read(a, size), 50)))
            data = bytes(size)
            print('write %6d bytes: %8.1f us'
                  % (size, median_us(lambda: (hw.write(a, data), hw.sync()), 50)))


if __name__ == '__main__':
    _bench()
