"""virtio-blk (spec 5.2) over a bytearray disk: T_IN, T_OUT, FLUSH, GET_ID.
Configuration laid out as struct virtio_blk_config (60 bytes, as QEMU).
The blk driver's owner extends this model."""

import struct

from tests.host.models.virtio import VirtioPciModel

VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_FLUSH = 4
VIRTIO_BLK_T_GET_ID = 8
VIRTIO_BLK_S_OK = 0
VIRTIO_BLK_S_IOERR = 1
VIRTIO_BLK_S_UNSUPP = 2
VIRTIO_BLK_ID_BYTES = 20
SECTOR_SIZE = 512

# Device feature bits (5.2.3).
VIRTIO_BLK_F_SIZE_MAX = 1
VIRTIO_BLK_F_SEG_MAX = 2
VIRTIO_BLK_F_GEOMETRY = 4
VIRTIO_BLK_F_RO = 5
VIRTIO_BLK_F_BLK_SIZE = 6
VIRTIO_BLK_F_FLUSH = 9
VIRTIO_BLK_F_TOPOLOGY = 10
VIRTIO_BLK_F_CONFIG_WCE = 11
VIRTIO_BLK_F_DISCARD = 13
VIRTIO_BLK_F_WRITE_ZEROES = 14
# What QEMU 7.2 offers (device bits 0x6e54). DISCARD and WRITE_ZEROES are
# offered but not served yet: such requests get VIRTIO_BLK_S_UNSUPP.
DEFAULT_FEATURES = ((1 << VIRTIO_BLK_F_SEG_MAX) | (1 << VIRTIO_BLK_F_GEOMETRY)
                    | (1 << VIRTIO_BLK_F_BLK_SIZE) | (1 << VIRTIO_BLK_F_FLUSH)
                    | (1 << VIRTIO_BLK_F_TOPOLOGY) | (1 << VIRTIO_BLK_F_CONFIG_WCE)
                    | (1 << VIRTIO_BLK_F_DISCARD) | (1 << VIRTIO_BLK_F_WRITE_ZEROES))


def blk_config(capacity, seg_max=254, blk_size=SECTOR_SIZE):
    cfg = bytearray(60)
    struct.pack_into('<QII', cfg, 0, capacity, 0, seg_max)
    struct.pack_into('<HBB', cfg, 16, 1024, 16, 63)      # geometry
    struct.pack_into('<I', cfg, 20, blk_size)
    cfg[32] = 1                                          # writeback
    struct.pack_into('<H', cfg, 34, 1)                   # num_queues
    return cfg


class BlkDevice(VirtioPciModel):
    DEVICE_TYPE = 2
    NAME = 'virtio-blk'

    def __init__(self, mode='transitional', disk=None, sectors=2048, serial=b'model-disk',
                 features=DEFAULT_FEATURES, read_only=False, **kw):
        if disk is None:
            disk = bytearray(sectors * SECTOR_SIZE)
        self.disk = disk
        self.serial = serial
        self.flushes = 0
        if read_only:
            features |= 1 << VIRTIO_BLK_F_RO
        self.read_only = read_only
        kw.setdefault('queue_sizes', (256,))
        VirtioPciModel.__init__(self, mode=mode, features=features,
                                config=blk_config(len(disk) // SECTOR_SIZE), **kw)

    def handle(self, queue, req):
        data = req.data()
        if len(data) < 16 or req.writable_size < 1:
            self.errors.append('blk request without header or status byte')
            return
        rtype, _reserved, sector = struct.unpack_from('<IIQ', data, 0)
        payload = data[16:]
        room = req.writable_size - 1          # the last byte is the status
        status = VIRTIO_BLK_S_OK
        if rtype == VIRTIO_BLK_T_IN:
            off = sector * SECTOR_SIZE
            if room % SECTOR_SIZE or off + room > len(self.disk):
                status = VIRTIO_BLK_S_IOERR
            else:
                req.write(bytes(self.disk[off:off + room]))
        elif rtype == VIRTIO_BLK_T_OUT:
            off = sector * SECTOR_SIZE
            if self.read_only:
                status = VIRTIO_BLK_S_IOERR
            elif len(payload) % SECTOR_SIZE or off + len(payload) > len(self.disk):
                status = VIRTIO_BLK_S_IOERR
            else:
                self.disk[off:off + len(payload)] = payload
        elif rtype == VIRTIO_BLK_T_FLUSH:
            self.flushes += 1
        elif rtype == VIRTIO_BLK_T_GET_ID:
            ident = (self.serial + bytes(VIRTIO_BLK_ID_BYTES))[:VIRTIO_BLK_ID_BYTES]
            req.write(ident[:room])
        else:
            status = VIRTIO_BLK_S_UNSUPP
        req.write(bytes([status]), offset=req.writable_size - 1)
