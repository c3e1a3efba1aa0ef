# Setup for tools/guest-profile.py: a stack on the net device, a UDP socket on port 7007
# and a datagram for it from 10.0.2.2 as a frame; ie() takes it in and echoes it.
#   .venv/bin/python tools/guest-profile.py --setup tools/profiles/udp_echo.py 'ie()'
import struct
import time
import inet
import virtio
from inet.checksum import checksum

net = virtio.find("net")
st = inet.Stack(net, time, ip="10.0.2.15", gateway="10.0.2.2")
s = st.socket(7007)


def udp_frame(data, src=b"\x0a\x00\x02\x02", sport=40000, dport=7007):
    ulen = 8 + len(data)
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 1, 0, 64, 17, 0,
                               src, st.ip))
    struct.pack_into(">H", ip, 10, checksum(ip, 0, 20))
    udp = bytearray(struct.pack(">HHHH", sport, dport, ulen, 0) + data)
    pseudo = src + st.ip + struct.pack(">BBH", 0, 17, ulen)
    struct.pack_into(">H", udp, 6, checksum(pseudo + udp, 0, len(pseudo) + ulen) or 0xFFFF)
    return bytes(st.mac) + b"\x52\x55\x0a\x00\x02\x02\x08\x00" + bytes(ip) + bytes(udp)


F = udp_frame(b"x" * 64)


def ie():
    st.input(F)
    if s.echo() != 1:
        raise ValueError("the datagram was not taken in and echoed")
