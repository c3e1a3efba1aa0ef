# The one wait of the stack: every driver that waits for its device (a used
# buffer, a reset, room to transmit, an answer on a control queue) waits
# here, with one meaning of a timeout and the device-health check
# (DEVICE_NEEDS_RESET, 2.1.2) in the same loop. Polling today; this is where
# waits will sleep until an interrupt.
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


def until(hw, ready, timeout_ms, check, late):
    """Call ready() until it returns something true, and return that.
    check() (or None) runs between batches of looks and raises if the device
    is broken. After timeout_ms: VirtioTimeout(late(timeout_ms)), or None
    when late is None (a wait whose caller takes "nothing" as an answer)."""
    r = ready()
    if r:
        return r
    d = Deadline(hw, timeout_ms, check)
    while not d.expired():
        r = ready()
        if r:
            return r
    r = ready()
    if r or late is None:
        return r
    raise VirtioTimeout(late(timeout_ms))


class Deadline:
    """timeout_ms from now, for a wait that does work of its own between
    looks: expired() reads the clock (and runs check()) only every
    POLL_BATCH calls. None: never expires; 0: expired already."""

    def __init__(self, hw, timeout_ms, check=None):
        if timeout_ms is not None and timeout_ms < 0:
            raise ValueError('timeout_ms must be >= 0 or None, not %d' % timeout_ms)
        self.hw = hw
        self.timeout_ms = timeout_ms
        self.check = check
        self.start = hw.ticks_ms()
        self.polls = 0

    def expired(self):
        if self.timeout_ms == 0:
            return True
        self.polls += 1
        if self.polls < POLL_BATCH:
            return False
        self.polls = 0
        if self.check is not None:
            self.check()
        if self.timeout_ms is None:
            return False
        return self.hw.ticks_diff(self.hw.ticks_ms(), self.start) >= self.timeout_ms
