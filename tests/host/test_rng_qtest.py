"""The rng driver against QEMU's virtio-rng over qtest: bytes arrive and differ,
QEMU's rate limit (max-bytes/period) gives a timeout error, not a hang, and the
frozen `random` module seeds itself from the device."""

import pytest

import virtio
from virtio.errors import VirtioTimeout

from tests.host.qtest import qtest_factory  # noqa: F401 (fixture)
from tests.host.test_rng import load_random

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize('transport', ['legacy', 'modern'])
def test_bytes_arrive_and_are_not_constant(qtest_factory, transport):
    hw = qtest_factory(['-device', 'virtio-rng-pci'])
    virtio.probe(hw, transport=transport)
    rng = virtio.find('rng')
    chunks = [rng.read(64) for _ in range(20)]      # 20 requests through a ring of 8
    assert all(len(c) == 64 for c in chunks)
    assert len(set(chunks)) == 20
    assert len(set(b''.join(chunks))) > 200          # 1280 bytes use most byte values
    assert len(rng.read(1000)) == 1000


def test_rate_limit_gives_a_timeout_error_not_a_hang(qtest_factory):
    """max-bytes=16 per 60 s: the first 16 bytes come, the rest is held back."""
    hw = qtest_factory(['-object', 'rng-builtin,id=r0',
                        '-device', 'virtio-rng-pci,rng=r0,max-bytes=16,period=60000'])
    virtio.probe(hw)
    rng = virtio.find('rng')
    with pytest.raises(VirtioTimeout) as e:
        rng.read(64, timeout_ms=200)
    assert str(e.value).endswith('virtio-rng: no entropy within 200 ms (16 of 64 bytes)')
    with pytest.raises(VirtioTimeout):
        rng.read(1, timeout_ms=50)


def test_rate_limit_lets_bytes_through_each_period(qtest_factory):
    hw = qtest_factory(['-object', 'rng-random,id=r0,filename=/dev/urandom',
                        '-device', 'virtio-rng-pci,rng=r0,max-bytes=32,period=20'])
    virtio.probe(hw)
    assert len(virtio.find('rng').read(200, timeout_ms=2000)) == 200


def test_random_seeds_from_qemus_rng(qtest_factory):
    hw = qtest_factory(['-device', 'virtio-rng-pci'])
    virtio.probe(hw)
    r = load_random()
    assert r.seeded_from == 'virtio-rng'
    assert 1 <= r.randint(1, 6) <= 6
