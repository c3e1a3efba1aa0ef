"""The image on QEMU's microvm: no PCI, the four default devices as virtio-mmio
windows (spec 4.2), version 1 (QEMU's default, the legacy interface) and version 2
(-global virtio-mmio.force-legacy=false), found through the kernel command line
(acpi=off: QEMU writes virtio_mmio.device=... into fw_cfg) or by probing the fixed
window list (acpi=on). The guest runs scripts (fw_cfg, no serial input needed):
blk reads a disk the host filled and rewrites all of it, which the host checks byte
for byte; rng; DHCP, ping and a UDP echo through hostfwd; a console echo over a
unix socket. Every empty window is skipped as an empty slot, none as a device; a window
the command line names past the last one (bad magic) and a parameter that does not parse
are skipped with their reasons in the boot report."""

import os
import random
import re
import socket
import struct
import threading
import time

import pytest

from tests.qemu import harness
from tests.ports import free_udp_port

pytestmark = pytest.mark.qemu

SECTOR = 512
DISK_SECTORS = 4096
WHEEL = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(1024))
ECHO_BYTES = 64 << 10
DATAGRAMS = 200

GUEST_PAT = '''
import struct, virtio, x86
W = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(1024))
def pat(s, seed):
    k = (s * 13 + seed) & 511
    return struct.pack('<II', s, seed) + W[k:k + 504]
'''

REPORT = '''
import virtio
print('DEVICES', repr([(d.address, d.KIND, d.transport.name, d.transport.irq)
                       for d in virtio.devices()]))
print('SKIPPED', repr([(e.window.address, e.reason, e.empty) for e in virtio.skipped()]))
'''

BLK_RNG = GUEST_PAT + REPORT + '''
blk = virtio.find('blk')
n = blk.capacity
bad = []
for s in range(0, n, 64):
    if blk.read(s, 64) != b''.join([pat(s + i, 1) for i in range(64)]):
        bad.append(s)
for s in range(0, n, 64):
    blk.write(s, b''.join([pat(s + i, 2) for i in range(64)]))
blk.flush()
r = virtio.find('rng').read(4096)
print('RESULT', repr((n, bad, len(r), len(set(r)))))
'''

NET = REPORT + '''
import time, inet
s = inet.Stack(virtio.find('net'), time)
lease = s.dhcp(timeout_ms=5000)
rtts = s.ping('10.0.2.2', count=5, timeout_ms=1000)
print('LEASE', repr((str(lease), rtts)))
print('ECHO READY')
print('ECHOED', inet.udp_echo(s, 7, 0, 1500))
'''

CONSOLE = REPORT + '''
p = virtio.find('console').console()
p.wait_host(timeout_ms=20000)
print('HOST CONNECTED')
n = 0
while n < %d:
    d = p.read(4096, 0)
    if d:
        p.write(d, 10000)
        n += len(d)
p.flush(10000)
print('ECHOED', n)
''' % ECHO_BYTES

# (window version, ACPI): each test covers both discovery paths across its two runs.
CASES = {'v1-cmdline': (1, 'off'), 'v2-probe': (2, 'on')}
OTHER = {'v1-probe': (1, 'on'), 'v2-cmdline': (2, 'off')}


def pat(s, seed):
    k = (s * 13 + seed) & 511
    return struct.pack('<II', s, seed) + WHEEL[k:k + 504]


def line(output, tag):
    m = re.search(r'^%s (.*)$' % tag, output, re.M)
    assert m, 'no %s line in:\n%s' % (tag, output[-3000:])
    return eval(m.group(1))


def guest(image, version, acpi, devices, script):
    return harness.Guest(machine='microvm,acpi=%s' % acpi, image=image, devices=devices,
                         extra_args=harness.mmio_version_args(version), script=script)


def check_report(output, version, acpi):
    # The boot report names each device's window and transport.
    for kind in ('blk', 'net', 'console', 'rng'):
        assert re.search(r'^  mmio@0xfeb0[0-9a-f]{4} virtio-%s mmio-v%d ' % (kind, version),
                         output, re.M), output[:2000]
    devices = line(output, 'DEVICES')
    assert sorted(kind for _, kind, _, _ in devices) == ['blk', 'console', 'net', 'rng']
    assert {name for _, _, name, _ in devices} == {'mmio-v%d' % version}
    assert all(addr.startswith('mmio@0xfeb0') for addr, _, _, _ in devices)
    irqs = [irq for _, _, _, irq in devices]
    if acpi == 'off':                       # from virtio_mmio.device=512@0x...:<irq>
        assert all(isinstance(i, int) and i > 0 for i in irqs)
    else:                                   # probed: nothing says the line
        assert irqs == [None] * 4
    skipped = line(output, 'SKIPPED')
    if acpi == 'off':
        assert skipped == []                # only the windows the command line named
        return
    # Probed: every other window is an empty slot; no bogus device, no bad magic.
    assert skipped and all(empty and reason == 'empty slot (device ID 0)'
                           for _, reason, empty in skipped)
    assert not set(d[0] for d in devices) & set(addr for addr, _, _ in skipped)


@pytest.mark.parametrize('case', sorted(CASES))
def test_blk_whole_disk_and_rng(image, tmp_disk, case):
    version, acpi = CASES[case]
    disk = tmp_disk(DISK_SECTORS * SECTOR)
    with open(disk, 'wb') as f:
        f.write(b''.join(pat(s, 1) for s in range(DISK_SECTORS)))
    with guest(image, version, acpi, harness.default_devices(disk, bus='device'),
               BLK_RNG) as g:
        g.start()
        status = g.wait(120)
        out = g.output
    assert status == 0, out[-3000:]
    check_report(out, version, acpi)
    n, bad, nrand, distinct = line(out, 'RESULT')
    assert (n, bad) == (DISK_SECTORS, [])          # the host's data, read back exactly
    assert nrand == 4096 and distinct > 200
    with open(disk, 'rb') as f:
        data = f.read()
    for s in range(DISK_SECTORS):                  # the guest's data, on the host's disk
        assert data[s * SECTOR:(s + 1) * SECTOR] == pat(s, 2), 'sector %d' % s


@pytest.mark.parametrize('case', sorted(OTHER))
def test_net_dhcp_ping_and_udp_echo(image, tmp_disk, case):
    version, acpi = OTHER[case]
    port = free_udp_port()
    devices = harness.default_devices(
        tmp_disk(1 << 20), bus='device',
        netdev='user,id=net0,hostfwd=udp:127.0.0.1:%d-:7' % port)
    result = {'good': 0, 'bad': []}
    with guest(image, version, acpi, devices, NET) as g:
        g.start()

        def client():
            deadline = time.monotonic() + 60
            while 'ECHO READY' not in g.output:
                if time.monotonic() > deadline:
                    result['bad'].append('guest never said ECHO READY')
                    return
                time.sleep(0.01)
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(2.0)
            c.connect(('127.0.0.1', port))
            rnd = random.Random(12)
            try:
                for k in range(DATAGRAMS):
                    data = rnd.randbytes(1 + (k * 97) % 1472)
                    c.send(data)
                    try:
                        back = c.recv(2048)
                    except socket.timeout:
                        result['bad'].append('datagram %d: no echo' % k)
                        return
                    if back == data:
                        result['good'] += 1
                    else:
                        result['bad'].append('datagram %d: different' % k)
            finally:
                c.close()
        t = threading.Thread(target=client)
        t.start()
        status = g.wait(120)
        t.join(30)
        out = g.output
    assert status == 0, out[-3000:]
    check_report(out, version, acpi)
    lease, rtts = line(out, 'LEASE')
    assert lease == '10.0.2.15/24 router 10.0.2.2 dns 10.0.2.3 lease 86400 s from 10.0.2.2'
    assert len(rtts) == 5 and None not in rtts
    assert result == {'good': DATAGRAMS, 'bad': []}
    assert line(out, 'ECHOED') == DATAGRAMS


@pytest.mark.parametrize('case', sorted(OTHER))
def test_console_echo_over_a_socket(image, tmp_disk, sockdir, case):
    version, acpi = OTHER[case]
    path = os.path.join(sockdir, 'c0')
    devices = harness.default_devices(
        tmp_disk(1 << 20), bus='device',
        chardev='socket,id=vcon0,path=%s,server=on,wait=off' % path)
    data = random.Random(7).randbytes(ECHO_BYTES)
    back = bytearray()
    with guest(image, version, acpi, devices, CONSOLE) as g:
        g.start()
        deadline = time.monotonic() + 30
        while not os.path.exists(path):
            assert time.monotonic() < deadline, 'QEMU made no socket'
            time.sleep(0.01)
        host = socket.socket(socket.AF_UNIX)
        host.settimeout(60)
        host.connect(path)
        try:
            tx = threading.Thread(target=host.sendall, args=(data,), daemon=True)
            tx.start()
            while len(back) < len(data):
                chunk = host.recv(65536)
                if not chunk:
                    break
                back.extend(chunk)
            tx.join(30)
            status = g.wait(60)
        finally:
            host.close()
        out = g.output
    assert status == 0, out[-3000:]
    check_report(out, version, acpi)
    assert line(out, 'ECHOED') == ECHO_BYTES
    assert bytes(back) == data


def test_a_bad_magic_window_and_a_bad_parameter_are_skipped_with_their_reasons(image):
    """The command line names a window past microvm's last one (unassigned memory: magic
    0) and a parameter that does not parse; QEMU's own parameters follow. The boot report
    gives both reasons; the real device is driven."""
    g = harness.Guest(machine='microvm,acpi=off', image=image,
                      devices=['-device', 'virtio-rng-device'],
                      extra_args=['-append', 'virtio_mmio.device=512@0xfeb01000:5 '
                                  'virtio_mmio.device=zz@0xfeb00e00:12'],
                      script="import virtio\nprint('RNG', len(virtio.find('rng').read(16)))\n")
    with g:
        g.start()
        status = g.wait(60)
        out = g.output
    assert status == 0, out[-3000:]
    assert re.search(r'^  mmio@0xfeb00e00 virtio-rng mmio-v1 ', out, re.M)
    assert ('  mmio@0xfeb01000 skipped: bad magic value 0x00000000 (want 0x74726976 "virt")'
            in out)
    assert ('  virtio_mmio.device=zz@0xfeb00e00:12 skipped: bad virtio_mmio.device='
            'zz@0xfeb00e00:12: want <size>@<base>:<irq>') in out
    assert line(out, 'RNG') == 16
