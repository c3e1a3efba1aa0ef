"""virtio.probe() in the booted image (issue #3's "done when"): the default devices on
`pc` and `q35` with either transport on request, a modern-only device behind a PCIe root
port, and a transitional one behind a PCI-to-PCI bridge. Each found device also does
one real request, so "found" means "works"."""
import pytest

from tests.qemu.harness import GuestError, default_devices

pytestmark = pytest.mark.qemu

# What the guest reports per device: address, kind, transport, PCI device ID.
SUMMARY = ('[(d.pci.address, d.KIND, d.transport.name, d.pci.device_id) '
           'for d in virtio.probe(transport=%r)]')


def probe(g, transport=None):
    g.exec('import virtio')
    return g.eval(SUMMARY % transport)


@pytest.mark.parametrize('machine', ['pc', 'q35'])
@pytest.mark.parametrize('transport', [None, 'legacy', 'modern'])
def test_default_devices_are_found_and_work_on_either_transport(boot, tmp_disk, machine,
                                                                transport):
    g = boot(machine=machine, devices=default_devices(tmp_disk(1 << 20, fill=b'\xa5')))
    found = probe(g, transport)
    assert sorted(kind for _, kind, _, _ in found) == ['blk', 'console', 'net', 'rng']
    want = transport or 'modern'        # transitional devices offer VERSION_1
    assert {name for _, _, name, _ in found} == {want}
    assert g.eval('virtio.find("blk").read(0, 1)') == b'\xa5' * 512
    assert g.eval('len(virtio.find("rng").read(16))') == 16


def test_q35_modern_only_device_behind_a_pcie_root_port(boot):
    g = boot(machine='q35', devices=[
        '-device', 'pcie-root-port,id=rp1,chassis=1,slot=1',
        '-device', 'virtio-rng-pci,bus=rp1'])
    found = probe(g)
    assert len(found) == 1
    address, kind, transport, device_id = found[0]
    assert kind == 'rng' and transport == 'modern'
    assert device_id == 0x1044                  # modern-only: 0x1040 + type 4
    assert not address.startswith('00:')        # on the root port's secondary bus
    assert g.eval('len(virtio.find("rng").read(32))') == 32
    # A modern-only device has no legacy interface to fall back to: the probe says so.
    g.exec('devs = virtio.probe(transport="legacy")')
    assert g.eval('[d.KIND for d in devs]') == [None]
    assert 'legacy' in g.eval('str(devs[0].error)')


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_pc_device_behind_a_pci_bridge(boot, transport):
    g = boot(machine='pc', devices=[
        '-device', 'pci-bridge,id=br1,chassis_nr=1',
        '-device', 'virtio-rng-pci,bus=br1,addr=0x3'])
    found = probe(g, transport)
    assert [(a, k, t) for a, k, t, _ in found] == [('01:03.0', 'rng', transport)]
    assert g.eval('len(virtio.find("rng").read(32))') == 32


def test_soft_resets_give_the_dma_memory_back(boot, tmp_disk):
    # mpremote soft-resets before every command; each virtio.probe() after one sets up
    # every device's rings again. With -m 64 the DMA area is 16 MiB and a probe of the
    # four default devices takes ~650 KiB: 40 rounds would exhaust it if soft resets
    # leaked, and the devices must still work after their old rings are reused.
    g = boot(mem=64, devices=default_devices(tmp_disk(1 << 20, fill=b'\x5a')))
    first = None
    for _ in range(40):
        g.enter_raw_repl(soft_reset=True)
        g.exec('import x86, virtio\nstart = x86.dma_alloc(16)\nvirtio.probe()')
        start = g.eval('start')
        first = first or start
        assert start == first               # the area starts afresh at each soft reset
    assert g.eval('virtio.find("blk").read(0, 1)') == b'\x5a' * 512
    assert len(g.eval('virtio.find("rng").read(16)')) == 16


def test_200_probes_at_16_mib_bind_every_device_every_time(boot, tmp_disk):
    # A probe of the four default devices takes 651 KiB of DMA memory, and -m 16 has a
    # 3696 KiB DMA area: unless each probe() gives the last one's back (the devices reset
    # first), the 6th leaves net unbound ("DMA area exhausted").
    g = boot(mem=16, devices=default_devices(tmp_disk(1 << 20, fill=b'\x5a')))
    g.exec('import virtio, gc\n'
           'old = virtio.find("blk")\n'
           'bad = []\n'
           'heap = []\n'
           'for i in range(200):\n'
           '    devs = virtio.probe()\n'
           '    if sorted([str(d.KIND) for d in devs]) != ["blk", "console", "net", "rng"]:\n'
           '        bad.append((i, [str(d) for d in devs]))\n'
           '    if i in (9, 199):\n'
           '        gc.collect()\n'
           '        heap.append(gc.mem_free())', timeout=180)
    assert g.eval('bad[:2]') == []
    first, last = g.eval('heap')
    assert first - last < 64 * 1024             # nothing kept per probe on the heap either
    with pytest.raises(GuestError, match=r"VirtioError: 00:0\d.0 virtio-blk was replaced by "
                                         r"probe\(\) #\d+ at ticks_ms \d+: use the new "
                                         r"object, virtio.find\('blk'\): 00:0\d.0 virtio-blk"):
        g.exec('old.read(0, 1)')
    assert g.eval('virtio.find("blk").read(0, 1)') == b'\x5a' * 512
    assert len(g.eval('virtio.find("rng").read(16)')) == 16


def test_pci_scan_with_no_argument_uses_the_port_module(boot):
    # As a user types it at the REPL: no hardware module to pass, as for probe().
    g = boot(machine='pc', devices=['-device', 'virtio-rng-pci'])
    g.exec('import virtio.pci')
    ids = g.eval('[(f.vendor_id, f.device_id) for f in virtio.pci.scan()]')
    assert (0x1AF4, 0x1005) in ids             # the transitional virtio-rng
    assert (0x8086, 0x1237) in ids             # the i440FX host bridge
