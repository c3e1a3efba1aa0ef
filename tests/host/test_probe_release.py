"""probe() again, on model machines: the devices of the earlier probe are reset and their
DMA memory goes back to the allocator (so probing forever never exhausts a small DMA area),
and their objects refuse every call with an error naming what replaced them, before they
touch the device or its memory."""

import sys
import types

import pytest

import virtio
from virtio.errors import VirtioError
from virtio.trace import _transports

from tests.host.models import BlkModel, GenericModel, Machine, RngModel
from tests.host.models.bench import GenericDriver
from tests.host.models.console import ConsoleModel
from tests.host.models.net import NetModel
from tests.host.qtest import qtest_factory  # noqa: F401 (fixture)

MIB = 1 << 20
DMA_BASE = 1 << 20                  # Machine's default: the DMA area is [1 MiB, ram_size)


def small_machine(models, dma_bytes):
    return Machine(models, ram_size=DMA_BASE + dma_bytes)


def test_200_probes_in_a_small_dma_area_bind_every_device_every_time():
    m = small_machine([BlkModel(), ConsoleModel(), RngModel()], 64 * 1024)
    held = None
    for i in range(200):
        devs = virtio.probe(m)
        assert [d.KIND for d in devs] == ['blk', 'console', 'rng'], (i, devs)
        if held is None:
            held = m.dma.in_use()
            assert 2 * held > 64 * 1024         # a leak would exhaust the area at once
        assert m.dma.in_use() == held
        if i % 50 == 0:
            assert len(virtio.find('rng').read(16)) == 16


def test_probes_with_the_default_devices_reuse_the_same_memory():
    models = [BlkModel(), NetModel(), ConsoleModel(), RngModel()]
    m = small_machine(models, 3 * MIB // 2)     # room for one probe's ~650 KiB, not two
    held = None
    for i in range(20):
        devs = virtio.probe(m)
        assert sorted(d.KIND for d in devs) == ['blk', 'console', 'net', 'rng'], (i, devs)
        held = held or m.dma.in_use()
        assert m.dma.in_use() == held
    net = virtio.find('net')
    models[1].deliver(b'\xff' * 6 + bytes(6) + b'\x08\x00' + bytes(50))
    assert net.recv(1000)[:6] == b'\xff' * 6


def test_an_old_device_object_names_what_replaced_it():
    m = Machine([RngModel(), BlkModel(mode='modern')])
    old_rng, old_blk = virtio.probe(m)
    rng, blk = virtio.probe(m)
    with pytest.raises(VirtioError) as e:
        old_rng.read(8)
    msg = str(e.value)
    assert msg.startswith('00:03.0 virtio-rng was replaced by probe() #')
    assert " at ticks_ms " in msg
    assert msg.endswith(": use the new object, virtio.find('rng'): %s" % rng)
    # Every way in refuses: the driver's methods, the wait's health check, the
    # transport, the queues, and the hardware interface the device holds.
    for call in (lambda: old_blk.read(0, 1), lambda: old_blk.submit_read(0, bytearray(512), 1),
                 old_blk.flush, old_blk.check, old_blk.transport.reset,
                 lambda: old_blk.transport.notify(0), old_rng.requestq.kick,
                 lambda: old_blk.hw.read32(0), lambda: old_blk.hw.dma_alloc(16)):
        with pytest.raises(VirtioError, match='virtio-(blk|rng) was replaced by probe'):
            call()
    assert str(old_blk).startswith('00:04.0 virtio-blk modern')     # it still prints
    assert len(rng.read(8)) == 8 and blk.read(0, 1) == bytes(512)     # the new ones work


def test_an_old_device_touches_no_memory_of_the_new_one():
    model = BlkModel()
    m = Machine([model])
    (old,) = virtio.probe(m)
    (new,) = virtio.probe(m)
    # First fit hands the new device the very blocks the old one had.
    before = bytes(m.ram)
    resets = model.resets
    for call in (lambda: old.read(0, 1), lambda: old.readinto(0, bytearray(512)),
                 lambda: old.write(0, bytes(512)), lambda: old.submit_read(0, bytearray(512), 7),
                 old.kick, old.poll):
        with pytest.raises(VirtioError):
            call()
    with pytest.raises(VirtioError):
        old.transport.reset()
    assert bytes(m.ram) == before and model.resets == resets
    assert new.in_flight == 0
    new.write(3, b'\x5a' * 512)
    assert new.read(3, 1) == b'\x5a' * 512


def test_a_device_that_does_not_reset_keeps_its_memory():
    model = RngModel()
    m = Machine([model])
    (old,) = virtio.probe(m)
    held = m.dma.in_use()
    model.misbehave = 'stuck_reset'             # the release's reset never completes
    (dev,) = virtio.probe(m)
    assert dev.KIND is None                     # (its own reset fails too)
    assert m.dma.in_use() == held               # it may still write there: not freed
    with pytest.raises(VirtioError) as e:
        old.read(4)
    assert ' at ticks_ms ' in str(e.value)
    assert str(e.value).startswith('00:03.0 virtio-rng was replaced by probe() #')
    assert str(e.value).endswith(', which left it %s' % dev)       # unbound, and why


def test_a_driver_that_fails_after_setting_up_rings_gives_them_back(monkeypatch):
    class Failing(GenericDriver):
        def setup(self):
            GenericDriver.setup(self)
            raise OSError(5, 'set-up failed late')

    mod = types.ModuleType('virtio.failing')
    mod.DRIVER = Failing
    monkeypatch.setitem(sys.modules, 'virtio.failing', mod)
    monkeypatch.setitem(virtio.DRIVERS, 9, 'failing')
    m = Machine([GenericModel(device_type=9, mode='modern')])
    (dev,) = virtio.probe(m)
    assert 'set-up failed late' in str(dev)
    assert m.dma.in_use() == 0


def test_trace_forgets_the_transports_of_replaced_devices():
    m = Machine([RngModel()])
    (old,) = virtio.probe(m)
    (new,) = virtio.probe(m)
    lines = []
    virtio.trace(True, lines.append)            # would raise on the retired transport
    try:
        new.read(4)
    finally:
        virtio.trace(False)
    assert lines and all(line.startswith('00:03.0') for line in lines)
    assert old.transport not in _transports()


def test_an_old_object_kept_does_not_keep_its_successors_alive():
    import gc
    import weakref
    m = Machine([RngModel()])
    (first,) = virtio.probe(m)                  # kept, as a user's variable would
    (second,) = virtio.probe(m)
    gone = weakref.ref(second)
    virtio.probe(m)
    del second
    gc.collect()
    assert gone() is None
    with pytest.raises(VirtioError, match="use the new object, virtio.find\\('rng'\\)"):
        first.read(4)


def test_a_driver_gives_one_block_back_early_through_its_device():
    m = Machine([RngModel()])
    (dev,) = virtio.probe(m)
    before = m.dma.in_use()
    a = dev.dma_alloc(4096, 16)
    assert dev.memory.blocks[a] == 4096 and m.dma.in_use() == before + 4096
    dev.memory.dma_free(a)
    assert m.dma.in_use() == before and a not in dev.memory.blocks
    with pytest.raises(ValueError, match='not DMA memory this device holds'):
        dev.memory.dma_free(a)
    assert len(dev.read(8)) == 8


@pytest.mark.qemu
def test_probe_again_on_qemus_own_devices_over_qtest(qtest_factory, tmp_path):
    # QEMU's devices, reset by the release, write nothing more into the blocks the new
    # devices get: data still arrives right after 5 probes in 2 MiB of RAM (1 MiB of
    # DMA area; the rings and bounce buffers of a probe take more than half of it).
    image = tmp_path / 'disk.img'
    image.write_bytes(b'\xa5' * (1 << 20))
    hw = qtest_factory(['-drive', 'if=none,id=d0,format=raw,file=%s' % image,
                        '-device', 'virtio-blk-pci,drive=d0', '-device', 'virtio-rng-pci'],
                       memory_mb=2)
    held = None
    for i in range(5):
        old = virtio.devices()
        blk, rng = virtio.probe(hw)
        assert (blk.KIND, rng.KIND) == ('blk', 'rng'), (i, blk, rng)
        assert blk.read(i, 1) == b'\xa5' * 512 and len(rng.read(16)) == 16
        held = held or hw.dma.in_use()
        assert hw.dma.in_use() == held and 2 * held > 1 << 20
        for d in old:
            with pytest.raises(VirtioError, match='was replaced by probe'):
                d.check()


def test_a_probe_interrupted_in_a_drivers_set_up_leaves_nothing_behind(monkeypatch):
    interrupt = [False]

    class Interrupted(GenericDriver):
        def setup(self):
            GenericDriver.setup(self)
            if interrupt[0]:
                raise KeyboardInterrupt         # Ctrl-C once its ring is set up

    mod = types.ModuleType('virtio.interrupted')
    mod.DRIVER = Interrupted
    monkeypatch.setitem(sys.modules, 'virtio.interrupted', mod)
    monkeypatch.setitem(virtio.DRIVERS, 9, 'interrupted')
    m = Machine([RngModel(), GenericModel(device_type=9, mode='modern'), RngModel()])
    first = virtio.probe(m)[0]
    held = m.dma.in_use()
    interrupt[0] = True
    with pytest.raises(KeyboardInterrupt):
        virtio.probe(m)
    assert first.retired is not None
    bound = virtio.devices()                    # what was bound before the interrupt
    assert [d.KIND for d in bound] == ['rng']
    assert m.dma.in_use() == sum((n + 15) & ~15 for n in bound[0].memory.blocks.values())
    interrupt[0] = False
    devs = virtio.probe(m)                      # releases that one, binds all three
    assert [d.KIND for d in devs] == ['rng', 'generic', 'rng']
    assert m.dma.in_use() == held
