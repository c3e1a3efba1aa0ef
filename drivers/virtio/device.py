# The VirtIO device base class: the driver side of device initialization
# (spec 3.1.1), feature negotiation (2.2), virtqueue set-up (4.1.5.1.3) and
# the DEVICE_NEEDS_RESET check (2.1.2). A driver subclasses it, declares
# KIND, DEVICE_TYPE, NAME, SUPPORTED_FEATURES and FEATURE_NAMES, and sets up
# its queues in setup().
#
# Device events reach the user as updated attributes plus one callback a
# program registers on the device (they need interrupts: virtio.probe()'s
# default on PCI; a handler calls it, never the interrupt itself):
#     def changed(source, what): ...
#     net.on_event = changed     # 'link': net.link_up changed (QEMU set_link)
#     blk.on_event = changed     # 'capacity': blk.capacity changed (block_resize)
#     con.on_event = changed     # 'size': con.cols/con.rows (F_SIZE); a console
#                                # Port for 'add', 'remove', 'open', 'close',
#                                # 'name', 'resize' (virtio.console)
# Any other configuration change is 'config'.

from virtio import features, transport as tp
from virtio.dma import DeviceMemory
from virtio.errors import DeviceError, NegotiationError, VirtioError, VirtioTimeout
from virtio.packed import PackedVirtqueue
from virtio.split import SplitVirtqueue

# Ring and transport features this core implements (the generic virtqueues).
CORE_FEATURES = features.mask(features.VERSION_1, features.INDIRECT_DESC,
                              features.EVENT_IDX, features.RING_PACKED)
NEVER = features.mask(features.BAD_FEATURE)
CONFIG_RETRIES = 16


class VirtioDevice:
    KIND = None                  # 'blk', 'net', 'console', 'rng'
    DEVICE_TYPE = None           # VirtIO device ID (spec 5)
    NAME = 'virtio'
    SUPPORTED_FEATURES = 0       # device-specific bits the driver handles
    RING_FEATURES = CORE_FEATURES   # the ring and transport bits its queues handle
    FEATURE_DEPENDENCIES = {}    # device-specific bit -> the bits it needs (spec 5.x.3.1)
    FEATURE_NAMES = {}           # device-specific bit -> name
    USE_MSIX = True              # False: INTx even where the function has MSI-X
    retired = None               # why, once a later probe() replaced this object

    def __init__(self, transport, wanted=None):
        """`wanted` narrows what the driver accepts (a feature mask); by
        default SUPPORTED_FEATURES plus RING_FEATURES. Ring features the
        driver's queues cannot handle are never accepted, whatever `wanted`."""
        self.transport = transport
        # Every DMA block allocated through self.hw is recorded (virtio.dma), so that
        # a later probe() can give it back once the device is reset.
        hw = transport.hw
        self.memory = hw if isinstance(hw, DeviceMemory) else DeviceMemory(hw)
        self.hw = self.memory
        self.address = transport.address
        self.pci = getattr(transport, 'pci', None)     # the PCI function, on PCI
        self.features = 0
        self.offered = 0
        self.queues = []
        if wanted is None:
            wanted = self.SUPPORTED_FEATURES | self.RING_FEATURES
        self.wanted = wanted & ~(CORE_FEATURES & ~self.RING_FEATURES)
        transport.feature_table = self.FEATURE_NAMES
        self.use_interrupts = True  # virtio.probe(interrupts=False) keeps polling
        self.interrupts = None      # virtio.interrupts.Interrupts once initialized
        self.config_events = 0      # configuration changes seen (4.1.4.5: ISR bit 1)
        self.on_event = None        # a user's callback: on_event(device, what)

    # -- identity --------------------------------------------------------------
    def __str__(self):
        sizes = [str(q.size) for q in self.queues if q is not None]
        return '%s %s %s %sq features=%s' % (
            self.address, self.NAME, self.transport.name,
            '+'.join(sizes) or '0', self.feature_names() or '-')

    def __repr__(self):
        return '<%s>' % self

    def feature_names(self):
        return features.names(self.features, self.FEATURE_NAMES)

    def has(self, bit):
        """Whether feature `bit` was negotiated."""
        return (self.features >> bit) & 1 == 1

    # -- initialization (spec 3.1.1) -----------------------------------------------
    def init(self):
        """Run the initialization sequence: reset, ACKNOWLEDGE, DRIVER,
        features, FEATURES_OK (modern), setup() and DRIVER_OK. On failure
        the device is marked FAILED and the error names the step."""
        t = self.transport
        step = 'reset'
        try:
            t.reset()
            step = 'ACKNOWLEDGE'
            t.add_status(tp.ACKNOWLEDGE)
            step = 'DRIVER'
            t.add_status(tp.DRIVER)
            step = 'features'
            self._negotiate()
            step = 'setup'
            self.setup()
            step = 'interrupts'
            self._setup_interrupts()
            step = 'DRIVER_OK'
            t.add_status(tp.DRIVER_OK)
            self.check()
        except VirtioTimeout as e:
            self._fail()
            raise VirtioTimeout('%s %s: %s step: %s' % (self.address, self.NAME, step, e.msg))
        except Exception as e:
            self._fail()
            if isinstance(e, NegotiationError):
                raise
            raise NegotiationError('%s %s: %s step: %s' % (self.address, self.NAME, step, e),
                                   step, e)
        return self

    def _negotiate(self):
        t = self.transport
        offered = t.device_features()
        self.offered = offered
        accept = features.drop_unmet(offered & self.wanted & ~NEVER,
                                     features.DEPENDENCIES, self.FEATURE_DEPENDENCIES)
        if not t.legacy_interface and not features.has(offered, features.VERSION_1):
            self._refuse('features', 'a modern device must offer VERSION_1 (offered 0x%x)' % offered)
        if t.legacy_interface:
            accept &= 0xFFFFFFFF
        t.set_driver_features(accept)
        self.features = accept
        if t.legacy_interface:
            return          # legacy devices have no FEATURES_OK (3.1.2)
        t.add_status(tp.FEATURES_OK)
        if not t.get_status() & tp.FEATURES_OK:
            self._refuse('FEATURES_OK', 'device did not accept FEATURES_OK (features 0x%x %s)'
                         % (accept, features.names(accept, self.FEATURE_NAMES)))

    def _refuse(self, step, msg):
        raise NegotiationError('%s %s: %s step: %s' % (self.address, self.NAME, step, msg),
                               step)

    def _fail(self):
        # Tell the device we gave up (2.1): FAILED, keeping what was set.
        try:
            self.transport.add_status(tp.FAILED)
        except Exception:
            pass

    def setup(self):
        """Device-specific set-up (queues, buffers): drivers override."""

    def reset(self):
        """Stop the device: after this it touches no memory of ours."""
        self.transport.reset()
        self.queues = []
        if self.interrupts is not None:
            self.interrupts.close()         # its vectors back to the port
            self.interrupts = None

    # -- interrupts (4.1.4.5, 4.1.4.8; docs/hardware-interface.md) ----------------------
    def _setup_interrupts(self):
        """Before DRIVER_OK: MSI-X vectors for configuration changes and each
        queue, or the INTx line, when the hardware interface can take
        interrupts; each queue's waits then sleep instead of spinning."""
        if not self.use_interrupts or not hasattr(self.hw, 'irq_wait'):
            return
        from virtio.interrupts import Interrupts
        from virtio.wait import Sleeper
        irqs = Interrupts(self.hw, self.transport, len(self.queues), self._config_event,
                          self.USE_MSIX)
        if irqs.mode is None:
            return                          # no way for this device (virtio-mmio): poll
        self.interrupts = irqs
        for vq in self.queues:
            if vq is not None:
                vq.sleeper = Sleeper(self.hw, [(vq.steps, vq.st)])

    def _config_event(self):
        # A configuration change notification (from a handler, never inside
        # the interrupt): the driver re-reads what it keeps, then the user hears
        # what changed ('config' when the driver does not say).
        self.config_events += 1
        self.emit(self, self.config_changed() or 'config')

    def config_changed(self):
        """The device's configuration changed: drivers re-read theirs and
        return the event's name ('link', 'capacity', 'size'), or None."""

    def emit(self, source, what):
        """Tell the user's on_event(source, what), if one is registered: source
        is the object whose attributes changed (this device, a console port)."""
        if self.on_event is not None:
            self.on_event(source, what)

    def dma_alloc(self, size, align=4096):
        """DMA memory for this device (hw.dma_alloc), recorded so that it goes back
        to the allocator when the device is released (virtio.release)."""
        return self.memory.dma_alloc(size, align)

    # -- health (2.1.2) ----------------------------------------------------------------
    def check(self):
        """Raise DeviceError if the device set DEVICE_NEEDS_RESET, VirtioError if a
        later probe() replaced this object."""
        if self.retired is not None:
            raise VirtioError(str(self.retired))
        status = self.transport.get_status()
        if status & tp.DEVICE_NEEDS_RESET:
            raise DeviceError('%s %s: device set DEVICE_NEEDS_RESET (status 0x%02x %s)'
                              % (self.address, self.NAME, status, tp.status_names(status)))

    # -- virtqueues ---------------------------------------------------------------------
    def setup_queue(self, index, size=None, indirect_max=None):
        """Create virtqueue `index` (packed when RING_PACKED was negotiated,
        else split), of the device's maximum size unless `size` is smaller,
        and enable it on the transport."""
        t = self.transport
        if index >= t.num_queues():
            raise VirtioError('%s %s: queue %d does not exist (%d queues)'
                              % (self.address, self.NAME, index, t.num_queues()))
        maxsize = t.queue_max_size(index)
        if maxsize == 0:
            raise VirtioError('%s %s: queue %d is not available (size 0)'
                              % (self.address, self.NAME, index))
        if size is None:
            size = maxsize
        elif size > maxsize:
            raise VirtioError('%s %s: queue %d size %d is above the device maximum %d'
                              % (self.address, self.NAME, index, size, maxsize))
        kw = {'name': '%s %s queue %d' % (self.address, self.NAME, index),
              'check': self.check}
        if indirect_max is not None:
            kw['indirect_max'] = indirect_max
        if self.has(features.RING_PACKED):
            vq = PackedVirtqueue(self.hw, t, index, size, self.features, **kw)
        else:
            vq = SplitVirtqueue(self.hw, t, index, size, self.features, **kw)
        vq.enable()
        while len(self.queues) <= index:
            self.queues.append(None)
        self.queues[index] = vq
        return vq

    # -- device configuration (2.5) -------------------------------------------------------
    def read_config(self, reader):
        """Call reader() until config_generation is the same before and after
        (2.5.1), so a multi-field read is consistent; returns its value."""
        t = self.transport
        for _ in range(CONFIG_RETRIES):
            before = t.config_generation()
            value = reader()
            if t.config_generation() == before:
                return value
        raise DeviceError('%s %s: config_generation kept changing over %d reads'
                          % (self.address, self.NAME, CONFIG_RETRIES))

    def check_config(self, name, value, low, high):
        """Return `value` if low <= value <= high, else raise DeviceError
        (a device must not feed a driver garbage configuration)."""
        if value < low or value > high:
            raise DeviceError('%s %s: config %s = 0x%x is outside [0x%x, 0x%x]'
                              % (self.address, self.NAME, name, value, low, high))
        return value
