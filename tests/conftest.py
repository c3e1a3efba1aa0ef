"""Fixtures shared by the host tests (tests/host) and the image tests (tests/qemu)."""
import shutil
import tempfile

import pytest


@pytest.fixture
def sockdir():
    """A fresh folder for unix sockets (chardevs), removed afterwards. Socket paths
    must stay short (108 bytes), so not under pytest's tmp_path."""
    d = tempfile.mkdtemp(prefix='vcon')
    yield d
    shutil.rmtree(d, ignore_errors=True)
