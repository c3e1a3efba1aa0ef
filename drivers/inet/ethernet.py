# Ethernet II framing (RFC 894): destination MAC, source MAC, EtherType, payload.
# The link hands us frames without preamble or FCS. Layout: dst 0..5, src 6..11, type 12..13.

HEADER_LEN = 14
MIN_FRAME = 60          # 64 bytes on the wire less the 4-byte FCS; shorter frames are padded
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806

BROADCAST = b"\xff\xff\xff\xff\xff\xff"


def ethertype(frame):
    return (frame[12] << 8) | frame[13]


def is_group(mac):
    """Broadcast and multicast addresses have the I/G bit (bit 0 of the first byte) set."""
    return mac[0] & 1
