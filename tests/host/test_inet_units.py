"""The inet modules one at a time: addresses, the Internet checksum, and the formats each
protocol module writes, read back by dpkt (an independent implementation)."""

import dpkt
import pytest
from hypothesis import given, strategies as st

from inet import arp, dhcp, ethernet, icmp, ipv4, stack, udp
from inet.addr import ip_aton, ip_ntoa, mac_ntoa, prefix_len, same_subnet, subnet_broadcast
from inet.checksum import adjust, checksum, fold, ones_sum
from tests.host.test_inet_sim import FakeClock, ref_checksum


# ---- the stack's numbers ------------------------------------------------------------------

def test_the_stacks_const_numbers_agree_with_the_protocol_modules():
    # inet.stack repeats these as const() literals for its per-frame paths.
    assert stack.ETH == stack.IP_OFF == ethernet.HEADER_LEN
    assert stack.L4_OFF == ethernet.HEADER_LEN + ipv4.HEADER_LEN
    assert stack.UDP_DATA_OFF == stack.L4_OFF + udp.HEADER_LEN
    assert stack._ETHERTYPE_IPV4 == ethernet.ETHERTYPE_IPV4
    assert stack._IPV4_IHL5 == (ipv4.VERSION << 4) | (ipv4.HEADER_LEN // 4)
    assert (stack._IP_HLEN, stack._UDP_HLEN) == (ipv4.HEADER_LEN, udp.HEADER_LEN)
    assert (stack._PROTO_UDP, stack._TTL) == (ipv4.PROTO_UDP, ipv4.DEFAULT_TTL)
    assert stack._FRAG == (ipv4.FLAG_MF | ipv4.OFFSET_MASK) >> 8
    assert stack._MIN_FRAME == ethernet.MIN_FRAME


# ---- addresses --------------------------------------------------------------------------

@given(st.binary(min_size=4, max_size=4))
def test_dotted_quad_round_trip(addr):
    text = ip_ntoa(addr)
    assert ip_aton(text) == addr
    assert text.count(".") == 3


@pytest.mark.parametrize("text, why", [
    ("10.0.2", "four dotted numbers"), ("10.0.2.256", "256 is over 255"),
    ("10.0.2.x", "'x' is not a number"), ("10..2.1", "'' is not a number"),
    ("1.2.3.4.5", "four dotted numbers"), (" 1.2.3.4", "' 1' is not a number"),
    ("1.2.3.-4", "'-4' is not a number"),
])
def test_bad_dotted_quads_are_refused_with_the_reason(text, why):
    with pytest.raises(ValueError) as e:
        ip_aton(text)
    assert why in str(e.value)


def test_mask_and_subnet_helpers():
    mask = ip_aton("255.255.255.0")
    assert prefix_len(mask) == 24 and prefix_len(ip_aton("255.255.240.0")) == 20
    assert same_subnet(ip_aton("10.0.2.15"), ip_aton("10.0.2.2"), mask)
    assert not same_subnet(ip_aton("10.0.2.15"), ip_aton("10.0.3.2"), mask)
    assert subnet_broadcast(ip_aton("10.0.2.15"), mask) == ip_aton("10.0.2.255")
    assert mac_ntoa(bytes.fromhex("525400123456")) == "52:54:00:12:34:56"


# ---- checksum ---------------------------------------------------------------------------

def test_checksum_rfc1071_example():
    # RFC 1071 section 3: these bytes sum to ddf2 (one's complement, with carries).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert fold(ones_sum(data, 0, len(data))) == 0xDDF2
    assert checksum(data, 0, len(data)) == 0x220D


@given(st.binary(max_size=1600), st.data())
def test_checksum_matches_the_reference_on_any_slice(data, draw):
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    assert checksum(data, start, end) == ref_checksum(data[start:end])


@given(st.lists(st.binary(max_size=300), max_size=4), st.binary(max_size=301))
def test_checksum_chains_over_even_pieces(pieces, last):
    pieces = [p + b"\x00" if len(p) % 2 else p for p in pieces]
    buf = b"".join(pieces) + last
    acc, i = 0, 0
    for p in pieces + [last]:
        acc = ones_sum(buf, i, i + len(p), acc)
        i += len(p)
    assert ~fold(acc) & 0xFFFF == ref_checksum(buf)


@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0),
       st.integers(0, 0xFFFF), st.data())
def test_incremental_update_equals_recomputing(data, new_word, draw):
    # RFC 1624: changing one word and adjusting the checksum gives a message that checks.
    i = draw.draw(st.integers(0, len(data) // 2 - 1)) * 2
    hc = ref_checksum(data)
    old_word = int.from_bytes(data[i:i + 2], "big")
    changed = data[:i] + new_word.to_bytes(2, "big") + data[i + 2:]
    new_hc = adjust(hc, old_word, new_word)
    assert ref_checksum(changed + new_hc.to_bytes(2, "big")) == 0


# ---- IPv4 -------------------------------------------------------------------------------

def ip_header(**fields):
    buf = bytearray(40)
    ipv4.write_header(buf, 0, fields.get("total", 40), 0x1234, ipv4.PROTO_UDP,
                      bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2]))
    return buf


def test_ipv4_header_is_what_dpkt_reads():
    buf = ip_header()
    ip = dpkt.ip.IP(bytes(buf))
    assert (ip.v, ip.hl, ip.len, ip.id, ip.mf, ip.offset, ip.ttl, ip.p) == \
        (4, 5, 40, 0x1234, 0, 0, 64, 17)
    assert (ip.src, ip.dst) == (bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2]))
    assert ref_checksum(bytes(buf[:20])) == 0
    assert ipv4.check(buf, 0, 40, 1500) == (None, 20, 40)


def fixed(buf):
    """Recompute the header checksum after a test edits a field."""
    buf[10:12] = b"\x00\x00"
    buf[10:12] = ref_checksum(bytes(buf[:(buf[0] & 15) * 4])).to_bytes(2, "big")
    return buf


@pytest.mark.parametrize("edit, avail, reason", [
    (lambda b: b, 19, "truncated"),
    (lambda b: fixed(b.__setitem__(0, 0x65) or b), 40, "bad_version"),
    (lambda b: fixed(b.__setitem__(0, 0x44) or b), 40, "bad_ihl"),
    (lambda b: fixed(b.__setitem__(3, 19) or b), 40, "bad_length"),
    (lambda b: fixed(b.__setitem__(3, 41) or b), 40, "truncated"),
    (lambda b: fixed(b.__setitem__(2, 6) or b), 40, "oversized"),          # 1576 bytes
    (lambda b: b.__setitem__(8, 63) or b, 40, "bad_checksum"),             # TTL, no fix
    (lambda b: fixed(b.__setitem__(6, 0x20) or b), 40, "fragment"),        # MF
    (lambda b: fixed(b.__setitem__(7, 0x01) or b), 40, "fragment"),        # offset 8
    (lambda b: fixed(b.__setitem__(0, 0x46) or b), 40, None),              # options skipped
])
def test_ipv4_check_names_what_is_wrong(edit, avail, reason):
    buf = edit(ip_header())
    assert ipv4.check(buf, 0, avail, 1500)[0] == reason


# ---- ICMP, ARP, DHCP formats ------------------------------------------------------------

def test_icmp_echo_and_its_reply_are_what_dpkt_reads():
    buf = bytearray(8 + 5)
    buf[8:] = b"hello"
    icmp.write_echo(buf, 0, icmp.TYPE_ECHO_REQUEST, 0x7570, 9, 5)
    m = dpkt.icmp.ICMP(bytes(buf))
    assert (m.type, m.code, m.data.id, m.data.seq, m.data.data) == (8, 0, 0x7570, 9, b"hello")
    assert ref_checksum(bytes(buf)) == 0
    icmp.turn_into_reply(buf, 0)
    assert dpkt.icmp.ICMP(bytes(buf)).type == 0 and ref_checksum(bytes(buf)) == 0


def test_arp_packet_is_what_dpkt_reads_and_parse_reads_it_back():
    buf = bytearray(28)
    arp.write(buf, 0, arp.OP_REPLY, b"\x02" * 6, b"\x0a\x00\x02\x0f", b"\x04" * 6, b"\x0a\x00\x02\x02")
    a = dpkt.arp.ARP(bytes(buf))
    assert (a.hrd, a.pro, a.hln, a.pln, a.op) == (1, 0x0800, 6, 4, 2)
    assert (a.sha, a.spa, a.tha, a.tpa) == (b"\x02" * 6, b"\x0a\x00\x02\x0f", b"\x04" * 6,
                                            b"\x0a\x00\x02\x02")
    assert arp.parse(buf, 0) == (2, b"\x02" * 6, b"\x0a\x00\x02\x0f", b"\x0a\x00\x02\x02")
    buf[7] = 3                                   # RARP request: not ours
    assert arp.parse(buf, 0) is None


def test_arp_cache_expiry_and_merge():
    c = FakeClock()
    cache = arp.Cache(c, ttl_ms=1000, size=2)
    assert cache.update(b"ip01", b"mac001") is False   # merge only refreshes what exists
    cache.add(b"ip01", b"mac001")
    c.advance_ms(900)
    assert cache.update(b"ip01", b"mac002") is True
    c.advance_ms(900)                                   # 1800 ms after add, 900 after merge
    assert cache.lookup(b"ip01") == b"mac002"
    c.advance_ms(100)
    assert cache.lookup(b"ip01") is None and len(cache) == 0


def test_dhcp_discover_is_what_dpkt_reads():
    m = dhcp.build(dhcp.DHCPREQUEST, 0x1234567, b"\x52\x54\x00\x12\x34\x56",
                   b"\x0a\x00\x02\x0f", b"\x0a\x00\x02\x02")
    assert len(m) == 300
    d = dpkt.dhcp.DHCP(bytes(m))
    assert (d.op, d.hrd, d.hln, d.xid, d.flags) == (1, 1, 6, 0x1234567, 0x8000)
    assert d.chaddr[:6] == b"\x52\x54\x00\x12\x34\x56"
    opts = dict(d.opts)
    assert opts[53] == b"\x03" and opts[50] == b"\x0a\x00\x02\x0f" and opts[54] == b"\x0a\x00\x02\x02"
    assert opts[55] == bytes([1, 3, 6, 51])


@pytest.mark.parametrize("opts, expect", [
    (b"\x35\x01\x02\xff", {53: b"\x02"}),
    (b"\x00\x00\x35\x01\x05\xff\x01\x02", {53: b"\x05"}),     # PAD skipped, END stops
    (b"\x35\x01\x02", {53: b"\x02"}),                         # no END: tolerated
    (b"\x35\x05\x02", None),                                  # runs past the end
    (b"\x35", None),                                          # no length byte
    (b"\x01\x03\xff\xff\xff", None),                          # 3-byte netmask
    (b"\x03\x06\x0a\x00\x02\x02\x0a\x00", None),              # router list of 1.5 addresses
    (b"\x06\x00", None),                                      # empty DNS list
])
def test_dhcp_options_parse_or_refuse(opts, expect):
    assert dhcp.parse_options(opts, 0, len(opts)) == expect


@given(st.binary(max_size=400))
def test_dhcp_reply_parser_never_raises(data):
    mac = b"\x52\x54\x00\x12\x34\x56"
    assert dhcp.parse_reply(data, 7, mac) is None or data[4:8] == b"\x00\x00\x00\x07"
    dhcp.parse_options(data, 0, len(data))
