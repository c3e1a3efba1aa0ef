# binascii: MicroPython's names (hexlify, unhexlify, a2b_base64, b2a_base64,
# crc32), for the image, whose MicroPython source has no extmod/ (where the C
# one lives). Base64 is RFC 4648 section 4; crc32 the zlib/PNG CRC-32
# (reflected polynomial 0xEDB88320), as binascii.crc32.

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HEX = b"0123456789abcdef"


def hexlify(data, sep=None):
    out = bytearray()
    for i, b in enumerate(bytes(data)):
        if sep and i:
            out += sep if isinstance(sep, (bytes, bytearray)) else sep.encode()
        out.append(_HEX[b >> 4])
        out.append(_HEX[b & 15])
    return bytes(out)


def unhexlify(data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) % 2:
        raise ValueError("odd-length string")
    try:
        return bytes(int(data[i:i + 2], 16) for i in range(0, len(data), 2))
    except ValueError:
        raise ValueError("non-hex digit found")


def b2a_base64(data, newline=True):
    data = bytes(data)
    out = bytearray()
    for i in range(0, len(data), 3):
        chunk = data[i:i + 3]
        n = int.from_bytes(chunk + bytes(3 - len(chunk)), "big")
        for k in range(4):
            out.append(_B64[(n >> (18 - 6 * k)) & 63] if k <= len(chunk) else 61)   # 61: '='
    if newline:
        out.append(10)
    return bytes(out)


def a2b_base64(data):
    if isinstance(data, str):
        data = data.encode()
    n = bits = 0
    out = bytearray()
    for c in data:
        if c == 61:         # '=': the end
            break
        v = _B64.find(bytes((c,)))
        if v < 0:
            continue        # whitespace and other characters are skipped
        n = (n << 6) | v
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((n >> bits) & 255)
    if bits >= 6:
        raise ValueError("incorrect padding")
    return bytes(out)


def crc32(data, value=0):
    crc = value ^ 0xFFFFFFFF
    for b in bytes(data):
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
