"""virtio-mmio (drivers/virtio/mmio.py, mmio_probe.py; spec 4.2) on the window
models (tests/host/models/mmio.py): windows skipped with their reasons, discovery
from the command line and from the fixed window list, what version 1 and version 2
write, the interrupt acknowledge, config generation, trace, misbehaving devices, and
the blk, rng, net and console drivers over MMIO v1 and v2 with split and packed rings."""

import pytest

import virtio
from virtio import mmio as M, mmio_probe as P, transport as tp
from virtio.errors import NegotiationError, VirtioError, VirtioTimeout

from tests.host.models import BlkModel, GenericModel, Machine, RngModel
from tests.host.models.console import ConsoleModel, HostPort
from tests.host.models.mmio import MmioModel
from tests.host.models.net import NetModel

BASE = P.MICROVM_BASE
F_RING_PACKED = 1 << 34


def window(model, version, **kw):
    """`model_cls` built with the interface the window version implies."""
    return MmioModel(model, version, **kw)


def model(cls, version, **kw):
    return cls(mode='legacy' if version == 1 else 'modern', **kw)


def up(*windows, **machine_kw):
    m = Machine(host_bridge=False, mmio=list(windows), **machine_kw)
    return m, virtio.probe(m)


# -- windows that hold no usable device (4.2.2.2) --------------------------------------

def test_bad_magic_unknown_version_and_empty_slot_are_skipped_with_reasons():
    rng = window(model(RngModel, 2), 2)
    m, devs = up(window(model(RngModel, 2), 2, magic=0x12345678),
                 window(model(RngModel, 2), 3),
                 window(None, 2),
                 rng)
    assert [d.address for d in devs] == ['mmio@0x%08x' % (BASE + 0x600)]
    assert virtio.find('rng').read(4)
    reasons = [(e.window.base - BASE, e.reason, e.empty) for e in virtio.skipped()]
    assert reasons == [
        (0x000, 'bad magic value 0x12345678 (want 0x74726976 "virt")', False),
        (0x200, 'unknown version 3 (this driver knows 1 and 2)', False),
        (0x400, 'empty slot (device ID 0)', True)]
    assert rng.errors == []


def test_opening_a_skipped_window_says_why():
    m = Machine(host_bridge=False, mmio=[window(None, 1)])
    with pytest.raises(M.WindowSkipped) as e:
        M.MmioTransport(m, M.Window(BASE))
    assert str(e.value) == 'mmio@0xfeb00000: empty slot (device ID 0)' and e.value.empty


def test_the_window_list_ends_at_unassigned_memory():
    m = Machine(host_bridge=False, mmio=[window(model(RngModel, 1), 1)])
    assert [w.base for w in P.microvm_windows(m)] == [BASE]
    assert m.faults == []


# -- discovery -------------------------------------------------------------------------------

def test_command_line_parameters_parse_like_linux():
    ws = P.parse_cmdline('console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 '
                         'virtio_mmio.device=4K@0xd0000000:5:3 root=/dev/vda')
    assert [(w.base, w.size, w.irq) for w in ws] == [(0xFEB00E00, 512, 12),
                                                    (0xD0000000, 4096, 5)]
    assert P.parse_cmdline('quiet') == []
    with pytest.raises(ValueError) as e:
        P.parse_cmdline('virtio_mmio.device=0xfeb00000')
    assert 'virtio_mmio.device=0xfeb00000' in str(e.value)


def test_the_command_line_from_fw_cfg_names_the_windows_to_use():
    # Two devices, the command line names only the second (and says its interrupt).
    m, devs = up(window(model(RngModel, 2), 2), window(model(BlkModel, 2), 2),
                 cmdline='console=ttyS0 virtio_mmio.device=512@0xfeb00200:6')
    assert [(d.KIND, d.address, d.transport.irq) for d in devs] == [
        ('blk', 'mmio@0xfeb00200', 6)]
    assert P.firmware_cmdline(m).endswith(':6')


def test_a_pc_chipset_is_not_probed_for_windows():
    # On pc and q35 the window addresses may be a PCI BAR: never touched there.
    m = Machine([RngModel(mode='modern')], mmio=[window(model(RngModel, 2), 2)])
    devs = virtio.probe(m)
    assert [d.transport.name for d in devs] == ['modern']
    assert virtio.skipped() == []
    assert m.mmio[0].device.status_writes == []


def test_pci_and_mmio_devices_side_by_side_and_mmio_false():
    m = Machine([RngModel(mode='modern')], host_bridge=False,
                mmio=[window(model(BlkModel, 1), 1)])
    # No host bridge, so a PCI function and a window: both found, PCI first.
    assert [(d.KIND, d.transport.name) for d in virtio.probe(m)] == [
        ('rng', 'modern'), ('blk', 'mmio-v1')]
    assert [d.KIND for d in virtio.probe(m, mmio=False)] == ['rng']


def test_a_device_without_a_driver_is_listed_unbound_with_its_window():
    m, (dev,) = up(window(GenericModel(device_type=9, mode='modern'), 2))
    assert isinstance(dev, virtio.UnboundDevice)
    assert dev.pci is None and dev.window.base == BASE and dev.address == 'mmio@0xfeb00000'
    assert str(dev) == ('mmio@0xfeb00000 virtio-9p mmio vendor 0x554d4551 unbound: '
                        'no driver for device type 9')


# -- what each version writes -------------------------------------------------------------

def test_version_1_uses_the_legacy_interface_and_page_numbers():
    w = window(model(RngModel, 1), 1)
    m, (rng,) = up(w)
    t = rng.transport
    assert (t.name, t.legacy_interface, t.ring_align, t.fixed_queue_size) == (
        'mmio-v1', True, 4096, False)
    q = w.device.queues[0]
    assert w.guest_page_size == 4096 and w.aligns[0] == 4096
    assert q.desc == q.pfn * 4096 and q.device % 4096 == 0
    assert q.device == rng.requestq.used and q.driver == rng.requestq.avail
    assert w.device.driver_features >> 32 == 0
    assert t.config_generation() == 0
    assert rng.read(16) and w.errors == []


def test_version_2_writes_64_bit_halves_and_queue_ready():
    w = window(model(RngModel, 2), 2)
    m, (rng,) = up(w)
    t = rng.transport
    assert (t.name, t.legacy_interface, t.ring_align) == ('mmio-v2', False, 0)
    q = w.device.queues[0]
    vq = rng.requestq
    assert q.enabled and (q.desc, q.driver, q.device) == (vq.desc, vq.avail, vq.used)
    assert w.device.negotiated(1 << 32)          # VERSION_1
    assert rng.read(16) and w.errors == []
    with pytest.raises(VirtioError) as e:        # the queue is live: QueueReady reads 1
        t.enable_queue(0, vq.size, vq.desc, vq.avail, vq.used)
    assert 'already in use (QueueReady reads 0x1)' in str(e.value)


def test_queue_num_is_chosen_by_the_driver_up_to_queue_num_max():
    w = window(model(RngModel, 2, queue_sizes=(64,)), 2)
    m, (rng,) = up(w)
    t = rng.transport
    t.reset()
    with pytest.raises(VirtioError) as e:
        t.enable_queue(0, 128, 0x100000, 0x101000, 0x102000)
    assert 'size 128 is not in 1..64' in str(e.value)


def test_interrupt_status_is_acknowledged_with_exactly_what_was_read():
    w = window(model(RngModel, 2), 2)
    m, (rng,) = up(w)
    t = rng.transport
    w.device.isr = tp.ISR_QUEUE | tp.ISR_CONFIG
    assert t.isr() == 3 and w.interrupt_acks[-1] == 3 and w.device.isr == 0
    assert t.isr() == 0 and w.interrupt_acks == [3]       # nothing pending: no write


def test_config_reads_retry_while_config_generation_moves():
    blk = model(BlkModel, 2, sectors=4096)
    w = window(blk, 2)
    m, (dev,) = up(w)
    reads = []

    def reader():
        reads.append(1)
        if len(reads) == 1:
            blk.set_config(0, (8192).to_bytes(8, 'little'))     # changes mid-read
        return dev.transport.config_read64(0)
    assert dev.read_config(reader) == 8192 and len(reads) == 2


def test_trace_names_the_mmio_registers():
    lines = []
    w = window(model(RngModel, 2), 2)
    m, (rng,) = up(w)
    virtio.trace(True, lines.append)
    rng.read(4)
    rng.transport.isr()
    virtio.trace(False)
    assert 'mmio@0xfeb00000 mmio-v2 QueueNotify <- 0x00000000 queue 0' in lines
    assert any(line.startswith('mmio@0xfeb00000 mmio-v2 InterruptStatus -> ') for line in lines)


# -- misbehaving devices -----------------------------------------------------------------------

@pytest.mark.parametrize('version', [1, 2])
def test_a_reset_that_never_ends_times_out(version):
    w = window(model(RngModel, version, misbehave='stuck_reset'), version)
    m, (rng,) = up(w)
    with pytest.raises(VirtioTimeout) as e:
        rng.reset()
    assert 'mmio@0xfeb00000: device status still 0x' in str(e.value)


def test_features_ok_refused_on_version_2():
    w = window(model(RngModel, 2, misbehave='refuse_features_ok'), 2)
    m = Machine(host_bridge=False, mmio=[w])
    t = M.MmioTransport(m, M.Window(BASE))
    from virtio.rng import DRIVER
    with pytest.raises(NegotiationError) as e:
        DRIVER(t).init()
    assert e.value.step == 'FEATURES_OK'


@pytest.mark.parametrize('version', [1, 2])
def test_a_device_that_needs_reset_is_reported(version):
    w = window(model(RngModel, version, misbehave='needs_reset'), version)
    m, (rng,) = up(w)
    with pytest.raises(Exception) as e:
        rng.read(8, 200)
    assert 'DEVICE_NEEDS_RESET' in str(e.value)


def test_a_device_that_never_completes_times_out():
    w = window(model(RngModel, 2, misbehave='never_complete'), 2)
    m, (rng,) = up(w)
    with pytest.raises(VirtioTimeout):
        rng.read(8, 50)


# -- the drivers over MMIO: v1 and v2, split and packed --------------------------------------

RINGS = [(1, False), (2, False), (2, True)]
IDS = ['v1-split', 'v2-split', 'v2-packed']


def rings_as_offered(dev, packed):
    """Packed rings are used when offered and the driver's queues handle them."""
    assert dev.has(34) == (packed and bool(dev.RING_FEATURES & F_RING_PACKED))
    assert [q.kind for q in dev.queues if q is not None][0] == (
        'packed' if dev.has(34) else 'split')


@pytest.mark.parametrize('version, packed', RINGS, ids=IDS)
def test_blk_writes_and_reads_back(version, packed):
    blk = model(BlkModel, version, sectors=2048, packed=packed)
    m, (dev,) = up(window(blk, version))
    rings_as_offered(dev, packed)
    data = bytes((i * 7) & 0xFF for i in range(8 * 512))
    dev.write(100, data)
    dev.flush()
    assert dev.read(100, 8) == data
    assert bytes(blk.disk[100 * 512:108 * 512]) == data
    assert blk.errors == []


@pytest.mark.parametrize('version, packed', RINGS, ids=IDS)
def test_rng_reads(version, packed):
    m, (dev,) = up(window(model(RngModel, version, packed=packed), version))
    rings_as_offered(dev, packed)
    chunks = [dev.read(64) for _ in range(20)]
    assert all(len(c) == 64 for c in chunks) and len(set(chunks)) == 20


@pytest.mark.parametrize('version, packed', RINGS, ids=IDS)
def test_net_frames_both_ways(version, packed):
    net = model(NetModel, version, packed=packed)
    m, (dev,) = up(window(net, version))
    rings_as_offered(dev, packed)
    frame = bytes([0x52, 0x54, 0, 0x12, 0x34, 0x56]) + bytes(range(6)) + b'\x08\x00' + bytes(100)
    for k in range(300):                                 # past the ring size
        net.deliver(frame[:-1] + bytes([k & 0xFF]))
        assert dev.recv(100) == frame[:-1] + bytes([k & 0xFF])
    dev.send(frame)
    assert net.sent[-1] == frame and net.errors == []


@pytest.mark.parametrize('version, packed', RINGS, ids=IDS)
def test_console_both_ways(version, packed):
    con = model(ConsoleModel, version, ports=[HostPort(console=True)], packed=packed)
    m, (dev,) = up(window(con, version))
    rings_as_offered(dev, packed)
    port = dev.console()
    assert port.write(b'over mmio\n') == 10
    assert con.port(0).received == b'over mmio\n'
    con.host_send(0, b'typed\n')
    assert port.readline() == b'typed\n'
    assert con.errors == []


def test_a_bad_command_line_parameter_is_skipped_with_its_reason_and_probing_goes_on():
    m, devs = up(window(model(RngModel, 2), 2),
                 cmdline='virtio_mmio.device=512@nowhere:5')
    # Nothing usable named: the fixed window list is probed instead.
    assert [d.KIND for d in devs] == ['rng']
    (bad,) = virtio.skipped()
    assert bad.window.address == 'virtio_mmio.device=512@nowhere:5'
    assert bad.reason == 'bad virtio_mmio.device=512@nowhere:5: want <size>@<base>:<irq>'


def test_on_a_pc_chipset_only_named_windows_are_looked_at():
    w = window(model(RngModel, 2), 2)
    m = Machine([RngModel(mode='modern')], mmio=[w])
    assert [d.transport.name for d in virtio.probe(m, mmio='quiet')] == ['modern']
    devs = virtio.probe(m, mmio='virtio_mmio.device=512@0xfeb00000:5')
    assert [d.transport.name for d in devs] == ['modern', 'mmio-v2']
    assert devs[1].transport.irq == 5
