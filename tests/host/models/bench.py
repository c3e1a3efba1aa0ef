"""Helpers that bring a model up under the real drivers, for tests."""

from virtio import pci
from virtio.device import VirtioDevice
from virtio.transport import is_virtio, open_transport

from tests.host.models.machine import Machine


class GenericDriver(VirtioDevice):
    """A driver for the generic model: sets up queue 0 at `queue_size`
    (device maximum when None)."""

    KIND = 'generic'
    NAME = 'virtio-generic'
    queue_size = None
    indirect_max = None

    def setup(self):
        self.vq = self.setup_queue(0, self.queue_size, self.indirect_max)


def machine_with(*models, **machine_kw):
    """A Machine with these models on bus 0, scanned and BARs assigned.
    Returns (machine, list of VirtIO PCI functions)."""
    m = Machine(list(models), **machine_kw)
    fns = pci.scan(m)
    pci.assign_resources(m, fns)
    return m, [f for f in fns if is_virtio(f)]


class NoAlias:
    """The machine seen through a hardware interface that cannot alias
    memory (no bytearray_at), like the qtest one."""

    def __init__(self, m):
        self._m = m

    def __getattr__(self, name):
        if name == 'bytearray_at':
            raise AttributeError(name)
        return getattr(self._m, name)


def bring_up(model, transport=None, wanted=None, queue_size=None, indirect_max=None,
             driver=GenericDriver, alias=True, interrupts=False, **machine_kw):
    """`model` in a fresh Machine, initialized by `driver` (spec 3.1.1);
    alias=False hides bytearray_at from the driver; interrupts=True lets the
    device set up its interrupts (its waits sleep). Returns (machine, device)."""
    m, fns = machine_with(model, **machine_kw)
    t = open_transport(m if alias else NoAlias(m), fns[0], transport)
    dev = driver(t, wanted)
    dev.use_interrupts = interrupts
    dev.queue_size = queue_size
    dev.indirect_max = indirect_max
    dev.init()
    return m, dev


def buf(m, data=b'', size=None):
    """A DMA buffer holding `data` (or `size` zero bytes): (address, length)."""
    n = size if size is not None else len(data)
    a = m.dma_alloc(max(n, 1), 16)
    m.write(a, data)
    return a, n
