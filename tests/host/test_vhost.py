"""The vhost-user back-end (vhost/) against a front-end written here: real
Unix socket, real fds (a memfd as guest memory, eventfds for kick and
call), a split ring laid out by hand as a driver would. No QEMU.
Clear errors for a front-end that sends something unexpected."""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from vhost import message as m
from vhost.blk import BlkDevice
from vhost.device import F_EVENT_IDX
from vhost.rng import RngDevice, stream
from vhost.server import Server

MEM = 1 << 20
UADDR = 0x7F0000000000            # where the "front-end" says it mapped guest RAM
DESC, AVAIL, USED, BUF = 0x1000, 0x2000, 0x3000, 0x10000
QSIZE = 4


class FrontEnd:
    """Just enough of QEMU's side of the protocol."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.memfd = os.memfd_create('guest')
        os.ftruncate(self.memfd, MEM)

    def send(self, request, payload=b'', fds=(), flags=m.VERSION):
        data = m.HEADER.pack(request, flags, len(payload)) + payload
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack('%di' % len(fds), *fds))] \
            if fds else []
        self.sock.sendmsg([data], anc)

    def call(self, request, payload=b'', flags=m.VERSION):
        self.send(request, payload, flags=flags)
        request_, flags_, size = m.HEADER.unpack(self.sock.recv(12))
        assert request_ == request and flags_ & m.FLAG_REPLY
        return self.sock.recv(size) if size else b''

    def u64(self, request):
        return struct.unpack('<Q', self.call(request))[0]

    def guest_write(self, gpa, data):
        os.pwrite(self.memfd, data, gpa)

    def guest_read(self, gpa, n):
        return os.pread(self.memfd, n, gpa)

    def start_queue(self, features):
        if features >> m.F_PROTOCOL_FEATURES & 1:
            self.send(m.SET_PROTOCOL_FEATURES, m.U64.pack(0))
        self.send(m.SET_FEATURES, m.U64.pack(features))
        self.send(m.SET_MEM_TABLE, m.MEM_HEADER.pack(1, 0)
                  + m.MEM_REGION.pack(0, MEM, UADDR, 0), fds=[self.memfd])
        self.send(m.SET_VRING_NUM, m.VRING_STATE.pack(0, QSIZE))
        self.send(m.SET_VRING_BASE, m.VRING_STATE.pack(0, 0))
        self.send(m.SET_VRING_ADDR, m.VRING_ADDR.pack(0, 0, UADDR + DESC, UADDR + USED,
                                                       UADDR + AVAIL, 0))
        self.kick, self.callfd = os.eventfd(0, os.EFD_NONBLOCK), os.eventfd(0, os.EFD_NONBLOCK)
        self.send(m.SET_VRING_CALL, m.U64.pack(0), fds=[self.callfd])
        self.send(m.SET_VRING_KICK, m.U64.pack(0), fds=[self.kick])
        if features >> m.F_PROTOCOL_FEATURES & 1:
            self.send(m.SET_VRING_ENABLE, m.VRING_STATE.pack(0, 1))
        self.u64(m.GET_QUEUE_NUM)      # a reply: everything before it was served
        self.avail_idx = 0

    def post(self, head, chain):
        """A driver's add + kick: descriptors [(addr, len, write)], chained."""
        for i, (addr, n, write) in enumerate(chain):
            flags = (2 if write else 0) | (1 if i + 1 < len(chain) else 0)
            self.guest_write(DESC + 16 * (head + i), struct.pack('<QIHH', addr, n, flags,
                                                                head + i + 1))
        self.guest_write(AVAIL + 4 + 2 * (self.avail_idx % QSIZE), struct.pack('<H', head))
        self.avail_idx += 1
        self.guest_write(AVAIL + 2, struct.pack('<H', self.avail_idx))
        os.eventfd_write(self.kick, 1)

    def used(self, timeout=5.0):
        """Wait for the call eventfd; (used idx, [(id, len)...])."""
        import select
        assert select.select([self.callfd], [], [], timeout)[0], 'no interrupt'
        os.eventfd_read(self.callfd)
        idx = struct.unpack('<H', self.guest_read(USED + 2, 2))[0]
        return idx, [struct.unpack('<II', self.guest_read(USED + 4 + 8 * i, 8))
                     for i in range(min(idx, QSIZE))]

    def close(self):
        self.sock.close()
        os.close(self.memfd)


@pytest.fixture
def serve(tmp_path):
    """serve(device) -> (FrontEnd, Server) with the server in a thread."""
    made = []

    def start(device):
        path = str(tmp_path / 'vu.sock')
        server = Server(device, path, log=lambda msg: None)
        t = threading.Thread(target=server.serve, daemon=True)
        t.start()
        fe = FrontEnd(path)
        made.append((fe, server, t))
        return fe, server

    yield start
    for fe, server, t in made:
        fe.close()
        t.join(5)
        assert not t.is_alive(), 'the back-end did not end when the front-end left'
        assert not os.path.exists(server.path)


RING = 1 << 32                      # VERSION_1 (no EVENT_IDX: every completion interrupts)


def test_handshake_features_and_protocol_features(serve):
    fe, _ = serve(RngDevice())
    features = fe.u64(m.GET_FEATURES)
    assert features >> 32 & 1 and features >> m.F_PROTOCOL_FEATURES & 1
    proto = fe.u64(m.GET_PROTOCOL_FEATURES)
    assert proto >> m.PROTOCOL_F_REPLY_ACK & 1
    assert not proto >> m.PROTOCOL_F_CONFIG & 1            # rng has no config space
    fe.send(m.SET_PROTOCOL_FEATURES, m.U64.pack(1 << m.PROTOCOL_F_REPLY_ACK))
    assert fe.call(m.SET_OWNER, flags=m.VERSION | m.FLAG_NEED_REPLY) == m.U64.pack(0)
    assert fe.u64(m.GET_QUEUE_NUM) == 1


def test_rng_request_through_shared_memory_with_kick_and_call(serve):
    fe, server = serve(RngDevice(seed=9))
    fe.start_queue(RING | 1 << m.F_PROTOCOL_FEATURES)
    fe.post(0, [(BUF, 32, True)])
    idx, elems = fe.used()
    assert idx == 1 and elems[0] == (0, 32)
    assert fe.guest_read(BUF, 32) == stream(9, 32)
    # GET_VRING_BASE stops the ring and says where it stopped.
    assert fe.call(m.GET_VRING_BASE, m.VRING_STATE.pack(0, 0)) == m.VRING_STATE.pack(0, 1)


def test_blk_config_and_a_write_reach_the_image(serve, tmp_path):
    image = tmp_path / 'disk.img'
    image.write_bytes(bytes(8192))
    fe, _ = serve(BlkDevice(str(image)))
    assert fe.u64(m.GET_PROTOCOL_FEATURES) >> m.PROTOCOL_F_CONFIG & 1
    cfg = fe.call(m.GET_CONFIG, m.CONFIG_HEADER.pack(0, 60, 0) + bytes(60))
    assert struct.unpack_from('<Q', cfg, 12)[0] == 16          # capacity in sectors
    fe.start_queue(RING)
    fe.guest_write(BUF, struct.pack('<IIQ', 1, 0, 3) + b'\x42' * 512)   # T_OUT sector 3
    fe.post(0, [(BUF, 16, False), (BUF + 16, 512, False), (BUF + 600, 1, True)])
    idx, elems = fe.used()
    assert elems[0] == (0, 1) and fe.guest_read(BUF + 600, 1) == b'\x00'
    assert image.read_bytes()[1536:2048] == b'\x42' * 512


@pytest.mark.parametrize('request_, payload, fds, error', [
    (99, b'', 0, 'request 99 is not supported by this back-end'),
    (m.SET_VRING_NUM, m.VRING_STATE.pack(3, 8), 0,
     'SET_VRING_NUM: queue 3 does not exist (virtio-rng has 1)'),
    (m.SET_VRING_NUM, m.VRING_STATE.pack(0, 6), 0,
     'SET_VRING_NUM: queue 0 size 6 (maximum 8, a power of 2)'),
    (m.SET_FEATURES, m.U64.pack(1 << 45), 0, 'SET_FEATURES 0x200000000000: bits 0x200000000000 '
     'were never offered'),
    (m.SET_FEATURES, b'\x00' * 4, 0, 'SET_FEATURES: payload of 4 bytes, expected 8'),
    (m.SET_VRING_KICK, m.U64.pack(0), 1, 'SET_VRING_KICK: queue 0 started before SET_MEM_TABLE'),
    (m.SET_VRING_CALL, m.U64.pack(0), 0, 'SET_VRING_CALL: 0 file descriptors, expected 1'),
    (m.SET_CONFIG, m.CONFIG_HEADER.pack(0, 4, 0) + bytes(4), 0,
     'SET_CONFIG: virtio-rng has no configuration space'),
])
def test_unexpected_messages_get_a_failing_ack_and_a_clear_error(serve, request_, payload,
                                                                 fds, error):
    fe, server = serve(RngDevice())
    fe.send(m.SET_PROTOCOL_FEATURES, m.U64.pack(1 << m.PROTOCOL_F_REPLY_ACK))
    fe.send(m.SET_FEATURES, m.U64.pack(RING | 1 << m.F_PROTOCOL_FEATURES))
    fds = [os.eventfd(0)] * fds
    fe.send(request_, payload, fds=fds, flags=m.VERSION | m.FLAG_NEED_REPLY)
    header = fe.sock.recv(12)
    assert m.HEADER.unpack(header)[0] == request_
    assert fe.sock.recv(8) == m.U64.pack(1)                   # the ack says: failed
    assert server.errors[-1].startswith(error), server.errors
    assert fe.u64(m.GET_QUEUE_NUM) == 1                       # and the session goes on


def test_a_header_of_another_protocol_version_ends_the_session(serve):
    fe, server = serve(RngDevice())
    fe.send(m.GET_FEATURES, flags=2)
    assert fe.sock.recv(12) == b''                            # connection closed
    assert server.errors == ['GET_FEATURES: protocol version 2, this back-end speaks 1']


def test_misbehaviour_switches_lie_in_the_used_ring(serve):
    dev = RngDevice()
    fe, _ = serve(dev)
    fe.start_queue(RING)
    dev.set_misbehave('bad_used_id')
    fe.post(0, [(BUF, 16, True)])
    assert fe.used()[1][0] == (QSIZE + 1, 16)
    dev.set_misbehave('oversized_len')
    fe.post(1, [(BUF, 16, True)])
    assert fe.used()[1][1] == (1, 16 + 512)
    dev.set_misbehave('used_idx_jump')
    fe.post(2, [(BUF, 16, True)])
    assert fe.used()[0] == 3 + QSIZE + 1
    dev.set_misbehave('missing_interrupt')
    fe.post(3, [(BUF, 16, True)])
    with pytest.raises(AssertionError, match='no interrupt'):
        fe.used(timeout=0.5)
    dev.set_misbehave('interrupt_storm')
    fe.post(0, [(BUF, 16, True)])
    signals, deadline = 0, time.monotonic() + 5
    while signals < 64 and time.monotonic() < deadline:
        try:
            signals += os.eventfd_read(fe.callfd)
        except BlockingIOError:
            time.sleep(0.01)
    assert signals == 64                              # 64 signals for one completion
    with pytest.raises(ValueError, match='no way to set DEVICE_NEEDS_RESET'):
        dev.set_misbehave('needs_reset')


# A driver on another CPU, as a guest vCPU is to the back-end: it polls the
# fields the device publishes (used idx, avail_event) with single 2-byte loads,
# as a guest's 16-bit load does, until the stop word is set; then prints every
# value it saw that went backwards: a value the device never published.
POLLER = r"""
import mmap, sys
fd, size, stop = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) // 2
fields = [int(a) // 2 for a in sys.argv[4:]]
h = memoryview(mmap.mmap(fd, size)).cast('H')
last = [h[i] for i in fields]
bad = []
reads = 0
print('polling', flush=True)
while not h[stop]:
    reads += 1000
    for _ in range(1000):
        for k, i in enumerate(fields):
            v = h[i]
            if (v - last[k]) & 0xFFFF >= 0x8000:
                bad.append('byte %d: %d after %d' % (2 * i, v, last[k]))
            last[k] = v
print(len(bad), bad[:5], 'in %d reads' % reads)
"""
POLLED_REQUESTS = 10000


def test_a_polling_driver_never_sees_a_used_idx_the_device_did_not_publish(serve):
    """The bench's 'used idx 0 reports 55005 completions': a field the driver
    polls must go from one published value to the next in one store, never
    through a value in between (0, or half of the new one)."""
    fe, _ = serve(RngDevice())
    fe.start_queue(RING | 1 << F_EVENT_IDX)
    stop, used_event = BUF + 0x1000, AVAIL + 4 + 2 * QSIZE
    poller = subprocess.Popen([sys.executable, '-c', POLLER, str(fe.memfd), str(MEM), str(stop),
                               str(USED + 2), str(USED + 4 + 8 * QSIZE)],
                              pass_fds=[fe.memfd], stdout=subprocess.PIPE, text=True)
    try:
        assert poller.stdout.readline() == 'polling\n'
        for n in range(POLLED_REQUESTS):
            fe.guest_write(used_event, struct.pack('<H', n))   # interrupt me at n + 1
            fe.post(n % QSIZE, [(BUF, 1, True)])
            assert fe.used()[0] == n + 1
    finally:
        fe.guest_write(stop, b'\1\0')
        try:
            out = poller.communicate(timeout=10)[0]
        finally:
            poller.kill()
            poller.wait()
    assert out.startswith('0 [] '), 'the driver saw values never published: ' + out



def _new_kick(fe):
    old, fe.kick = fe.kick, os.eventfd(0, os.EFD_NONBLOCK)
    fe.send(m.SET_VRING_KICK, m.U64.pack(0), fds=[fe.kick])
    os.close(old)


def _mem_table(fe):
    fe.send(m.SET_MEM_TABLE, m.MEM_HEADER.pack(1, 0) + m.MEM_REGION.pack(0, MEM, UADDR, 0),
            fds=[fe.memfd])


def _stop_start(fe):
    base = fe.call(m.GET_VRING_BASE, m.VRING_STATE.pack(0, 0))
    fe.send(m.SET_VRING_BASE, base)
    _new_kick(fe)


@pytest.mark.parametrize('resend', [_mem_table, _new_kick, _stop_start],
                         ids=['SET_MEM_TABLE', 'SET_VRING_KICK', 'GET_VRING_BASE+SET_VRING_BASE'])
def test_set_up_messages_mid_run_keep_the_ring_indices(serve, resend):
    """What QEMU may send while a ring runs (a new memory table when guest
    memory regions change, a new kick fd, a stop and restart) leaves used
    idx and the next available index where they were."""
    fe, _ = serve(RngDevice())
    fe.start_queue(RING)
    for n in range(6):
        fe.post(n % QSIZE, [(BUF, 1, True)])
        assert fe.used()[0] == n + 1
    resend(fe)
    fe.u64(m.GET_QUEUE_NUM)      # a reply: the messages before it were served
    for n in range(6, 10):
        fe.post(n % QSIZE, [(BUF, 1, True)])
        assert fe.used()[0] == n + 1
    assert fe.call(m.GET_VRING_BASE, m.VRING_STATE.pack(0, 0)) == m.VRING_STATE.pack(0, 10)


def test_net_device_keeps_receive_buffers_until_it_has_a_frame(serve):
    """The receiveq's buffers stay with the device (no used entry) until a frame comes;
    an ARP request on the transmitq brings the reply into the buffer held."""
    from vhost.net import ETH, ARP, HOST_IP, HOST_MAC, HDR_LEN
    from vhost.net import NetDevice
    dev = NetDevice()
    fe, _ = serve(dev)
    fe.start_queue(RING)
    fe.post(0, [(BUF, 256, True)])               # an empty receive buffer
    deadline = time.monotonic() + 5
    while not dev.rx_buffers and time.monotonic() < deadline:
        time.sleep(0.01)                          # the server thread takes it
    assert fe.guest_read(USED + 2, 2) == b'\0\0' and len(dev.rx_buffers) == 1
    # The transmitq (1) is a second ring: lay it out after the first.
    mine = bytes.fromhex('525400123456')
    arp = ETH.pack(b'\xff' * 6, mine, 0x0806) + ARP.pack(1, 0x0800, 6, 4, 1, mine,
                                                          bytes([10, 0, 2, 15]), bytes(6),
                                                          HOST_IP)
    dev.handle(1, _FakeReq(bytes(HDR_LEN) + arp))
    idx, elems = fe.used()
    assert idx == 1 and elems[0] == (0, HDR_LEN + len(arp))
    reply = fe.guest_read(BUF + HDR_LEN, len(arp))
    assert reply[:6] == mine and reply[6:12] == HOST_MAC
    assert ARP.unpack_from(reply, ETH.size)[4] == 2           # op: reply


class _FakeReq:
    def __init__(self, data):
        self._data = data

    def data(self):
        return self._data
