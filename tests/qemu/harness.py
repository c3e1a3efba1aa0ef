"""Boot the x86_virt image in QEMU and talk to it: the harness for image tests.

    from tests.qemu.harness import Guest, GuestError

    with Guest(machine='q35', devices=['-device', 'virtio-rng-pci']) as g:
        g.start()                               # boots; waits for the REPL banner
        print(g.exec('print(1 + 1)'))           # '2\\n', over the raw REPL
        g.exec('1/0')                           # raises GuestError (the guest traceback)
        status = g.exec_until_exit('import x86; x86.poweroff(3)')
        assert decode_status(status) == 3

    result = run_script('import sys; sys.exit(4)')      # boot, run to completion
    assert result.code == 4

    with Guest(devices=[...], qmp=True) as g:            # a QMP socket (tests/qemu/qmp.py)
        g.start()
        g.qmp('set_link', name='net0', up=False)        # its 'return', or QmpError

Every QEMU gets `-accel tcg` (unless told otherwise), `-nodefaults`, `-no-reboot`
and the isa-debug-exit device; its serial line is COM1 on QEMU's stdio (pipes), or
a pty (`serial='pty'`, for tools like mpremote, see `Guest.pty`). Every wait has a
timeout; `close()` (also on leaving the `with`) kills QEMU by its PID and removes
the guest's temporary directory.

Exit statuses (README.md, "Exit codes"): `x86.poweroff(0)` -> 0 (ACPI soft-off);
`x86.poweroff(n)`, 1 <= n <= 127 -> (n << 1) | 1 (isa-debug-exit). The image uses
n = 1 for an uncaught Python exception in a script, 126 for a MicroPython fatal
error, 127 for a CPU exception. `decode_status()` turns a status back into n.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.path.join(ROOT, 'build', 'x86_virt', 'firmware.elf')
QEMU = os.environ.get('QEMU', 'qemu-system-i386')

BANNER = b'Type "help()" for more information.\r\n>>> '
RAW_REPL_PROMPT = b'raw REPL; CTRL-B to exit\r\n>'
SOFT_REBOOT = b'soft reboot\r\n'
CTRL_A, CTRL_B, CTRL_C, CTRL_D = b'\x01', b'\x02', b'\x03', b'\x04'

EXIT_PYTHON_EXCEPTION = 1
EXIT_FATAL = 126
EXIT_CPU_EXCEPTION = 127


class GuestTimeout(Exception):
    """The guest did not answer in time. `.output` is everything it printed."""

    def __init__(self, message, output=''):
        Exception.__init__(self, '%s\n--- guest output ---\n%s' % (message, output[-2000:]))
        self.output = output


class GuestExited(Exception):
    """QEMU ended while we waited for an answer. `.status` is its exit status."""

    def __init__(self, status, output=''):
        Exception.__init__(self, 'QEMU exited with status %s (%s)\n--- guest output ---\n%s'
                           % (status, describe_status(status), output[-2000:]))
        self.status = status
        self.output = output


class GuestError(Exception):
    """Code run in the guest raised. `.traceback` is the guest's traceback text,
    `.exc_type` the exception's name (e.g. 'ZeroDivisionError'), `.output` what
    the code printed before it raised."""

    def __init__(self, traceback, output=''):
        Exception.__init__(self, traceback.strip())
        self.traceback = traceback
        self.output = output
        last = traceback.strip().splitlines()[-1] if traceback.strip() else ''
        self.exc_type = last.split(':')[0].strip()


def decode_status(status):
    """QEMU's exit status -> the guest's poweroff code (None: QEMU itself failed
    or was killed; 1 is QEMU's own error status, which the guest never causes)."""
    if status == 0:
        return 0
    if status is not None and status > 1 and status & 1:
        return status >> 1
    return None


def describe_status(status):
    code = decode_status(status)
    if code is None:
        return 'not from the guest'
    return {0: 'poweroff(0)', EXIT_PYTHON_EXCEPTION: 'uncaught Python exception',
            EXIT_FATAL: 'MicroPython fatal error',
            EXIT_CPU_EXCEPTION: 'CPU exception'}.get(code, 'poweroff(%d)' % code)


def make_disk(directory, size, name='disk.img', fill=None):
    """A raw disk image of `size` bytes in `directory` (sparse zeros, or `fill`
    bytes repeated); returns its path. Give each QEMU its own: QEMU locks images."""
    path = os.path.join(directory, name)
    with open(path, 'wb') as f:
        if fill:
            chunk = (bytes(fill) * (65536 // len(fill) + 1))[:65536]
            left = size
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        else:
            f.truncate(size)
    return path


def default_devices(disk, bus='pci', netdev='user,id=net0', chardev='null,id=vcon0'):
    """The devices `make run` gives the guest: virtio blk, net (user), console, rng.
    bus='device' gives the virtio-mmio ones (for -machine microvm)."""
    romfile = ',romfile=' if bus == 'pci' else ''
    return ['-drive', 'file=%s,format=raw,if=none,id=disk0' % disk,
            '-device', 'virtio-blk-%s,drive=disk0' % bus,
            '-netdev', netdev, '-device', 'virtio-net-%s,netdev=net0%s' % (bus, romfile),
            '-device', 'virtio-serial-%s' % bus, '-chardev', chardev,
            '-device', 'virtconsole,chardev=vcon0',
            '-device', 'virtio-rng-%s' % bus]


def mmio_version_args(version):
    """QEMU arguments for virtio-mmio windows of `version`: 1 (legacy, QEMU's
    default) or 2."""
    return [] if version == 1 else ['-global', 'virtio-mmio.force-legacy=false']


class Guest:
    """One QEMU running the image. Use as a context manager (or call close())."""

    def __init__(self, machine='pc', mem=128, devices=(), qemu=None, accel='tcg',
                 image=None, script=None, script_name='script.py', serial='pipe',
                 extra_args=(), boot_timeout=30, qmp=False):
        self.machine = machine
        self.mem = mem
        self.devices = list(devices)
        self.qemu = qemu or QEMU
        self.accel = accel
        self.image = image or IMAGE
        self.script = script
        self.script_name = script_name
        self.serial = serial
        self.extra_args = list(extra_args)
        self.boot_timeout = boot_timeout
        self.tmpdir = tempfile.mkdtemp(prefix='x86virt-')
        self.proc = None
        self.pty = None             # the pty path, with serial='pty'
        self.status = None          # QEMU's exit status, once it has ended
        self._out = bytearray()     # everything read from the serial line
        self._pos = 0               # how far the protocol has consumed _out
        self._err = bytearray()     # QEMU's stderr
        self._cond = threading.Condition()
        self._eof = False
        self._threads = []
        self._raw = False
        self.qmp_path = os.path.join(self.tmpdir, 'qmp.sock') if qmp else None
        self._qmp = None

    # ---- life cycle ------------------------------------------------------

    def command(self):
        """The QEMU command line this guest runs."""
        if not os.path.exists(self.image):
            raise FileNotFoundError('no image at %s: run `make build`' % self.image)
        args = [self.qemu, '-accel', self.accel, '-machine', self.machine, '-m', str(self.mem),
                '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none',
                '-serial', 'stdio' if self.serial == 'pipe' else 'pty',
                '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04',
                '-kernel', self.image]
        if self.script is not None:
            path = os.path.join(self.tmpdir, 'script.py')
            with open(path, 'w') as f:
                f.write(self.script)
            args += ['-fw_cfg', 'name=opt/script,file=%s' % path,
                     '-fw_cfg', 'name=opt/script-name,string=%s' % self.script_name]
        if self.qmp_path is not None:
            args += ['-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]
        return args + self.devices + self.extra_args

    def start(self, wait_banner=True):
        """Start QEMU; by default wait for the REPL banner (not with a script)."""
        args = self.command()
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self._spawn(self._read_stream, self.proc.stdout, self._out, True)
        self._spawn(self._read_stream, self.proc.stderr, self._err, False)
        if self.serial == 'pty':
            self.pty = self._wait_pty()
        elif wait_banner and self.script is None:
            self.read_until(BANNER, self.boot_timeout)
        return self

    def close(self):
        """Kill QEMU (by PID) if it still runs; remove the temporary files."""
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        p = self.proc
        if p is not None:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
            if self.status is None:
                self.status = p.returncode
            for t in self._threads:
                t.join(timeout=5)
            for f in (p.stdin, p.stdout, p.stderr):
                try:
                    f.close()
                except OSError:
                    pass
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def wait(self, timeout=30):
        """Wait for QEMU to end; returns its exit status. GuestTimeout if it does not."""
        try:
            self.status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise GuestTimeout('QEMU still running after %ss' % timeout, self.output)
        for t in self._threads:
            t.join(timeout=5)
        return self.status

    @property
    def output(self):
        """Everything the guest printed so far, as text with \\n line ends."""
        with self._cond:
            data = bytes(self._out)
        return data.decode('utf-8', 'replace').replace('\r\n', '\n')

    @property
    def stderr(self):
        with self._cond:
            return bytes(self._err).decode('utf-8', 'replace')

    def qmp(self, command, /, **args):
        """Run a QMP command on this QEMU (started with qmp=True): its 'return'
        value; tests.qemu.qmp.QmpError with QEMU's error."""
        if self.qmp_path is None:
            raise RuntimeError('this Guest has no QMP socket: Guest(..., qmp=True)')
        if self._qmp is None:
            from tests.qemu.qmp import Qmp
            self._qmp = Qmp(self.qmp_path)
        return self._qmp.command(command, **args)

    # ---- the serial line -------------------------------------------------

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _read_stream(self, stream, buf, is_serial):
        fd = stream.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b''
            with self._cond:
                if data:
                    buf += data
                elif is_serial:
                    self._eof = True
                self._cond.notify_all()
            if not data:
                return

    def _wait_pty(self):
        deadline = time.monotonic() + self.boot_timeout
        pattern = re.compile(rb'char device redirected to (/dev/pts/\d+)')
        with self._cond:
            while True:
                m = pattern.search(self._err) or pattern.search(self._out)
                if m:
                    return m.group(1).decode()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise GuestTimeout('QEMU gave no pty: %s' % bytes(self._err).decode(), '')
                self._cond.wait(0.1)

    def write(self, data):
        """Send bytes to the guest's console."""
        if isinstance(data, str):
            data = data.encode()
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise GuestExited(self.proc.wait(5), self.output)

    def read_until(self, token, timeout=10):
        """Wait until `token` (bytes) arrives; returns the bytes up to and
        including it, consumed. GuestExited if QEMU ends, GuestTimeout if late."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                i = self._out.find(token, self._pos)
                if i >= 0:
                    end = i + len(token)
                    data = bytes(self._out[self._pos:end])
                    self._pos = end
                    return data
                if self._eof:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GuestTimeout('no %r from the guest within %ss' % (token, timeout),
                                       bytes(self._out).decode('utf-8', 'replace'))
                self._cond.wait(min(left, 0.5))
        raise GuestExited(self.proc.wait(5), self.output)

    # ---- the raw REPL ----------------------------------------------------

    def enter_raw_repl(self, soft_reset=False, timeout=10):
        """Switch the guest's REPL to raw mode (Ctrl-A); optionally soft reset."""
        self.write(b'\r' + CTRL_C + CTRL_C)
        self.write(b'\r' + CTRL_A)
        self.read_until(RAW_REPL_PROMPT, timeout)
        if soft_reset:
            self.write(CTRL_D)
            self.read_until(SOFT_REBOOT, timeout)
            self.read_until(RAW_REPL_PROMPT, timeout)
        self._raw = True

    def exit_raw_repl(self):
        """Back to the friendly REPL (Ctrl-B), if in the raw REPL."""
        if not self._raw:
            return
        self.write(b'\r' + CTRL_B)
        self.read_until(b'>>> ')
        self._raw = False

    def _send_code(self, code):
        if not self._raw:
            self.enter_raw_repl()
        if isinstance(code, str):
            code = code.encode()
        if not code.strip():
            code = b'pass'
        self.write(code + CTRL_D)

    def exec(self, code, timeout=10):
        """Run `code` in the guest (raw REPL); returns what it printed (\\n line
        ends). Raises GuestError with the guest's traceback if it raised."""
        self._send_code(code)
        self.read_until(b'OK', timeout)
        try:
            out = self.read_until(CTRL_D, timeout)[:-1]
            err = self.read_until(CTRL_D, timeout)[:-1]
            self.read_until(b'>', timeout)
        except GuestTimeout:
            self._interrupt()
            raise
        out = out.decode('utf-8', 'replace').replace('\r\n', '\n')
        err = err.decode('utf-8', 'replace').replace('\r\n', '\n')
        if err:
            raise GuestError(err, out)
        return out

    def interrupt_after(self, code, delay, timeout=10):
        """Start `code` in the raw REPL and send Ctrl-C `delay` seconds later, as
        a user would; returns the traceback it ended with ('' if it had ended)."""
        self._send_code(code)
        self.read_until(b'OK', timeout)
        time.sleep(delay)
        self.write(CTRL_C)
        self.read_until(CTRL_D, timeout)
        err = self.read_until(CTRL_D, timeout)[:-1]
        self.read_until(b'>', timeout)
        return err.decode('utf-8', 'replace')

    def eval(self, expr, timeout=10):
        """The repr() of a Python expression evaluated in the guest, parsed back
        on the host with ast.literal_eval (ints, floats, str, bytes, tuples...)."""
        import ast
        return ast.literal_eval(self.exec('print(repr((%s)))' % expr, timeout).strip())

    def exec_until_exit(self, code, timeout=10):
        """Run `code` that ends the machine (poweroff, a crash); returns QEMU's
        exit status."""
        self._send_code(code)
        return self.wait(timeout)

    def _interrupt(self):
        # Best effort after a timeout: Ctrl-C, then wait for the prompt.
        try:
            self.write(CTRL_C)
            self.read_until(CTRL_D + CTRL_D + b'>', 2)
        except (GuestTimeout, GuestExited):
            pass


class Result:
    """How a script run ended: QEMU's `status`, the guest's `code`, the `output`."""

    def __init__(self, status, output):
        self.status = status
        self.code = decode_status(status)
        self.output = output

    def __repr__(self):
        return 'Result(status=%r, code=%r)' % (self.status, self.code)


def run_script(source, timeout=30, **guest_args):
    """Boot the image with `source` as its script (fw_cfg, like `make run SCRIPT=`),
    wait for the machine to power off, return a Result."""
    with Guest(script=source, **guest_args) as g:
        g.start()
        status = g.wait(timeout)
        return Result(status, g.output)
