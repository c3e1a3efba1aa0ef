"""One QEMU for a bench run: the flags both guests share, and its serial line as a stream.

Both guests get the same machine (MACHINE_FLAGS + devices()), so the only difference is
the guest. The serial port is QEMU's stdio; a reader thread stamps every chunk with the
host's monotonic clock, measured from just before QEMU was started, so "QEMU start to
marker" is read off the stream. Every QEMU is killed by its PID when the run ends.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time

QEMU = os.environ.get('BENCH_QEMU', 'qemu-system-x86_64')

MACHINE_FLAGS = ['-accel', 'tcg', '-machine', 'pc', '-m', '512M', '-nodefaults',
                 '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
                 '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04']

UDP_GUEST_PORT = 7

# QEMU's microvm: no PCI, the devices are virtio-mmio windows (version 1, QEMU's
# default). acpi=off makes QEMU list them on the kernel command line
# (virtio_mmio.device=512@0x...:irq), which both guests read.
MICROVM = 'microvm'
# The pc machine with blk and net started packed=on (packed virtqueues, spec 2.8).
PC_PACKED = 'pc-packed'


def machine_flags(machine='pc'):
    """MACHINE_FLAGS, on another machine ('pc', PC_PACKED or MICROVM)."""
    if machine in ('pc', PC_PACKED):
        return list(MACHINE_FLAGS)
    i = MACHINE_FLAGS.index('-machine')
    return MACHINE_FLAGS[:i + 1] + [MICROVM + ',acpi=off'] + MACHINE_FLAGS[i + 2:]


def devices(disk, udp_host_port, machine='pc', fs_disk=None, tcp_fwd=None):
    """The four virtio devices, the same for both guests (net's iPXE ROM is left out);
    virtio-mmio ones (-device virtio-*-device) on microvm; with fs_disk, a second
    virtio-blk disk for the file workloads (FAT, made on the host). tcp_fwd: {host
    port: guest port} forwarded too (the TCP workloads)."""
    bus, rom = ('device', '') if machine == MICROVM else ('pci', ',romfile=')
    packed = ',packed=on' if machine == PC_PACKED else ''
    fs = ['-drive', 'file=%s,format=raw,if=none,id=disk1' % fs_disk,
          '-device', 'virtio-blk-%s,drive=disk1,serial=benchfs' % bus] if fs_disk else []
    fwd = ''.join([',hostfwd=tcp:127.0.0.1:%d-:%d' % (h, g)
                   for h, g in sorted((tcp_fwd or {}).items())])
    return ['-drive', 'file=%s,format=raw,if=none,id=disk0' % disk,
            '-device', 'virtio-blk-%s,drive=disk0,serial=benchdisk%s' % (bus, packed)] + fs + [
            '-netdev', 'user,id=net0,hostfwd=udp:127.0.0.1:%d-:%d%s' % (
                udp_host_port, UDP_GUEST_PORT, fwd),
            '-device', 'virtio-net-%s,netdev=net0%s%s' % (bus, rom, packed),
            '-device', 'virtio-serial-%s' % bus,
            '-chardev', 'null,id=vcon0', '-device', 'virtconsole,chardev=vcon0',
            '-device', 'virtio-rng-%s' % bus]


def make_fs_disk(path, size):
    """A fresh FAT disk image (Debian's mtools: mformat, no partition table), or None
    when mformat is missing (the file workloads then say why)."""
    with open(path, 'wb') as f:
        f.truncate(size)
    try:
        subprocess.run(['mformat', '-i', path, '::'], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        os.remove(path)
        return None
    return path


def free_port(kind=socket.SOCK_STREAM):
    """A port nobody uses on 127.0.0.1 now: TCP by default, socket.SOCK_DGRAM for UDP
    (the tests use these too, through tests/ports.py)."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)


def free_tcp_port():
    return free_port(socket.SOCK_STREAM)


def tcp_forwards():
    """{'rx', 'http', 'quit': a free host port each} for the guest ports of tcpclient."""
    return {'rx': free_tcp_port(), 'http': free_tcp_port(), 'quit': free_tcp_port()}


def tcp_fwd_map(ports):
    import tcpclient
    return {ports['rx']: tcpclient.RX_GUEST_PORT, ports['http']: tcpclient.HTTP_GUEST_PORT,
            ports['quit']: tcpclient.QUIT_GUEST_PORT}


class Timeout(Exception):
    pass


class Qemu:
    """A running QEMU; use as a context manager so it is always killed."""

    def __init__(self, args, timeout):
        self.args = [QEMU] + list(args)
        self.timeout = timeout
        self._buf = bytearray()
        self._stamps = []  # (end offset in _buf, host seconds since start)
        self._pos = 0
        self._cond = threading.Condition()
        self._eof = False
        self.proc = None

    def __enter__(self):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.deadline = self.t0 + self.timeout
        threading.Thread(target=self._reader, daemon=True).start()
        self._err = bytearray()
        threading.Thread(target=self._err_reader, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.kill()
        return False

    def kill(self):
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p is not None:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                try:
                    f.close()
                except (OSError, ValueError):
                    pass

    def _reader(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b''
            now = time.monotonic() - self.t0
            with self._cond:
                if not data:
                    self._eof = True
                else:
                    self._buf.extend(data)
                    self._stamps.append((len(self._buf), now))
                self._cond.notify_all()
            if not data:
                return

    def _err_reader(self):
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b''):
            self._err.extend(chunk)

    @property
    def stderr(self):
        return bytes(self._err).decode(errors='replace')

    def _time_at(self, offset):
        for end, t in self._stamps:
            if end >= offset:
                return t
        return time.monotonic() - self.t0

    def expect(self, pattern, timeout=None):
        """Wait for a regex (bytes) after the last match; return (match, seconds since start).

        The time is when the chunk holding the match's end arrived.
        """
        rx = re.compile(pattern)
        end_at = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        with self._cond:
            while True:
                m = rx.search(self._buf, self._pos)
                if m:
                    self._pos = m.end()
                    return m, self._time_at(m.end())
                left = end_at - time.monotonic()
                if self._eof or left <= 0:
                    tail = bytes(self._buf[self._pos:][-300:]).decode(errors='replace')
                    why = 'QEMU exited' if self._eof else 'timed out'
                    raise Timeout('%s waiting for %r; last output: %r; stderr: %r'
                                  % (why, pattern, tail, self.stderr[-300:]))
                self._cond.wait(min(left, 0.5))

    def wait_exit(self, timeout=None):
        left = self.deadline - time.monotonic() if timeout is None else timeout
        try:
            return self.proc.wait(timeout=max(0.1, left))
        except subprocess.TimeoutExpired:
            raise Timeout('QEMU did not exit; last output: %r'
                          % bytes(self._buf[-300:]).decode(errors='replace'))

    def output(self):
        with self._cond:
            return bytes(self._buf).decode(errors='replace')

    def send(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()
