# DHCP client, RFC 2131 (protocol) and RFC 2132 (options): the INIT -> SELECTING ->
# REQUESTING -> BOUND path of section 4.4 (figure 5): DHCPDISCOVER, an OFFER, DHCPREQUEST,
# an ACK. Messages go from 0.0.0.0:68 to 255.255.255.255:67 with the BROADCAST flag set,
# as a client without an address must (section 4.1). Not done: renewing (T1/T2), the ARP
# probe of the offered address, DHCPDECLINE/RELEASE, option overload (option 52).

import struct

from inet.addr import ip_ntoa, prefix_len

SERVER_PORT = 67
CLIENT_PORT = 68

OP_BOOTREQUEST = 1
OP_BOOTREPLY = 2
HTYPE_ETHERNET = 1
FLAG_BROADCAST = 0x8000
MAGIC_COOKIE = b"\x63\x82\x53\x63"     # RFC 2132 section 2: 99.130.83.99
OPTIONS_OFF = 240                      # the fixed BOOTP fields (236 bytes) + the cookie
MIN_MESSAGE = 300                      # BOOTP's minimum (RFC 1542 section 2.1): pad up to it

# Message types, option 53 (RFC 2132 section 9.6)
DHCPDISCOVER = 1
DHCPOFFER = 2
DHCPREQUEST = 3
DHCPDECLINE = 4
DHCPACK = 5
DHCPNAK = 6
DHCPRELEASE = 7

# Options (RFC 2132)
OPT_PAD = 0
OPT_SUBNET_MASK = 1           # 3.3
OPT_ROUTER = 3                # 3.5
OPT_DNS = 6                   # 3.8
OPT_REQUESTED_IP = 50         # 9.1
OPT_LEASE_TIME = 51           # 9.2
OPT_MESSAGE_TYPE = 53         # 9.6
OPT_SERVER_ID = 54            # 9.7
OPT_PARAMETER_LIST = 55       # 9.8
OPT_END = 255

# Options whose value is one address, a list of addresses, or a 32-bit number; a reply whose
# such option has another length is malformed and ignored.
_ONE_ADDRESS = (OPT_SUBNET_MASK, OPT_REQUESTED_IP, OPT_SERVER_ID, OPT_LEASE_TIME)
_ADDRESS_LIST = (OPT_ROUTER, OPT_DNS)

# Retransmission (section 4.1): first after 4 s, doubling up to 64 s. (The RFC also
# randomizes by +-1 s; one client on a virtual network has no one to collide with.)
RETRY_FIRST_MS = 4000
RETRY_MAX_MS = 64000
TIMEOUT_MS = 15000
NAK_PAUSE_MS = 2000

ETIMEDOUT = 110

_xid_count = 0


class Lease:
    """What an ACK gave: addresses as 4 bytes, dns a list of them, lease_s in seconds."""

    def __init__(self, ip, opts):
        self.ip = ip
        self.mask = opts.get(OPT_SUBNET_MASK, b"\xff\xff\xff\x00")   # /24 when not given
        r = opts.get(OPT_ROUTER)
        self.router = r[0:4] if r else None
        d = opts.get(OPT_DNS, b"")
        self.dns = [d[i:i + 4] for i in range(0, len(d), 4)]
        self.server = opts.get(OPT_SERVER_ID)
        t = opts.get(OPT_LEASE_TIME)
        self.lease_s = int.from_bytes(t, "big") if t else None

    def __str__(self):
        s = "%s/%d" % (ip_ntoa(self.ip), prefix_len(self.mask))
        if self.router:
            s += " router %s" % ip_ntoa(self.router)
        if self.dns:
            s += " dns %s" % ",".join([ip_ntoa(a) for a in self.dns])
        if self.lease_s is not None:
            s += " lease %d s" % self.lease_s
        if self.server:
            s += " from %s" % ip_ntoa(self.server)
        return s


def new_xid(mac, ticks):
    """A transaction id that differs between clients (MAC) and between runs (clock)."""
    global _xid_count
    _xid_count += 1
    return ((mac[3] << 16 | mac[4] << 8 | mac[5]) ^ (ticks & 0xFFFFFF) ^ (_xid_count << 24)) \
        & 0x3FFFFFFF


def build(msg_type, xid, mac, requested=None, server=None):
    """A client message (section 2, figure 1). For DHCPREQUEST in SELECTING state pass the
    offered address (`requested`, option 50) and the server identifier (option 54)."""
    m = bytearray(MIN_MESSAGE)
    struct.pack_into(">BBBBIHH", m, 0, OP_BOOTREQUEST, HTYPE_ETHERNET, 6, 0, xid, 0,
                     FLAG_BROADCAST)
    m[28:34] = mac                     # chaddr
    m[236:240] = MAGIC_COOKIE
    i = _put_option(m, OPTIONS_OFF, OPT_MESSAGE_TYPE, bytes([msg_type]))
    if requested is not None:
        i = _put_option(m, i, OPT_REQUESTED_IP, requested)
    if server is not None:
        i = _put_option(m, i, OPT_SERVER_ID, server)
    i = _put_option(m, i, OPT_PARAMETER_LIST,
                    bytes([OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_LEASE_TIME]))
    m[i] = OPT_END
    return m


def _put_option(m, i, code, value):
    m[i] = code
    m[i + 1] = len(value)
    m[i + 2:i + 2 + len(value)] = value
    return i + 2 + len(value)


def parse_options(msg, off, end):
    """RFC 2132 section 2 option list -> {code: value bytes}, or None when an option runs
    past the end or a known option has the wrong length. PAD is skipped, END stops."""
    opts = {}
    i = off
    while i < end:
        code = msg[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            break
        if i + 2 > end:
            return None
        n = msg[i + 1]
        i += 2
        if i + n > end:
            return None
        if code in _ONE_ADDRESS and n != 4:
            return None
        if code in _ADDRESS_LIST and (n == 0 or n % 4):
            return None
        opts[code] = bytes(msg[i:i + n])
        i += n
    return opts


def parse_reply(msg, xid, mac):
    """-> (message type, yiaddr, options) of a server reply to our transaction `xid`,
    or None for anything else: too short, not a BOOTREPLY, someone else's, malformed."""
    if len(msg) < OPTIONS_OFF:
        return None
    op, htype, hlen, _, rxid = struct.unpack_from(">BBBBI", msg, 0)
    if op != OP_BOOTREPLY or htype != HTYPE_ETHERNET or hlen != 6 or rxid != xid:
        return None
    if msg[28:34] != mac or msg[236:240] != MAGIC_COOKIE:
        return None
    opts = parse_options(msg, OPTIONS_OFF, len(msg))
    if opts is None:
        return None
    t = opts.get(OPT_MESSAGE_TYPE)
    if t is None or len(t) != 1:
        return None
    return t[0], bytes(msg[16:20]), opts


def obtain(stack, timeout_ms=TIMEOUT_MS):
    """Run the client on `stack` until an address is leased. -> Lease (not yet applied:
    Stack.dhcp() applies it). Raises OSError(ETIMEDOUT) after timeout_ms."""
    clock = stack.clock
    start = clock.ticks_ms()
    sock = stack.socket(CLIENT_PORT)
    try:
        while True:
            xid = new_xid(stack.mac, clock.ticks_ms())
            discover = build(DHCPDISCOVER, xid, stack.mac)
            t, yiaddr, opts = _transact(stack, sock, discover, xid, (DHCPOFFER,), start,
                                        timeout_ms, "OFFER")
            request = build(DHCPREQUEST, xid, stack.mac, yiaddr, opts[OPT_SERVER_ID])
            t, yiaddr, opts = _transact(stack, sock, request, xid, (DHCPACK, DHCPNAK), start,
                                        timeout_ms, "ACK")
            if t == DHCPACK:
                return Lease(yiaddr, opts)
            # DHCPNAK: back to INIT with a new transaction (section 3.1, step 5), after a
            # pause so that a server which keeps refusing is not flooded.
            _pause(stack, NAK_PAUSE_MS)
    finally:
        sock.close()


def _pause(stack, ms):
    """Wait ms, handling traffic meanwhile."""
    clock = stack.clock
    t0 = clock.ticks_ms()
    left = ms
    while left > 0:
        stack.poll(left)
        left = ms - clock.ticks_diff(clock.ticks_ms(), t0)


def _transact(stack, sock, msg, xid, types, start, timeout_ms, waiting_for):
    """Broadcast msg, and again with backoff, until a reply of one of `types` comes."""
    clock = stack.clock
    retry_ms = RETRY_FIRST_MS
    sent = 0
    while True:
        stack.send_broadcast_udp(CLIENT_PORT, SERVER_PORT, msg)
        sent += 1
        sent_at = clock.ticks_ms()
        while True:
            now = clock.ticks_ms()
            left = timeout_ms - clock.ticks_diff(now, start)
            if left <= 0:
                raise OSError(ETIMEDOUT, "DHCP: no %s within %d ms (%d messages sent)"
                              % (waiting_for, timeout_ms, sent))
            wait = retry_ms - clock.ticks_diff(now, sent_at)
            if wait <= 0:
                break
            data = sock.recv(wait if wait < left else left)
            if data is None:
                continue
            r = parse_reply(data, xid, stack.mac)
            if r is None or r[0] not in types:
                continue
            if r[0] != DHCPNAK and (r[1] == b"\x00\x00\x00\x00" or OPT_SERVER_ID not in r[2]):
                continue       # an OFFER/ACK must give an address and name its server
            return r
        retry_ms = min(retry_ms * 2, RETRY_MAX_MS)
