"""A small QMP client (QEMU Machine Protocol: docs/interop/qmp-spec in QEMU): JSON
objects, one per line, over the unix socket QEMU serves with
`-qmp unix:PATH,server=on,wait=off`.

    q = Qmp(path)                     # connects, reads the greeting, qmp_capabilities
    q.command('set_link', name='net0', up=False)     # its 'return' value
    q.command('nope')                 # raises QmpError('CommandNotFound: ...')
    q.events                          # asynchronous events seen so far (dicts)
    q.close()

Every read has a timeout: QEMU that stops answering gives QmpTimeout, never a hang.
"""
import json
import socket
import time


class QmpError(Exception):
    """QEMU answered with an error: `.cls` is its class (e.g. 'GenericError'),
    `.desc` its description."""

    def __init__(self, command, error):
        self.cls = error.get('class', '?')
        self.desc = error.get('desc', '')
        Exception.__init__(self, '%s: %s: %s' % (command, self.cls, self.desc))


class QmpTimeout(Exception):
    pass


class Qmp:
    def __init__(self, path, timeout=10):
        self.timeout = timeout
        self.events = []
        self._buf = b''
        self._sock = self._connect(path, timeout)
        greeting = self._read()
        if 'QMP' not in greeting:
            raise QmpError('greeting', {'class': 'Protocol', 'desc': repr(greeting)})
        self.command('qmp_capabilities')

    @staticmethod
    def _connect(path, timeout):
        # QEMU creates the socket while it starts: try until it is there.
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise QmpTimeout('no QMP socket at %s after %ss' % (path, timeout))
                time.sleep(0.05)

    def _read(self):
        """The next JSON object QEMU sends."""
        deadline = time.monotonic() + self.timeout
        while b'\n' not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpTimeout('QMP: no answer within %ss' % self.timeout)
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise QmpTimeout('QMP: QEMU closed the socket')
            self._buf += data
        line, self._buf = self._buf.split(b'\n', 1)
        return json.loads(line)

    def command(self, name, /, **args):
        """Run one command; its 'return' value, or QmpError with QEMU's error."""
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self._sock.sendall(json.dumps(msg).encode() + b'\n')
        while True:
            reply = self._read()
            if 'event' in reply:
                self.events.append(reply)
            elif 'error' in reply:
                raise QmpError(name, reply['error'])
            elif 'return' in reply:
                return reply['return']

    def close(self):
        try:
            self._sock.close()
        except OSError:
            pass
