"""Our TCP against a TCP that is not slirp: our image and the Linux reference guest of
bench/ (Debian's kernel, busybox, bench/helper/bhelper.c) on one virtual Ethernet between
two QEMUs. Each QEMU's -netdev socket,udp= carries its frames as UDP datagrams to a relay
in this test, which passes them to the other QEMU, dropping 5% of them and delaying (so
reordering) 10% by 1-4 ms, seeded. Linux's `bhelper tcpecho` sends a seeded stream to our
echo server on 10.0.2.16:7 and checks every byte of the echo; both sides' retransmissions
are counted.

The Linux reference is built (or reused) in build/linux-ref as `make bench` does: Debian's
kernel and busybox-static are fetched with apt-get download the first time. Without them
the test is skipped, saying why. PEER_MIB sets the size (default 2 MiB each way; the
issue's 16 MiB takes a few minutes under TCG).
"""

import heapq
import os
import random
import re
import select
import socket
import sys
import threading
import time

import pytest

from tests.qemu import harness
from tests.ports import free_udp_port

pytestmark = pytest.mark.qemu

BENCH = os.path.join(harness.ROOT, 'bench')
PEER_BYTES = int(float(os.environ.get('PEER_MIB', '2')) * (1 << 20))
SEED = 1234
LOSS = 0.05
DELAY = 0.10
OURS_IP = '10.0.2.16'
LINUX_IP = '10.0.2.15'          # what the reference's /init gives eth0


class Relay:
    """Frames between two QEMU socket netdevs, lossy and reordering, seeded."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (self.a, self.b):
            s.bind(('127.0.0.1', 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.a_port = self.a.getsockname()[1]
        self.b_port = self.b.getsockname()[1]
        self.peer = {}              # our socket -> the QEMU address that talks to it
        self.frames = self.dropped = self.delayed = 0
        self._stop = False
        self._queue = []
        self._n = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        other = {self.a: self.b, self.b: self.a}
        while not self._stop:
            wait = 0.05
            if self._queue:
                wait = max(0.0, min(wait, self._queue[0][0] - time.monotonic()))
            r, _, _ = select.select([self.a, self.b], [], [], wait)
            for s in r:
                data, addr = s.recvfrom(65536)
                self.frames += 1
                if self.rng.random() < LOSS:
                    self.dropped += 1
                    continue
                delay = 0.0
                if self.rng.random() < DELAY:
                    delay = self.rng.uniform(0.001, 0.004)
                    self.delayed += 1
                self._n += 1
                heapq.heappush(self._queue, (time.monotonic() + delay, self._n, other[s], data))
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                _, _, out, data = heapq.heappop(self._queue)
                if out in self.peer:
                    out.sendto(data, self.peer[out])

    def netdev(self, side, local_port):
        """The -netdev for the QEMU on `side`; frames for it go to its local_port."""
        relay_port = self.a_port if side == 'a' else self.b_port
        self.peer[self.a if side == 'a' else self.b] = ('127.0.0.1', local_port)
        return 'socket,id=n0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d' % (relay_port, local_port)

    def close(self):
        self._stop = True
        self.thread.join(5)
        self.a.close()
        self.b.close()


@pytest.fixture(scope='module')
def reference():
    sys.path.insert(0, BENCH)
    try:
        import linuxref
        try:
            return linuxref.build(os.path.join(harness.ROOT, 'build', 'linux-ref'),
                                  log=lambda m: None)
        except linuxref.ReferenceUnavailable as e:
            pytest.skip('no Linux reference guest: %s' % e)
        except Exception as e:         # apt or dpkg missing, no network
            pytest.skip('no Linux reference guest: %s' % e)
    finally:
        sys.path.remove(BENCH)


SERVER = """
import time, virtio, inet, socket
st = inet.Stack(virtio.find('net'), time, ip='%s')
rng = virtio.find('rng')
st.tcp.isn_source = lambda: int.from_bytes(rng.read(4), 'big')
socket.set_stack(st)
s = socket.socket()
s.bind(('', 7))
s.listen(1)
s.settimeout(300)
print('LISTENING')
c, a = s.accept()
c.settimeout(120)
n = 0
while True:
    d = c.recv(8192)
    if not d:
        break
    c.sendall(d)
    n += len(d)
c.close()
t = st.tcp.stats
print('ECHOED', n, 'RETRANSMITS', t['retransmits'], 'FAST', t['fast_retransmits'],
      'TIMEOUTS', t['timeouts'], 'OOO', t['rx_out_of_order'], 'DROPS', st.dropped())
"""


def linux_script():
    return '\n'.join([
        'echo "@@ tcppeer"',
        'bhelper tcpecho %s 7 %d %d' % (OURS_IP, PEER_BYTES, SEED),
        'grep Tcp: /proc/net/snmp',
    ]) + '\n'


def test_tcp_with_linux_over_a_lossy_link(reference, tmp_path):
    sys.path.insert(0, BENCH)
    try:
        import linuxref
        import qemu as bq
    finally:
        sys.path.remove(BENCH)
    relay = Relay(SEED)
    disk = harness.make_disk(str(tmp_path), 1 << 20)
    ours = harness.Guest(devices=['-netdev', relay.netdev('a', free_udp_port()),
                                  '-device', 'virtio-net-pci,netdev=n0,romfile=,'
                                  'mac=52:54:00:12:34:57', '-device', 'virtio-rng-pci'])
    initrd = linuxref.with_script(reference['initramfs'], linux_script(),
                                  str(tmp_path / 'initrd.cpio'))
    linux_args = (bq.MACHINE_FLAGS + [
        '-drive', 'file=%s,format=raw,if=none,id=d0' % disk, '-device', 'virtio-blk-pci,drive=d0',
        '-netdev', relay.netdev('b', free_udp_port()), '-device', 'virtio-net-pci,netdev=n0,romfile=',
        '-kernel', reference['kernel'], '-initrd', initrd,
        '-append', 'console=ttyS0 quiet panic=-1'])
    limit = 120 + PEER_BYTES / 20000
    try:
        ours.start()
        ours._send_code(SERVER % OURS_IP)
        ours.read_until(b'LISTENING', 60)
        with bq.Qemu(linux_args, limit + 60) as lq:
            # Whole lines only: a chunk of serial output may end inside one.
            m, _ = lq.expect(rb'(RESULT op=tcpecho [^\r\n]*)\r?\n', limit)
            result = m.group(1).decode()
            snmp, _ = lq.expect(rb'(Tcp: \d[^\r\n]*)\r?\n', 30)
            header = re.search(rb'Tcp: [A-Za-z][^\r\n]*', lq.output().encode()).group(0)
            lq.expect(rb'BENCH DONE', 60)
        try:
            out = ours.read_until(b'\x04', 120).decode()
        except harness.GuestTimeout as e:
            out = str(e)
    finally:
        ours.close()
        relay.close()
    fields = dict(kv.split('=') for kv in result.split()[2:])
    assert int(fields['bytes']) == PEER_BYTES and int(fields['sent']) == PEER_BYTES, (
        result, out[-1500:], lq.output()[-1500:])
    assert int(fields['bad']) == 0, result
    linux_tcp = dict(zip(header.decode().split()[1:], snmp.group(1).decode().split()[1:]))
    m = re.search(r'ECHOED (\d+) RETRANSMITS (\d+) FAST (\d+) TIMEOUTS (\d+) OOO (\d+)', out)
    assert m and int(m.group(1)) == PEER_BYTES, out
    ours_retx = int(m.group(2))
    linux_retx = int(linux_tcp['RetransSegs'])
    print('relay: %d frames, %d dropped, %d delayed; retransmissions: ours %d (fast %s, '
          'time-outs %s, out of order %s), Linux %d; %s s' % (
              relay.frames, relay.dropped, relay.delayed, ours_retx, m.group(3), m.group(4),
              m.group(5), linux_retx, int(fields['ns']) / 1e9))
    assert relay.dropped > 0
    assert ours_retx > 0 and linux_retx > 0     # both recovered from the losses
