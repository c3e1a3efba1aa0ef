"""virtio-rng in the booted image: bytes arrive and differ, a rate-limited
device gives a timeout error instead of a hang, and `random` is seeded from it."""
import pytest

pytestmark = pytest.mark.qemu


def test_bytes_arrive_differ_and_seed_random(boot):
    g = boot(devices=['-device', 'virtio-rng-pci'])
    g.exec('import virtio\nrng = virtio.find("rng")')
    chunks = [g.eval('rng.read(64)') for _ in range(3)]
    assert all(len(c) == 64 for c in chunks)
    assert len(set(chunks)) == 3 and len(set(b''.join(chunks))) > 100
    assert len(g.eval('rng.read(5000)')) == 5000
    g.exec('import random')
    assert g.eval('random.seeded_from') == 'virtio-rng'
    rolls = g.eval('[random.randint(1, 6) for _ in range(300)]')
    assert set(rolls) == {1, 2, 3, 4, 5, 6}
    assert 0.0 <= g.eval('random.random()') < 1.0


def test_two_boots_seed_random_differently(boot):
    draws = []
    for _ in range(2):
        g = boot(devices=['-device', 'virtio-rng-pci'])
        draws.append(g.eval('__import__("random").getrandbits(32)'))
        g.close()
    assert draws[0] != draws[1]


def test_rate_limited_rng_gives_a_timeout_error_not_a_hang(boot):
    """max-bytes=16 per minute: 16 bytes come, then read() gives up after its
    timeout with an OSError ETIMEDOUT that says how far it got."""
    g = boot(devices=['-object', 'rng-builtin,id=r0',
                      '-device', 'virtio-rng-pci,rng=r0,max-bytes=16,period=60000'])
    out = g.exec('import virtio\n'
                 'rng = virtio.find("rng")\n'
                 'try:\n'
                 '    rng.read(64, 300)\n'
                 'except OSError as e:\n'
                 '    print(e.errno, e)\n')
    assert out.startswith('110 [Errno 110] ETIMEDOUT: ')
    assert out.rstrip().endswith('virtio-rng: no entropy within 300 ms (16 of 64 bytes)')
    assert g.eval('1 + 1') == 2          # the REPL is fine


def test_without_rng_random_seeds_from_the_clock(boot):
    g = boot()
    assert g.eval('__import__("random").seeded_from') == 'clock'
