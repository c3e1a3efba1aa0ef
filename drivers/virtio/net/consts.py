# virtio-net's feature bits (5.1.3), which of them the driver takes, and
# the device configuration layout (5.1.4): what negotiation, set-up and the
# register trace use. The numbers the per-packet paths use stay in
# virtio.net itself, as const() there (a name from another module is a
# dictionary lookup at every use).

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio import features

# Feature bits (5.1.3).
VIRTIO_NET_F_CSUM = const(0)
VIRTIO_NET_F_GUEST_CSUM = const(1)
VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = const(2)
VIRTIO_NET_F_MTU = const(3)
VIRTIO_NET_F_MAC = const(5)
VIRTIO_NET_F_GSO = const(6)
VIRTIO_NET_F_GUEST_TSO4 = const(7)
VIRTIO_NET_F_GUEST_TSO6 = const(8)
VIRTIO_NET_F_GUEST_ECN = const(9)
VIRTIO_NET_F_GUEST_UFO = const(10)
VIRTIO_NET_F_HOST_TSO4 = const(11)
VIRTIO_NET_F_HOST_TSO6 = const(12)
VIRTIO_NET_F_HOST_ECN = const(13)
VIRTIO_NET_F_HOST_UFO = const(14)
VIRTIO_NET_F_MRG_RXBUF = const(15)
VIRTIO_NET_F_STATUS = const(16)
VIRTIO_NET_F_CTRL_VQ = const(17)
VIRTIO_NET_F_CTRL_RX = const(18)
VIRTIO_NET_F_CTRL_VLAN = const(19)
VIRTIO_NET_F_CTRL_RX_EXTRA = const(20)
VIRTIO_NET_F_GUEST_ANNOUNCE = const(21)
VIRTIO_NET_F_MQ = const(22)
VIRTIO_NET_F_CTRL_MAC_ADDR = const(23)
VIRTIO_NET_F_SPEED_DUPLEX = const(63)

FEATURE_NAMES = {
    VIRTIO_NET_F_CSUM: 'CSUM',
    VIRTIO_NET_F_GUEST_CSUM: 'GUEST_CSUM',
    VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: 'CTRL_GUEST_OFFLOADS',
    VIRTIO_NET_F_MTU: 'MTU',
    VIRTIO_NET_F_MAC: 'MAC',
    VIRTIO_NET_F_GSO: 'GSO',
    VIRTIO_NET_F_GUEST_TSO4: 'GUEST_TSO4',
    VIRTIO_NET_F_GUEST_TSO6: 'GUEST_TSO6',
    VIRTIO_NET_F_GUEST_ECN: 'GUEST_ECN',
    VIRTIO_NET_F_GUEST_UFO: 'GUEST_UFO',
    VIRTIO_NET_F_HOST_TSO4: 'HOST_TSO4',
    VIRTIO_NET_F_HOST_TSO6: 'HOST_TSO6',
    VIRTIO_NET_F_HOST_ECN: 'HOST_ECN',
    VIRTIO_NET_F_HOST_UFO: 'HOST_UFO',
    VIRTIO_NET_F_MRG_RXBUF: 'MRG_RXBUF',
    VIRTIO_NET_F_STATUS: 'STATUS',
    VIRTIO_NET_F_CTRL_VQ: 'CTRL_VQ',
    VIRTIO_NET_F_CTRL_RX: 'CTRL_RX',
    VIRTIO_NET_F_CTRL_VLAN: 'CTRL_VLAN',
    VIRTIO_NET_F_CTRL_RX_EXTRA: 'CTRL_RX_EXTRA',
    VIRTIO_NET_F_GUEST_ANNOUNCE: 'GUEST_ANNOUNCE',
    VIRTIO_NET_F_MQ: 'MQ',
    VIRTIO_NET_F_CTRL_MAC_ADDR: 'CTRL_MAC_ADDR',
    VIRTIO_NET_F_SPEED_DUPLEX: 'SPEED_DUPLEX',
}

# What this driver handles. No offloads: QEMU's user network offers none
# and the stack computes every checksum. ANY_LAYOUT (a legacy transport
# bit) lets the header share a descriptor with the packet.
SUPPORTED_FEATURES = features.mask(
    VIRTIO_NET_F_MTU, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS,
    VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_MAC_ADDR,
    features.ANY_LAYOUT)
# What each bit needs (5.1.3.1): the control commands need the control queue.
FEATURE_DEPENDENCIES = {
    VIRTIO_NET_F_CTRL_RX: (VIRTIO_NET_F_CTRL_VQ,),
    VIRTIO_NET_F_CTRL_MAC_ADDR: (VIRTIO_NET_F_CTRL_VQ,),
}

# struct virtio_net_config (5.1.4).
CONFIG_MAC = const(0)
CONFIG_STATUS = const(6)
CONFIG_MTU = const(10)
VIRTIO_NET_S_LINK_UP = const(1)
VIRTIO_NET_S_ANNOUNCE = const(2)
MIN_MTU = const(68)
MAX_MTU = const(65535)
DEFAULT_MTU = const(1500)
