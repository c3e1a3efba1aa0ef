# UDP, RFC 768: source port, destination port, length, checksum, data.
# The checksum covers a pseudo-header (source and destination address, zero, protocol,
# UDP length), the header and the data. A computed 0 is sent as 0xFFFF; a received 0 means
# "no checksum" and is not verified.

import struct

from inet.addr import ip_ntoa
from inet.checksum import checksum, ones_sum
from inet.ipv4 import PROTO_UDP

HEADER_LEN = 8
HEADER_FORMAT = ">HHHH"          # source port, destination port, length, checksum

EPHEMERAL_FIRST = 49152    # ports picked for sockets bound to port 0 (RFC 6335 dynamic range)
EPHEMERAL_LAST = 65535
QUEUE_LEN = 32             # datagrams held per socket before new ones are dropped


def header_fields(frame, off):
    """-> (source port, destination port, length, checksum)."""
    return struct.unpack_from(HEADER_FORMAT, frame, off)


def write_header(buf, off, sport, dport, length):
    struct.pack_into(HEADER_FORMAT, buf, off, sport, dport, length, 0)


def datagram_checksum(buf, ip_off, udp_off, length):
    """The checksum field value for the datagram at buf[udp_off:udp_off + length] whose
    IPv4 header (holding the pseudo-header's addresses) is at buf[ip_off:]. Returns 0 when
    verifying a datagram that carries a correct one."""
    if udp_off == ip_off + 20:
        # No IP options: the addresses (the header's last 8 bytes) and the datagram are
        # one contiguous span, summed in one go.
        return checksum(buf, ip_off + 12, udp_off + length, PROTO_UDP + length)
    acc = ones_sum(buf, ip_off + 12, ip_off + 20, PROTO_UDP + length)
    return checksum(buf, udp_off, udp_off + length, acc)


class Socket:
    """A bound UDP port: made by Stack.socket(port). Datagrams that arrive for the port
    while the stack polls wait in a queue of at most QUEUE_LEN."""

    def __init__(self, stack, port):
        self.stack = stack
        self.port = port
        self.queue_len = QUEUE_LEN
        # Entries: (data memoryview, source ip, source port, source mac, checksum to reuse,
        # whether it was sent to our address alone: not to a broadcast or multicast one)
        self._queue = []

    def __repr__(self):
        return "<udp socket port %d, %d queued>" % (self.port, len(self._queue))

    def sendto(self, data, addr):
        """Send data to addr = (ip, port), ip as '10.0.2.2' or 4 bytes. Resolves the next
        hop with ARP first if needed (polling meanwhile). Raises ValueError when data does
        not fit the MTU, OSError (ETIMEDOUT) when the next hop does not answer ARP."""
        self.stack.udp_send(self.port, addr[0], addr[1], data)

    def recvfrom(self, timeout_ms=0):
        """-> (data bytes, (source ip str, source port)), or None if nothing came within
        timeout_ms. Polls the stack while it waits."""
        e = self._wait(timeout_ms)
        if e is None:
            return None
        return bytes(e[0]), (ip_ntoa(e[1]), e[2])

    def recv(self, timeout_ms=0):
        """Like recvfrom, without the source: -> data bytes or None."""
        e = self._wait(timeout_ms)
        return None if e is None else bytes(e[0])

    def pending(self):
        return len(self._queue)

    def echo(self):
        """Send every queued datagram back to where it came from (the echo service, RFC 862).
        -> how many were echoed. A datagram sent to a broadcast or multicast address, or
        from source port 0, is dropped unanswered and counted in stats['echo_refused']:
        port 0 means the sender expects no reply (RFC 768: "if not used, a value of zero is
        inserted"), and answering a broadcast would turn one datagram into one per host,
        which is why hosts may ignore broadcast pings too (RFC 1122 3.2.2.6)."""
        q = self._queue
        reply = self.stack.udp_reply
        stats = self.stack.stats
        port = self.port
        n = 0
        while q:
            e = q.pop(0)
            if not e[2] or not e[5]:
                stats["echo_refused"] += 1
                continue
            reply(port, e)
            n += 1
        return n

    def close(self):
        self.stack.unbind(self)
        self._queue = []

    def _wait(self, timeout_ms):
        q = self._queue
        if not q:
            stack = self.stack
            if timeout_ms <= 0:
                stack.poll(0)
            else:
                clock = stack.clock
                start = clock.ticks_ms()
                left = timeout_ms
                while True:
                    stack.poll(left)
                    if q:
                        break
                    left = timeout_ms - clock.ticks_diff(clock.ticks_ms(), start)
                    if left <= 0:
                        break
            if not q:
                return None
        return q.pop(0)

    def _deliver(self, entry):
        """Called by the stack for an arriving datagram. -> False when the queue is full."""
        if len(self._queue) >= self.queue_len:
            return False
        self._queue.append(entry)
        return True
