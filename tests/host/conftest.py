"""Fixtures for the host bench tests (models and helpers in models/)."""

import pytest

import virtio


@pytest.fixture(autouse=True)
def _virtio_globals():
    """Leave tracing off and forget probed devices after every test."""
    yield
    virtio.trace(False, print)
    virtio._devices[:] = []
    virtio._skipped[:] = []
    virtio._probed[0] = False
