# TCP (RFC 9293) beside the stack: demultiplexing received segments to connections and
# listening ports, building the segments we send, the timers, ports and initial sequence
# numbers. One Connection (tcb.py) per connection; segment format in tcpseg.py.
#
#   c = stack.tcp.connect('10.0.2.2', 80)     # SYN-SENT; stack.poll() moves it on
#   l = stack.tcp.listen(80, backlog=4)       # l.ready: established connections to accept
#
# The stack calls input() for each IPv4 datagram of protocol 6 and service() after each
# poll: owed ACKs go out then (one per receive batch, not one per segment), and expired
# timers fire. The socket module (inet/sockets.py) is the user interface.

import struct

from inet import ipv4, tcb
from inet.checksum import checksum, ones_sum
from inet.tcpseg import ACK, RST, SEQ_MASK, SYN, HEADER_LEN, OPT_MSS, MSS_OPTION_LEN, parse

PROTO_TCP = 6
ETH_LEN = 14
IP_OFF = ETH_LEN
L4_OFF = ETH_LEN + ipv4.HEADER_LEN
_HEADERS = ">H" + ipv4.HEADER_FORMAT[1:] + "HHIIBBHHH"    # EtherType, IPv4, TCP in one pack
_IPV4_IHL5 = (ipv4.VERSION << 4) | 5

SNDBUF = 32768              # per connection; the receive buffer bounds the window we offer
RCVBUF = 32768
EPHEMERAL_FIRST = 49152
EPHEMERAL_LAST = 65535
TIME_WAIT_MAX = 256         # beyond this many TIME-WAIT connections the oldest goes early
SERVICE_MS = 5              # timers are looked at no more often than this

EADDRINUSE = 98


class Listener:
    """A port in the LISTEN state: connections that completed the handshake wait in
    `ready` for accept(); at most `backlog` are queued or half-open at once."""

    def __init__(self, tcp, port, backlog):
        self.tcp = tcp
        self.port = port
        self.backlog = backlog if backlog > 0 else 1
        self.half_open = 0
        self.ready = []

    def __repr__(self):
        return "<tcp listen %d, %d ready, %d half-open>" % (self.port, len(self.ready),
                                                           self.half_open)

    def accept(self):
        """-> the next established Connection, or None."""
        return self.ready.pop(0) if self.ready else None

    def close(self):
        self.tcp.unlisten(self)


class Tcp:
    def __init__(self, stack, sndbuf=SNDBUF, rcvbuf=RCVBUF):
        self.stack = stack
        self.clock = stack.clock
        self.mss = stack.mtu - ipv4.HEADER_LEN - HEADER_LEN     # section 3.7.1
        self.sndbuf = sndbuf
        self.rcvbuf = rcvbuf
        self.conns = {}             # (remote ip, remote port, local port) -> Connection
        self.listeners = {}         # local port -> Listener
        self.bound = set()          # ports sockets bound before listen or connect
        self.isn_source = None      # a function -> 32 random bits (virtio-rng), if any
        self._isn_count = 0
        self._next_port = EPHEMERAL_FIRST
        self._owe = []              # connections owing an ACK
        self._tw = []               # TIME-WAIT connections, oldest first
        self._raw = self.clock.ticks_ms()
        self._now = 0               # milliseconds since start, never wrapping
        self._next_service = 0
        self.stats = {}
        for k in ("rx_segments", "tx_segments", "rx_bytes", "tx_bytes", "active_opens",
                  "passive_opens", "retransmits", "fast_retransmits", "timeouts", "dup_acks",
                  "window_probes", "rx_out_of_order", "resets_rx", "resets_tx"):
            self.stats[k] = 0

    # ---- time ------------------------------------------------------------------------

    def now(self):
        """Milliseconds on a counter that does not wrap (ticks_ms wraps at 2**30 on
        MicroPython): deadlines and RTT samples are plain integers."""
        raw = self.clock.ticks_ms()
        d = self.clock.ticks_diff(raw, self._raw)
        if d > 0:
            self._now += d
            self._raw = raw
        return self._now

    def service(self):
        """After each poll: send owed ACKs, fire expired timers."""
        owe = self._owe
        if owe:
            self._owe = []
            for c in owe:
                if c.ack_pending and c.state != tcb.CLOSED:
                    c.send_ack()
        now = self.now()
        if now < self._next_service:
            return
        self._next_service = now + SERVICE_MS
        for c in list(self.conns.values()):
            d = c.deadline
            if d is not None and now >= d:
                c.on_timer()

    def owe_ack(self, c):
        if not c.ack_pending:
            c.ack_pending = True
            self._owe.append(c)

    def isn(self):
        """An initial sequence number: 32 bits from the random source when there is one,
        else the clock-driven generator of section 3.4.1 (a 4 us timer) plus a count."""
        if self.isn_source is not None:
            return self.isn_source() & SEQ_MASK
        clock = self.clock
        us = clock.ticks_us() if hasattr(clock, "ticks_us") else clock.ticks_ms() * 1000
        self._isn_count += 64000
        return (us // 4 + self._isn_count) & SEQ_MASK

    # ---- opening and closing ---------------------------------------------------------

    def connect(self, host, port, lport=0):
        """Active open to (host, port). -> Connection in SYN-SENT. Resolves the next hop
        first (ARP; may raise OSError ETIMEDOUT, EHOSTUNREACH, ENETUNREACH)."""
        from inet.addr import ip_addr
        rip = ip_addr(host)
        if not 0 < port < 65536:
            raise ValueError("bad TCP port %r" % (port,))
        mac = self.stack._next_hop(rip)
        if lport == 0:
            lport = self.free_port()
        key = (rip, port, lport)
        if key in self.conns:
            raise OSError(EADDRINUSE, "TCP port %d is already connected there" % lport)
        c = tcb.Connection(self, lport, rip, port, mac, self.sndbuf, self.rcvbuf)
        self.conns[key] = c
        c.open_active(self.isn())
        return c

    def listen(self, port, backlog=2):
        if not 0 < port < 65536:
            raise ValueError("bad TCP port %r" % (port,))
        if port in self.listeners:
            raise OSError(EADDRINUSE, "TCP port %d is already listening" % port)
        lst = Listener(self, port, backlog)
        self.listeners[port] = lst
        return lst

    def unlisten(self, lst):
        if self.listeners.get(lst.port) is lst:
            del self.listeners[lst.port]
        for c in list(self.conns.values()):
            if c.listener is lst and (c.state == tcb.SYN_RECEIVED or c in lst.ready):
                c.abort()
        lst.ready = []

    def port_in_use(self, port, reuse=False):
        """Is the local port taken: listening, or (unless reuse, SO_REUSEADDR) used by a
        connection, even one in TIME-WAIT."""
        if port in self.listeners:
            return True
        if reuse:
            return False
        for c in self.conns.values():
            if c.lport == port:
                return True
        return False

    def free_port(self):
        used = set([c.lport for c in self.conns.values()])
        span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        for _ in range(span):
            p = self._next_port
            self._next_port = EPHEMERAL_FIRST + (p + 1 - EPHEMERAL_FIRST) % span
            if p not in used and p not in self.listeners:
                return p
        raise OSError(EADDRINUSE, "no free TCP port")

    def established(self, c):
        """A passive open completed: the connection waits for accept()."""
        lst = c.listener
        if lst is None:
            return
        lst.half_open -= 1
        if self.listeners.get(lst.port) is lst:
            lst.ready.append(c)
        else:
            c.abort()

    def time_wait(self, c):
        tw = self._tw
        tw.append(c)
        while len(tw) > TIME_WAIT_MAX:
            old = tw.pop(0)
            if old.state == tcb.TIME_WAIT:
                self.remove(old)
        if len(tw) > 16 and tw[0].state != tcb.TIME_WAIT:
            self._tw = [x for x in tw if x.state == tcb.TIME_WAIT]

    def remove(self, c):
        key = (c.rip, c.rport, c.lport)
        if self.conns.get(key) is c:
            del self.conns[key]
        lst = c.listener
        if lst is not None:
            if c.state == tcb.SYN_RECEIVED:
                lst.half_open -= 1
            if c in lst.ready:
                lst.ready.remove(c)
        c.state = tcb.CLOSED
        c.deadline = None

    # ---- input -----------------------------------------------------------------------

    def input(self, frame, start, end, unicast):
        """A TCP segment in frame[start:end] (the IPv4 header at IP_OFF). -> drop reason
        or None; counts nothing itself but its own statistics."""
        if not unicast:
            return "not_for_us"
        n = end - start
        if n < HEADER_LEN:
            return "truncated"
        if start == IP_OFF + ipv4.HEADER_LEN:
            bad = checksum(frame, IP_OFF + 12, end, PROTO_TCP + n)
        else:
            bad = checksum(frame, start, end, ones_sum(frame, IP_OFF + 12, IP_OFF + 20,
                                                       PROTO_TCP + n))
        if bad:
            return "bad_checksum"
        reason, seg = parse(frame, start, end)
        if reason is not None:
            return reason
        self.stats["rx_segments"] += 1
        rip = bytes(frame[IP_OFF + 12:IP_OFF + 16])
        c = self.conns.get((rip, seg.sport, seg.dport))
        if c is not None:
            return c.segment(seg)
        lst = self.listeners.get(seg.dport)
        if lst is not None:
            return self._listen_input(lst, seg, rip, bytes(frame[6:12]))
        if not seg.flags & RST:
            self._reset_reply(seg, rip, bytes(frame[6:12]))
        return "no_port"

    def _listen_input(self, lst, seg, rip, mac):
        """Section 3.10.7.2, LISTEN."""
        flags = seg.flags
        if flags & RST:
            return None
        if flags & ACK:
            self._reset_reply(seg, rip, mac)
            return None
        if not flags & SYN:
            return None
        if lst.half_open + len(lst.ready) >= lst.backlog:
            return "backlog_full"           # no answer: the peer's SYN comes again
        c = tcb.Connection(self, lst.port, rip, seg.sport, mac, self.sndbuf, self.rcvbuf)
        c.listener = lst
        lst.half_open += 1
        self.conns[(rip, seg.sport, lst.port)] = c
        c.open_passive(seg, self.isn())
        return None

    def _reset_reply(self, seg, rip, mac):
        """A RST for a segment that belongs to no connection (section 3.10.7.1)."""
        if seg.flags & ACK:
            self._segment(mac, rip, seg.dport, seg.sport, seg.ack, 0, RST, 0, None, 0, False)
        else:
            ack = (seg.seq + seg.seg_len()) & SEQ_MASK
            self._segment(mac, rip, seg.dport, seg.sport, 0, ack, RST | ACK, 0, None, 0, False)
        self.stats["resets_tx"] += 1

    def emit_reset_for(self, c, seg):
        """A RST for an unacceptable ACK on a connection (SYN-SENT, SYN-RECEIVED)."""
        self._segment(c.mac, c.rip, c.lport, c.rport, seg.ack, 0, RST, 0, None, 0, False)
        self.stats["resets_tx"] += 1

    # ---- output ----------------------------------------------------------------------

    def emit(self, c, seq, ack, flags, n, q=None, off=0, mss_option=False):
        """Send a segment of connection c: n data bytes from q (a ByteQueue) at off."""
        wnd = 0
        if flags & ACK:
            wnd = c.rcv_window()
            c.rcv_adv = (c.rcv_nxt + wnd) & SEQ_MASK
            c.ack_pending = False
        if flags & RST:
            self.stats["resets_tx"] += 1
        data = q.view(off, n) if n else None
        self._segment(c.mac, c.rip, c.lport, c.rport, seq, ack, flags, wnd, data, n,
                      mss_option)
        if n:
            self.stats["tx_bytes"] += n

    def _segment(self, mac, rip, lport, rport, seq, ack, flags, wnd, data, n, mss_option):
        stack = self.stack
        tx = stack._tx
        hlen = HEADER_LEN + MSS_OPTION_LEN if mss_option else HEADER_LEN
        start = L4_OFF + hlen
        end = start + n
        if n:
            tx[start:end] = data
        tcp_len = hlen + n
        stack._ident = ident = (stack._ident + 1) & 0xFFFF
        tx[0:6] = mac
        struct.pack_into(_HEADERS, tx, 12, 0x0800, _IPV4_IHL5, 0, ipv4.HEADER_LEN + tcp_len,
                         ident, 0, ipv4.DEFAULT_TTL, PROTO_TCP, 0, stack.ip, rip, lport, rport,
                         seq, ack, (hlen >> 2) << 4, flags, wnd, 0, 0)
        struct.pack_into(">H", tx, IP_OFF + 10, checksum(tx, IP_OFF, L4_OFF))
        if mss_option:
            struct.pack_into(">BBH", tx, L4_OFF + HEADER_LEN, OPT_MSS, MSS_OPTION_LEN,
                             self.mss)
        struct.pack_into(">H", tx, L4_OFF + 16, checksum(tx, IP_OFF + 12, end,
                                                         PROTO_TCP + tcp_len))
        self.stats["tx_segments"] += 1
        # A segment the link refuses (queue full) is lost like any other: retransmission
        # recovers it, so it is counted (tx_errors) rather than raised.
        stack._send(end, "tx_tcp", True)

    # ---- for the status page and tests -----------------------------------------------

    def summary(self):
        st = self.stats
        return ("tcp %d connections, %d listening; segments rx %d tx %d, retransmits %d "
                "(fast %d), timeouts %d" % (len(self.conns), len(self.listeners),
                                            st["rx_segments"], st["tx_segments"],
                                            st["retransmits"], st["fast_retransmits"],
                                            st["timeouts"]))
