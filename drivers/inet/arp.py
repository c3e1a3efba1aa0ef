# ARP, RFC 826: packet format, and the translation cache with expiry.
# The "packet reception" algorithm and the resolution loop live in the stack (stack.py),
# because both need to send.

import struct

HTYPE_ETHERNET = 1      # ar$hrd
PTYPE_IPV4 = 0x0800     # ar$pro
OP_REQUEST = 1          # ares_op$REQUEST
OP_REPLY = 2            # ares_op$REPLY
PACKET_LEN = 28         # for Ethernet/IPv4: 8 fixed bytes + 2 * (6 + 4)

_FIXED = ">HHBBH"       # hrd, pro, hln, pln, op

TTL_MS = 60000          # how long a learnt translation stays usable
CACHE_SIZE = 16         # entries; the oldest goes when a new one needs room
RETRY_MS = 500          # a request unanswered this long is sent again ...
RETRIES = 4             # ... up to this many requests in all


def write(buf, off, op, sha, spa, tha, tpa):
    """Write an Ethernet/IPv4 ARP packet at buf[off:off + PACKET_LEN]."""
    struct.pack_into(_FIXED, buf, off, HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, op)
    buf[off + 8:off + 14] = sha
    buf[off + 14:off + 18] = spa
    buf[off + 18:off + 24] = tha
    buf[off + 24:off + 28] = tpa


def parse(frame, off):
    """-> (op, sha, spa, tpa) of the packet at frame[off:], or None when it is not an
    Ethernet/IPv4 request or reply (the caller checked there are PACKET_LEN bytes)."""
    hrd, pro, hln, pln, op = struct.unpack_from(_FIXED, frame, off)
    if hrd != HTYPE_ETHERNET or pro != PTYPE_IPV4 or hln != 6 or pln != 4:
        return None
    if op != OP_REQUEST and op != OP_REPLY:
        return None
    return (op, bytes(frame[off + 8:off + 14]), bytes(frame[off + 14:off + 18]),
            bytes(frame[off + 24:off + 28]))


class Cache:
    """IPv4 address -> MAC address, each entry usable for ttl_ms after it was last confirmed.
    Bounded: a flood of ARP traffic can not grow it past `size` entries."""

    def __init__(self, clock, ttl_ms=TTL_MS, size=CACHE_SIZE):
        self.clock = clock
        self.ttl_ms = ttl_ms
        self.size = size
        self._entries = {}          # ip -> [mac, ticks_ms when learnt]

    def lookup(self, ip):
        """The MAC for ip, or None when unknown or expired (an expired entry is removed)."""
        e = self._entries.get(ip)
        if e is None:
            return None
        if self.clock.ticks_diff(self.clock.ticks_ms(), e[1]) >= self.ttl_ms:
            del self._entries[ip]
            return None
        return e[0]

    def update(self, ip, mac):
        """RFC 826 "merge": refresh an entry that already exists. -> True if it existed."""
        e = self._entries.get(ip)
        if e is None:
            return False
        e[0] = mac
        e[1] = self.clock.ticks_ms()
        return True

    def add(self, ip, mac):
        if ip not in self._entries and len(self._entries) >= self.size:
            self._evict_oldest()
        self._entries[ip] = [mac, self.clock.ticks_ms()]

    def remove(self, ip):
        self._entries.pop(ip, None)

    def _evict_oldest(self):
        now = self.clock.ticks_ms()
        oldest = None
        age = -1
        for ip in self._entries:
            a = self.clock.ticks_diff(now, self._entries[ip][1])
            if a > age:
                oldest, age = ip, a
        del self._entries[oldest]

    def __len__(self):
        return len(self._entries)

    def items(self):
        """[(ip, mac, age_ms)] for display; expired entries included (they go on lookup)."""
        now = self.clock.ticks_ms()
        return [(ip, e[0], self.clock.ticks_diff(now, e[1])) for ip, e in self._entries.items()]
