# IPv4, RFC 791 section 3.1: the header, its checksum, and the receive-side checks that
# RFC 1122 section 3.2.1 asks for. No options are sent; received options are skipped.
# Fragments are dropped (and counted) since this stack does no reassembly.

import struct

from inet.checksum import checksum

VERSION = 4
HEADER_LEN = 20          # IHL 5: no options
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
DEFAULT_TTL = 64         # RFC 1700 recommends 64
FLAG_MF = 0x2000         # more fragments
OFFSET_MASK = 0x1FFF     # fragment offset, in 8-byte units

HEADER_FORMAT = ">BBHHHBBH4s4s"    # version/IHL, TOS, total length, identification,
                             # flags/fragment offset, TTL, protocol, checksum, src, dst


def write_header(buf, off, total_len, ident, proto, src, dst, ttl=DEFAULT_TTL):
    """Write a 20-byte header at buf[off:] and fill in its checksum."""
    struct.pack_into(HEADER_FORMAT, buf, off, (VERSION << 4) | 5, 0, total_len, ident & 0xFFFF,
                     0, ttl, proto, 0, src, dst)
    struct.pack_into(">H", buf, off + 10, checksum(buf, off, off + HEADER_LEN))


def check(frame, off, avail, mtu):
    """Validate the header at frame[off:], `avail` bytes being present.

    -> (reason, header_len, total_len): reason is None for a good datagram, else the name
    of the counter its drop goes to. A padded frame (avail > total length) is fine: the
    payload ends at total_len (RFC 894 padding)."""
    if avail < HEADER_LEN:
        return "truncated", 0, 0
    vihl = frame[off]
    if vihl >> 4 != VERSION:
        return "bad_version", 0, 0
    hlen = (vihl & 0x0F) * 4
    if hlen < HEADER_LEN:
        return "bad_ihl", 0, 0
    total = (frame[off + 2] << 8) | frame[off + 3]
    if total < hlen:
        return "bad_length", 0, 0
    if total > mtu:
        return "oversized", 0, 0
    if total > avail:
        return "truncated", 0, 0
    if checksum(frame, off, off + hlen) != 0:
        return "bad_checksum", 0, 0
    if ((frame[off + 6] << 8) | frame[off + 7]) & (FLAG_MF | OFFSET_MASK):
        return "fragment", 0, 0
    return None, hlen, total
