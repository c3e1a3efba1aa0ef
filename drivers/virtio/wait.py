# The one wait of the stack: every driver that waits for its device (a used
# buffer, a reset, room to transmit, an answer on a control queue) waits
# here, with one meaning of a timeout and the device-health check
# (DEVICE_NEEDS_RESET, 2.1.2) in the same loop. It polls first (under TCG a
# completion often comes within microseconds); after a batch of looks in
# vain, a wait with a Sleeper asks its rings for used-buffer notifications
# (2.7.7, 2.8.10), looks once more, and halts the CPU until an interrupt or
# the deadline (hw.irq_wait).
#
# A timeout: the wait gives up when at least timeout_ms milliseconds have
# passed since it started and one more look after that found nothing. So a
# result that is already there is always returned, whatever the timeout;
# timeout_ms=0 means "look once, do not wait"; None (Deadline only) means
# "wait for ever".

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

from virtio.errors import VirtioTimeout

POLL_BATCH = const(64)          # looks between two looks at the clock
SPIN_MS = const(2)              # polling this long before a wait sleeps: a completion
                                # within it costs no interrupt (under TCG, waking a
                                # halted CPU takes longer than a block read)
SLEEP_SLICE_MS = const(100)     # the longest sleep between two health checks


def until(hw, ready, timeout_ms, check, late, sleeper=None):
    """Call ready() until it returns something true, and return that.
    check() (or None) runs between batches of looks and raises if the device
    is broken. After timeout_ms: VirtioTimeout(late(timeout_ms)), or None
    when late is None (a wait whose caller takes "nothing" as an answer).
    sleeper (or None: poll only): sleeps between batches of looks."""
    _check_timeout(timeout_ms)
    r = ready()
    if r:
        return r
    d = None
    while timeout_ms != 0:
        # A batch of looks with nothing else in the loop: the time from a
        # completion to its discovery is one ready() call.
        n = POLL_BATCH
        while n:
            r = ready()
            if r:
                return r
            n -= 1
        if d is None:
            # The deadline (its clock and object) is set up after a first
            # batch: under TCG most waits end within it, so most never pay
            # for it. (A timeout is "at least": it only ends a little later.)
            d = Deadline(hw, timeout_ms, check)
            continue
        if d.passed():
            break
        if sleeper is not None and d.elapsed >= SPIN_MS:
            r = sleeper.sleep(ready, d.left())
            if r:
                return r
    r = ready()
    if r or late is None:
        return r
    raise VirtioTimeout(late(timeout_ms))


def _check_timeout(timeout_ms):
    if timeout_ms is not None and timeout_ms < 0:
        raise ValueError('timeout_ms must be >= 0 or None, not %d' % timeout_ms)


class Deadline:
    """timeout_ms from now, for a wait that does work of its own between
    looks: expired() reads the clock (and runs check()) only every
    POLL_BATCH calls. None: never expires; 0: expired already."""

    def __init__(self, hw, timeout_ms, check=None):
        _check_timeout(timeout_ms)
        self.hw = hw
        self.timeout_ms = timeout_ms
        self.check = check
        self.start = hw.ticks_ms()
        self.polls = 0
        self.elapsed = 0            # ms since the start, as of the last look at the clock

    def left(self):
        """Milliseconds to the deadline (a slice of sleep for None)."""
        if self.timeout_ms is None:
            return SLEEP_SLICE_MS
        left = self.timeout_ms - self.elapsed
        return left if left > 0 else 0

    def expired(self):
        """For a loop that looks once per call: True once the deadline has
        passed, found at most POLL_BATCH calls late."""
        if self.timeout_ms == 0:
            return True
        self.polls += 1
        if self.polls < POLL_BATCH:
            return False
        self.polls = 0
        return self.passed()

    def passed(self):
        """Run check(), read the clock: True when the deadline has passed."""
        if self.check is not None:
            self.check()
        self.elapsed = self.hw.ticks_diff(self.hw.ticks_ms(), self.start)
        if self.timeout_ms is None:
            return False
        return self.elapsed >= self.timeout_ms


class Sleeper:
    """How a wait on some rings sleeps: used-buffer notifications on (the
    rings' set_interrupts step), one more look (a buffer used before they
    were on raises no interrupt), then the CPU halted until an interrupt or
    the deadline (hw.irq_wait), then notifications off again: while a driver
    polls, the device need not interrupt. A lost interrupt costs at most the
    slice: the wait looks again after it."""

    def __init__(self, hw, rings):
        self.hw = hw
        self.rings = rings              # (steps, state) of each ring
        self.sleeps = 0

    def _notifications(self, on):
        for steps, st in self.rings:
            steps.set_interrupts(self.hw, st, on)

    def sleep(self, ready, left):
        self._notifications(True)
        try:
            r = ready()
            if r:
                return r
            self.sleeps += 1
            self.hw.irq_wait(left if left < SLEEP_SLICE_MS else SLEEP_SLICE_MS)
            return ready()
        finally:
            self._notifications(False)
