"""The back-end's event loop: listen on a Unix socket, take the front-end's
connection, and wait with `selectors` on two kinds of fd at once: the
socket (vhost-user messages) and each started ring's kick eventfd (the
driver notified the queue). One connection; when the front-end goes away
the session ends and serve() returns.
"""

import os
import selectors
import socket
import sys

from vhost import message as m
from vhost.message import ProtocolError
from vhost.session import Session


def log_to_stderr(prefix):
    def log(msg):
        sys.stderr.write('%s: %s\n' % (prefix, msg))
        sys.stderr.flush()
    return log


def listen(path):
    """A listening Unix socket at `path` (a stale socket file is replaced)."""
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1)
    return sock


CONTROL = 'control'


class Server:
    def __init__(self, device, path, log=None, control=None, verbose=False):
        self.verbose = verbose
        self.device = device
        self.path = path
        self.log = log or log_to_stderr('vhost %s' % device.NAME)
        self.sel = selectors.DefaultSelector()
        self.conn = None
        self.session = None
        self.errors = []        # ProtocolErrors seen (the front-end misbehaved)
        self.control = None
        if control:
            # Tests switch misbehaviours on and off while the guest runs.
            self.control = listen(control)
            self.control_path = control
            self.sel.register(self.control, selectors.EVENT_READ, CONTROL)
        self.listener = listen(path)     # last: its file says "ready"

    def serve(self, on_listen=None):
        """Accept one front-end and serve it until it disconnects."""
        if on_listen:
            on_listen()
        self.conn, _ = self.listener.accept()
        self.listener.close()
        self.session = Session(self.device, self.log)
        self.session.trace = self.verbose
        self.session.watch = self._watch
        self.sel.register(self.conn, selectors.EVENT_READ, None)
        try:
            while self._step():
                pass
        finally:
            self.close()

    def _watch(self, vring, fd):
        # The session starts or stops watching a ring's kick eventfd.
        key = getattr(vring, '_watched', None)
        if key is not None:
            try:
                self.sel.unregister(key)
            except (KeyError, ValueError):
                pass
            vring._watched = None
        if fd is not None:
            self.sel.register(fd, selectors.EVENT_READ, vring)
            vring._watched = fd

    def _step(self):
        for key, _ in self.sel.select():
            if key.data == CONTROL:
                self._command()
            elif key.data is None:
                if not self._message():
                    return False
            elif key.data.kick == key.fd:
                self.session.kicked(key.data)
        return True

    def _message(self):
        try:
            msg = m.receive(self.conn)
        except ProtocolError as e:
            self._refuse(None, e)
            return False
        except (EOFError, ConnectionResetError):
            self.log('front-end disconnected in mid-message')
            return False
        if msg is None:
            self.log('front-end disconnected')
            return False
        if self.verbose:
            self.log('<- %r %s' % (msg, msg.payload[:48].hex()))
        try:
            payload = self.session.handle(msg)
        except (ProtocolError, ValueError) as e:
            return self._refuse(msg, e)
        if payload is not None:
            m.reply(self.conn, msg.request, payload)
        elif msg.need_reply and self.session.reply_ack():
            m.ack(self.conn, msg.request, True)
        return True

    def _command(self):
        """One line on the control socket: 'misbehave NAME [AFTER]' or
        'misbehave none' (answers 'ok' or 'error: ...'), or 'stats' (answers
        'served N busy_ns T': requests completed, time spent serving)."""
        conn, _ = self.control.accept()
        with conn:
            conn.settimeout(5)
            words = conn.recv(256).decode('ascii', 'replace').split()
            if words == ['stats']:
                s = self.session
                conn.sendall(b'served %d busy_ns %d\n' % (s.served, s.busy_ns))
                return
            try:
                if len(words) not in (2, 3) or words[0] != 'misbehave':
                    raise ValueError('commands: misbehave NAME [AFTER] | misbehave none')
                name = None if words[1] == 'none' else words[1]
                self.device.set_misbehave(name, int(words[2]) if len(words) == 3 else 0)
                self.log('misbehaviour: %s' % name)
                conn.sendall(b'ok\n')
            except ValueError as e:
                conn.sendall(b'error: %s\n' % str(e).encode())

    def _refuse(self, msg, err):
        """The front-end sent something we cannot accept: say so. If it waits
        for an ack, a failing one; if it waits for data, we have none to
        give, so the connection ends."""
        self.errors.append(str(err))
        self.log('front-end error: %s' % err)
        if msg is None:
            return False
        if msg.need_reply and self.session.reply_ack() and not msg.name.startswith('GET_'):
            m.ack(self.conn, msg.request, False)
            return True
        return not msg.name.startswith('GET_')

    def close(self):
        if self.session is not None:
            self.session.close()
        for s in (self.conn, self.listener, self.control):
            if s is not None:
                s.close()
        self.sel.close()
        for path in (self.path, self.control and self.control_path):
            try:
                os.unlink(path)
            except (FileNotFoundError, TypeError):
                pass
