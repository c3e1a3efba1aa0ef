# A tiny DNS client (RFC 1035): one A-record question (section 4.1) over UDP to the
# server DHCP gave, recursion desired; the first A record of the answer section wins.
# Names in answers may be compressed (section 4.1.4): they are skipped, not expanded.

import struct

PORT = 53
TYPE_A = 1
CLASS_IN = 1
FLAG_QR = 0x8000             # a response
FLAG_RD = 0x0100             # recursion desired
RCODE_MASK = 0x000F
TIMEOUT_MS = 2000            # per try
TRIES = 3
EAI_NONAME = -2              # getaddrinfo's "name not known" (glibc's value)
ETIMEDOUT = 110

_ident = [0x1d00]


def question(ident, name):
    """The query message for name's A record."""
    out = bytearray(struct.pack(">HHHHHH", ident, FLAG_RD, 1, 0, 0, 0))
    for label in name.rstrip(".").split("."):
        b = label.encode()
        if not 0 < len(b) < 64:
            raise ValueError("bad host name %r" % (name,))
        out.append(len(b))
        out += b
    out += b"\x00" + struct.pack(">HH", TYPE_A, CLASS_IN)
    return bytes(out)


def _skip_name(msg, i):
    """Offset after the (possibly compressed) name at msg[i:]; ValueError if malformed."""
    while True:
        if i >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        if n & 0xC0:
            raise ValueError("bad label type")
        i += 1 + n


def answer(msg, ident):
    """-> (rcode, 4-byte address or None) from a response to query ident; ValueError for a
    message that is not one, or malformed."""
    if len(msg) < 12:
        raise ValueError("short message")
    rid, flags, qd, an, _, _ = struct.unpack_from(">HHHHHH", msg, 0)
    if rid != ident or not flags & FLAG_QR:
        raise ValueError("not our answer")
    if flags & RCODE_MASK:
        return flags & RCODE_MASK, None
    i = 12
    for _ in range(qd):
        i = _skip_name(msg, i) + 4
    for _ in range(an):
        i = _skip_name(msg, i)
        if i + 10 > len(msg):
            raise ValueError("record runs past the message")
        rtype, rclass, _, rdlen = struct.unpack_from(">HHIH", msg, i)
        i += 10
        if i + rdlen > len(msg):
            raise ValueError("record data runs past the message")
        if rtype == TYPE_A and rclass == CLASS_IN and rdlen == 4:
            return 0, bytes(msg[i:i + 4])
        i += rdlen
    return 0, None


def resolve(stack, name, timeout_ms=TIMEOUT_MS, tries=TRIES):
    """name's IPv4 address (4 bytes), asked of the stack's first DNS server. Raises
    OSError(EAI_NONAME) when the server knows no such name, OSError(ETIMEDOUT) when it
    does not answer."""
    if not stack.dns:
        raise OSError(EAI_NONAME, "no DNS server configured to look up %r" % (name,))
    server = stack.dns[0]
    _ident[0] = (_ident[0] + 1) & 0xFFFF
    ident = _ident[0]
    msg = question(ident, name)
    sock = stack.socket(0)
    try:
        for _ in range(tries):
            sock.sendto(msg, (server, PORT))
            clock = stack.clock
            start = clock.ticks_ms()
            left = timeout_ms
            while left > 0:
                got = sock.recvfrom(left)
                left = timeout_ms - clock.ticks_diff(clock.ticks_ms(), start)
                if got is None:
                    break
                try:
                    rcode, addr = answer(got[0], ident)
                except ValueError:
                    continue                  # stray or malformed: keep waiting
                if addr is None:
                    raise OSError(EAI_NONAME, "DNS: no address for %r (rcode %d)"
                                  % (name, rcode))
                return addr
    finally:
        sock.close()
    raise OSError(ETIMEDOUT, "DNS: no answer from the server for %r" % (name,))
