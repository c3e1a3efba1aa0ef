"""Start a back-end process and tell QEMU to use it; stop it whatever
happened. Used by tools/vhost-run.py (`make run VHOST=...`), the tests and
the bench.

    with Backend('rng', ['--seed', '7']) as be:
        qemu_cmd += memory_args(128) + be.qemu_args()
        ...
    # the process is gone and its socket removed, whatever failed

QEMU and the back-end share guest memory: QEMU must back its RAM with a
shareable fd (memory_args), whose size equals -m.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QEMU_DEVICES = {'rng': 'vhost-user-rng-pci', 'blk': 'vhost-user-blk-pci',
                'net': 'virtio-net-pci'}     # net: behind -netdev vhost-user
START_TIMEOUT = 10.0


class BackendError(Exception):
    """The back-end did not start (its log says why)."""


def memory_args(mem_mb, mem_id='vhostmem'):
    """QEMU arguments that put guest RAM in a shared memfd the back-end can map."""
    return ['-object', 'memory-backend-memfd,id=%s,size=%dM,share=on' % (mem_id, mem_mb),
            '-machine', 'memory-backend=%s' % mem_id]


class Backend:
    """One `python -m vhost DEVICE` process on a socket in a private
    temporary directory. The process runs in its own session, so a Ctrl-C
    meant for QEMU does not reach it; close() kills it by its PID."""

    def __init__(self, device, args=(), python=None, chardev='vhost0', device_props=''):
        if device not in QEMU_DEVICES:
            raise ValueError('no vhost-user device %r (%s)' % (device, ', '.join(QEMU_DEVICES)))
        self.device = device
        self.args = list(args)
        self.python = python or sys.executable
        self.chardev = chardev
        self.device_props = device_props
        self.dir = tempfile.mkdtemp(prefix='vhost-')
        self.socket = os.path.join(self.dir, '%s.sock' % device)
        self.log_path = os.path.join(self.dir, 'backend.log')
        self.control = os.path.join(self.dir, 'control.sock')
        self.proc = None
        self.log = ''

    def command(self):
        return [self.python, '-m', 'vhost', self.device, '--socket', self.socket,
                '--control', self.control] + self.args

    def start(self):
        with open(self.log_path, 'wb') as log:
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BackendError('vhost %s back-end did not start (status %s): %s'
                                   % (self.device, self.proc.returncode, self.log.strip()))
            time.sleep(0.02)
        return self

    def _control(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.control)
            s.sendall(line.encode() + b'\n')
            return s.recv(256).decode().strip()

    def stats(self):
        """(requests served, seconds spent serving them) so far."""
        words = self._control('stats').split()
        return int(words[1]), int(words[3]) / 1e9

    def misbehave(self, name, after=0):
        """Switch the running device's misbehaviour (None: behave)."""
        answer = self._control('misbehave %s %d' % (name or 'none', after))
        if answer != 'ok':
            raise BackendError('vhost %s: misbehave %s: %s' % (self.device, name, answer))

    def qemu_args(self):
        """The chardev and device arguments that connect QEMU to us."""
        chardev = ['-chardev', 'socket,id=%s,path=%s' % (self.chardev, self.socket)]
        if self.device == 'net':
            netdev = self.chardev + 'net'
            chardev += ['-netdev', 'vhost-user,id=%s,chardev=%s' % (netdev, self.chardev)]
            dev = '%s,netdev=%s,romfile=' % (QEMU_DEVICES[self.device], netdev)
        else:
            dev = '%s,chardev=%s' % (QEMU_DEVICES[self.device], self.chardev)
        if self.device_props:
            dev += ',' + self.device_props
        return chardev + ['-device', dev]

    def read_log(self):
        try:
            with open(self.log_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except FileNotFoundError:
            return self.log

    def wait(self, timeout):
        """Wait for the back-end to end by itself (QEMU disconnected)."""
        return self.proc.wait(timeout)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def close(self):
        """Stop the process (SIGTERM, then SIGKILL) and remove its files."""
        p = self.proc
        if p is not None and p.poll() is None:
            for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    pass
        if p is not None:
            p.wait()
        self.log = self.read_log()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False
