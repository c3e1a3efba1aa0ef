"""The vhost-user message layer (QEMU docs/interop/vhost-user.rst,
"Message Specification"): a 12-byte header, a payload, and file descriptors
passed alongside as SCM_RIGHTS ancillary data on the Unix socket.

    header: u32 request | u32 flags | u32 size, then `size` payload bytes

Flags: bits 0-1 the protocol version (1), bit 2 REPLY (set on every answer
from the back-end), bit 3 NEED_REPLY (the front-end wants an ack, when
VHOST_USER_PROTOCOL_F_REPLY_ACK was negotiated).
"""

import array
import os
import socket
import struct

HEADER = struct.Struct('<III')
VERSION = 0x1
VERSION_MASK = 0x3
FLAG_REPLY = 1 << 2
FLAG_NEED_REPLY = 1 << 3
MAX_FDS = 8                    # VHOST_MEMORY_BASELINE_NREGIONS: fds per message
MAX_PAYLOAD = 4096             # nothing we understand is larger (mem table: 8 x 32 + 8)

# Front-end message types ("Front-end message types").
GET_FEATURES = 1
SET_FEATURES = 2
SET_OWNER = 3
RESET_OWNER = 4
SET_MEM_TABLE = 5
SET_LOG_BASE = 6
SET_LOG_FD = 7
SET_VRING_NUM = 8
SET_VRING_ADDR = 9
SET_VRING_BASE = 10
GET_VRING_BASE = 11
SET_VRING_KICK = 12
SET_VRING_CALL = 13
SET_VRING_ERR = 14
GET_PROTOCOL_FEATURES = 15
SET_PROTOCOL_FEATURES = 16
GET_QUEUE_NUM = 17
SET_VRING_ENABLE = 18
SEND_RARP = 19
NET_SET_MTU = 20
SET_BACKEND_REQ_FD = 21
IOTLB_MSG = 22
SET_VRING_ENDIAN = 23
GET_CONFIG = 24
SET_CONFIG = 25
GET_INFLIGHT_FD = 31
SET_INFLIGHT_FD = 32
RESET_DEVICE = 34
VRING_KICK = 35
GET_MAX_MEM_SLOTS = 36
ADD_MEM_REG = 37
REM_MEM_REG = 38
SET_STATUS = 39
GET_STATUS = 40

NAMES = {v: k for k, v in globals().items()
         if k.isupper() and isinstance(v, int) and k.startswith(('GET_', 'SET_', 'RESET_',
                                                                  'SEND_', 'NET_', 'IOTLB',
                                                                  'VRING_', 'ADD_', 'REM_'))}

# Protocol feature bits ("Protocol features").
PROTOCOL_F_MQ = 0
PROTOCOL_F_LOG_SHMFD = 1
PROTOCOL_F_RARP = 2
PROTOCOL_F_REPLY_ACK = 3
PROTOCOL_F_MTU = 4
PROTOCOL_F_BACKEND_REQ = 5
PROTOCOL_F_CROSS_ENDIAN = 6
PROTOCOL_F_CRYPTO_SESSION = 7
PROTOCOL_F_PAGEFAULT = 8
PROTOCOL_F_CONFIG = 9
PROTOCOL_F_BACKEND_SEND_FD = 10
PROTOCOL_F_HOST_NOTIFIER = 11
PROTOCOL_F_INFLIGHT_SHMFD = 12
PROTOCOL_F_RESET_DEVICE = 13
PROTOCOL_F_INBAND_NOTIFICATIONS = 14
PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15
PROTOCOL_F_STATUS = 16

# The virtio feature bit that says "GET_PROTOCOL_FEATURES works", and the one
# that turns dirty-page logging on and off (migration; never offered here).
F_PROTOCOL_FEATURES = 30
F_LOG_ALL = 26

# Payload layouts.
U64 = struct.Struct('<Q')
VRING_STATE = struct.Struct('<II')             # index, num
VRING_ADDR = struct.Struct('<IIQQQQ')          # index, flags, desc, used, avail, log
MEM_HEADER = struct.Struct('<II')              # nregions, padding
MEM_REGION = struct.Struct('<QQQQ')            # gpa, size, user addr, mmap offset
CONFIG_HEADER = struct.Struct('<III')          # offset, size, flags
VRING_INDEX_MASK = 0xFF                        # SET_VRING_KICK/CALL/ERR: bits 0-7
VRING_NOFD_MASK = 1 << 8                       # ... bit 8: no fd (polling)


class ProtocolError(Exception):
    """The front-end sent something the protocol (or this back-end) does not
    allow; the message says what and which request."""


class Message:
    """One vhost-user message: request type, flags, payload bytes, fds."""

    __slots__ = ('request', 'flags', 'payload', 'fds')

    def __init__(self, request, payload=b'', flags=VERSION, fds=()):
        self.request = request
        self.flags = flags
        self.payload = payload
        self.fds = list(fds)

    @property
    def name(self):
        return NAMES.get(self.request, 'request %d' % self.request)

    @property
    def need_reply(self):
        return bool(self.flags & FLAG_NEED_REPLY)

    def u64(self):
        self.expect_size(U64.size)
        return U64.unpack(self.payload)[0]

    def expect_size(self, n, at_least=False):
        got = len(self.payload)
        if got < n if at_least else got != n:
            raise ProtocolError('%s: payload of %d bytes, expected %s%d'
                                % (self.name, got, 'at least ' if at_least else '', n))

    def expect_fds(self, n):
        if len(self.fds) != n:
            raise ProtocolError('%s: %d file descriptors, expected %d'
                                % (self.name, len(self.fds), n))

    def close_fds(self):
        """Close the fds nobody took (a message refused or not understood)."""
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def encode(self):
        return HEADER.pack(self.request, self.flags, len(self.payload)) + self.payload

    def __repr__(self):
        return '<%s flags=0x%x %d bytes %d fds>' % (self.name, self.flags,
                                                    len(self.payload), len(self.fds))


def _recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError('front-end closed the connection in the middle of a message')
        out += chunk
    return bytes(out)


def receive(sock):
    """Read one message (None when the front-end closed the connection
    between messages). The fds arrive with the header's bytes."""
    fds = array.array('i')
    data, anc, _flags, _addr = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
    if not data:
        return None
    if len(data) < HEADER.size:
        data += _recv_exact(sock, HEADER.size - len(data))
    request, flags, size = HEADER.unpack(data)
    msg = Message(request, b'', flags, fds)
    if flags & VERSION_MASK != VERSION:
        msg.close_fds()
        raise ProtocolError('%s: protocol version %d, this back-end speaks %d'
                            % (msg.name, flags & VERSION_MASK, VERSION))
    if size > MAX_PAYLOAD:
        msg.close_fds()
        raise ProtocolError('%s: payload of %d bytes is above the %d this back-end accepts'
                            % (msg.name, size, MAX_PAYLOAD))
    msg.payload = _recv_exact(sock, size) if size else b''
    return msg


def reply(sock, request, payload):
    """Send the back-end's answer to `request` (REPLY flag set)."""
    sock.sendall(Message(request, payload, VERSION | FLAG_REPLY).encode())


def ack(sock, request, ok=True):
    """The REPLY_ACK answer: u64 0 for success, non-zero for failure."""
    reply(sock, request, U64.pack(0 if ok else 1))
