"""The VirtIO driver code, under CPython, against QEMU's own virtio devices over qtest.

No guest code runs: virtio.pci scans and assigns BARs through QtestMachine's port I/O,
the transports and virtqueues talk to QEMU's devices, and the disk image behind a
virtio-blk device is checked byte for byte on the host. What passes here on QEMU and on
the models (tests/host/test_*) is our evidence that the models tell the truth.
"""

import struct

import pytest

import virtio
from virtio import features, pci
from virtio import transport as tp
from virtio.device import CORE_FEATURES, VirtioDevice
from virtio.errors import DeviceError, VirtioTimeout
from virtio.regs import CfgWindow

from tests.host.qtest import QemuExited, qtest_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.qemu

# virtio-blk (spec 5.2.6): request types, status values, config offsets.
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
BLK_CAPACITY = 0                # config: le64 capacity in 512-byte sectors
SECTOR = 512
DISK_SECTORS = 128

# QEMU 7.2 IDs (facts file): transitional 0x1000 + type - 1 style, modern 0x1040 + type.
TRANSITIONAL = {'net': 0x1000, 'blk': 0x1001, 'console': 0x1003, 'rng': 0x1005}
MODERN = {'net': 0x1041, 'blk': 0x1042, 'console': 0x1043, 'rng': 0x1044}
TYPE = {'net': 1, 'blk': 2, 'console': 3, 'rng': 4}
BRIDGE = (0x1B36, 0x0001)       # QEMU's pci-bridge
ROOT_PORT = (0x1B36, 0x000C)    # QEMU's pcie-root-port
IO_WINDOW = (0xC000, 0x10000)
MEM_WINDOW = (0xE0000000, 0xFEC00000)
DEFAULT_MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])

MODES = {                       # device property -> what QEMU builds
    'legacy-only': ',disable-modern=on',
    'modern-only': ',disable-legacy=on',
    'transitional': '',
}


def sector_pattern(n):
    """What the fresh disk image holds in sector n: distinct in every sector."""
    return bytes(((n * 37 + i * 11) ^ (i >> 8)) & 0xFF for i in range(SECTOR))


@pytest.fixture
def disk(tmp_path):
    """A fresh image per test (QEMU locks images: never share one)."""
    path = tmp_path / 'disk.img'
    path.write_bytes(b''.join(sector_pattern(n) for n in range(DISK_SECTORS)))
    return path


def blk_args(disk, props=''):
    return ['-drive', 'if=none,id=d0,format=raw,file=%s' % disk,
            '-device', 'virtio-blk-pci,drive=d0' + props]


def boot(qtest_factory, args, machine='pc'):
    """Start QEMU, scan PCI and assign resources as no firmware did: (hw, functions)."""
    hw = qtest_factory(args, machine=machine)
    fns = pci.scan(hw)
    pci.assign_resources(hw, fns)
    return hw, fns


def virtio_functions(fns, kind):
    return [f for f in fns if tp.is_virtio(f) and tp.device_type(f) == TYPE[kind]]


class RawDevice(VirtioDevice):
    """A test-only driver: initialization and queue 0, nothing device-specific, so the
    tests build requests by hand."""

    def setup(self):
        self.vq = self.setup_queue(0)


def bind_raw(hw, fn, transport=None, wanted=CORE_FEATURES):
    dev = RawDevice(tp.open_transport(hw, fn, transport), wanted=wanted)
    dev.NAME = 'raw-%d' % tp.device_type(fn)
    dev.use_interrupts = False          # the tests here set interrupts up by hand
    return dev.init()


class Blk:
    """Hand-built virtio-blk requests (5.2.6): a 16-byte header (type, reserved,
    sector), the data, a status byte the device writes."""

    def __init__(self, dev):
        self.dev = dev
        self.hw = dev.hw

    def submit(self, type_, sector, out=b'', in_len=0):
        """Queue one request (no kick); returns the token: (header, data, status, in_len)."""
        hw = self.hw
        hdr = hw.dma_alloc(16, 16)
        data = hw.dma_alloc(max(len(out), in_len, 1), 16)
        status = hw.dma_alloc(1, 1)
        hw.write(hdr, struct.pack('<IIQ', type_, 0, sector))
        hw.write(data, out)
        hw.write8(status, 0xFF)         # the device must overwrite it
        readable = [(hdr, 16)] + ([(data, len(out))] if out else [])
        writable = ([(data, in_len)] if in_len else []) + [(status, 1)]
        token = (hdr, data, status, in_len)
        self.dev.vq.add(readable, writable, token)
        return token

    def complete(self, token, length):
        hdr, data, status, in_len = token
        return self.hw.read8(status), length, self.hw.read(data, in_len) if in_len else b''

    def request(self, type_, sector, out=b'', in_len=0):
        """One request, waited for: (status, used length, data read)."""
        self.submit(type_, sector, out, in_len)
        self.dev.vq.kick()
        token, length = self.dev.vq.wait(5000)
        return self.complete(token, length)


# -- discovery ----------------------------------------------------------------------------

DISCOVERY_ARGS = [
    '-device', 'virtio-rng-pci',
    '-netdev', 'user,id=n0', '-device', 'virtio-net-pci,netdev=n0,romfile=',
    '-device', 'virtio-serial-pci',
    '-device', 'pci-bridge,id=br1,chassis_nr=1',
    '-device', 'virtio-rng-pci,bus=br1,addr=0x5',
]


@pytest.mark.parametrize('machine', ['pc', 'q35'])
def test_discovery_finds_every_device_and_assigns_their_bars(qtest_factory, disk, machine):
    args = blk_args(disk) + DISCOVERY_ARGS
    if machine == 'q35':
        args += ['-device', 'pcie-root-port,id=rp1,chassis=2,slot=1',
                 '-device', 'virtio-rng-pci,bus=rp1']
    hw, fns = boot(qtest_factory, args, machine)
    ids = [(f.vendor_id, f.device_id) for f in fns]
    for kind in ('blk', 'net', 'console', 'rng'):
        (f,) = [f for f in fns if f.bus == 0 and f.device_id == TRANSITIONAL[kind]]
        assert f.subsystem_id == TYPE[kind] and f.revision == 0
        assert str(f).startswith('00:%02x.0 %04x: 1af4:%04x'
                                 % (f.device, f.class_code >> 8, f.device_id))
    assert BRIDGE in ids
    (bridge,) = [f for f in fns if (f.vendor_id, f.device_id) == BRIDGE]
    behind = [f for f in fns if f.bus == bridge.secondary_bus]
    assert [(f.device, f.device_id) for f in behind] == [(5, TRANSITIONAL['rng'])]
    if machine == 'q35':
        (port,) = [f for f in fns if (f.vendor_id, f.device_id) == ROOT_PORT]
        (modern,) = [f for f in fns if f.bus == port.secondary_bus]
        assert modern.device_id == MODERN['rng'] and modern.revision == 1
    # Every BAR got an address inside its window, and none overlap.
    spans = {'io': [], 'mem': []}
    for f in fns:
        for b in f.bars:
            low, high = IO_WINDOW if b.io else MEM_WINDOW
            assert low <= b.base and b.base + b.size <= high, (str(f), b)
            assert b.base % b.size == 0, (str(f), b)
            spans[b.kind].append((b.base, b.base + b.size, str(f)))
    for kind in spans:
        s = sorted(spans[kind])
        for (a0, a1, fa), (b0, b1, fb) in zip(s, s[1:]):
            assert a1 <= b0, 'BARs of %s and %s overlap' % (fa, fb)
    # The BARs really decode: a rescan reads back the assigned addresses.
    again = {(f.bus, f.device, f.function): f for f in pci.scan(hw)}
    for f in fns:
        assert [(b.index, b.base, b.size) for b in again[(f.bus, f.device, f.function)].bars] \
            == [(b.index, b.base, b.size) for b in f.bars]


@pytest.mark.parametrize('machine', ['pc', 'q35'])
def test_probe_binds_rng_everywhere_including_behind_bridges(qtest_factory, machine):
    args = ['-device', 'virtio-rng-pci',
            '-device', 'pci-bridge,id=br1,chassis_nr=1',
            '-device', 'virtio-rng-pci,bus=br1,addr=0x5',
            '-device', 'virtio-serial-pci']
    if machine == 'q35':
        args += ['-device', 'pcie-root-port,id=rp1,chassis=2,slot=1',
                 '-device', 'virtio-rng-pci,bus=rp1']
    hw = qtest_factory(args, machine=machine)
    devices = virtio.probe(hw)
    rngs = [d for d in devices if d.KIND == 'rng']
    assert len(rngs) == (3 if machine == 'q35' else 2)
    assert len(devices) == len(rngs) + 1        # the serial device is listed, bound or not
    for i, rng in enumerate(rngs):
        assert virtio.find('rng', i) is rng
        assert rng.transport.name == 'modern'
        assert features.has(rng.features, features.VERSION_1)
        data = rng.read(32)
        assert len(data) == 32 and data != bytes(32)
        assert str(rng).startswith('%s virtio-rng modern' % rng.pci.address)
    behind_bridge = [r for r in rngs if r.pci.device_id == TRANSITIONAL['rng'] and r.pci.bus]
    assert len(behind_bridge) == 1
    legacy = virtio.bind(hw, behind_bridge[0].pci, 'legacy')   # through the I/O window
    assert legacy.transport.name == 'legacy'
    assert len(legacy.read(32)) == 32


# -- negotiation --------------------------------------------------------------------------

NEGOTIATION = [
    # (device mode, transport asked, transport expected)
    ('legacy-only', None, 'legacy'),
    ('legacy-only', 'legacy', 'legacy'),
    ('modern-only', None, 'modern'),
    ('modern-only', 'modern', 'modern'),
    ('transitional', None, 'modern'),
    ('transitional', 'legacy', 'legacy'),
    ('transitional', 'modern', 'modern'),
]


@pytest.mark.parametrize('machine', ['pc', 'q35'])
def test_negotiation_each_mode_and_transport(qtest_factory, machine):
    """One QEMU holds an rng in each mode; each is driven with each transport choice."""
    args = []
    for mode in ('legacy-only', 'modern-only', 'transitional'):
        args += ['-device', 'virtio-rng-pci' + MODES[mode]]
    hw, fns = boot(qtest_factory, args, machine)
    rngs = virtio_functions(fns, 'rng')
    by_mode = dict(zip(('legacy-only', 'modern-only', 'transitional'), rngs))
    assert by_mode['legacy-only'].device_id == TRANSITIONAL['rng']
    assert by_mode['modern-only'].device_id == MODERN['rng']
    assert by_mode['transitional'].device_id == TRANSITIONAL['rng']
    for mode, asked, expected in NEGOTIATION:
        dev = virtio.bind(hw, by_mode[mode], asked)
        assert dev.KIND == 'rng', '%s/%s: %s' % (mode, asked, dev)
        t = dev.transport
        assert t.name == expected
        offered = dev.offered
        assert dev.features & ~offered == 0
        assert not features.has(dev.features, features.BAD_FEATURE)
        if expected == 'legacy':
            assert features.has(offered, features.BAD_FEATURE)     # QEMU's legacy word
            assert dev.features >> 32 == 0
            assert t.get_status() == tp.ACKNOWLEDGE | tp.DRIVER | tp.DRIVER_OK
        else:
            assert features.has(dev.features, features.VERSION_1)
            assert t.get_status() == (tp.ACKNOWLEDGE | tp.DRIVER | tp.FEATURES_OK
                                      | tp.DRIVER_OK)
        first, second = dev.read(64), dev.read(64)
        assert first != second, '%s/%s: the device returned the same bytes twice' % (
            mode, asked)
        dev.reset()
        assert t.get_status() == 0


def test_asking_for_a_transport_the_device_lacks_says_so(qtest_factory):
    args = ['-device', 'virtio-rng-pci' + MODES['legacy-only'],
            '-device', 'virtio-rng-pci' + MODES['modern-only']]
    hw, fns = boot(qtest_factory, args)
    legacy_only, modern_only = virtio_functions(fns, 'rng')
    dev = virtio.bind(hw, legacy_only, 'modern')
    assert dev.transport is None and 'no modern interface' in dev.error
    dev = virtio.bind(hw, modern_only, 'legacy')
    assert dev.transport is None and 'no legacy interface' in dev.error


def test_features_offered_match_the_measured_facts(qtest_factory, disk):
    """The feature words QEMU 7.2 offers (facts file), as read by our transports."""
    args = blk_args(disk) + ['-device', 'virtio-rng-pci']
    hw, fns = boot(qtest_factory, args)
    blk, = virtio_functions(fns, 'blk')
    rng, = virtio_functions(fns, 'rng')
    assert tp.open_transport(hw, blk, 'modern').device_features() == 0x10130006E54
    assert tp.open_transport(hw, blk, 'legacy').device_features() == 0x79006E54
    assert tp.open_transport(hw, rng, 'modern').device_features() == 0x10130000000
    assert tp.open_transport(hw, rng, 'legacy').device_features() == 0x79000000


# -- virtio-blk round trips -----------------------------------------------------------------

NO_INDIRECT = CORE_FEATURES & ~features.bit(features.INDIRECT_DESC)
SPLIT_ONLY = CORE_FEATURES & ~features.bit(features.RING_PACKED)
BARE = features.bit(features.VERSION_1)

BLK_CASES = [
    # id, machine, device properties, transport, wanted features, expected ring
    ('pc-legacy-only', 'pc', MODES['legacy-only'], None, CORE_FEATURES, 'split'),
    ('pc-transitional-as-legacy', 'pc', '', 'legacy', CORE_FEATURES, 'split'),
    ('pc-modern-only', 'pc', MODES['modern-only'], None, CORE_FEATURES, 'split'),
    ('q35-transitional-modern-bare', 'q35', '', 'modern', BARE, 'split'),
    ('q35-legacy-no-indirect', 'q35', '', 'legacy', NO_INDIRECT, 'split'),
    ('q35-packed', 'q35', ',packed=on', 'modern', CORE_FEATURES, 'packed'),
    ('pc-packed-bare', 'pc', ',packed=on' + MODES['modern-only'], None,
     BARE | features.bit(features.RING_PACKED), 'packed'),
]


@pytest.mark.parametrize('machine, props, transport, wanted, ring',
                         [c[1:] for c in BLK_CASES], ids=[c[0] for c in BLK_CASES])
def test_blk_read_write_round_trip(qtest_factory, disk, machine, props, transport,
                                   wanted, ring):
    hw, fns = boot(qtest_factory, blk_args(disk, props), machine)
    fn, = virtio_functions(fns, 'blk')
    dev = bind_raw(hw, fn, transport, wanted)
    assert dev.vq.kind == ring
    assert dev.features & ~wanted == 0
    blk = Blk(dev)
    assert dev.transport.config_read64(BLK_CAPACITY) == DISK_SECTORS

    # Read: the data is the image's sector; the device wrote data + status.
    status, length, data = blk.request(VIRTIO_BLK_T_IN, 5, in_len=SECTOR)
    assert status == VIRTIO_BLK_S_OK
    assert data == sector_pattern(5)
    assert length == SECTOR + 1

    # Write two sectors, flush, and find them in the file on the host.
    new = bytes(range(256)) * 4
    status, length, _ = blk.request(VIRTIO_BLK_T_OUT, 9, out=new)
    assert (status, length) == (VIRTIO_BLK_S_OK, 1)
    status, length, _ = blk.request(VIRTIO_BLK_T_FLUSH, 0)
    assert (status, length) == (VIRTIO_BLK_S_OK, 1)
    image = disk.read_bytes()
    assert image[9 * SECTOR:11 * SECTOR] == new
    assert image[8 * SECTOR:9 * SECTOR] == sector_pattern(8)       # neighbours untouched
    assert image[11 * SECTOR:12 * SECTOR] == sector_pattern(11)
    status, _, data = blk.request(VIRTIO_BLK_T_IN, 10, in_len=SECTOR)
    assert data == new[SECTOR:]

    # Past the end of the disk: an I/O error, not data.
    status, _, _ = blk.request(VIRTIO_BLK_T_IN, DISK_SECTORS, in_len=SECTOR)
    assert status == VIRTIO_BLK_S_IOERR
    assert dev.vq.in_flight == 0


@pytest.mark.parametrize('transport, props', [('legacy', ''), ('modern', ''),
                                              ('modern', ',packed=on')])
def test_blk_many_requests_in_flight_wrap_the_ring(qtest_factory, disk, transport, props):
    """Batches of 40 reads per notify, 7 batches: more than the ring's 256 entries in
    total, so ring positions (and the packed wrap counters) wrap."""
    hw, fns = boot(qtest_factory, blk_args(disk, props))
    fn, = virtio_functions(fns, 'blk')
    dev = bind_raw(hw, fn, transport)
    blk = Blk(dev)
    done = 0
    for batch in range(7):
        sectors = [(batch * 40 + i) * 7 % DISK_SECTORS for i in range(40)]
        tokens = {blk.submit(VIRTIO_BLK_T_IN, s, in_len=SECTOR): s for s in sectors}
        assert dev.vq.in_flight == 40
        dev.vq.kick()
        while dev.vq.in_flight:
            token, length = dev.vq.wait(5000)
            status, length, data = blk.complete(token, length)
            assert (status, length) == (VIRTIO_BLK_S_OK, SECTOR + 1)
            assert data == sector_pattern(tokens.pop(token))
            done += 1
        assert not tokens
    assert done == 280


@pytest.mark.parametrize('transport', ['modern', 'legacy'])
def test_a_looped_chain_is_reported_not_waited_for_forever(qtest_factory, disk, transport):
    """QEMU refuses a descriptor chain that loops ("Looped descriptor"): a modern device
    sets DEVICE_NEEDS_RESET, which wait() reports; a legacy one has no such bit and just
    never answers, which wait() turns into a timeout. A reset brings either back."""
    hw, fns = boot(qtest_factory, blk_args(disk))
    fn, = virtio_functions(fns, 'blk')
    dev = bind_raw(hw, fn, transport, NO_INDIRECT)
    hdr = hw.dma_alloc(16)
    status = hw.dma_alloc(1)
    hw.write(hdr, struct.pack('<IIQ', VIRTIO_BLK_T_IN, 0, 1))
    head = dev.vq.add([(hdr, 16)], [(status, 1)], 'looped')
    hw.write(dev.vq.desc + 16 * head + 12, struct.pack('<HH', 1, head))  # NEXT -> itself
    dev.vq.kick()
    if transport == 'modern':
        with pytest.raises(DeviceError, match='DEVICE_NEEDS_RESET'):
            dev.vq.wait(5000)
    else:
        with pytest.raises(VirtioTimeout, match='no completion within 300 ms'):
            dev.vq.wait(300)
    assert 'Looped descriptor' in hw.stderr()
    dev = bind_raw(hw, fn, transport)               # init starts with a reset
    status, length, data = Blk(dev).request(VIRTIO_BLK_T_IN, 2, in_len=SECTOR)
    assert (status, data) == (VIRTIO_BLK_S_OK, sector_pattern(2))


def test_blk_modern_bar_above_4gib_goes_through_the_pci_cfg_capability(qtest_factory, disk):
    """A 64-bit BAR placed above 4 GiB: a 32-bit CPU cannot reach it, so the modern
    transport must use the VIRTIO_PCI_CAP_PCI_CFG window in configuration space."""
    hw, fns = boot(qtest_factory, blk_args(disk, MODES['modern-only']))
    fn, = virtio_functions(fns, 'blk')
    bar4 = fn.bar(4)
    assert bar4.is64
    fn.set_bar(4, 0x800000000)              # 32 GiB: nothing a 32-bit CPU can address
    dev = bind_raw(hw, fn, 'modern')
    assert isinstance(dev.transport.common_cfg, CfgWindow)
    blk = Blk(dev)
    assert dev.transport.config_read64(BLK_CAPACITY) == DISK_SECTORS
    status, length, data = blk.request(VIRTIO_BLK_T_IN, 3, in_len=SECTOR)
    assert (status, length, data) == (VIRTIO_BLK_S_OK, SECTOR + 1, sector_pattern(3))
    status, _, _ = blk.request(VIRTIO_BLK_T_OUT, 4, out=b'\xEE' * SECTOR)
    assert status == VIRTIO_BLK_S_OK
    assert disk.read_bytes()[4 * SECTOR:5 * SECTOR] == b'\xEE' * SECTOR


def test_legacy_config_moves_to_0x18_while_msix_is_enabled(qtest_factory, disk):
    """With MSI-X on, the legacy header grows by two vector registers (4.1.4.8)."""
    hw, fns = boot(qtest_factory, blk_args(disk))
    fn, = virtio_functions(fns, 'blk')
    cap = fn.find_capability(pci.CAP_ID_MSIX)
    fn.write16(cap + 2, fn.read16(cap + 2) | pci.MSIX_CONTROL_ENABLE)
    dev = bind_raw(hw, fn, 'legacy')
    assert dev.transport.config_read64(BLK_CAPACITY) == DISK_SECTORS
    status, length, data = Blk(dev).request(VIRTIO_BLK_T_IN, 7, in_len=SECTOR)
    assert (status, length, data) == (VIRTIO_BLK_S_OK, SECTOR + 1, sector_pattern(7))


# -- other devices ------------------------------------------------------------------------

class RxTxDevice(VirtioDevice):
    """Test-only: queues 0 and 1 (net receiveq/transmitq, console port 0 in/out)."""

    def setup(self):
        self.rx = self.setup_queue(0)
        self.tx = self.setup_queue(1)


GATEWAY_MAC = bytes([0x52, 0x55, 10, 0, 2, 2])     # QEMU's user network, 10.0.2.2
GUEST_IP = bytes([10, 0, 2, 15])
GATEWAY_IP = bytes([10, 0, 2, 2])
ETH_P_ARP = 0x0806


def arp_request(mac, sender_ip, target_ip):
    return (b'\xff' * 6 + mac + struct.pack('>H', ETH_P_ARP)
            + struct.pack('>HHBBH', 1, 0x0800, 6, 4, 1)     # Ethernet/IPv4, request
            + mac + sender_ip + bytes(6) + target_ip)


@pytest.mark.parametrize('machine, transport', [('pc', 'legacy'), ('q35', 'modern')])
def test_net_arp_with_the_user_network_gateway(qtest_factory, machine, transport):
    """A frame out on the transmitq, the gateway's ARP reply back on the receiveq. The
    virtio_net_hdr is 10 bytes on legacy without MRG_RXBUF, 12 with VERSION_1 (5.1.6):
    with the wrong size QEMU misreads the frame and nothing comes back."""
    hw, fns = boot(qtest_factory, ['-netdev', 'user,id=n0',
                                   '-device', 'virtio-net-pci,netdev=n0,romfile='], machine)
    fn, = virtio_functions(fns, 'net')
    dev = RxTxDevice(tp.open_transport(hw, fn, transport)).init()
    assert bytes(dev.transport.config_read8(i) for i in range(6)) == DEFAULT_MAC
    hdr_len = 12 if transport == 'modern' else 10
    for _ in range(4):
        buf = hw.dma_alloc(hdr_len + 1514, 16)
        dev.rx.add((), [(buf, hdr_len + 1514)], buf)
    dev.rx.kick()
    frame = bytes(hdr_len) + arp_request(DEFAULT_MAC, GUEST_IP, GATEWAY_IP)
    out = hw.dma_alloc(len(frame), 16)
    hw.write(out, frame)
    dev.tx.add([(out, len(frame))], (), 'arp')
    dev.tx.kick()
    assert dev.tx.wait(2000) == ('arp', 0)          # nothing written back on transmit
    buf, length = dev.rx.wait(2000)
    reply = hw.read(buf + hdr_len, length - hdr_len)
    assert reply[:12] == DEFAULT_MAC + GATEWAY_MAC
    assert struct.unpack('>HH', reply[12:14] + reply[20:22]) == (ETH_P_ARP, 2)   # a reply
    assert reply[22:32] == GATEWAY_MAC + GATEWAY_IP
    assert reply[32:42] == DEFAULT_MAC + GUEST_IP


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_console_port0_output_reaches_the_chardev(qtest_factory, tmp_path, transport):
    """Without MULTIPORT, port 0's transmitq (queue 1) goes to the virtconsole's chardev."""
    out_file = tmp_path / 'console.txt'
    hw, fns = boot(qtest_factory, ['-device', 'virtio-serial-pci',
                                   '-chardev', 'file,id=c0,path=%s' % out_file,
                                   '-device', 'virtconsole,chardev=c0'])
    fn, = virtio_functions(fns, 'console')
    dev = RxTxDevice(tp.open_transport(hw, fn, transport)).init()
    text = b'hello from the host bench over %s\n' % transport.encode()
    buf = hw.dma_alloc(len(text))
    hw.write(buf, text)
    dev.tx.add([(buf, len(text))], (), 'text')
    dev.tx.kick()
    assert dev.tx.wait(2000) == ('text', 0)
    assert out_file.read_bytes() == text


# -- interrupts ---------------------------------------------------------------------------

PIIX3 = (0x8086, 0x7000)        # the PCI-to-ISA bridge at 00:01.0 on pc
PIRQ_ROUTE = 0x60               # PIRQA..D route control registers
PIRQ_IRQS = (5, 9, 10, 11)


@pytest.mark.parametrize('transport, wanted', [
    ('legacy', CORE_FEATURES), ('modern', CORE_FEATURES), ('modern', BARE)],
    ids=['legacy-event-idx', 'modern-event-idx', 'modern-flags'])
def test_intx_follows_interrupt_suppression_and_isr_read_clears_it(qtest_factory,
                                                                   transport, wanted):
    """QEMU raises INTx for a used buffer only when the ring asks for it (2.7.7/2.7.10),
    and reading the ISR status lowers it (4.1.4.5)."""
    hw = qtest_factory(['-device', 'virtio-rng-pci'])
    hw.intercept_irqs()
    fns = pci.scan(hw)
    pci.assign_resources(hw, fns)
    isa, = [f for f in fns if (f.vendor_id, f.device_id) == PIIX3]
    for i, irq in enumerate(PIRQ_IRQS):
        isa.write8(PIRQ_ROUTE + i, irq)
    fn, = virtio_functions(fns, 'rng')
    # PIIX3 swizzle: INTA of slot s is PIRQ (s - 1) & 3.
    line = PIRQ_IRQS[(fn.device - 1 + fn.interrupt_pin - 1) & 3]
    dev = bind_raw(hw, fn, transport, wanted)
    buf = hw.dma_alloc(16)

    def one_request():
        dev.vq.add((), [(buf, 16)], 'r')
        dev.vq.kick()
        assert dev.vq.wait(2000) == ('r', 16)

    # With EVENT_IDX, QEMU always signals the first used buffer after a queue is set
    # up (its signalled_used is not valid yet): the spec lets suppression be best-effort.
    one_request()
    dev.transport.isr()                         # acknowledge whatever that raised
    assert hw.irq_level(line) == 0
    one_request()                               # suppressed: the driver polls
    assert hw.irq_level(line) == 0
    assert dev.transport.isr() & tp.ISR_QUEUE == 0
    dev.vq.enable_interrupts()
    one_request()
    assert hw.irq_level(line) == 1
    assert dev.transport.isr() & tp.ISR_QUEUE
    assert hw.irq_level(line) == 0
    assert dev.transport.isr() == 0             # read-to-clear
    dev.vq.suppress_interrupts()
    one_request()
    assert hw.irq_level(line) == 0


def test_packed_rng_round_trip(qtest_factory):
    """QEMU 7.2 writes a packed used descriptor's length without VIRTQ_DESC_F_WRITE
    (virtqueue_packed_fill_desc sets AVAIL|USED only); a driver reading the length only
    under F_WRITE (spec 2.8.5) sees 0 bytes and the rng never returns entropy."""
    hw = qtest_factory(['-device', 'virtio-rng-pci,packed=on'])
    virtio.probe(hw)
    rng = virtio.find('rng')
    assert rng.queues[0].kind == 'packed'
    assert features.has(rng.features, features.RING_PACKED)
    chunks = [rng.read(48) for _ in range(20)]      # 20 requests on an 8-entry ring
    assert len(set(chunks)) == 20


def test_a_shared_image_fails_on_qemus_lock_with_its_message(qtest_factory, disk):
    """Why every test makes its own image: a second QEMU on it is refused."""
    qtest_factory(blk_args(disk))
    with pytest.raises(QemuExited, match='Failed to get "write" lock'):
        qtest_factory(blk_args(disk))
