# TCP segments (RFC 9293 section 3.1): the header format, the MSS option, the checksum
# over the pseudo-header, sequence-number arithmetic modulo 2**32 (section 3.4), and a
# byte queue for the send and receive buffers. The state machine is in tcb.py, the
# demultiplexing and timers in tcp.py.

import struct

HEADER_LEN = 20
HEADER_FORMAT = ">HHIIBBHHH"      # ports, seq, ack, data offset, flags, window, checksum, urgent
MAX_HEADER = 60                   # data offset 15

# Control bits (section 3.1)
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20

# Options (section 3.2)
OPT_END = 0
OPT_NOP = 1
OPT_MSS = 2
MSS_OPTION_LEN = 4
DEFAULT_MSS = 536                 # when the peer sends no MSS option (section 3.7.1)

SEQ_MOD = 0x100000000
SEQ_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def seq_add(a, n):
    return (a + n) & SEQ_MASK


def seq_diff(a, b):
    """a - b as a signed distance (a is |result| bytes after or before b), valid while the
    two are less than 2**31 apart: comparison across the wrap (section 3.4)."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d >= _HALF else d


def seq_lt(a, b):
    return seq_diff(a, b) < 0


def seq_le(a, b):
    return seq_diff(a, b) <= 0


def flag_names(flags):
    names = []
    for bit, name in ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"),
                      (URG, "URG")):
        if flags & bit:
            names.append(name)
    return "|".join(names) or "-"


class Segment:
    """A received segment's fields, parsed and checked by parse()."""

    def __init__(self, sport, dport, seq, ack, flags, wnd, mss, data):
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.wnd = wnd
        self.mss = mss              # the MSS option's value, or None
        self.data = data            # memoryview of the payload

    def seg_len(self):
        """SEG.LEN: data bytes plus one for SYN and one for FIN."""
        n = len(self.data)
        if self.flags & SYN:
            n += 1
        if self.flags & FIN:
            n += 1
        return n

    def __repr__(self):
        return "<tcp %d->%d %s seq %d ack %d wnd %d len %d>" % (
            self.sport, self.dport, flag_names(self.flags), self.seq, self.ack, self.wnd,
            len(self.data))


def parse(frame, start, end):
    """Check the segment at frame[start:end] (its checksum already verified).
    -> (None, Segment), or (drop reason, None) for a malformed one."""
    n = end - start
    if n < HEADER_LEN:
        return "truncated", None
    sport, dport, seq, ack, off, flags, wnd, _, _ = struct.unpack_from(HEADER_FORMAT, frame,
                                                                      start)
    hlen = (off >> 4) * 4
    if hlen < HEADER_LEN or hlen > n:
        return "bad_offset", None
    if sport == 0 or dport == 0:
        return "bad_port", None
    mss = None
    i = start + HEADER_LEN
    opt_end = start + hlen
    while i < opt_end:
        kind = frame[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= opt_end:
            return "bad_options", None
        olen = frame[i + 1]
        if olen < 2 or i + olen > opt_end:
            return "bad_options", None      # an option running past the header
        if kind == OPT_MSS:
            if olen != MSS_OPTION_LEN:
                return "bad_options", None
            mss = (frame[i + 2] << 8) | frame[i + 3]
        i += olen
    return None, Segment(sport, dport, seq, ack, flags & 0x3F, wnd, mss,
                         memoryview(frame)[start + hlen:end])


class ByteQueue:
    """A FIFO of bytes in one preallocated bytearray: appended at the end, consumed from
    the front, compacted (moved to the front) when the end runs out of room."""

    def __init__(self, capacity):
        self.buf = bytearray(capacity)
        self.mv = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def __len__(self):
        return self.end - self.start

    def free(self):
        return len(self.buf) - (self.end - self.start)

    def append(self, data, limit=None):
        """Copy as much of data as fits (at most limit bytes). -> bytes taken."""
        n = len(data)
        room = len(self.buf) - (self.end - self.start)
        if limit is not None and limit < room:
            room = limit
        if n > room:
            n = room
        if n <= 0:
            return 0
        if self.end + n > len(self.buf):
            self._compact()
        self.buf[self.end:self.end + n] = data[:n] if n < len(data) else data
        self.end += n
        return n

    def _compact(self):
        n = self.end - self.start
        if n:
            self.buf[0:n] = self.buf[self.start:self.end]
        self.start = 0
        self.end = n

    def view(self, off, n):
        """A view of n bytes from off bytes after the front."""
        a = self.start + off
        return self.mv[a:a + n]

    def take(self, n):
        """Remove and return (as bytes) up to n bytes from the front."""
        if n > self.end - self.start:
            n = self.end - self.start
        out = bytes(self.mv[self.start:self.start + n])
        self.consume(n)
        return out

    def consume(self, n):
        self.start += n
        if self.start >= self.end:
            self.start = self.end = 0

    def find(self, byte, limit):
        """Offset of the first `byte` among the first `limit` bytes, or -1."""
        end = self.end if self.end - self.start < limit else self.start + limit
        return bytes(self.mv[self.start:end]).find(bytes((byte,)))
