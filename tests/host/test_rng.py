"""virtio-rng (drivers/virtio/rng.py) on the model, beyond test_probe's basics: a
rate-limited device (QEMU's max-bytes/period), a misbehaving one, and the
frozen `random` module (firmware/random.py) seeded from it."""

import importlib.util
import os

import pytest

import virtio
from virtio.errors import DeviceError, VirtioTimeout

from tests.host.models import Machine, RngModel

RANDOM_PY = os.path.join(os.path.dirname(__file__), '..', '..', 'firmware', 'random.py')


def rng_on(model):
    virtio.probe(Machine([model]))
    return virtio.find('rng')


def load_random():
    """A fresh copy of firmware/random.py (it seeds itself at import)."""
    spec = importlib.util.spec_from_file_location('image_random', RANDOM_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reads_are_not_constant_and_sizes_are_exact():
    rng = rng_on(RngModel(mode='modern'))
    chunks = [rng.read(n) for n in (1, 7, 64, 65, 300)]
    assert [len(c) for c in chunks] == [1, 7, 64, 65, 300]
    assert len(set(chunks[2:])) == 3 and len(set(chunks[4])) > 100
    assert rng.read(0) == b''
    with pytest.raises(ValueError):
        rng.read(-1)


def test_a_rate_limited_device_gives_a_timeout_with_what_arrived():
    """16 bytes per 10 s (QEMU: max-bytes=16,period=10000): the first 16 come,
    then nothing; read() says so instead of hanging."""
    model = RngModel(rate=(16, 10000))
    rng = rng_on(model)
    with pytest.raises(VirtioTimeout) as e:
        rng.read(40, timeout_ms=20)
    assert e.value.errno == 110
    assert str(e.value).endswith('virtio-rng: no entropy within 20 ms (16 of 40 bytes)')
    assert model.given == 16
    with pytest.raises(VirtioTimeout):      # still held back: the buffer is the device's
        rng.read(1, timeout_ms=5)
    assert rng.requestq.in_flight == 1


def test_a_rate_limited_device_is_read_across_periods():
    model = RngModel(rate=(16, 2))         # 16 bytes every 2 ms
    rng = rng_on(model)
    data = rng.read(100, timeout_ms=1000)
    assert len(data) == 100 and model.given >= 100
    assert model.errors == []


@pytest.mark.parametrize('misbehave, message', [
    ('bad_used_id', 'used id 9 is not the head of a request in flight'),
    ('oversized_len', 'used length 576 for head 0 exceeds its 64 writable bytes'),
])
def test_a_misbehaving_device_is_a_device_error(misbehave, message):
    rng = rng_on(RngModel(misbehave=misbehave))
    with pytest.raises(DeviceError, match=message):
        rng.read(8)


def test_a_device_that_never_answers_times_out():
    rng = rng_on(RngModel(misbehave='never_complete'))
    with pytest.raises(VirtioTimeout, match='no entropy within 5 ms'):
        rng.read(8, timeout_ms=5)


# -- the frozen random module ------------------------------------------------------------

def test_random_seeds_itself_from_virtio_rng():
    model = RngModel()
    rng_on(model)
    r = load_random()
    assert r.seeded_from == 'virtio-rng'
    assert model.given == 64                # one 64-byte request gave the 16-byte seed
    model2 = RngModel(seed=2)
    rng_on(model2)
    r2 = load_random()
    assert [r.getrandbits(32) for _ in range(4)] != [r2.getrandbits(32) for _ in range(4)]


def test_random_without_virtio_rng_seeds_from_the_clock():
    virtio.probe(Machine([]))
    assert load_random().seeded_from == 'clock'


def test_random_is_reproducible_with_a_seed_and_in_range():
    r = load_random()
    r.seed(12345)
    first = [r.getrandbits(32) for _ in range(8)]
    r.seed(12345)
    assert [r.getrandbits(32) for _ in range(8)] == first
    r.seed(0)                               # a zero seed still gives a live generator
    assert len(set(r.getrandbits(32) for _ in range(8))) == 8
    rolls = [r.randint(1, 6) for _ in range(600)]
    assert set(rolls) == {1, 2, 3, 4, 5, 6}
    floats = [r.random() for _ in range(1000)]
    assert all(0.0 <= f < 1.0 for f in floats) and 0.4 < sum(floats) / 1000 < 0.6
    assert all(r.getrandbits(5) < 32 for _ in range(100))
    assert r.getrandbits(0) == 0 and r.getrandbits(100) < (1 << 100)
    assert set(r.randrange(10, 0, -3) for _ in range(200)) == {10, 7, 4, 1}
    assert r.choice('xyz') in 'xyz'
    assert 2.0 <= r.uniform(2.0, 3.0) <= 3.0


def test_random_rejects_bad_arguments():
    r = load_random()
    with pytest.raises(IndexError):
        r.choice([])
    with pytest.raises(ValueError):
        r.randrange(5, 5)
    with pytest.raises(ValueError):
        r.randrange(0, 10, 0)
    with pytest.raises(ValueError):
        r.getrandbits(-1)
