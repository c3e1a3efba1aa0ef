"""TCP (drivers/inet/tcp.py, tcb.py) between two stacks on a simulated Ethernet
(tests/host/tcp_sim.py): handshakes, data both ways across the 32-bit sequence wrap, loss,
duplication and reordering (seeded), zero windows, fast retransmit, RTO back-off, refused and
reset connections, a vanished peer, half-close, TIME-WAIT, the listen backlog; and malformed
segments from hypothesis, which are dropped and counted without an exception."""

import random
import struct

import dpkt
import pytest
from hypothesis import given, settings, strategies as st

from inet import tcb
from inet.tcpseg import ACK, SYN, seq_add, seq_diff, seq_lt
from tests.host.tcp_sim import A_MAC, B_IP, B_MAC, Pump, pair, run
from tests.host.test_inet_sim import ref_checksum


def opened(w, a, b, port=7, backlog=2):
    lst = b.tcp.listen(port, backlog)
    c = a.tcp.connect(B_IP, port)
    run(w, [a, b], lambda: lst.ready and c.state == tcb.ESTABLISHED, limit_ms=10000)
    return c, lst.accept(), lst


def exchange(w, a, b, c, s, out_a, out_b, limit_ms=600000):
    pa = Pump(c, out_a)
    pb = Pump(s, out_b)
    ms = run(w, [a, b], lambda: pa.eof() and pb.eof(), step=lambda: (pa(), pb()),
             limit_ms=limit_ms)
    return pa.got, pb.got, ms


def blob(n, seed):
    return random.Random(seed).randbytes(n)


def test_sequence_arithmetic_wraps():
    assert seq_add(0xFFFFFFFF, 2) == 1
    assert seq_diff(1, 0xFFFFFFFF) == 2
    assert seq_diff(0xFFFFFFFF, 1) == -2
    assert seq_lt(0xFFFFFF00, 0x10) and not seq_lt(0x10, 0xFFFFFF00)


def test_handshake_carries_mss_and_data_flows_both_ways():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    syn = dpkt.ethernet.Ethernet(w.a.sent[0]).data.data
    assert syn.flags == dpkt.tcp.TH_SYN
    assert dict(dpkt.tcp.parse_opts(syn.opts))[dpkt.tcp.TCP_OPT_MSS] == struct.pack(">H", 1460)
    got_a, got_b, _ = exchange(w, a, b, c, s, b"hello", b"world")
    assert (got_a, got_b) == (b"world", b"hello")


@pytest.mark.parametrize("side", ["active", "passive"])
def test_transfer_across_the_sequence_wrap(side):
    w, a, b = pair()
    stack = a if side == "active" else b
    stack.tcp.isn_source = lambda: 0xFFFFF000      # wraps after 4 KiB
    c, s, _ = opened(w, a, b)
    data = blob(200000, 1)
    got_a, got_b, _ = exchange(w, a, b, c, s, data, data[::-1])
    assert got_b == data and got_a == data[::-1]
    assert (c if side == "active" else s).snd_una < 300000       # past 2**32: wrapped


@pytest.mark.parametrize("seed", range(4))
def test_loss_duplication_reordering(seed):
    w, a, b = pair(seed=seed, loss=0.05, dup=0.03, reorder=0.08)
    a.tcp.isn_source = lambda: 0xFFFF0000
    c, s, _ = opened(w, a, b)
    data = blob(300000, seed)
    got_a, got_b, _ = exchange(w, a, b, c, s, data, data[::-1])
    assert got_b == data and got_a == data[::-1]
    assert w.dropped > 0
    assert a.tcp.stats["retransmits"] + b.tcp.stats["retransmits"] > 0
    assert a.tcp.stats["rx_out_of_order"] + b.tcp.stats["rx_out_of_order"] > 0


def test_one_lost_segment_is_fast_retransmitted():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    seen = [0]

    def lose_tenth_data_segment(to, frame):
        if to is w.b and len(frame) > 100:
            seen[0] += 1
            if seen[0] == 10:
                return None
        return frame
    w.tamper = lose_tenth_data_segment
    data = blob(100000, 2)
    _, got_b, _ = exchange(w, a, b, c, s, data, b"")
    assert got_b == data
    assert a.tcp.stats["fast_retransmits"] == 1
    assert a.tcp.stats["timeouts"] == 0                  # recovered without waiting an RTO


def test_zero_window_is_probed_until_the_reader_comes_back():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    data = blob(100000, 3)
    pa = Pump(c, data)
    # b does not read: its 32 KiB buffer fills and it offers a zero window
    run(w, [a, b], lambda: c.snd_wnd == 0 and len(s.rcvq) == b.tcp.rcvbuf, step=pa)
    run(w, [a, b], lambda: a.tcp.stats["window_probes"] >= 3, step=pa, limit_ms=20000)
    assert c.state == tcb.ESTABLISHED and c.error is None
    pb = Pump(s, b"")
    run(w, [a, b], lambda: pb.eof(), step=lambda: (pa(), pb()), limit_ms=60000)
    assert pb.got == data


def test_rtt_estimate_follows_rfc6298():
    w, a, b = pair(latency_us=50000)                  # 100 ms round trip
    c, s, _ = opened(w, a, b)
    exchange(w, a, b, c, s, blob(20000, 4), b"")
    assert 95 <= c.srtt <= 120
    assert c.rto >= 200 and c.rto <= 400


def test_refused_connection():
    w, a, b = pair()
    c = a.tcp.connect(B_IP, 81)
    run(w, [a, b], lambda: c.state == tcb.CLOSED, limit_ms=1000)
    assert c.error == tcb.ECONNREFUSED


def test_connect_to_nobody_times_out_with_backoff():
    w, a, b = pair()
    w.cut = True
    c = a.tcp.connect(B_IP, 7)
    ms = run(w, [a, b], lambda: c.state == tcb.CLOSED, limit_ms=200000)
    assert c.error == tcb.ETIMEDOUT
    syns = [f for f in w.a.sent if len(f) >= 54]
    assert len(syns) == tcb.SYN_RETRIES + 1
    assert 60000 <= ms <= 70000                      # 1+2+4+8+16+32 s


def test_vanished_peer_times_out():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    w.cut = True
    c.send(b"x" * 1000)
    run(w, [a, b], lambda: c.state == tcb.CLOSED, limit_ms=600000)
    assert c.error == tcb.ETIMEDOUT


def test_reset_by_peer():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    s.abort()
    run(w, [a, b], lambda: c.state == tcb.CLOSED, limit_ms=1000)
    assert c.error == tcb.ECONNRESET


def test_half_close_keeps_the_other_direction():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    c.shutdown_write()
    run(w, [a, b], lambda: c.state == tcb.FIN_WAIT_2, limit_ms=1000)
    assert s.state == tcb.CLOSE_WAIT and c.state == tcb.FIN_WAIT_2
    pb = Pump(s, blob(50000, 5))
    pa = Pump(c, b"", close=False)
    run(w, [a, b], lambda: pa.eof(), step=lambda: (pa(), pb()), limit_ms=10000)
    assert pa.got == pb.out.tobytes()
    assert c.state == tcb.TIME_WAIT
    run(w, [a, b], lambda: s.state == tcb.CLOSED, limit_ms=1000)
    run(w, [a, b], lambda: c.state == tcb.CLOSED, limit_ms=2 * tcb.MSL_MS + 1000)
    assert not a.tcp.conns and not b.tcp.conns


def test_listen_backlog_limits_half_open_and_queued():
    w, a, b = pair()
    lst = b.tcp.listen(7, backlog=2)
    conns = [a.tcp.connect(B_IP, 7) for _ in range(4)]
    run(w, [a, b], lambda: len(lst.ready) == 2, limit_ms=1000)
    assert b.drops["backlog_full"] >= 2
    assert sum(c.state == tcb.ESTABLISHED for c in conns) == 2
    lst.accept()
    lst.accept()
    # the two refused SYNs come again after their RTO and now find room
    run(w, [a, b], lambda: len(lst.ready) == 2, limit_ms=5000)
    assert all(c.state == tcb.ESTABLISHED for c in conns)


def test_peer_mss_is_respected():
    w, a, b = pair(b_mtu=576)                        # b announces MSS 536
    c, s, _ = opened(w, a, b)
    exchange(w, a, b, c, s, blob(20000, 6), b"")
    sizes = [len(dpkt.ethernet.Ethernet(f).data.data.data) for f in w.a.sent]
    assert max(sizes) == 536


# ---- malformed segments ------------------------------------------------------------------

def segment(sport=40000, dport=7, seq=1000, ack=0, flags=SYN, off=5, opts=b"", data=b"",
            csum=None):
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, 8192, 0, 0)
    tcp += opts + data
    pseudo = bytes([10, 0, 2, 2, 10, 0, 2, 15, 0, 6]) + struct.pack(">H", len(tcp))
    c = ref_checksum(pseudo + tcp) if csum is None else csum
    tcp = tcp[:16] + struct.pack(">H", c) + tcp[18:]
    ip = dpkt.ip.IP(src=bytes([10, 0, 2, 2]), dst=bytes([10, 0, 2, 15]), p=6, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=B_MAC, dst=A_MAC, type=0x0800, data=ip))


def listening():
    w, a, b = pair()
    a.tcp.listen(7)
    return w, a


def counted(stack):
    st = stack.stats
    return st["rx_frames"] == st["rx_arp"] + st["rx_icmp"] + st["rx_udp"] + st["rx_tcp"] + \
        stack.dropped()


@pytest.mark.parametrize("kw,reason", [
    (dict(csum=0x1234), "bad_checksum"),
    (dict(off=4), "bad_offset"),
    (dict(off=15), "bad_offset"),
    (dict(off=6, opts=bytes([1, 2, 4, 5])), "bad_options"),        # cut by the header
    (dict(off=6, opts=bytes([2, 8, 5, 0])), "bad_options"),        # length past the header
    (dict(off=6, opts=bytes([8, 1, 0, 0])), "bad_options"),        # length under 2
    (dict(sport=0), "bad_port"),
])
def test_malformed_segments_are_dropped_and_counted(kw, reason):
    w, a = listening()
    a.input(segment(**kw))
    assert a.drops[reason] == 1 and counted(a)
    assert not a.tcp.conns and not w.a.sent


def test_out_of_window_segment_is_dropped_and_answered_with_an_ack():
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    n = len(w.a.sent)
    a.input(segment(sport=7, dport=c.lport, seq=seq_add(c.rcv_nxt, 100000), ack=c.snd_nxt,
                    flags=ACK, data=b"far away"))
    assert a.drops["out_of_window"] == 1 and len(c.rcvq) == 0
    assert len(w.a.sent) == n + 1                   # an ACK telling the right place


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.integers(0, 15), st.integers(0, 0x3F),
       st.booleans())
def test_fuzzed_segments_never_raise(tail, off, flags, to_conn):
    w, a, b = pair()
    c, s, _ = opened(w, a, b)
    a.tcp.listen(9)
    seq = c.rcv_nxt if to_conn else 5
    frame = segment(sport=7 if to_conn else 1234, dport=c.lport if to_conn else 9,
                    seq=seq, ack=c.snd_nxt, flags=flags, off=off, opts=tail[:off * 4],
                    data=tail[off * 4:])
    a.input(frame)
    a.poll(0)
    assert counted(a)
