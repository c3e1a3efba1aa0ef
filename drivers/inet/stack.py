# The stack: one network interface (a `link`), its addresses, and the receive path that
# hands each frame to ARP, ICMP or UDP. Runs the same on MicroPython and CPython.
#
# link:  .mac (6 bytes), .mtu (int, the largest IPv4 datagram, 1500 on Ethernet),
#        .send(frame) (a bytes-like frame without FCS; it must be consumed, copied or sent,
#        before send returns: the stack reuses its transmit buffer; it may raise OSError,
#        e.g. when the device's queue is full), .recv(timeout_ms=0) -> bytes or None (a new
#        object for each frame: a UDP datagram's data stays a view of it while it waits in
#        a socket queue; a memoryview is copied to bytes first).
# clock: .ticks_ms(), .ticks_diff(new, old), and .ticks_us() if it has one (ping RTT):
#        the `hw` of docs/hardware-interface.md, or the `time` module.
#
# Every received frame is counted once in stats['rx_frames'] and then once more: as
# rx_arp, rx_icmp, rx_udp or rx_tcp when it was used, or in drops[reason] when it was not.
# Malformed input never raises. Replies the stack sends on its own (ARP, ping, UDP echo)
# that the link refuses with OSError are counted in stats['tx_errors'], like a lost frame;
# what the caller sends (sendto, ping, dhcp) raises the link's OSError to the caller.

import struct

try:
    from micropython import const
except ImportError:        # CPython
    def const(x):
        return x

from inet import arp, dhcp, ethernet, icmp, ipv4, tcp, udp
from inet.addr import (ANY, LIMITED_BROADCAST, ip_addr, ip_ntoa, mac_ntoa, prefix_len,
                       same_subnet, subnet_broadcast)
from inet.checksum import checksum, checksum_acc

# The per-frame paths' numbers as const(): mpy-cross folds them into the code, where a
# plain module global costs a dictionary lookup at every use (about 60 of them per UDP
# datagram echoed). The values repeat those of ethernet, ipv4 and udp, which const()
# cannot name; tests/host/test_inet_units.py checks that they agree.
ETH = const(14)                               # ethernet.HEADER_LEN
IP_OFF = const(14)                            # where the IPv4 header starts in a frame
L4_OFF = const(34)                            # where ICMP/UDP start in frames we build
UDP_DATA_OFF = const(42)                      # L4_OFF + udp.HEADER_LEN
_ETHERTYPE_IPV4 = const(0x0800)               # ethernet.ETHERTYPE_IPV4
_IPV4_IHL5 = const(0x45)                      # version 4, no options
_IP_HLEN = const(20)                          # ipv4.HEADER_LEN
_UDP_HLEN = const(8)                          # udp.HEADER_LEN
_PROTO_UDP = const(17)                        # ipv4.PROTO_UDP
_TTL = const(64)                              # ipv4.DEFAULT_TTL
_FRAG = const(0x3F)                           # ipv4.FLAG_MF | OFFSET_MASK: their bits in the high byte
_MIN_FRAME = const(60)                        # ethernet.MIN_FRAME
# One pack for the Ethernet type and the IPv4 and UDP headers.
_ETH_IPV4_UDP_HEADERS = ">H" + ipv4.HEADER_FORMAT[1:] + udp.HEADER_FORMAT[1:]
_UDP_HEADER = udp.HEADER_FORMAT
_PAD = bytes(_MIN_FRAME)
_unpack_from = struct.unpack_from
_pack_into = struct.pack_into

ETIMEDOUT = 110
EADDRINUSE = 98
ENETUNREACH = 101
EHOSTUNREACH = 113

MIN_MTU = 68                # every IPv4 module must take 68 bytes (RFC 791 section 3.2)
POLL_BUDGET = 32            # frames handled per poll() at most, so a flood can't starve callers
PING_IDENT = 0x7570         # ICMP identifier of our echo requests ("up")

DROP_REASONS = (
    "truncated",            # shorter than its headers or its length fields claim
    "oversized",            # longer than the MTU allows
    "not_for_us",           # another MAC or IPv4 address (or a broadcast we don't answer)
    "unknown_ethertype",    # neither IPv4 nor ARP
    "bad_arp",              # ARP for another hardware/protocol type, or a bad opcode
    "bad_version",          # IPv4 header version is not 4
    "bad_ihl",              # IPv4 header length under 20 bytes
    "bad_length",           # IPv4 total length under its header, UDP length impossible
    "bad_checksum",         # IPv4 header, ICMP or UDP checksum wrong
    "fragment",             # IPv4 fragments: no reassembly here
    "bad_address",          # a broadcast or multicast source address
    "unknown_protocol",     # an IPv4 protocol other than ICMP, UDP and TCP
    "unsupported_icmp",     # an ICMP type other than echo request and reply
    "unexpected_reply",     # an echo reply that matches no outstanding ping
    "no_port",              # UDP to a port nobody bound
    "queue_full",           # UDP to a socket whose queue is full
    "bad_offset",           # TCP data offset under 5 words or past the segment
    "bad_options",          # TCP options running past the header, or malformed
    "bad_port",             # TCP port 0
    "out_of_window",        # TCP segment outside the receive window (RFC 9293 3.10.7.4)
    "backlog_full",         # TCP SYN to a listening port whose backlog is full
)


class Stack:
    def __init__(self, link, clock, ip=None, mask="255.255.255.0", gateway=None, dns=None):
        self.link = link
        self.clock = clock
        self.mac = bytes(link.mac)
        self.mtu = link.mtu
        if not MIN_MTU <= self.mtu <= 65535:
            raise ValueError("link MTU %r is outside %d..65535" % (self.mtu, MIN_MTU))
        self._ticks_us = getattr(clock, "ticks_us", None)
        self._tx = bytearray(ETH + self.mtu)
        self._txv = memoryview(self._tx)
        self._tx[6:12] = self.mac         # every frame we send has our source MAC
        self._max_frame = ETH + self.mtu
        self._ident = 0
        self._ports = {}
        self._next_port = udp.EPHEMERAL_FIRST
        self._ping_seq = 0           # sequence number of the last echo request
        self._ping_data = b""
        self._ping_waiting = False   # True while that request awaits its reply
        self._ping_sent_us = 0
        self._ping_rtt = None
        self.arp = arp.Cache(clock)
        self.ip = None               # 4 bytes once configured
        self.mask = None
        self.gateway = None
        self.dns = []
        self.lease = None
        self._bcast = LIMITED_BROADCAST
        self.stats = {}
        for k in ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "rx_arp", "rx_icmp",
                  "rx_udp", "tx_arp", "tx_icmp", "tx_udp", "tx_errors", "echo_refused",
                  "rx_tcp", "tx_tcp"):
            self.stats[k] = 0
        self.drops = {}
        for k in DROP_REASONS:
            self.drops[k] = 0
        self.tcp = tcp.Tcp(self)
        if ip is not None:
            self.configure(ip, mask, gateway, dns)

    # ---- configuration ---------------------------------------------------------------

    def configure(self, ip, mask="255.255.255.0", gateway=None, dns=None):
        """Set the address statically. Addresses as '10.0.2.15' or 4 bytes; dns a list."""
        self.ip = ip_addr(ip)
        self.mask = ip_addr(mask)
        self.gateway = None if gateway is None else ip_addr(gateway)
        self.dns = [ip_addr(a) for a in (dns or [])]
        self._bcast = subnet_broadcast(self.ip, self.mask)

    def dhcp(self, timeout_ms=dhcp.TIMEOUT_MS):
        """Lease an address (RFC 2131) and configure with it. -> the dhcp.Lease.
        Raises OSError(ETIMEDOUT) when no server answers within timeout_ms; the previous
        configuration, if any, is then kept."""
        before = (self.ip, self.mask, self.gateway, self.dns, self._bcast)
        self.ip = None
        try:
            lease = dhcp.obtain(self, timeout_ms)
        except:  # noqa: E722 - whatever went wrong, put the old configuration back
            self.ip, self.mask, self.gateway, self.dns, self._bcast = before
            raise
        self.configure(lease.ip, lease.mask, lease.router, lease.dns)
        self.lease = lease
        return lease

    def __str__(self):
        if self.ip is None:
            return "inet %s unconfigured" % mac_ntoa(self.mac)
        s = "inet %s %s/%d" % (mac_ntoa(self.mac), ip_ntoa(self.ip), prefix_len(self.mask))
        if self.gateway:
            s += " gw %s" % ip_ntoa(self.gateway)
        if self.dns:
            s += " dns %s" % ",".join([ip_ntoa(a) for a in self.dns])
        return s

    def dropped(self):
        """Total frames dropped, all reasons."""
        return sum(self.drops.values())

    def summary(self):
        """One line of counters, e.g. 'rx 12 (arp 1 icmp 4 udp 6) tx 11 (arp 1 icmp 4 udp 6)
        errors 0 dropped 1 (bad_checksum 1)'."""
        st = self.stats
        s = "rx %d (arp %d icmp %d udp %d) tx %d (arp %d icmp %d udp %d) errors %d dropped %d" % (
            st["rx_frames"], st["rx_arp"], st["rx_icmp"], st["rx_udp"], st["tx_frames"],
            st["tx_arp"], st["tx_icmp"], st["tx_udp"], st["tx_errors"], self.dropped())
        why = ["%s %d" % (k, self.drops[k]) for k in DROP_REASONS if self.drops[k]]
        if why:
            s += " (%s)" % ", ".join(why)
        return s

    # ---- receive path ----------------------------------------------------------------

    def poll(self, timeout_ms=0):
        """Wait up to timeout_ms for a frame, then handle it and every frame already waiting
        (POLL_BUDGET at most). -> number of frames handled. Answers ARP requests and pings,
        queues UDP datagrams on their sockets."""
        link = self.link
        frame = link.recv(timeout_ms)
        n = 0
        while frame is not None:
            self.input(frame)
            n += 1
            if n >= POLL_BUDGET:
                break
            frame = link.recv(0)
        if self.tcp.conns:
            self.tcp.service()
        return n

    def input(self, frame):
        """Handle one received Ethernet frame (bytes). Never raises for bad input."""
        if type(frame) is memoryview:
            frame = bytes(frame)        # a view of a device buffer could change under us
        st = self.stats
        n = len(frame)
        st["rx_frames"] += 1
        st["rx_bytes"] += n
        if n < ETH:
            return self._drop("truncated")
        if n > self._max_frame:
            return self._drop("oversized")
        if (n >= UDP_DATA_OFF and frame[12] == 8 and frame[13] == 0
                and frame[IP_OFF] == _IPV4_IHL5 and frame[IP_OFF + 9] == _PROTO_UDP
                and self._udp_fast(frame, n)):
            return
        dst = frame[0:6]
        if dst != self.mac and dst != ethernet.BROADCAST:
            return self._drop("not_for_us")
        t = ethernet.ethertype(frame)
        if t == ethernet.ETHERTYPE_IPV4:
            return self._ip_input(frame, n)
        if t == ethernet.ETHERTYPE_ARP:
            return self._arp_input(frame, n)
        return self._drop("unknown_ethertype")

    def _udp_fast(self, frame, n):
        """The common case in few steps: a well-formed unicast UDP datagram to a bound port,
        no IP options, no fragment. Queues it and -> True; anything else (or any doubt)
        -> False with nothing done, and the general path handles and counts the frame."""
        total = (frame[IP_OFF + 2] << 8) | frame[IP_OFF + 3]
        if (total < _IP_HLEN + _UDP_HLEN or total > n - IP_OFF or total > self.mtu
                or frame[IP_OFF + 6] & _FRAG or frame[IP_OFF + 7] or frame[IP_OFF + 12] >= 224
                or frame[IP_OFF + 16:IP_OFF + 20] != self.ip or frame[0:6] != self.mac
                or checksum_acc(frame, IP_OFF, L4_OFF, 0) != 0):
            return False
        sport, dport, length, csum = _unpack_from(_UDP_HEADER, frame, L4_OFF)
        if length < _UDP_HLEN or length > total - _IP_HLEN:
            return False
        # Pseudo-header addresses and the datagram are contiguous: one sum (RFC 768).
        if csum and checksum_acc(frame, IP_OFF + 12, L4_OFF + length, _PROTO_UDP + length):
            return False
        sock = self._ports.get(dport)
        if sock is None:
            return False
        q = sock._queue
        if len(q) >= sock.queue_len:
            return False
        q.append((memoryview(frame)[UDP_DATA_OFF:L4_OFF + length],
                  frame[IP_OFF + 12:IP_OFF + 16], sport, frame[6:12], csum, True))
        self.stats["rx_udp"] += 1
        return True

    def _drop(self, reason):
        self.drops[reason] += 1

    def _arp_input(self, frame, n):
        """RFC 826 "Packet Reception": merge the sender into the cache if known; if we are
        the target add it, and answer a request."""
        if n < ETH + arp.PACKET_LEN:
            return self._drop("truncated")
        p = arp.parse(frame, ETH)
        if p is None:
            return self._drop("bad_arp")
        op, sha, spa, tpa = p
        if ethernet.is_group(sha):
            return self._drop("bad_arp")
        self.stats["rx_arp"] += 1
        if spa == ANY:
            return              # an address probe (RFC 5227): nothing to learn
        merged = self.arp.update(spa, sha)
        if self.ip is None or tpa != self.ip:
            return
        if not merged:
            self.arp.add(spa, sha)
        if op == arp.OP_REQUEST:
            self._send_arp(arp.OP_REPLY, sha, spa, sha, True)

    def _ip_input(self, frame, n):
        reason, hlen, total = ipv4.check(frame, IP_OFF, n - IP_OFF, self.mtu)
        if reason is not None:
            return self._drop(reason)
        proto = frame[IP_OFF + 9]
        dst = frame[IP_OFF + 16:IP_OFF + 20]
        unicast = dst == self.ip
        if not unicast and dst != LIMITED_BROADCAST and dst != self._bcast:
            # Before it has an address the host takes UDP for any address: a DHCP server
            # may send the OFFER to the address it offers (RFC 2131 section 4.1).
            if not (self.ip is None and proto == ipv4.PROTO_UDP):
                return self._drop("not_for_us")
        if frame[IP_OFF + 12] >= 224:
            return self._drop("bad_address")     # source multicast/broadcast: RFC 1122 3.2.1.3
        start = IP_OFF + hlen
        end = IP_OFF + total
        if proto == ipv4.PROTO_UDP:
            return self._udp_input(frame, start, end, unicast)
        if proto == ipv4.PROTO_ICMP:
            return self._icmp_input(frame, start, end, unicast)
        if proto == ipv4.PROTO_TCP:
            reason = self.tcp.input(frame, start, end, unicast)
            if reason is not None:
                return self._drop(reason)
            self.stats["rx_tcp"] += 1
            return
        return self._drop("unknown_protocol")

    def _icmp_input(self, frame, start, end, unicast):
        if end - start < icmp.HEADER_LEN:
            return self._drop("truncated")
        if checksum(frame, start, end) != 0:
            return self._drop("bad_checksum")
        t, code, ident, seq = icmp.echo_fields(frame, start)
        if code != 0:
            return self._drop("unsupported_icmp")
        if t == icmp.TYPE_ECHO_REQUEST:
            if not unicast:
                return self._drop("not_for_us")   # no answers to broadcast pings
            self.stats["rx_icmp"] += 1
            return self._echo_reply(frame, start, end)
        if t == icmp.TYPE_ECHO_REPLY:
            if not self._ping_matches(frame, start, end, ident, seq):
                return self._drop("unexpected_reply")
            self._ping_rtt = self._elapsed_us(self._ping_sent_us)
            self._ping_waiting = False   # a duplicate is unexpected
            self.stats["rx_icmp"] += 1
            return
        return self._drop("unsupported_icmp")

    def _udp_input(self, frame, start, end, unicast):
        if end - start < udp.HEADER_LEN:
            return self._drop("truncated")
        sport, dport, length, csum = udp.header_fields(frame, start)
        if length < udp.HEADER_LEN or length > end - start:
            return self._drop("bad_length")
        if csum and udp.datagram_checksum(frame, IP_OFF, start, length) != 0:
            return self._drop("bad_checksum")
        sock = self._ports.get(dport)
        if sock is None:
            return self._drop("no_port")
        # The reply to a unicast datagram has the same checksum (same words, swapped):
        # kept so an echo needn't sum the data again.
        entry = (memoryview(frame)[start + udp.HEADER_LEN:start + length],
                 bytes(frame[IP_OFF + 12:IP_OFF + 16]), sport, bytes(frame[6:12]),
                 csum if unicast else 0, unicast)
        if not sock._deliver(entry):
            return self._drop("queue_full")
        self.stats["rx_udp"] += 1

    # ---- transmit path ---------------------------------------------------------------

    def _transmit(self, n, dst_mac, ethertype, counter, reply=False):
        """Send the frame built in the transmit buffer, n bytes, after its Ethernet header.
        A reply the link refuses is counted in tx_errors instead of raising."""
        tx = self._tx
        tx[0:6] = dst_mac
        tx[12] = ethertype >> 8
        tx[13] = ethertype & 0xFF
        self._send(n, counter, reply)

    def _send(self, n, counter, reply):
        """Pad the frame in the transmit buffer to the Ethernet minimum, hand its n bytes
        to the link and count it. A reply the link refuses is counted, not raised."""
        tx = self._tx
        if n < _MIN_FRAME:
            tx[n:_MIN_FRAME] = _PAD[n:]
            n = _MIN_FRAME
        try:
            self.link.send(self._txv[:n])
        except OSError:
            if not reply:
                raise
            self.stats["tx_errors"] += 1
            return
        st = self.stats
        st["tx_frames"] += 1
        st["tx_bytes"] += n
        st[counter] += 1

    def _send_arp(self, op, dst_mac, tpa, tha, reply=False):
        arp.write(self._tx, ETH, op, self.mac, self.ip, tha, tpa)
        self._transmit(ETH + arp.PACKET_LEN, dst_mac, ethernet.ETHERTYPE_ARP, "tx_arp", reply)

    def _ip_header(self, total, proto, src, dst):
        self._ident = (self._ident + 1) & 0xFFFF
        ipv4.write_header(self._tx, IP_OFF, total, self._ident, proto, src, dst)

    def _check_fits(self, n, what, header):
        limit = self.mtu - ipv4.HEADER_LEN - header
        if n > limit:
            raise ValueError("%s of %d bytes exceeds the limit of %d bytes (MTU %d)"
                             % (what, n, limit, self.mtu))

    def _echo_reply(self, frame, start, end):
        """Answer an echo request: the same message with type 0, back to its sender (and
        its sender's MAC, so no ARP lookup is needed)."""
        n = end - start
        tx = self._tx
        tx[L4_OFF:L4_OFF + n] = memoryview(frame)[start:end]
        icmp.turn_into_reply(tx, L4_OFF)
        self._ip_header(ipv4.HEADER_LEN + n, ipv4.PROTO_ICMP, self.ip,
                        frame[IP_OFF + 12:IP_OFF + 16])
        self._transmit(L4_OFF + n, frame[6:12], ethernet.ETHERTYPE_IPV4, "tx_icmp", True)

    def _udp_output(self, sport, dst, dport, data, dst_mac, src, csum=0, reply=False):
        """Build and send a UDP datagram in one piece (all headers in one pack: this is
        the per-datagram path of the echo service). csum: a checksum known to be right
        (a reply's), else 0 to compute it."""
        n = len(data)
        length = _UDP_HLEN + n
        end = UDP_DATA_OFF + n
        tx = self._tx
        tx[UDP_DATA_OFF:end] = data
        tx[0:6] = dst_mac
        self._ident = ident = (self._ident + 1) & 0xFFFF
        _pack_into(_ETH_IPV4_UDP_HEADERS, tx, 12, _ETHERTYPE_IPV4, _IPV4_IHL5, 0,
                   _IP_HLEN + length, ident, 0, _TTL, _PROTO_UDP, 0, src, dst, sport, dport,
                   length, csum)
        _pack_into(">H", tx, IP_OFF + 10, checksum_acc(tx, IP_OFF, L4_OFF, 0))
        if not csum:
            csum = checksum_acc(tx, IP_OFF + 12, end, _PROTO_UDP + length) or 0xFFFF
            _pack_into(">H", tx, L4_OFF + 6, csum)
        self._send(end, "tx_udp", reply)

    def udp_send(self, sport, host, dport, data):
        """Send a UDP datagram from port sport to (host, dport). See Socket.sendto."""
        self._check_fits(len(data), "UDP payload", udp.HEADER_LEN)
        if not 0 < dport < 65536:
            raise ValueError("bad UDP port %r" % (dport,))
        dst = ip_addr(host)
        mac = self._next_hop(dst)
        self._udp_output(sport, dst, dport, data, mac, self.ip)

    def udp_reply(self, sport, entry):
        """Send a queued datagram's data back to its source (used by Socket.echo)."""
        self._udp_output(sport, entry[1], entry[2], entry[0], entry[3], self.ip, entry[4], True)

    def send_broadcast_udp(self, sport, dport, data):
        """A datagram to 255.255.255.255 from our address, or from 0.0.0.0 before we have
        one (what a DHCP client sends)."""
        self._check_fits(len(data), "UDP payload", udp.HEADER_LEN)
        src = ANY if self.ip is None else self.ip
        self._udp_output(sport, LIMITED_BROADCAST, dport, data, ethernet.BROADCAST, src)

    # ---- ARP resolution --------------------------------------------------------------

    def _next_hop(self, dst):
        """The MAC to send a datagram for dst to: dst's own on our subnet, else the
        gateway's (RFC 1122 3.3.1.1); broadcasts go to the broadcast MAC."""
        if dst == LIMITED_BROADCAST or dst == self._bcast:
            return ethernet.BROADCAST
        if self.ip is None:
            raise OSError(ENETUNREACH, "network unreachable: no address yet, "
                          "call configure() or dhcp() first")
        if dst == self.ip:
            raise OSError(EHOSTUNREACH, "%s is this host's own address: there is no "
                          "loopback" % ip_ntoa(dst))
        if same_subnet(dst, self.ip, self.mask):
            return self.resolve(dst)
        if self.gateway is None:
            raise OSError(EHOSTUNREACH, "no route to %s: it is outside %s/%d and there is "
                          "no gateway" % (ip_ntoa(dst), ip_ntoa(self.ip),
                                          prefix_len(self.mask)))
        return self.resolve(self.gateway)

    def resolve(self, ip, retries=arp.RETRIES, retry_ms=arp.RETRY_MS):
        """The MAC address of ip (on our subnet): from the cache, or by broadcasting ARP
        requests, `retries` of them retry_ms apart, polling meanwhile. -> 6 bytes.
        Raises OSError(ETIMEDOUT) when nobody answers."""
        ip = ip_addr(ip)
        mac = self.arp.lookup(ip)
        if mac is not None:
            return mac
        if self.ip is None:
            raise OSError(ENETUNREACH, "ARP needs an address: call configure() or dhcp()")
        clock = self.clock
        for _ in range(retries):
            self._send_arp(arp.OP_REQUEST, ethernet.BROADCAST, ip, b"\x00" * 6)
            sent = clock.ticks_ms()
            left = retry_ms
            while left > 0:
                self.poll(left)
                mac = self.arp.lookup(ip)
                if mac is not None:
                    return mac
                left = retry_ms - clock.ticks_diff(clock.ticks_ms(), sent)
        raise OSError(ETIMEDOUT, "ARP: no reply from %s after %d requests"
                      % (ip_ntoa(ip), retries))

    # ---- UDP sockets -----------------------------------------------------------------

    def socket(self, port=0):
        """A UDP socket bound to port (0: a free ephemeral port). -> udp.Socket.
        Raises OSError(EADDRINUSE) if the port is taken."""
        if port == 0:
            port = self._free_port()
        elif not 0 < port < 65536:
            raise ValueError("bad UDP port %r" % (port,))
        elif port in self._ports:
            raise OSError(EADDRINUSE, "UDP port %d is already bound" % port)
        s = udp.Socket(self, port)
        self._ports[port] = s
        return s

    def unbind(self, sock):
        if self._ports.get(sock.port) is sock:
            del self._ports[sock.port]

    def _free_port(self):
        span = udp.EPHEMERAL_LAST - udp.EPHEMERAL_FIRST + 1
        for _ in range(span):
            p = self._next_port
            self._next_port = udp.EPHEMERAL_FIRST + (p + 1 - udp.EPHEMERAL_FIRST) % span
            if p not in self._ports:
                return p
        raise OSError(EADDRINUSE, "no free UDP port")

    # ---- ping ------------------------------------------------------------------------

    def _now_us(self):
        if self._ticks_us is not None:
            return self._ticks_us()
        return self.clock.ticks_ms()

    def _elapsed_us(self, since):
        if self._ticks_us is not None:
            return self.clock.ticks_diff(self._ticks_us(), since)
        return self.clock.ticks_diff(self.clock.ticks_ms(), since) * 1000

    def ping(self, host, count=4, timeout_ms=1000, size=56):
        """Send `count` ICMP echo requests with `size` data bytes to host, one at a time,
        each waiting up to timeout_ms for its reply. -> list of round-trip times in
        microseconds (ticks_us resolution if the clock has it, else ms * 1000), None for
        each request that got no reply. Raises OSError(ETIMEDOUT) if the next hop does not
        answer ARP, ValueError if size does not fit the MTU."""
        if size < 0:
            raise ValueError("ping size %d is negative" % size)
        self._check_fits(icmp.HEADER_LEN + size, "ICMP message", 0)
        dst = ip_addr(host)
        self._ping_data = bytes([i & 0xFF for i in range(size)])
        results = []
        for _ in range(count):
            results.append(self._ping_once(dst, timeout_ms))
        return results

    def _ping_once(self, dst, timeout_ms):
        clock = self.clock
        mac = self._next_hop(dst)        # may take ARP time: not part of the RTT or timeout
        data = self._ping_data
        size = len(data)
        self._ping_seq = (self._ping_seq + 1) & 0xFFFF
        tx = self._tx
        tx[L4_OFF + icmp.HEADER_LEN:L4_OFF + icmp.HEADER_LEN + size] = data
        icmp.write_echo(tx, L4_OFF, icmp.TYPE_ECHO_REQUEST, PING_IDENT, self._ping_seq, size)
        self._ip_header(ipv4.HEADER_LEN + icmp.HEADER_LEN + size, ipv4.PROTO_ICMP, self.ip, dst)
        self._ping_rtt = None
        self._ping_sent_us = self._now_us()
        self._transmit(L4_OFF + icmp.HEADER_LEN + size, mac, ethernet.ETHERTYPE_IPV4, "tx_icmp")
        self._ping_waiting = True
        start = clock.ticks_ms()
        while self._ping_rtt is None:
            left = timeout_ms - clock.ticks_diff(clock.ticks_ms(), start)
            if left <= 0:
                break
            self.poll(left)
        self._ping_waiting = False       # a reply after this counts as unexpected
        return self._ping_rtt

    def _ping_matches(self, frame, start, end, ident, seq):
        """Is this echo reply the answer to the request we wait for, data intact?"""
        if not self._ping_waiting or ident != PING_IDENT or seq != self._ping_seq:
            return False
        return frame[start + icmp.HEADER_LEN:end] == self._ping_data
