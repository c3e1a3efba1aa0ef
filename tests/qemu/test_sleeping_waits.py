"""Issue 11, the drivers' side: every wait sleeps until an interrupt once a batch of looks
found nothing (virtio.wait.Sleeper), with MSI-X on pc and q35 and INTx with MSI-X off;
virtio.probe(interrupts=False) keeps polling. QEMU's own CPU time while the guest waits
3 s in net.recv() tells which: a sleeping guest leaves the host core idle."""
import time

import pytest

from tests.qemu.harness import default_devices
from tests.qemu.test_irq import _qemu_cpu_seconds

pytestmark = pytest.mark.qemu


def recv_cpu_share(g, interrupts):
    """QEMU's CPU share (of one core) while the guest waits 3 s for a frame that never
    comes; and the receive queue's sleeps."""
    g.exec('import virtio\nvirtio.probe(interrupts=%r)\nnet = virtio.find("net")\n'
           'while net.recv(200) is not None:\n    pass' % interrupts, timeout=30)
    c0, t0 = _qemu_cpu_seconds(g.proc.pid), time.monotonic()
    out = g.exec('print(net.recv(3000), net.receiveq.sleeper and net.receiveq.sleeper.sleeps, '
                 'net.interrupts and net.interrupts.mode)', timeout=30)
    c1, t1 = _qemu_cpu_seconds(g.proc.pid), time.monotonic()
    return (c1 - c0) / (t1 - t0), out.split()


# net takes INTx (NetDevice.USE_MSIX: QEMU 7.2 crashes with MSI-X on vhost-user-net);
# blk and rng, waited on below too, take MSI-X where the function has it.
@pytest.mark.parametrize('machine, props, mode', [
    ('pc', '', 'intx'), ('q35', '', 'intx'), ('pc', ',vectors=0', 'intx')])
def test_a_wait_sleeps_and_leaves_the_host_core_idle(boot, tmp_disk, machine, props, mode):
    devs = default_devices(tmp_disk(1 << 20))
    devs = [d + props if d.startswith('virtio-net-pci') else d for d in devs]
    g = boot(machine=machine, devices=devs)
    share, (frame, sleeps, got_mode) = recv_cpu_share(g, True)
    assert frame == 'None' and got_mode == mode and int(sleeps) >= 10
    assert share < 0.05, 'QEMU used %.1f%% of a core while the guest waited' % (100 * share)
    # Requests still complete, now through sleeping waits.
    assert g.eval('len(virtio.find("rng").read(64))') == 64
    assert g.eval('virtio.find("blk").read(0, 8) == bytes(4096)') is True
    assert g.eval('(virtio.find("blk").interrupts.mode, virtio.find("rng").interrupts.mode)') \
        == ('msix', 'msix')


def test_probe_without_interrupts_polls(boot, tmp_disk):
    g = boot(devices=default_devices(tmp_disk(1 << 20)))
    share, (frame, sleeper, got_mode) = recv_cpu_share(g, False)
    assert (frame, sleeper, got_mode) == ('None', 'None', 'None')
    assert share > 0.3, 'a polling wait spins the vCPU (QEMU at %.0f%%)' % (100 * share)
