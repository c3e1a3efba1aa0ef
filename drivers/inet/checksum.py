# The Internet checksum (RFC 1071): the 16-bit one's complement of the one's complement sum
# of the data taken as big-endian 16-bit words, an odd last byte padded with a zero byte.
# IPv4 headers, ICMP messages and UDP datagrams (with a pseudo-header) all use it.

import struct

# Words are summed CHUNK at a time by struct (C speed on both Pythons); the chunk bounds the
# temporary tuple so a full-size frame never needs one large allocation.
_CHUNK = 64
_CHUNK_FMT = ">%dH" % _CHUNK


def ones_sum(buf, start, end, acc=0):
    """Add buf[start:end] as 16-bit big-endian words to acc (unfolded; fold() it later).

    Sums of several pieces can be chained through acc as long as every piece but the
    last has an even length (RFC 1071 section 2, "deferred carries" and "parallel summation")."""
    words = (end - start) >> 1
    i = start
    unpack = struct.unpack_from
    while words >= _CHUNK:
        acc += sum(unpack(_CHUNK_FMT, buf, i))
        i += 2 * _CHUNK
        words -= _CHUNK
    if words:
        acc += sum(unpack(">%dH" % words, buf, i))
        i += 2 * words
    if i < end:
        acc += buf[i] << 8
    return acc


try:
    from inet._fastsum import words_sum as _words_sum
    from inet._fastsum import checksum as _fast_checksum
except (ImportError, SyntaxError):     # CPython, or a MicroPython without native code
    _words_sum = None
    _fast_checksum = None

if _words_sum is not None:
    _portable_ones_sum = ones_sum

    def ones_sum(buf, start, end, acc=0):
        return acc + _words_sum(buf, start, end)


def fold(acc):
    """Fold the carries back in (end-around carry) until the sum fits 16 bits."""
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def checksum(buf, start, end, acc=0):
    """The checksum field value for buf[start:end] (the field itself zero while computing).
    Over data that already holds a correct checksum it returns 0. acc: a sum to add in,
    e.g. a pseudo-header's (at most 2**20, so the native sum cannot overflow)."""
    return ~fold(ones_sum(buf, start, end, acc)) & 0xFFFF


# checksum with every argument given: on the target the native function itself, one call
# less on the per-frame paths.
checksum_acc = checksum

if _fast_checksum is not None:
    _portable_checksum = checksum
    checksum_acc = _fast_checksum

    def checksum(buf, start, end, acc=0):
        return _fast_checksum(buf, start, end, acc)


def adjust(hc, old_word, new_word):
    """A checksum after one 16-bit word of the data changed from old_word to new_word,
    without summing the data again: RFC 1624 equation 3, HC' = ~(~HC + ~m + m').
    Where that gives 0x0000 the result is 0xFFFF: both check for data that sums to -0,
    only 0xFFFF does for all-zero data (which the arithmetic can't tell apart)."""
    return (~fold((~hc & 0xFFFF) + (~old_word & 0xFFFF) + new_word) & 0xFFFF) or 0xFFFF
