"""Our image against devices written in Python (vhost/), served to QEMU over
vhost-user: QEMU is the front-end, the Python process the device. Data is
checked where the device keeps it (the host file, the bytes the device
recorded); every misbehaviour switch gives the error the driver promises,
within its timeout; no back-end process or socket outlives a test."""
import os

import pytest

from tests.qemu.harness import Guest
from vhost.launch import Backend, memory_args
from vhost.rng import stream

pytestmark = pytest.mark.qemu

MEM = 128
BLK_SECTORS = 4096          # a 2 MiB disk


@pytest.fixture
def vhost(image):
    """vhost(device, args) -> (Backend, booted Guest); both stopped at the end
    (QEMU first), and the test fails if the back-end left anything behind."""
    made = []

    def start(device, args=(), device_props='', **guest_args):
        be = Backend(device, list(args) + ['--verbose'], device_props=device_props)
        made.append(be)
        be.start()
        g = Guest(image=image, mem=MEM, devices=be.qemu_args(),
                  extra_args=memory_args(MEM), **guest_args)
        made.append(g)
        g.start()
        return be, g

    yield start
    for x in reversed(made):
        x.close()
    for be in made[::2]:
        print(be.log)
    for be in made[::2]:
        assert not be.running, 'back-end still running: %s' % be.log
        assert not os.path.exists(be.dir) and not os.path.exists(be.socket)


def test_rng_gives_the_bytes_the_python_device_sent(vhost, tmp_path):
    record = tmp_path / 'given.bin'
    be, g = vhost('rng', ['--seed', '5', '--record', str(record)])
    g.exec('import virtio\nrng = virtio.find("rng")')
    assert g.eval('str(rng).split()[1:3]') == ['virtio-rng', 'modern']
    assert g.eval('rng.pci.device_id') == 0x1044          # modern-only: 0x1040 + 4
    got = b''.join(g.eval('rng.read(64)') for _ in range(3))
    given = record.read_bytes()
    assert given.endswith(got)                 # what the guest read, last of all given
    assert given == stream(5, len(given))      # and the device's seeded stream


def test_blk_whole_disk_written_in_the_guest_is_on_the_host_file(vhost, tmp_disk):
    disk = tmp_disk(BLK_SECTORS * 512)
    be, g = vhost('blk', ['--image', disk, '--serial', 'py-disk-1'])
    g.exec('import virtio\nb = virtio.find("blk")')
    assert g.eval('b.capacity') == BLK_SECTORS
    assert g.eval('b.id()') == 'py-disk-1'
    # Every 4 KiB block holds its number; 64 KiB per request.
    g.exec('def chunk(first):\n'
           '    return b"".join(bytes([(first + k) & 255]) * 4096 for k in range(16))\n'
           'for s in range(0, %d, 128):\n'
           '    b.write(s, chunk(s // 8))\n'
           'b.flush()\n'
           'bad = [s for s in range(0, %d, 128) if b.read(s, 128) != chunk(s // 8)]\n'
           % (BLK_SECTORS, BLK_SECTORS), timeout=60)
    assert g.eval('bad') == []
    g.exec('b.write_zeroes(8, 8)\nb.discard(16, 8)')
    with open(disk, 'rb') as f:
        data = f.read()
    for block in range(BLK_SECTORS // 8):
        want = bytes(4096) if block == 1 else bytes([block & 255]) * 4096
        assert data[block * 4096:(block + 1) * 4096] == want, 'block %d' % block
    assert g.eval('b.read(8, 8)') == bytes(4096)


# What each switch makes the driver raise (drivers/virtio/virtqueue.py, blk.py).
RNG_ERRORS = {
    'bad_used_id': ('DeviceError', 'used id 5 is not the head of a request in flight'),
    'oversized_len': ('DeviceError', 'used length 576 for head 0 exceeds its 64 writable bytes'),
    'used_idx_jump': ('DeviceError', 'used idx jumped from'),
    'never_complete': ('VirtioTimeout', 'no entropy within 500 ms'),
}
# A packed ring has no used index: a device that skips slots is seen as
# silence at the slot the driver waits on (the second request times out).
RNG_PACKED_ERRORS = {
    'bad_used_id': ('DeviceError', 'used buffer id 5 at slot 0 is not a request in flight'),
    'oversized_len': ('DeviceError', 'used length 576 for buffer id 0 exceeds its 64 writable'),
    'used_idx_jump': ('VirtioTimeout', 'no entropy within 500 ms (0 of 64 bytes)'),
    'never_complete': ('VirtioTimeout', 'no entropy within 500 ms'),
}
BLK_ERRORS = {
    'bad_used_id': ('DeviceError', 'used id 129 is not the head of a request in flight'),
    'oversized_len': ('DeviceError', 'exceeds the 4097 writable bytes'),
    'used_idx_jump': ('DeviceError', 'used idx'),
    'never_complete': ('VirtioTimeout', 'no completion within 500 ms'),
}
TRY = ('guard = bytearray(bytes(range(256)) * 64)\n'
       'guard_sum = sum(guard)\n'
       'try:\n'
       '    {op}\n'
       '    print("no error")\n'
       'except Exception as e:\n'
       '    print(type(e).__name__, e)\n'
       'print(sum(guard) == guard_sum)\n')


def _misbehave_each(be, g, errors, setup, op, again):
    for name, (kind, text) in errors.items():
        be.misbehave(name)
        out = g.exec(setup + TRY.format(op=op), timeout=15).splitlines()
        assert out[0].split()[0] == kind and text in out[0], (name, out)
        assert out[1] == 'True', name          # guest memory untouched
        be.misbehave(None)
        g.exec(setup)                          # probe again: reset, set up afresh
        assert g.eval(again), name             # and the device works


@pytest.mark.parametrize('ring', ['split', 'packed'])
def test_rng_misbehaviours_give_the_promised_errors(vhost, ring):
    be, g = vhost('rng', device_props='packed=on' if ring == 'packed' else '')
    setup = 'import virtio\nvirtio.probe()\nd = virtio.find("rng")\n'
    assert ('RING_PACKED' in g.exec(setup + 'print(d)')) == (ring == 'packed')
    _misbehave_each(be, g, RNG_ERRORS if ring == 'split' else RNG_PACKED_ERRORS, setup,
                    'd.read(64, 500); d.read(64, 500)', 'len(d.read(64)) == 64')


def test_blk_misbehaviours_give_the_promised_errors(vhost, tmp_disk):
    be, g = vhost('blk', ['--image', tmp_disk(BLK_SECTORS * 512)])
    setup = 'import virtio\nvirtio.probe()\nd = virtio.find("blk")\nd.timeout_ms = 500\n'
    _misbehave_each(be, g, BLK_ERRORS, setup, 'd.read(0, 8)', 'd.read(0, 8) == bytes(4096)')


def test_blk_garbage_config_is_refused_at_probe(vhost, tmp_disk):
    # QEMU reads the configuration once, when it connects (and again only
    # on a config-change message): the switch is on from the start.
    be, g = vhost('blk', ['--image', tmp_disk(BLK_SECTORS * 512), '--misbehave',
                          'garbage_config'])
    out = g.exec('import virtio\nprint(virtio.probe()[0])')
    assert 'unbound: NegotiationError' in out and 'setup step' in out
    assert 'config capacity = 0xffffffffffffffff is outside' in out


def test_back_end_ends_when_qemu_dies_and_nothing_is_left(vhost):
    be, g = vhost('rng')
    g.close()                                  # QEMU killed
    assert be.wait(10) == 0                    # the back-end noticed and ended
    assert not os.path.exists(be.socket)


def test_back_end_is_stopped_when_the_test_fails_midway(image):
    be = Backend('rng')
    with pytest.raises(ZeroDivisionError):
        with be:
            assert be.running
            1 / 0
    assert not be.running and not os.path.exists(be.dir)


def test_bench_rows_through_the_python_device_give_checked_figures(image, tmp_path):
    """bench/vhost_guest.py for real, on a 16 MiB pattern disk and short runs: every row
    gives a figure (its data checked sector by sector) and the device's cost per request.
    No speed is asserted."""
    import sys
    bench = os.path.join(os.path.dirname(__file__), '..', '..', 'bench')
    sys.path.insert(0, os.path.abspath(bench))
    import pattern
    import vhost_guest
    import workloads as W
    disk = str(tmp_path / 'disk.img')
    pattern.make_image(disk, 16 << 20)
    todo = []
    for w in W.WORKLOADS:
        if w.kind == 'vhost_read':
            p = dict(w.params, region=16 << 20, max_ms=300)
            p['max_ops'] = 16 if p['mode'] == 'seq' else 10 ** 9
            todo.append(W.Workload(w.name, w.title, w.unit, w.better, w.kind, **p))
    res = vhost_guest.run(image, disk, str(tmp_path), todo)
    assert sorted(res) == ['py_read_4k_d1', 'py_read_4k_d32', 'py_seq_read']
    for name, r in res.items():
        assert r['error'] is None and r['value'] > 0, (name, r)
        assert r['detail']['bad'] == 0 and r['detail']['device_requests'] > 0
    assert res['py_seq_read']['detail']['device_requests'] == 16


def test_net_guest_pings_the_python_host_behind_vhost_user_net(vhost):
    """virtio-net behind -netdev vhost-user: the Python device holds the guest's receive
    buffers until it has a frame (ARP reply, echo reply) for them."""
    be, g = vhost('net')
    g.exec('import virtio, inet, time\n'
           'st = inet.Stack(virtio.find("net"), time, ip="10.0.2.15", gateway="10.0.2.2")')
    rtts = g.eval('st.ping("10.0.2.2", 3)', timeout=20)
    assert len(rtts) == 3 and all(r is not None and r > 0 for r in rtts)
    # A lying device: a received frame's used length beyond its buffer. The driver
    # promises to drop it and count it (rx_errors), not to raise; the ping is lost.
    errors = g.eval('virtio.find("net").counters()["rx_errors"]')
    be.misbehave('oversized_len')
    assert g.eval('st.ping("10.0.2.2", 1, 500)', timeout=20) == [None]
    assert g.eval('virtio.find("net").counters()["rx_errors"]') > errors
    be.misbehave(None)
    assert g.eval('st.ping("10.0.2.2", 1, 2000)', timeout=20)[0] is not None
