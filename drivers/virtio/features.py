# Feature bits shared by every device type (spec 6 "Reserved Feature Bits",
# and 2.2 "Feature Bits"). Device-specific bits (0-23, 50-127) live in each
# driver module, with its own name table.

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Legacy-only bits (spec 6, "Legacy Interface: Reserved Feature Bits").
NOTIFY_ON_EMPTY = const(24)
ANY_LAYOUT = const(27)
# Ring bits.
INDIRECT_DESC = const(28)
EVENT_IDX = const(29)
# Legacy devices set bit 30 to detect drivers that acknowledge everything;
# a driver must never acknowledge it.
BAD_FEATURE = const(30)
VERSION_1 = const(32)
ACCESS_PLATFORM = const(33)
RING_PACKED = const(34)
IN_ORDER = const(35)
ORDER_PLATFORM = const(36)
SR_IOV = const(37)
NOTIFICATION_DATA = const(38)
NOTIF_CONFIG_DATA = const(39)
RING_RESET = const(40)
ADMIN_VQ = const(41)

TRANSPORT_NAMES = {
    NOTIFY_ON_EMPTY: 'NOTIFY_ON_EMPTY',
    ANY_LAYOUT: 'ANY_LAYOUT',
    INDIRECT_DESC: 'INDIRECT_DESC',
    EVENT_IDX: 'EVENT_IDX',
    BAD_FEATURE: 'BAD_FEATURE',
    VERSION_1: 'VERSION_1',
    ACCESS_PLATFORM: 'ACCESS_PLATFORM',
    RING_PACKED: 'RING_PACKED',
    IN_ORDER: 'IN_ORDER',
    ORDER_PLATFORM: 'ORDER_PLATFORM',
    SR_IOV: 'SR_IOV',
    NOTIFICATION_DATA: 'NOTIFICATION_DATA',
    NOTIF_CONFIG_DATA: 'NOTIF_CONFIG_DATA',
    RING_RESET: 'RING_RESET',
    ADMIN_VQ: 'ADMIN_VQ',
}


def bit(n):
    """The mask of feature bit n."""
    return 1 << n


def mask(*bits):
    """The mask of several feature bits: mask(VERSION_1, EVENT_IDX)."""
    m = 0
    for b in bits:
        m |= 1 << b
    return m


def has(features, n):
    return (features >> n) & 1 == 1


# Spec 2.2: a driver must not accept a feature that depends on another it
# does not accept. The ring and transport bits' dependencies, for every
# device; each driver adds its own (VirtioDevice.FEATURE_DEPENDENCIES).
DEPENDENCIES = {
    RING_PACKED: (VERSION_1,),          # packed rings exist on the modern interface only
    IN_ORDER: (VERSION_1,),
    NOTIFICATION_DATA: (VERSION_1,),
}


def drop_unmet(accepted, *requirements):
    """`accepted` without every bit whose prerequisites (bit -> tuple of
    bits, in each mapping of `requirements`) are not all accepted, until
    none is left whose prerequisites are missing."""
    changed = True
    while changed:
        changed = False
        for table in requirements:
            for b in table:
                if (accepted >> b) & 1:
                    for need in table[b]:
                        if not (accepted >> need) & 1:
                            accepted &= ~(1 << b)
                            changed = True
                            break
    return accepted


def names(features, table=None, shift=0):
    """Decode a feature word as 'A|B|C'. `table` maps device-specific bit
    numbers to names; shared bits are always named; unknown bits print as
    'bit<N>'. `shift` is the number of the word's bit 0 (32 for the high
    word read through device_feature_select=1)."""
    out = []
    n = shift
    while features:
        if features & 1:
            name = None
            if table is not None:
                name = table.get(n)
            if name is None:
                name = TRANSPORT_NAMES.get(n)
            if name is None:
                name = 'bit%d' % n
            out.append(name)
        features >>= 1
        n += 1
    return '|'.join(out)
