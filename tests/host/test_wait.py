"""virtio.wait: the one wait every driver uses, with one meaning of a timeout."""

import pytest

from virtio import wait
from virtio.errors import VirtioTimeout


class Clock:
    """ticks_ms that advances by `step` ms on each read."""

    def __init__(self, step=1):
        self.now = 0
        self.step = step
        self.reads = 0

    def ticks_ms(self):
        self.reads += 1
        self.now += self.step
        return self.now

    def ticks_diff(self, a, b):
        return a - b


def late(ms):
    return 'nothing within %d ms' % ms


def test_a_result_already_there_is_returned_whatever_the_timeout():
    for t in (0, 1, 1000):
        assert wait.until(Clock(), lambda: 'x', t, None, late) == 'x'


def test_timeout_zero_looks_once_and_does_not_wait():
    looks = []
    with pytest.raises(VirtioTimeout) as e:
        wait.until(Clock(), lambda: looks.append(1), 0, None, late)
    assert e.value.msg == 'nothing within 0 ms' and len(looks) == 2


def test_the_timeout_means_at_least_timeout_ms_then_one_more_look():
    c = Clock(step=1)
    looks = []

    def ready():
        looks.append(c.now)
        return None
    with pytest.raises(VirtioTimeout):
        wait.until(c, ready, 10, None, late)
    assert c.now - 1 >= 10                      # the clock said 10 ms had passed
    assert looks[-1] == c.now                   # and the last look came after that


def test_a_result_arriving_during_the_wait_is_returned():
    n = []

    def ready():
        n.append(1)
        return len(n) == 500 and 'done'
    assert wait.until(Clock(), ready, 10 ** 6, None, late) == 'done'


def test_the_health_check_runs_while_waiting_and_its_error_ends_the_wait():
    class Broken(Exception):
        pass
    calls = []

    def check():
        calls.append(1)
        raise Broken()
    with pytest.raises(Broken):
        wait.until(Clock(), lambda: None, 10 ** 6, check, late)
    assert calls == [1]


def test_without_late_a_timeout_returns_nothing_instead_of_raising():
    assert wait.until(Clock(step=50), lambda: None, 10, None, None) is None


def test_the_clock_is_read_only_every_poll_batch_looks():
    c = Clock(step=0)
    d = wait.Deadline(c, 5)
    for _ in range(wait.POLL_BATCH * 3):
        assert not d.expired()
    assert c.reads == 1 + 3                     # the start, then once a batch


def test_deadline_none_never_expires_but_still_checks_health():
    calls = []
    d = wait.Deadline(Clock(step=10 ** 6), None, lambda: calls.append(1))
    for _ in range(wait.POLL_BATCH * 2):
        assert not d.expired()
    assert len(calls) == 2


def test_a_negative_timeout_is_refused():
    with pytest.raises(ValueError):
        wait.until(Clock(), lambda: None, -1, None, late)
