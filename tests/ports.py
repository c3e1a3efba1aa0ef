"""A free port on the host's loopback, for hostfwd and host-side servers in tests."""
import socket


def free_port(kind=socket.SOCK_STREAM):
    """A port nobody uses on 127.0.0.1 now: TCP by default, socket.SOCK_DGRAM for UDP."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_tcp_port():
    return free_port(socket.SOCK_STREAM)


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)
