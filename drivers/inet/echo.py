# The UDP echo service (RFC 862): every datagram received on the port goes back to its
# sender unchanged. The loop is poll + echo: a reply is built in the stack's transmit
# buffer straight from a view of the received frame, and reuses the request's checksum.

POLL_MS = 100        # how long one poll waits for traffic before the loop checks its limits


def udp_echo(stack, port=7, count=0, idle_ms=0):
    """Serve UDP echo on port until `count` datagrams were echoed (0: no limit) or nothing
    arrived for idle_ms (0: no limit). -> the number of datagrams echoed."""
    sock = stack.socket(port)
    clock = stack.clock
    echoed = 0
    last = clock.ticks_ms()
    try:
        while True:
            if stack.poll(POLL_MS):
                echoed += sock.echo()
                if count and echoed >= count:
                    return echoed
                if idle_ms:
                    last = clock.ticks_ms()
            elif idle_ms and clock.ticks_diff(clock.ticks_ms(), last) >= idle_ms:
                return echoed
    finally:
        sock.close()
