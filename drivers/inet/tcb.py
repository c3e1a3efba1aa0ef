# One TCP connection: its Transmission Control Block and the event processing of RFC 9293
# section 3.10 (OPEN, SEND, RECEIVE, CLOSE, ABORT, SEGMENT ARRIVES, timeouts), with the
# retransmission timer of RFC 6298 and the congestion control of RFC 5681 (slow start,
# congestion avoidance, fast retransmit after three duplicate ACKs). tcp.py owns the
# connections, builds the segments and runs the timers.

from inet.tcpseg import (ACK, FIN, PSH, RST, SYN, ByteQueue, seq_add, seq_diff, seq_le,
                         seq_lt)

CLOSED = 0
LISTEN = 1
SYN_SENT = 2
SYN_RECEIVED = 3
ESTABLISHED = 4
FIN_WAIT_1 = 5
FIN_WAIT_2 = 6
CLOSE_WAIT = 7
CLOSING = 8
LAST_ACK = 9
TIME_WAIT = 10
STATE_NAMES = ("CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
               "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT")
# States in which data we send may still be in flight or unsent.
_SENDING = (ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK)
# States in which the peer's data is accepted (section 3.10.7.4, seventh step).
_RECEIVING = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2)

# RFC 6298: initial RTO 1 s (2.1); the clock granularity G; RTO bounds. The RFC's 1 s
# minimum (2.4, a SHOULD) is lowered to 200 ms as Linux does: on a virtual link RTTs are
# well under a millisecond and a 1 s stall per lost segment dominates everything.
RTO_INITIAL_MS = 1000
RTO_MIN_MS = 200
RTO_MAX_MS = 60000
GRANULARITY_MS = 1
SYN_RETRIES = 5             # 1+2+4+8+16+32 s before a connect gives up (ETIMEDOUT)
DATA_RETRIES = 8            # retransmissions of one segment before the connection is reset
MSL_MS = 30000              # maximum segment lifetime; TIME-WAIT lasts 2 MSL
DUPACK_THRESHOLD = 3        # RFC 5681 section 3.2
OOO_SEGMENTS = 16           # out-of-order segments held for reassembly

ECONNRESET = 104
ETIMEDOUT = 110
ECONNREFUSED = 111


class Connection:
    def __init__(self, tcp, lport, rip, rport, mac, sndbuf, rcvbuf):
        self.tcp = tcp
        self.lport = lport
        self.rip = rip
        self.rport = rport
        self.mac = mac
        self.state = CLOSED
        self.error = None           # errno of a reset, refusal or time-out
        self.listener = None        # the Listener that created us (passive open)
        self.detached = False       # the user closed its socket: nobody reads any more
        self.sndq = ByteQueue(sndbuf)   # from SND.UNA: sent-unacknowledged, then unsent
        self.rcvq = ByteQueue(rcvbuf)   # received in order, not yet read
        self.ooo = []               # [seq, bytes, fin] received beyond RCV.NXT, sorted
        self.fin_pending = False    # the user closed the sending side: FIN after the data
        self.fin_received = False
        self.ack_pending = False    # an ACK is owed (sent at the end of the receive batch)
        self.iss = self.snd_una = self.snd_nxt = 0
        self.snd_max = 0            # the highest SND.NXT: after a time-out SND.NXT goes back
        self.snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.snd_mss = tcp.mss
        self.irs = self.rcv_nxt = 0
        self.rcv_adv = 0            # the right edge of the window last advertised
        # RFC 6298 state (ms); rtt_seq: the sequence number whose ACK ends the RTT sample
        self.srtt = None
        self.rttvar = 0
        self.rto = RTO_INITIAL_MS
        self.rtt_seq = None
        self.rtt_start = 0
        self.deadline = None        # retransmission / persist / TIME-WAIT timer (ticks_ms)
        self.retries = 0
        self.cwnd = 0
        self.ssthresh = 65535
        self.dupacks = 0
        self.retransmits = 0

    def __repr__(self):
        return "<tcp %d -> %d.%d.%d.%d:%d %s>" % (self.lport, self.rip[0], self.rip[1],
                                                 self.rip[2], self.rip[3], self.rport,
                                                 STATE_NAMES[self.state])

    # ---- user calls ------------------------------------------------------------------

    def open_active(self, iss):
        """OPEN, active (section 3.10.1): send a SYN."""
        self._init_send(iss)
        self.state = SYN_SENT
        self.tcp.stats["active_opens"] += 1
        self._send_syn()

    def open_passive(self, seg, iss):
        """A SYN arrived at a LISTEN port (section 3.10.7.2): answer SYN,ACK."""
        self._init_send(iss)
        self._init_receive(seg)
        self.state = SYN_RECEIVED
        self.tcp.stats["passive_opens"] += 1
        self._send_syn()

    def send(self, data):
        """Queue data (as much as the send buffer takes) and send what the windows allow.
        -> bytes taken."""
        n = self.sndq.append(data)
        if n:
            self.output()
        return n

    def recv_take(self, n):
        """Read up to n bytes received in order (b'' when none). Opens the window."""
        data = self.rcvq.take(n)
        if data:
            self._window_update()
        return data

    def close(self):
        """CLOSE (section 3.10.4): FIN after the queued data. With received data left
        unread the connection is reset instead (RFC 1122 4.2.2.13)."""
        self.detached = True
        st = self.state
        if st in (SYN_SENT, LISTEN, CLOSED):
            return self.tcp.remove(self)
        if len(self.rcvq) and st in (ESTABLISHED, CLOSE_WAIT, SYN_RECEIVED):
            return self.abort()
        self.shutdown_write()

    def shutdown_write(self):
        """Half-close: FIN after the queued data; receiving goes on."""
        st = self.state
        if self.fin_pending:
            return
        if st in (ESTABLISHED, SYN_RECEIVED):
            self.state = FIN_WAIT_1
        elif st == CLOSE_WAIT:
            self.state = LAST_ACK
        else:
            return
        self.fin_pending = True
        self.output()

    def abort(self, error=None):
        """ABORT (section 3.10.5): a RST to the peer if it knows us, then gone."""
        if self.state in (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            self.tcp.emit(self, self.snd_max, 0, RST, 0)
        self.error = error
        self.tcp.remove(self)

    # ---- output ----------------------------------------------------------------------

    def _init_send(self, iss):
        self.iss = self.snd_una = iss
        self.snd_nxt = self.snd_max = seq_add(iss, 1)
        self.cwnd = 4 * self.tcp.mss        # RFC 5681 (3): IW of 3-4 segments

    def _init_receive(self, seg):
        self.irs = seg.seq
        self.rcv_nxt = seq_add(seg.seq, 1)
        self.snd_wnd = seg.wnd
        self.snd_wl1 = seg.seq
        if seg.mss is not None:
            self.snd_mss = max(64, min(seg.mss, self.tcp.mss))
        else:
            self.snd_mss = min(536, self.tcp.mss)

    def _send_syn(self):
        flags = SYN if self.state == SYN_SENT else SYN | ACK
        self.tcp.emit(self, self.iss, self.rcv_nxt, flags, 0, mss_option=True)
        self._arm(self.rto)

    def rcv_window(self):
        if self.rcvq is None:
            return 0                          # TIME-WAIT: no more data
        w = self.rcvq.free()        # held out-of-order data is not subtracted: the
        return 65535 if w > 65535 else w      # window stays put, dup ACKs stay dup ACKs

    def _window_update(self):
        """After the user read: tell the peer when the window grew by enough to matter
        (receiver-side silly window avoidance, section 3.8.6.2.2)."""
        if self.state not in _RECEIVING:
            return
        edge = seq_add(self.rcv_nxt, self.rcv_window())
        step = min(len(self.rcvq.buf) // 2, self.snd_mss)
        if seq_diff(edge, self.rcv_adv) >= step:
            self.send_ack()

    def send_ack(self):
        # SND.MAX, not SND.NXT: after a time-out SND.NXT is behind what the peer has
        # seen, and an ACK numbered there would fail its acceptance test (BSD does so too).
        self.tcp.emit(self, self.snd_max, self.rcv_nxt, ACK, 0)

    def output(self):
        """Send new data (and the FIN) as far as the send window and cwnd allow."""
        if self.state not in _SENDING:
            return
        tcp = self.tcp
        q = self.sndq
        mss = self.snd_mss
        while True:
            total = len(q)
            off = seq_diff(self.snd_nxt, self.snd_una)
            if off > total:
                return                    # the FIN is out
            wnd = self.snd_wnd if self.snd_wnd < self.cwnd else self.cwnd
            n = total - off
            if n > mss:
                n = mss
            if n > wnd - off:
                n = wnd - off
            fin = self.fin_pending and off + n == total
            if n <= 0 and not (fin and off == total):
                if total > off and self.snd_wnd == 0 and self.deadline is None:
                    self._arm(self.rto)   # the persist timer: probe the zero window
                return
            flags = ACK | FIN if fin else ACK
            if n and off + n == total:
                flags |= PSH
            tcp.emit(self, self.snd_nxt, self.rcv_nxt, flags, n, q, off)
            if self.rtt_seq is None and n:
                self.rtt_seq = seq_add(self.snd_nxt, n)
                self.rtt_start = tcp.now()
            self.snd_nxt = seq_add(self.snd_nxt, n + 1 if fin else n)
            if seq_lt(self.snd_max, self.snd_nxt):
                self.snd_max = self.snd_nxt
            if self.deadline is None:
                self._arm(self.rto)
            if fin:
                return

    def _retransmit_first(self):
        """Send the segment at SND.UNA again (RTO, fast retransmit, window probe)."""
        q = self.sndq
        total = len(q)
        # Not more than the window: a zero window's probe byte goes again alone.
        n = min(total, self.snd_mss, max(self.snd_wnd, 1))
        fin = self.fin_pending and n == total
        flags = ACK | FIN if fin else ACK
        self.tcp.emit(self, self.snd_una, self.rcv_nxt, flags, n, q, 0)
        self.rtt_seq = None                 # Karn: no RTT sample from a retransmission
        self.retransmits += 1
        self.tcp.stats["retransmits"] += 1
        return seq_add(self.snd_una, n + 1 if fin else n)

    def _arm(self, ms):
        self.deadline = self.tcp.now() + ms

    # ---- timers ----------------------------------------------------------------------

    def on_timer(self):
        st = self.state
        self.deadline = None
        if st == TIME_WAIT:
            return self.tcp.remove(self)
        self.retries += 1
        self.tcp.stats["timeouts"] += 1
        if st == SYN_SENT or st == SYN_RECEIVED:
            if self.retries > SYN_RETRIES:
                return self._fail(ETIMEDOUT)
            self.rto = min(self.rto * 2, RTO_MAX_MS)
            return self._send_syn()
        if st not in _SENDING:
            return
        flight = seq_diff(self.snd_max, self.snd_una)
        if flight <= 1 and len(self.sndq) and self.snd_wnd == 0:
            # Zero-window probe (section 3.8.6.1): one byte past the window. The peer
            # keeps answering while it lives; only if it stops do the retries run out.
            self.tcp.stats["window_probes"] += 1
            self.tcp.emit(self, self.snd_una, self.rcv_nxt, ACK, 1, self.sndq, 0)
            self.snd_nxt = self.snd_max = seq_add(self.snd_una, 1)
        elif flight == 0:
            return
        else:
            if self.retries > DATA_RETRIES:
                return self._fail(ETIMEDOUT)
            # RFC 5681 (4): ssthresh = max(FlightSize/2, 2 SMSS), cwnd = 1 SMSS; go back
            # to SND.UNA (the rest follows as ACKs come).
            self.ssthresh = max(flight // 2, 2 * self.snd_mss)
            self.cwnd = self.snd_mss
            self.dupacks = 0
            self.snd_nxt = self._retransmit_first()
        self.rto = min(self.rto * 2, RTO_MAX_MS)     # RFC 6298 (5.5): back off
        self._arm(self.rto)

    def _fail(self, error):
        self.abort(error)

    # ---- SEGMENT ARRIVES (section 3.10.7) --------------------------------------------

    def segment(self, seg):
        st = self.state
        if st == SYN_SENT:
            return self._syn_sent(seg)
        flags = seg.flags
        # First: the sequence number.
        if not self._acceptable(seg):
            if not flags & RST:
                self.send_ack()
            return "out_of_window"
        # Second: RST (RFC 5961 section 3: only the exact sequence number resets).
        if flags & RST:
            if seg.seq != self.rcv_nxt:
                self.send_ack()              # challenge ACK
                return None
            self.tcp.stats["resets_rx"] += 1
            if st in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
                self.error = ECONNRESET
            elif st == SYN_RECEIVED and self.listener is None:
                self.error = ECONNREFUSED
            self.tcp.remove(self)
            return None
        # Fourth: a SYN in a synchronized state: challenge ACK (RFC 5961 section 4).
        if flags & SYN:
            self.send_ack()
            return None
        # Fifth: the ACK field.
        if not flags & ACK:
            return None
        if st == SYN_RECEIVED:
            if not (seq_lt(self.snd_una, seg.ack) and seq_le(seg.ack, self.snd_nxt)):
                self.tcp.emit_reset_for(self, seg)
                return None
            self.state = st = ESTABLISHED
            self.snd_una = seg.ack
            self.snd_wnd = seg.wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = seg.ack
            self.deadline = None
            self.retries = 0
            self.tcp.established(self)
        elif not self._ack(seg):
            return None
        st = self.state
        if st == TIME_WAIT:
            if flags & FIN:
                self.send_ack()                # the peer lost our ACK of its FIN
                self._arm(2 * MSL_MS)
            return None
        if st == CLOSED:
            return None
        # Seventh: the text; eighth: FIN (both in order only).
        if st in _RECEIVING and (len(seg.data) or flags & FIN):
            self._text(seg)
        return None

    def _acceptable(self, seg):
        """The acceptance test of section 3.10.7.4 (the table). A zero window still takes
        a segment at exactly RCV.NXT for its ACK and RST, its data trimmed away."""
        wnd = self.rcv_window()
        n = seg.seg_len()
        d = seq_diff(seg.seq, self.rcv_nxt)
        if wnd == 0:
            return d == 0
        if n == 0:
            return 0 <= d < wnd
        return (0 <= d < wnd) or (0 <= d + n - 1 < wnd) or (d < 0 < d + n)

    def _ack(self, seg):
        """The fifth step for the synchronized states. -> False to drop the segment."""
        ack = seg.ack
        if seq_lt(self.snd_max, ack):
            self.send_ack()                   # acknowledges what we never sent
            return False
        acked = seq_diff(ack, self.snd_una)
        if acked > 0:
            self._newly_acked(acked)
            self.snd_una = ack
            if seq_lt(self.snd_nxt, ack):
                self.snd_nxt = ack            # going back after a time-out: skip the rest
        elif acked == 0 and not len(seg.data) and not seg.flags & FIN:
            if seg.wnd == self.snd_wnd and seg.wnd and self.snd_max != self.snd_una:
                self._dupack()
        if seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq
                                             and seq_le(self.snd_wl2, ack)):
            self.snd_wnd = seg.wnd
            self.snd_wl1 = seg.seq
            self.snd_wl2 = ack
        if self.snd_wnd == 0:
            self.retries = 0                  # the peer answers our probes: it lives
        if acked > 0 or seg.wnd:
            self.output()
        return True

    def _newly_acked(self, acked):
        q = self.sndq
        data = acked if acked <= len(q) else len(q)
        fin_acked = self.fin_pending and acked > len(q)
        q.consume(data)
        self.retries = 0
        if self.rtt_seq is not None and seq_le(self.rtt_seq, seq_add(self.snd_una, acked)):
            self._rtt_sample(self.tcp.now() - self.rtt_start)
            self.rtt_seq = None
        # RFC 5681 3.1: slow start below ssthresh, else about one SMSS per RTT.
        mss = self.snd_mss
        if self.dupacks >= DUPACK_THRESHOLD:
            self.cwnd = self.ssthresh         # leave fast recovery
        elif self.cwnd < self.ssthresh:
            self.cwnd += min(data, mss)
        else:
            self.cwnd += max(1, mss * mss // self.cwnd)
        self.dupacks = 0
        # RFC 6298 (5.2, 5.3): stop the timer when all is acknowledged, else restart it.
        if acked >= seq_diff(self.snd_max, self.snd_una):
            self.deadline = None
        else:
            self._arm(self.rto)
        st = self.state
        if fin_acked:
            if st == FIN_WAIT_1:
                self.state = FIN_WAIT_2
            elif st == CLOSING:
                self._enter_time_wait()
            elif st == LAST_ACK:
                self.tcp.remove(self)

    def _dupack(self):
        self.dupacks += 1
        self.tcp.stats["dup_acks"] += 1
        mss = self.snd_mss
        if self.dupacks == DUPACK_THRESHOLD:
            # RFC 5681 3.2: fast retransmit, then fast recovery.
            flight = seq_diff(self.snd_max, self.snd_una)
            self.ssthresh = max(flight // 2, 2 * mss)
            self._retransmit_first()
            self.tcp.stats["fast_retransmits"] += 1
            self.cwnd = self.ssthresh + DUPACK_THRESHOLD * mss
        elif self.dupacks > DUPACK_THRESHOLD:
            self.cwnd += mss                  # each dup ACK: a segment has left the network

    def _rtt_sample(self, r):
        """RFC 6298 section 2 (2.2, 2.3), with K = 4 and alpha, beta = 1/8, 1/4."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        rto = int(self.srtt + max(GRANULARITY_MS, 4 * self.rttvar))
        self.rto = RTO_MIN_MS if rto < RTO_MIN_MS else (RTO_MAX_MS if rto > RTO_MAX_MS else rto)

    def _text(self, seg):
        d = seq_diff(seg.seq, self.rcv_nxt)
        data = seg.data
        fin = seg.flags & FIN
        if d < 0:
            data = data[-d:]
            d = 0
        if d > 0:
            self._hold(seg.seq, data, fin)
            self.send_ack()                   # RFC 5681 4.2: ACK out-of-order at once
            return
        self._accept(data, fin)
        while self.ooo and seq_le(self.ooo[0][0], self.rcv_nxt):
            s, data, fin = self.ooo.pop(0)
            d = seq_diff(self.rcv_nxt, s)
            if d <= len(data):
                self._accept(memoryview(data)[d:], fin)
        self.tcp.owe_ack(self)
        if self.state == TIME_WAIT or self.ooo:
            self.send_ack()

    def _accept(self, data, fin):
        """Take in-order data (as much as the buffer holds) and the FIN behind it."""
        if self.detached:
            n = len(data)                     # nobody will read: acknowledge and discard
        else:
            n = self.rcvq.append(data)
        self.rcv_nxt = seq_add(self.rcv_nxt, n)
        if n:
            self.tcp.stats["rx_bytes"] += n
        if fin and n == len(data) and not self.fin_received:
            self.fin_received = True
            self.rcv_nxt = seq_add(self.rcv_nxt, 1)
            st = self.state
            if st == ESTABLISHED:
                self.state = CLOSE_WAIT
            elif st == FIN_WAIT_1:
                # Our FIN not yet acknowledged (else we would be in FIN-WAIT-2): CLOSING.
                self.state = CLOSING
            elif st == FIN_WAIT_2:
                self._enter_time_wait()
            self.send_ack()

    def _hold(self, seq, data, fin):
        """Keep an out-of-order segment for later (within our window, a bounded number)."""
        self.tcp.stats["rx_out_of_order"] += 1
        ooo = self.ooo
        for e in ooo:
            if e[0] == seq and len(e[1]) >= len(data):
                return                        # a duplicate
        held = len(data)
        for e in ooo:
            held += len(e[1])
        if len(ooo) >= OOO_SEGMENTS or held > self.rcvq.free():
            return
        i = 0
        while i < len(ooo) and seq_lt(ooo[i][0], seq):
            i += 1
        ooo.insert(i, [seq, bytes(data), fin])

    def _enter_time_wait(self):
        self.state = TIME_WAIT
        self.sndq = None                      # keep only what TIME-WAIT needs, and
        if self.detached or not len(self.rcvq):   # data the user has yet to read
            self.rcvq = None
        self.ooo = []
        self._arm(2 * MSL_MS)
        self.tcp.time_wait(self)

    def _syn_sent(self, seg):
        """Section 3.10.7.3."""
        flags = seg.flags
        if flags & ACK and (seq_le(seg.ack, self.iss) or seq_lt(self.snd_max, seg.ack)):
            if not flags & RST:
                self.tcp.emit_reset_for(self, seg)
            return "out_of_window"
        if flags & RST:
            if flags & ACK:
                self.tcp.stats["resets_rx"] += 1
                self._fail_refused()
            return None
        if not flags & SYN:
            return None
        self._init_receive(seg)
        self.snd_wl2 = seg.ack
        if flags & ACK:
            self.snd_una = seg.ack
            self.state = ESTABLISHED
            self.deadline = None
            self.retries = 0
            self.send_ack()
        else:
            self.state = SYN_RECEIVED         # simultaneous open
            self._send_syn()
        return None

    def _fail_refused(self):
        self.error = ECONNREFUSED
        self.tcp.remove(self)

    # ---- for sockets and poll --------------------------------------------------------

    def readable(self):
        """Data to read, or nothing more will ever come (FIN, reset, closed)."""
        return (self.rcvq is not None and len(self.rcvq) > 0) or self.fin_received or self.state == CLOSED

    def writable(self):
        return self.state in (ESTABLISHED, CLOSE_WAIT) and not self.fin_pending \
            and self.sndq.free() > 0
