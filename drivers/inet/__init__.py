# A small IPv4 stack over one Ethernet link: Ethernet, ARP, IPv4, ICMP echo, UDP, and a
# DHCP client. See stack.py for the link and clock it needs.
#
#   import inet
#   s = inet.Stack(link, clock)     # link: e.g. the virtio-net device; clock: hw or time
#   s.dhcp()                        # or s.configure('10.0.2.15', '255.255.255.0', '10.0.2.2')
#   s.ping('10.0.2.2')              # -> [rtt_us, ...]
#   u = s.socket(5000); u.sendto(b'hi', ('10.0.2.2', 7)); u.recvfrom(1000)
#   inet.udp_echo(s, 7)             # serve RFC 862 echo

from inet.addr import ip_aton, ip_ntoa, mac_ntoa
from inet.echo import udp_echo
from inet.stack import DROP_REASONS, Stack
