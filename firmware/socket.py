# socket: MicroPython's socket module over drivers/inet (the code is inet/sockets.py).
# On the first socket the stack comes up by itself: DHCP on the first virtio-net, initial
# sequence numbers from virtio-rng when there is one. To use a stack you configured
# yourself:  socket.set_stack(inet.Stack(net, time, ip='10.0.2.15', gateway='10.0.2.2'))
from inet.sockets import *  # noqa: F401,F403
from inet import sockets as _impl


def _bring_up():
    import time
    import inet
    import virtio
    stack = inet.Stack(virtio.find('net'), time)
    try:
        rng = virtio.find('rng')
        stack.tcp.isn_source = lambda: int.from_bytes(rng.read(4), 'big')
    except Exception:       # no virtio-rng: the clock-driven ISNs of RFC 9293 3.4.1
        pass
    stack.dhcp()
    return stack


_impl.set_factory(_bring_up)
