# ICMP, RFC 792: only Echo (type 8) and Echo Reply (type 0) are spoken here.
# Message: type, code, checksum (over the whole ICMP message), identifier, sequence, data.

import struct

from inet.checksum import adjust, checksum

TYPE_ECHO_REPLY = 0
TYPE_ECHO_REQUEST = 8
HEADER_LEN = 8

_HEADER = ">BBHHH"        # type, code, checksum, identifier, sequence number


def write_echo(buf, off, icmp_type, ident, seq, data_len):
    """Write an echo header at buf[off:] over data_len bytes of data already in place
    behind it, and fill in the checksum."""
    struct.pack_into(_HEADER, buf, off, icmp_type, 0, 0, ident, seq)
    end = off + HEADER_LEN + data_len
    struct.pack_into(">H", buf, off + 2, checksum(buf, off, end))


def turn_into_reply(buf, off):
    """Make the echo request at buf[off:] its echo reply in place: "the type code changed
    to 0, and the checksum recomputed" (RFC 792), here updated for the one changed word
    (RFC 1624) instead of summing the data again."""
    old_word = (buf[off] << 8) | buf[off + 1]
    hc = (buf[off + 2] << 8) | buf[off + 3]
    buf[off] = TYPE_ECHO_REPLY
    struct.pack_into(">H", buf, off + 2, adjust(hc, old_word, TYPE_ECHO_REPLY << 8 | buf[off + 1]))


def echo_fields(frame, off):
    """-> (type, code, identifier, sequence) of the message at frame[off:]."""
    t, c, _, ident, seq = struct.unpack_from(_HEADER, frame, off)
    return t, c, ident, seq
