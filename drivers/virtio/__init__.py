# VirtIO over PCI and MMIO, in MicroPython (and CPython on the host).
#
#     import virtio
#     for dev in virtio.probe():     # scan PCI and MMIO, bind drivers, initialize
#         print(dev)                 # 00:04.0 virtio-blk modern 256q features=...
#     rng = virtio.find('rng')
#     virtio.trace(True)             # print every transport register access
#
# Drivers are found by VirtIO device type in virtio.<kind> modules, each
# exporting DRIVER (a VirtioDevice subclass). A device without a driver, or
# whose driver fails, is listed as an UnboundDevice; probe never fails for it.
# probe() again first releases what the last one bound (virtio.release): each
# device is reset, its DMA memory given back, and the old objects refuse every
# call with an error naming what replaced them.

from virtio import pci, trace as _trace
from virtio import release as _release
from virtio import transport as _transport
from virtio.dma import DeviceMemory
from virtio.errors import VirtioError

# VirtIO device type -> driver module (spec 5: device types).
DRIVERS = {1: 'net', 2: 'blk', 3: 'console', 4: 'rng'}
TYPE_NAMES = {1: 'net', 2: 'blk', 3: 'console', 4: 'rng', 5: 'balloon', 8: 'scsi',
              9: '9p', 16: 'gpu', 18: 'input', 19: 'vsock', 20: 'crypto', 26: 'fs'}

_devices = []
_skipped = []
_probed = [False]
_probes = [0]           # how many probe() calls so far (named in a retired device's errors)


class UnboundDevice:
    """A VirtIO device no driver drives (none exists, it failed to import,
    or initialization failed: `error` says which). `pci` is its PCI function
    on PCI, `window` its virtio-mmio window on MMIO (the other is None)."""

    KIND = None
    transport = None
    features = 0
    retired = None

    def __init__(self, where, device_type, error, ids=None):
        self.pci = where if ids is None else None
        self.window = where if ids is not None else None
        self.address = where.address
        self.device_type = device_type
        self.error = error
        self.ids = ids if ids is not None else '%04x:%04x' % (where.vendor_id, where.device_id)

    def feature_names(self):
        return ''

    def __str__(self):
        return '%s virtio-%s %s unbound: %s' % (
            self.address, TYPE_NAMES.get(self.device_type, 'type%d' % self.device_type),
            self.ids, self.error)

    def __repr__(self):
        return '<%s>' % self


def driver_class(device_type):
    """The driver class for a VirtIO device type; raises ImportError or
    VirtioError when there is none."""
    name = DRIVERS.get(device_type)
    if name is None:
        raise VirtioError('no driver for device type %d' % device_type)
    mod = __import__('virtio.' + name, None, None, (name,))
    return mod.DRIVER


def _drive(hw, where, dtype, open_it, ids=None):
    # An initialized device on the transport open_it(memory) returns, or an
    # UnboundDevice that says why not. memory: hw, recording what is allocated.
    try:
        cls = driver_class(dtype)
    except ImportError as e:
        return UnboundDevice(where, dtype, 'driver virtio.%s unavailable (%s)'
                             % (DRIVERS.get(dtype), e), ids)
    except Exception as e:
        return UnboundDevice(where, dtype, str(e), ids)
    memory = DeviceMemory(hw)       # the transport's and the driver's: all recorded
    t = None
    try:
        t = open_it(memory)
        dev = cls(t)
        dev.init()
        return dev
    except Exception as e:
        _give_back(t, memory)
        return UnboundDevice(where, dtype, '%s: %s' % (type(e).__name__, e), ids)
    except BaseException:
        _give_back(t, memory)       # interrupted (Ctrl-C): nothing left half set up
        raise


def _give_back(t, memory):
    # A driver that failed may have set up rings: reset the device (it stops
    # using them), then free them. Without a completed reset they stay allocated.
    if t is not None:
        _trace.unregister(t)
    if not memory.blocks:
        return
    try:
        t.reset()
        memory.free_all()
    except Exception:
        pass


def bind(hw, fn, transport=None):
    """Drive one VirtIO PCI function: an initialized device, or an
    UnboundDevice that says why not."""
    return _drive(hw, fn, _transport.device_type(fn),
                  lambda memory: _transport.open_transport(memory, fn, transport))


def bind_mmio(hw, window, device_type, vendor_id=0):
    """Drive the virtio-mmio device in `window` (spec 4.2)."""
    from virtio.mmio import MmioTransport
    return _drive(hw, window, device_type, lambda memory: MmioTransport(memory, window),
                  'mmio vendor 0x%08x' % vendor_id)


def probe(hw=None, transport=None, mmio=None):
    """Scan PCI, assign BARs if no firmware did (no BAR has an address),
    find the virtio-mmio windows (virtio.mmio_probe), bind a driver to every
    VirtIO device and initialize it. transport: None (modern when the
    device offers it), 'legacy' or 'modern', for PCI devices. mmio: None
    (discover), False (PCI only), a kernel command line or a list of
    virtio.mmio.Window. Returns the devices, bound or not, PCI ones first;
    virtio.find() then looks them up, virtio.skipped() says which MMIO
    windows held nothing usable and why. The devices the last probe bound
    are released first (virtio.release): reset, their DMA memory given
    back, their old objects refusing every call."""
    hw = pci.port_hw(hw)
    _probes[0] += 1
    replaced = []
    for d in _devices:
        if d.KIND is not None and d.retired is None:
            why = _release.Replaced(d, _probes[0], hw.ticks_ms())
            _release.release(d, why)
            replaced.append(why)
    fns = pci.scan(hw)
    if not pci.firmware_assigned(fns):
        # No firmware ran (host bench, QEMU under qtest): place every BAR.
        pci.assign_resources(hw, fns)
    # Listed as they are bound: a probe interrupted half-way (Ctrl-C) leaves the
    # devices bound so far where the next probe releases them.
    _devices[:] = []
    for fn in fns:
        if _transport.is_virtio(fn):
            _devices.append(bind(hw, fn, transport))
    skipped = []
    if mmio is not False:
        from virtio import mmio_probe
        found, skipped = mmio_probe.discover(hw, fns, mmio)
        for window, _version, dtype, vendor in found:
            _devices.append(bind_mmio(hw, window, dtype, vendor))
    out = list(_devices)
    _skipped[:] = skipped
    _probed[0] = True
    for why in replaced:
        why.name_successor(out)
    return out


def skipped():
    """The virtio-mmio windows the last probe() ignored: WindowSkipped
    errors, each with the window and its reason (empty slots included,
    flagged .empty)."""
    return list(_skipped)


def devices():
    """The devices found by the last probe()."""
    return list(_devices)


def find(kind, index=0):
    """The index-th initialized device of this kind ('blk', 'net',
    'console', 'rng'), probing first if nothing was probed yet."""
    if not _probed[0]:
        probe()
    n = 0
    for d in _devices:
        if d.KIND == kind:
            if n == index:
                return d
            n += 1
    raise VirtioError('no %s device #%d (probe found %d): %s'
                      % (kind, index, n, ', '.join([str(d) for d in _devices]) or 'nothing'))


def trace(on=True, write=None):
    """Print every transport register access (or pass each line to write)."""
    _trace.enable(on, write)
