# Network workloads for our image, sent over the raw REPL after ours_blk.py.
#
# ping prints busybox's reply format, so one parser reads both guests:
#   @@ ping_rtt
#   64 bytes from 10.0.2.2: seq=0 ttl=255 time=0.950 ms
# The UDP echo server is drivers/inet's own (inet.udp_echo); it stops after the number of
# datagrams the host will send, or after 5 s without traffic.
GUEST_IP = '10.0.2.15'
GATEWAY = '10.0.2.2'
PING_GAP_MS = 200   # the interval busybox ping is given on the Linux side


def make_stack():
    try:
        import time
        import virtio
        import inet
        net = virtio.find('net')
        if net is None:
            print('NOTE net unavailable: no device')
            return None
        return inet.Stack(net, time, ip=GUEST_IP, gateway=GATEWAY)
    except Exception as e:  # no driver yet: the table says n/a
        print('NOTE net unavailable: %r' % (e,))
        return None


def ping(stack, name, count):
    print('@@ %s' % name)
    if stack is None:
        print('NA driver missing')
        return
    clock = stack.clock
    for seq in range(count):
        rtt = stack.ping(GATEWAY, 1)[0]
        if rtt is not None:
            print('64 bytes from %s: seq=%d ttl=255 time=%d.%03d ms'
                  % (GATEWAY, seq, rtt // 1000, rtt % 1000))
        start = clock.ticks_ms()
        left = PING_GAP_MS
        while left > 0:
            stack.poll(left)  # answer ARP and the like while waiting
            left = PING_GAP_MS - clock.ticks_diff(clock.ticks_ms(), start)


def udp_server(stack, port, count):
    print('@@ udp_server')
    if stack is None:
        print('NA driver missing')
        return
    import inet
    print('UDPECHO READY')
    n = inet.udp_echo(stack, port, count, 5000)
    print('RESULT op=udpecho count=%d' % n)
