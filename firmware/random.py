# random: a small pseudo-random generator for the image (the MicroPython tree
# we build from has no `random`): Marsaglia's xorshift128 (period 2**128-1),
# seeded at import from virtio-rng when probe() bound one, else from the
# clock. Not for secrets: read those from virtio.find('rng').read(n).
#
#     import random
#     random.randint(1, 6); random.choice('abc'); random.random()
#     random.seeded_from          # 'virtio-rng' or 'clock'

M32 = 0xFFFFFFFF
_state = [0, 0, 0, 0]
seeded_from = None


def _mix(x):
    # splitmix32-style finalizer: spreads a seed over all 32 bits.
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & M32
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & M32
    return x ^ (x >> 16)


def _entropy(n):
    """n bytes from a bound virtio-rng device (without probing), or None."""
    try:
        import virtio
        for dev in virtio.devices():
            if dev.KIND == 'rng':
                return dev.read(n, 100)
    except Exception:
        pass
    return None


def seed(n=None):
    """Seed with int n; with None, from virtio-rng (or the clock)."""
    global seeded_from
    if n is None:
        data = _entropy(16)
        if data is not None and len(data) == 16:
            seeded_from = 'virtio-rng'
            n = int.from_bytes(data, 'little')
        else:
            import time
            seeded_from = 'clock'
            try:
                n = time.ticks_us() ^ (time.ticks_cpu() << 20)
            except AttributeError:
                n = time.time_ns()
    n = abs(n)
    for i in range(4):
        _state[i] = _mix((n + i * 0x9E3779B9) & M32) ^ _mix((n >> (32 * (i + 1))) & M32)
    if not (_state[0] | _state[1] | _state[2] | _state[3]):
        _state[0] = 1           # the one state xorshift never leaves


def _next32():
    s = _state
    t = s[0] ^ ((s[0] << 11) & M32)
    s[0], s[1], s[2] = s[1], s[2], s[3]
    s[3] = s[3] ^ (s[3] >> 19) ^ t ^ (t >> 8)
    return s[3]


def getrandbits(k):
    """An int of k random bits."""
    if k < 0:
        raise ValueError('number of bits must be non-negative')
    x = 0
    got = 0
    while got < k:
        x |= _next32() << got
        got += 32
    return x & ((1 << k) - 1)


def _below(n):
    # Uniform in [0, n): rejection sampling on just enough bits.
    k = 0
    while (1 << k) < n:
        k += 1
    while True:
        x = getrandbits(k)
        if x < n:
            return x


def randrange(start, stop=None, step=1):
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError('zero step for randrange()')
    n = (stop - start + step - (1 if step > 0 else -1)) // step
    if n <= 0:
        raise ValueError('empty range for randrange()')
    return start + step * _below(n)


def randint(a, b):
    """An int N with a <= N <= b."""
    return randrange(a, b + 1)


def choice(seq):
    if not len(seq):
        raise IndexError('cannot choose from an empty sequence')
    return seq[_below(len(seq))]


def random():
    """A float in [0.0, 1.0) with 53 random bits."""
    return ((_next32() >> 5) * 67108864 + (_next32() >> 6)) / 9007199254740992


def uniform(a, b):
    return a + (b - a) * random()


seed()
