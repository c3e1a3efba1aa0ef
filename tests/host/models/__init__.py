"""The host bench: Python models of a PCI machine and VirtIO devices that
implement docs/hardware-interface.md, so drivers/virtio runs on them as is.

    from tests.host.models import Machine, RngModel, BlkModel, PciBridge
    m = Machine([RngModel(), PciBridge([BlkModel(mode='modern')])])
    import virtio; devs = virtio.probe(m)
    m = Machine(host_bridge=False, mmio=[MmioModel(RngModel(mode='modern'), version=2)])
"""

from tests.host.models.machine import BusFault, Machine
from tests.host.models.pci import HostBridge, PciBridge, PciDevice, PlainDevice, RamBacked
from tests.host.models.rings import RingError
from tests.host.models.virtio import GenericModel, VirtioPciModel
from tests.host.models.rng import RngModel
from tests.host.models.blk import BlkModel
from tests.host.models.mmio import MmioModel

__all__ = ['BusFault', 'Machine', 'HostBridge', 'PciBridge', 'PciDevice', 'PlainDevice',
           'RamBacked', 'RingError', 'GenericModel', 'VirtioPciModel', 'RngModel',
           'BlkModel', 'MmioModel']
