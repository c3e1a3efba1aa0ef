# Errors raised by the VirtIO stack.
#
# VirtioError is the root; every error names what went wrong and, where it
# applies, the device (its PCI address and kind) and the step or queue.

ETIMEDOUT = 110


class VirtioError(Exception):
    """Something in the VirtIO stack failed (base class)."""


class DeviceError(VirtioError):
    """The device misbehaved: a bad used id or length, a jumping used index,
    DEVICE_NEEDS_RESET, a config value out of range. `token` is the token of
    the request concerned, when one is known."""

    def __init__(self, msg, token=None):
        super().__init__(msg)
        self.token = token


class NegotiationError(VirtioError):
    """A step of the initialization sequence (spec 3.1.1) failed; `step`
    names it ('reset', 'features', 'FEATURES_OK', 'setup', ...)."""

    def __init__(self, msg, step=None, cause=None):
        super().__init__(msg)
        self.step = step
        self.cause = cause


class VirtqueueFull(VirtioError):
    """Not enough free descriptors for a request: collect completions first."""


class VirtioTimeout(OSError):
    """The device did not answer in time (an OSError with errno ETIMEDOUT)."""

    def __init__(self, msg):
        super().__init__(ETIMEDOUT, msg)
        self.msg = msg

    def __str__(self):
        return '[Errno %d] ETIMEDOUT: %s' % (ETIMEDOUT, self.msg)
