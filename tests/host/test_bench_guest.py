"""make bench's guest side without QEMU: the MicroPython workload code run under CPython
against a file-backed fake disk, the raw-REPL runner against a fake guest process, and the
host UDP client against a loopback echo server. Wrong data must never give a figure."""
import io
import os
import socket
import sys
import textwrap
import threading
from contextlib import redirect_stdout

import pytest

BENCH = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', 'bench'))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.join(BENCH, 'guest'))

import netclient  # noqa: E402
import ours_blk  # noqa: E402
import ours_net  # noqa: E402
import ours_guest  # noqa: E402
import pattern  # noqa: E402
import qemu  # noqa: E402
import workloads as W  # noqa: E402


class MemBlk:
    """The planned driver API over a bytearray; `shift` misplaces every read."""

    def __init__(self, data, shift=0):
        self.data = bytearray(data)
        self.shift = shift
        self.flushed = False

    def readinto(self, sector, buf):
        o = (sector + self.shift) * 512
        buf[:] = self.data[o:o + len(buf)]

    def write(self, sector, data):
        self.data[sector * 512:sector * 512 + len(data)] = data

    def flush(self):
        self.flushed = True


def run_guest(fn, *args):
    out = io.StringIO()
    with redirect_stdout(out):
        fn(*args)
    return W.parse_output(out.getvalue())


def test_guest_read_checks_every_request():
    blk = MemBlk(pattern.make_bytes(0, 256))
    p = run_guest(ours_blk.read, blk, 'read_4k_d1', 4096, 1, 'rand', 128 * 1024, 40, 1000)
    r = p['read_4k_d1']['result']
    assert (r['ops'], r['bytes'], r['bad'], r['bs'], r['depth']) == (40, 40 * 4096, 0, 4096, 1)
    w = W.Workload('read_4k_d1', 't', 'IOPS', W.HIGHER, 'read', bs=4096, depth=1, mode='rand',
                   region=128 * 1024, max_ops=40, max_ms=1000)
    assert W.disk_figure(w, r)[0] > 0


def test_guest_read_of_the_wrong_sectors_is_caught():
    blk = MemBlk(pattern.make_bytes(0, 256), shift=1)
    p = run_guest(ours_blk.read, blk, 'seq_read', 65536, 1, 'seq', 64 * 1024, 1, 1000)
    assert p['seq_read']['result']['bad'] == 128 + 1  # every stamp, and the first sector whole


def test_guest_read_of_a_corrupted_body_is_caught():
    data = bytearray(pattern.make_bytes(0, 8))
    data[100] ^= 0xff
    p = run_guest(ours_blk.read, MemBlk(data), 'seq_read', 4096, 1, 'seq', 4096, 1, 1000)
    assert p['seq_read']['result']['bad'] == 1


def test_guest_write_puts_down_the_write_pattern_and_flushes():
    blk = MemBlk(pattern.make_bytes(0, 512))
    p = run_guest(ours_blk.write, blk, 'seq_write', 32768, 16384, 65536)
    r = p['seq_write']['result']
    assert (r['ops'], r['bytes'], r['bad']) == (2, 65536, 0) and blk.flushed
    assert pattern.bad_sectors(bytes(blk.data[16384:16384 + 65536]), 32,
                               pattern.WRITE_MAGIC, pattern.WRITE_SALT) == []
    assert pattern.bad_sectors(bytes(blk.data[:16384]), 0) == []
    assert pattern.bad_sectors(bytes(blk.data[16384 + 65536:]), 160) == []


class MemBatch:
    """The vector batch shape read_deep drives, over a MemBlk: completions come back in a
    shuffled order, a few at a time; `stall` stops completing after that many."""

    def __init__(self, blk, stall=None):
        import random
        self.blk, self.queued, self.sent, self.stall = blk, [], [], stall
        self.rnd = random.Random(7)
        self.max_inflight = 0
        self.completed = 0

    def submit(self, tags, k, sectors, bufs):
        self.queued += [(sectors[t], bufs[t], t) for t in tags[:k]]

    def poll(self, out):
        self.sent += self.queued
        self.queued = []
        self.max_inflight = max(self.max_inflight, len(self.sent))
        if self.stall is not None and self.completed >= self.stall:
            return 0
        self.rnd.shuffle(self.sent)
        done, self.sent = self.sent[:3], self.sent[3:]
        for j, (sector, buf, tag) in enumerate(done):
            self.blk.readinto(sector, buf)
            out[j] = tag
        self.completed += len(done)
        return len(done)


def test_guest_deep_reads_keep_the_depth_and_check_out_of_order_completions():
    batch = MemBatch(MemBlk(pattern.make_bytes(0, 512)))
    p = run_guest(ours_blk.read_deep, None, 'read_4k_d32', 4096, 32, 'rand', 256 * 1024, 500,
                  10000, batch)
    r = p['read_4k_d32']['result']
    assert (r['ops'], r['bad'], r['depth']) == (500, 0, 32)
    assert batch.max_inflight == 32


def test_guest_deep_reads_of_the_wrong_sectors_are_caught():
    batch = MemBatch(MemBlk(pattern.make_bytes(0, 512), shift=2))
    p = run_guest(ours_blk.read_deep, None, 'read_512_d32', 512, 32, 'rand', 256 * 1024, 100,
                  10000, batch)
    assert p['read_512_d32']['result']['bad'] == 200  # a stamp and a body per read


def test_guest_deep_reads_give_up_on_a_stalled_device(monkeypatch):
    monkeypatch.setattr(ours_blk, 'STALL_US', 20000)
    batch = MemBatch(MemBlk(pattern.make_bytes(0, 512)), stall=10)
    p = run_guest(ours_blk.read_deep, None, 'read_4k_d32', 4096, 32, 'rand', 256 * 1024, 500,
                  10000, batch)
    r = p['read_4k_d32']['result']
    assert r['ops'] == 12 and r['bad'] == 32  # the 32 reads still in flight count as failed


def test_guest_without_a_driver_says_na():
    p = run_guest(ours_blk.read, None, 'read_512_d1', 512, 1, 'rand', 4096, 1, 10)
    assert p['read_512_d1']['na'] == 'driver missing'
    p = run_guest(ours_blk.read, MemBlk(b''), 'read_512_d32', 512, 32, 'rand', 4096, 1, 10)
    assert p['read_512_d32']['na']


class FakeStack:
    """What ours_net uses of inet.Stack: ping() -> [rtt_us or None], poll(), clock."""

    class clock:
        import time as _time

        @staticmethod
        def ticks_ms():
            return int(FakeStack.clock._time.monotonic() * 1000)

        @staticmethod
        def ticks_diff(a, b):
            return a - b

    def __init__(self, rtts):
        self.rtts = list(rtts)
        self.polls = 0

    def ping(self, host, count):
        assert host == '10.0.2.2' and count == 1
        return [self.rtts.pop(0)]

    def poll(self, timeout_ms=0):
        self.polls += 1
        return 0


def test_guest_ping_prints_what_the_linux_parser_reads(monkeypatch):
    monkeypatch.setattr(ours_net, 'PING_GAP_MS', 1)
    st = FakeStack([950, None, 1203, 12])
    p = run_guest(ours_net.ping, st, 'ping_rtt', 4)
    assert p['ping_rtt']['ping_ms'] == [0.95, 1.203, 0.012]  # the lost one is left out
    assert st.polls >= 4  # the stack is served between pings


def test_guest_net_without_a_driver_says_na():
    p = run_guest(ours_net.ping, None, 'ping_rtt', 3)
    assert p['ping_rtt']['na'] == 'driver missing'
    p = run_guest(ours_net.udp_server, None, 7, 10)
    assert p['udp_server']['na'] == 'driver missing'


# A fake guest: prints a boot report and a prompt, then speaks MicroPython's raw REPL,
# running the code it is sent under CPython with `virtio` giving a blk over the -drive file.
FAKE_GUEST = textwrap.dedent('''\
    import os, sys, traceback, types, io
    args = sys.argv[1:]
    drive = [a for a in args if a.startswith('file=')][0].split(',')[0][5:]
    shift = int(os.environ.get('FAKE_SHIFT', '0'))
    out = sys.stdout.buffer

    class Blk:
        def __init__(self):
            self.f = open(drive, 'r+b')
        def readinto(self, sector, buf):
            if os.environ.get('FAKE_EIO'):
                raise OSError(5, 'EIO reading sectors %d-%d' % (sector, sector + len(buf) // 512 - 1))
            self.f.seek((sector + shift) * 512)
            self.f.readinto(buf)
        def write(self, sector, data):
            self.f.seek((sector + shift) * 512)
            self.f.write(data)
        def flush(self):
            self.f.flush()

    def find(kind, index=0):
        if kind == 'blk':
            return Blk()
        raise OSError('no %s driver' % kind)

    def poweroff(code=0):
        out.flush()
        os._exit(code)

    sys.modules['virtio'] = types.SimpleNamespace(find=find)
    sys.modules['x86'] = types.SimpleNamespace(poweroff=poweroff)
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    out.write(b'virtio: 4 devices\\r\\n'
              + b''.join(b'  00:0%d.0 virtio-%s modern (fake)\\r\\n' % (i + 2, k)
                         for i, k in enumerate([b'blk', b'net', b'console', b'rng']))
              + b'MicroPython fake\\r\\n>>> ')
    out.flush()
    g = {'__name__': '__main__'}
    raw, code = False, b''
    while True:
        data = os.read(0, 4096)
        if not data:
            break
        for c in data:
            c = bytes([c])
            if not raw:
                if c == b'\\x01':
                    raw = True
                    out.write(b'raw REPL; CTRL-B to exit\\r\\n>')
                    out.flush()
                continue
            if c != b'\\x04':
                code += c
                continue
            out.write(b'OK')
            out.flush()
            err = b''
            try:
                exec(code.decode(), g)
            except Exception:
                err = traceback.format_exc().encode()
            sys.stdout.flush()
            out.write(b'\\x04' + err + b'\\x04>')
            out.flush()
            code = b''
    ''')


@pytest.fixture
def fake_qemu(tmp_path, monkeypatch):
    script = tmp_path / 'fake-qemu'
    script.write_text('#!%s\n%s' % (sys.executable, FAKE_GUEST))
    script.chmod(0o755)
    monkeypatch.setattr(qemu, 'QEMU', str(script))
    disk = str(tmp_path / 'disk.img')
    pattern.make_image(disk, 1 << 20)
    return disk


def small_workloads():
    region = 1 << 20
    return [
        W.BY_NAME['boot'],
        W.Workload('seq_read', 't', 'MB/s', W.HIGHER, 'read', bs=65536, depth=1, mode='seq',
                   region=region, max_ops=16, max_ms=5000),
        W.Workload('read_4k_d1', 't', 'IOPS', W.HIGHER, 'read', bs=4096, depth=1,
                   mode='rand', region=region, max_ops=30, max_ms=5000),
        W.Workload('read_4k_d32', 't', 'IOPS', W.HIGHER, 'read', bs=4096, depth=32,
                   mode='rand', region=region, max_ops=30, max_ms=5000),
        W.Workload('seq_write', 't', 'MB/s', W.HIGHER, 'write', bs=65536, offset=65536,
                   total=131072),
        W.Workload('ping_rtt', 't', 'ms', W.LOWER, 'ping', count=2),
        W.BY_NAME['udp_rtt'],
    ]


def test_ours_runner_over_the_raw_repl(fake_qemu, tmp_path):
    res = ours_guest.run('fake.elf', fake_qemu, str(tmp_path), small_workloads(), timeout=60)
    assert res['boot']['value'] > 0 and 'virtio-blk' in res['boot']['detail']['report']
    assert res['seq_read']['error'] is None and res['seq_read']['value'] > 0
    assert res['seq_read']['detail']['bytes'] == 1 << 20
    assert res['read_4k_d1']['error'] is None and res['read_4k_d1']['detail']['ops'] == 30
    assert res['seq_write']['error'] is None and res['seq_write']['value'] > 0
    assert res['read_4k_d32']['na'] and 'batch' in res['read_4k_d32']['error']
    assert res['ping_rtt']['na'] and res['ping_rtt']['error'] == 'driver missing'
    assert res['udp_rtt']['na']
    assert any(n.startswith('NOTE net unavailable') for n in res['_notes'])
    assert not os.path.exists(str(tmp_path / 'ours-disk.img'))


def test_ours_runner_refuses_misplaced_reads_and_writes(fake_qemu, tmp_path, monkeypatch):
    monkeypatch.setenv('FAKE_SHIFT', '1')
    res = ours_guest.run('fake.elf', fake_qemu, str(tmp_path), small_workloads(), timeout=60)
    assert res['seq_read']['value'] is None and 'wrong data' in res['seq_read']['error']
    assert res['read_4k_d1']['value'] is None
    # The guest believed its write; the host's look at the image after power-off does not.
    assert res['seq_write']['value'] is None
    assert 'image check after power-off' in res['seq_write']['error']


def test_a_driver_error_is_a_failure_not_na(fake_qemu, tmp_path, monkeypatch):
    monkeypatch.setenv('FAKE_EIO', '1')
    res = ours_guest.run('fake.elf', fake_qemu, str(tmp_path), small_workloads(), timeout=60)
    err = res['read_4k_d1']['error']
    assert res['read_4k_d1']['value'] is None and not res['read_4k_d1'].get('na')
    assert err.startswith('guest raised OSError') and 'EIO reading sectors' in err
    assert res['seq_write']['error'] is None  # the runner went on after the failure


def test_boot_counts_only_with_all_four_devices_reported():
    report = ('virtio: 3 devices\r\n  00:02.0 virtio-blk modern 1q\r\n'
              '  00:03.0 virtio-net modern 3q\r\n  00:05.0 virtio-rng legacy 1q\r\n>>> ')
    b = ours_guest.boot_figure(report, 0.2)
    assert b['value'] is None and b['error'] == 'no driver for console' and b['na']
    b = ours_guest.boot_figure(report.replace('>>> ', '  00:04.0 virtio-console modern 4q\r\n'
                                                      '>>> '), 0.2)
    assert b['value'] == 0.2 and b['detail']['devices'] == ['blk', 'console', 'net', 'rng']
    b = ours_guest.boot_figure(report.replace('>>> ', '  00:04.0 virtio-console 1af4:1003 '
                                                      'unbound: driver virtio.console unavailable'
                                                      '\r\n>>> '), 0.2)
    assert b['value'] is None and b['error'] == 'no driver for console'
    b = ours_guest.boot_figure("virtio: drivers not available (no module named 'virtio')", 0.1)
    assert b['error'] == 'drivers missing'


def test_qemu_stream_times_out_instead_of_hanging(tmp_path, monkeypatch):
    script = tmp_path / 'silent'
    script.write_text('#!%s\nimport time\ntime.sleep(30)\n' % sys.executable)
    script.chmod(0o755)
    monkeypatch.setattr(qemu, 'QEMU', str(script))
    with qemu.Qemu([], timeout=0.5) as q:
        with pytest.raises(qemu.Timeout, match='timed out'):
            q.expect(rb'never')
        pid = q.proc.pid
    assert q.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


class EchoServer:
    """A loopback UDP echo server; `alter` flips a byte of every tenth reply."""

    def __init__(self, alter=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(('127.0.0.1', 0))
        self.port = self.sock.getsockname()[1]
        self.alter = alter
        self.n = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            data, peer = self.sock.recvfrom(65536)
            if data == netclient.QUIT:
                self.sock.sendto(b'BYE', peer)
                return
            self.n += 1
            if self.alter and self.n % 10 == 0:
                data = data[:-1] + bytes([data[-1] ^ 1])
            self.sock.sendto(data, peer)


def test_udp_client_counts_every_echo():
    srv = EchoServer()
    r = netclient.rtt(srv.port, 30, W.UDP_SIZES)
    assert len(r['rtt_ms']) == 30 and r['lost'] == 0 and r['bad'] == 0
    q = netclient.rate(srv.port, 200, W.UDP_SIZES, 16)
    assert q['received'] == 200 and q['lost'] == 0 and q['bad'] == 0 and q['per_s'] > 0
    assert netclient.quit(srv.port)
    srv.thread.join(2)


def test_udp_client_catches_altered_echoes():
    srv = EchoServer(alter=True)
    r = netclient.rtt(srv.port, 30, W.UDP_SIZES, timeout=0.2)
    assert r['bad'] == 3 and len(r['rtt_ms']) == 27
    q = netclient.rate(srv.port, 50, W.UDP_SIZES, 8, timeout=0.2)
    assert q['bad'] == 5 and q['received'] == 45
    netclient.quit(srv.port)


def test_udp_client_counts_losses_without_hanging():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('127.0.0.1', 0))  # bound, never answers
    try:
        r = netclient.rtt(s.getsockname()[1], 3, (16,), timeout=0.05)
        assert r['lost'] == 3 and r['rtt_ms'] == []
        q = netclient.rate(s.getsockname()[1], 5, (16,), 4, timeout=0.05)
        assert q['lost'] == 5 and q['received'] == 0
    finally:
        s.close()


def test_payloads_differ_by_sequence_and_size():
    assert netclient.payload(1, 64) != netclient.payload(2, 64)
    assert len(netclient.payload(3, 1400)) == 1400 and len(netclient.payload(3, 4)) == 8


IMAGE = os.path.join(os.path.dirname(BENCH), 'build', 'x86_virt', 'firmware.elf')

GUEST_SELF_CHECK = '''
class MemBlk:
    def __init__(self, nsect):
        self.data = bytearray(nsect * 512)
        put_stamps(self.data, len(self.data), 0, READ_MAGIC)
        for s in range(nsect):
            b = base(s, READ_SALT)
            self.data[s * 512 + 8:(s + 1) * 512] = WHEEL[b + 8:b + 512]
        self.mv = memoryview(self.data)
    def readinto(self, sector, buf):
        buf[:] = self.mv[sector * 512:sector * 512 + len(buf)]
    def write(self, sector, data):
        self.mv[sector * 512:sector * 512 + len(data)] = data
    def flush(self):
        pass
blk = MemBlk(256)
read(blk, 'clean', 8192, 1, 'seq', 131072, 16, 5000)
blk.data[16 * 512 + 100] ^= 1
blk.data[19 * 512] ^= 1
read(blk, 'corrupt', 8192, 1, 'seq', 131072, 16, 5000)
write(blk, 'written', 16384, 16384, 32768)
print('@@ after')
print('RESULT stamps_bad=%d' % stamps_bad(blk.mv[16384:], 32768, 32, WRITE_MAGIC))
'''


@pytest.mark.qemu
def test_guest_checks_run_in_the_image(tmp_path):
    """The viper versions of the pattern checks, in the real image, catch what they must."""
    if not os.path.exists(IMAGE):
        pytest.skip('no image: make build')
    with qemu.Qemu(qemu.MACHINE_FLAGS + ['-kernel', IMAGE], 60) as q:
        q.expect(rb'>>> ', 30)
        repl = ours_guest.RawRepl(q)
        repl.enter()
        out, err = repl.run(ours_guest.guest_source('ours_blk.py') + GUEST_SELF_CHECK, 60)
        assert err == ''
    p = W.parse_output(out)
    assert p['clean']['result']['bad'] == 0 and p['clean']['result']['ops'] == 16
    assert p['corrupt']['result']['bad'] == 2  # a body byte of a first sector, a stamp
    assert p['written']['result']['ops'] == 2
    assert p['after']['result']['stamps_bad'] == 0


def test_guest_workloads_drive_the_real_block_driver_on_the_model():
    """The bench's adaptor against drivers/virtio/blk.py itself (host device model)."""
    B = pytest.importorskip('virtio.blk')
    import virtio
    from tests.host.models import Machine
    from tests.host.models.blk import BlkModel
    model = BlkModel(disk=bytearray(pattern.make_bytes(0, 2048)))
    dev, = virtio.probe(Machine([model]))
    assert isinstance(dev, B.BlkDevice)
    p = run_guest(ours_blk.read, dev, 'read_4k_d32', 4096, 32, 'rand', 1 << 20, 200, 10000)
    r = p['read_4k_d32']['result']
    assert (r['ops'], r['bad'], r['depth']) == (200, 0, 32)
    p = run_guest(ours_blk.read, dev, 'read_512_d1', 512, 1, 'rand', 1 << 20, 50, 10000)
    assert p['read_512_d1']['result']['bad'] == 0
    p = run_guest(ours_blk.write, dev, 'seq_write', 65536, 65536, 131072)
    assert p['seq_write']['result']['bytes'] == 131072
    assert pattern.bad_sectors(bytes(model.disk[65536:196608]), 128,
                               pattern.WRITE_MAGIC, pattern.WRITE_SALT) == []
