"""VirtIO devices written in Python, served to QEMU over vhost-user.

Host code (CPython), not part of the image. QEMU is the front-end: it owns
the PCI function the guest sees and hands us, over a Unix socket
(docs/interop/vhost-user.rst), the guest's memory (fds we mmap), where each
virtqueue lives, and eventfds for notifications. We are the back-end: we
read the rings in that shared memory and serve requests, as a device would.

    message.py   the wire format: header, flags, REPLY_ACK, fds (SCM_RIGHTS)
    memory.py    SET_MEM_TABLE regions, mmap'd; address translation
    ring.py      split virtqueue, device side; packed.py the packed one
    vring.py     one queue's vhost-user state: size, addresses, eventfds
    session.py   the front-end's messages, one handler each
    server.py    the socket and the kick eventfds, polled with selectors
    device.py    the Device base class and its misbehaviour switches
    rng.py, blk.py, net.py   the devices (net: a Python host at 10.0.2.2, ARP and ping)
    launch.py    start a back-end process and the QEMU arguments that use it

    python -m vhost rng --socket /tmp/rng.sock [--seed 1] [--misbehave X]
    python -m vhost blk --socket /tmp/blk.sock --image disk.img
    python -m vhost net --socket /tmp/net.sock

docs/vhost-user.md walks through writing a device.
"""
