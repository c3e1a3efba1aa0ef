# Addresses: IPv4 addresses are 4-byte `bytes` inside the stack, MAC addresses 6-byte `bytes`.
# These helpers convert them to and from the text people type and read.

ANY = b"\x00\x00\x00\x00"                 # 0.0.0.0, "this host" before it has an address
LIMITED_BROADCAST = b"\xff\xff\xff\xff"   # 255.255.255.255 (RFC 919 section 7)


def ip_aton(text):
    """'10.0.2.15' -> b'\\n\\x00\\x02\\x0f'. Raises ValueError on anything else."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("bad IPv4 address %r: want four dotted numbers" % (text,))
    out = bytearray(4)
    for i in range(4):
        p = parts[i]
        if not p or len(p) > 3 or not p.isdigit():
            raise ValueError("bad IPv4 address %r: %r is not a number" % (text, p))
        v = int(p)
        if v > 255:
            raise ValueError("bad IPv4 address %r: %d is over 255" % (text, v))
        out[i] = v
    return bytes(out)


def ip_ntoa(addr):
    """b'\\n\\x00\\x02\\x0f' -> '10.0.2.15'."""
    return "%d.%d.%d.%d" % (addr[0], addr[1], addr[2], addr[3])


def mac_ntoa(mac):
    """6 bytes -> '52:54:00:12:34:56'."""
    return ":".join(["%02x" % b for b in mac])


def ip_addr(value):
    """An address given by a user, as text or as 4 bytes -> 4 bytes."""
    if isinstance(value, str):
        return ip_aton(value)
    if len(value) != 4:
        raise ValueError("bad IPv4 address %r: want 4 bytes" % (value,))
    return bytes(value)


def prefix_len(mask):
    """Netmask 255.255.255.0 -> 24 (counts the one bits)."""
    n = 0
    for b in mask:
        while b:
            n += b & 1
            b >>= 1
    return n


def same_subnet(a, b, mask):
    for i in range(4):
        if (a[i] ^ b[i]) & mask[i]:
            return False
    return True


def subnet_broadcast(ip, mask):
    """The directed broadcast address of ip's subnet (all host bits set)."""
    return bytes([ip[i] | (~mask[i] & 0xFF) for i in range(4)])
