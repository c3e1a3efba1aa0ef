"""The interrupt contract of the hardware interface (docs/hardware-interface.md,
"Interrupts"), as plain checks that run under CPython (tests/host/test_hw_contract.py:
the device-model Machine and QtestMachine) and under MicroPython in the image
(tests/qemu/test_irq.py: the x86 module), so all three are held to the same text.

Each check takes the hw object and a `fire` object that raises interrupts from the
outside, as a device would:
    fire.msi(hw, vector)          deliver the MSI message msi_message(vector)
    fire.intx(hw, line, level)    drive an INTx line's level (None: cannot, skip)
    fire.line                     a line fire.intx can drive
"""

MSI_FIRST = 64
MSI_LAST = 239
SHORT_MS = 30


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError('%s%r did not raise %s' % (getattr(fn, '__name__', 'call'), args,
                                                  exc.__name__))


def _wait_for(hw, vector, timeout_ms=1000):
    """irq_wait until `vector` is among what fired; the vectors seen on the way."""
    seen = []
    t0 = hw.ticks_ms()
    while vector not in seen:
        left = timeout_ms - hw.ticks_diff(hw.ticks_ms(), t0)
        assert left > 0, 'vector %d did not fire within %d ms (saw %r)' % (vector, timeout_ms, seen)
        seen.extend(hw.irq_wait(left))
    return seen


def check_msi_vectors_are_distinct_and_their_message_carries_them(hw, fire):
    a, b = hw.msi_alloc(), hw.msi_alloc()
    try:
        assert a != b
        for v in (a, b):
            assert MSI_FIRST <= v <= MSI_LAST, v
            address, data = hw.msi_message(v)
            assert data == v
            assert address % 4 == 0
        assert hw.irq_count(a) == 0
    finally:
        hw.msi_free(a)
        hw.msi_free(b)


def check_wait_without_interrupt_ends_at_its_deadline(hw, fire):
    t0 = hw.ticks_ms()
    assert hw.irq_wait(SHORT_MS) == ()
    elapsed = hw.ticks_diff(hw.ticks_ms(), t0)
    assert SHORT_MS - 1 <= elapsed < SHORT_MS + 500, elapsed
    assert hw.irq_wait(0) == ()


def check_msi_ends_the_wait_and_is_counted(hw, fire):
    v = hw.msi_alloc()
    try:
        fire.msi(hw, v)
        t0 = hw.ticks_ms()
        assert hw.irq_wait(2000) == (v,)
        assert hw.ticks_diff(hw.ticks_ms(), t0) < 1000
        assert hw.irq_count(v) == 1
        assert hw.irq_wait(SHORT_MS) == ()          # taken: reported once
    finally:
        hw.msi_free(v)


def check_handlers_run_before_the_wait_returns_in_order(hw, fire):
    v = hw.msi_alloc()
    calls = []

    def first(vector):
        calls.append(('first', vector))

    def second(vector):
        calls.append(('second', vector))
    try:
        hw.irq_attach(v, first)
        hw.irq_attach(v, second)
        fire.msi(hw, v)
        _wait_for(hw, v)
        assert calls == [('first', v), ('second', v)], calls
        hw.irq_detach(v, first)
        _raises(ValueError, hw.irq_detach, v, first)
        fire.msi(hw, v)
        _wait_for(hw, v)
        assert calls[2:] == [('second', v)], calls
    finally:
        hw.msi_free(v)


def check_a_masked_vector_holds_its_interrupt_until_unmasked(hw, fire):
    v = hw.msi_alloc()
    try:
        hw.irq_mask(v)
        fire.msi(hw, v)
        assert hw.irq_wait(SHORT_MS) == ()
        assert hw.irq_count(v) == 1                 # it did arrive
        hw.irq_unmask(v)
        assert hw.irq_wait(1000) == (v,)
        assert hw.irq_wait(SHORT_MS) == ()
    finally:
        hw.msi_free(v)


def check_a_storm_is_one_event_for_the_wait(hw, fire):
    v = hw.msi_alloc()
    try:
        for _ in range(100):
            fire.msi(hw, v)
        assert hw.irq_wait(1000) == (v,)
        assert 1 <= hw.irq_count(v) <= 100
        assert hw.irq_wait(SHORT_MS) == ()
    finally:
        hw.msi_free(v)


def check_bad_calls_raise_and_change_nothing(hw, fire):
    v = hw.msi_alloc()
    hw.msi_free(v)
    _raises(ValueError, hw.msi_message, v)          # freed
    _raises(ValueError, hw.irq_attach, v, print)
    _raises(ValueError, hw.irq_count, 300)
    _raises(ValueError, hw.intx_vector, 2)          # the cascade / the PIT
    _raises(ValueError, hw.intx_vector, 999)
    w = hw.msi_alloc()
    try:
        _raises(TypeError, hw.irq_attach, w, 42)
        assert hw.irq_count(w) == 0
    finally:
        hw.msi_free(w)


def check_vectors_run_out_with_oserror_and_come_back(hw, fire):
    got = []
    try:
        while len(got) <= MSI_LAST - MSI_FIRST + 1:
            got.append(hw.msi_alloc())
        raise AssertionError('more MSI vectors than the range holds')
    except OSError:
        assert len(got) > 8
    finally:
        for v in got:
            hw.msi_free(v)
    v = hw.msi_alloc()
    hw.msi_free(v)


def check_intx_is_level_triggered_and_masked_until_served(hw, fire):
    if fire.intx is None:
        return
    line = fire.line
    v = hw.intx_vector(line)
    assert v == hw.intx_vector(line)                # routing twice is the same vector
    n = hw.irq_count(v)
    fire.intx(hw, line, 1)
    assert v in _wait_for(hw, v)
    # Still asserted, but masked since it fired: nothing more until unmasked.
    assert hw.irq_wait(SHORT_MS) == ()
    hw.irq_unmask(v)                                # not served: it fires again
    assert v in _wait_for(hw, v)
    fire.intx(hw, line, 0)                          # served: the device lowered it
    hw.irq_unmask(v)
    assert hw.irq_wait(SHORT_MS) == ()
    assert hw.irq_count(v) == n + 2


CHECKS = [
    check_msi_vectors_are_distinct_and_their_message_carries_them,
    check_wait_without_interrupt_ends_at_its_deadline,
    check_msi_ends_the_wait_and_is_counted,
    check_handlers_run_before_the_wait_returns_in_order,
    check_a_masked_vector_holds_its_interrupt_until_unmasked,
    check_a_storm_is_one_event_for_the_wait,
    check_bad_calls_raise_and_change_nothing,
    check_vectors_run_out_with_oserror_and_come_back,
    check_intx_is_level_triggered_and_masked_until_served,
]


def run_all(hw, fire):
    """Run every check (in the image); returns the names that passed."""
    passed = []
    for check in CHECKS:
        check(hw, fire)
        passed.append(check.__name__)
    return passed
