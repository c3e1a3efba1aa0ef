"""A free port on the host's loopback, for hostfwd and host-side servers in tests: the
bench's helpers (bench/qemu.py), which the tests share."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'bench'))

from qemu import free_port, free_tcp_port, free_udp_port  # noqa: E402,F401
