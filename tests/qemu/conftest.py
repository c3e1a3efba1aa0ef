"""pytest fixtures for tests that boot the image (tests/qemu/harness.py does the work).

    image     the path of build/x86_virt/firmware.elf (session); built once with
              `make build` if it is missing (`make test` builds it before pytest)
    guest     a Guest on -machine pc with no devices, booted to the REPL and
              shared by the tests of one module (read-only checks: be tidy)
    boot      a factory: boot(machine='q35', devices=[...], ...) -> a started
              Guest, closed when the test ends
    tmp_disk  a factory: tmp_disk(size, fill=None) -> path of a raw image in a
              temporary folder removed after the test

Tests that use these are marked `@pytest.mark.qemu` (put `pytestmark =
pytest.mark.qemu` at the top of the module).
"""
import os
import shutil
import subprocess
import tempfile

import pytest

from tests.qemu import harness

_build_result = []


def _ensure_image():
    if os.path.exists(harness.IMAGE):
        return harness.IMAGE
    if not _build_result:
        p = subprocess.run(['make', '--no-print-directory', 'build'], cwd=harness.ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _build_result.append(p)
    p = _build_result[0]
    if p.returncode != 0 or not os.path.exists(harness.IMAGE):
        pytest.fail('the image %s is missing and `make build` failed:\n%s'
                    % (harness.IMAGE, p.stdout[-3000:]), pytrace=False)
    return harness.IMAGE


@pytest.fixture(scope='session')
def image():
    if shutil.which(harness.QEMU) is None:
        pytest.fail('%s not found: run `make setup` (or `make test`)' % harness.QEMU, pytrace=False)
    return _ensure_image()


@pytest.fixture(scope='module')
def guest(image):
    with harness.Guest(image=image) as g:
        g.start()
        yield g


@pytest.fixture
def boot(image):
    guests = []

    def start(**kwargs):
        kwargs.setdefault('image', image)
        wait_banner = kwargs.pop('wait_banner', True)
        g = harness.Guest(**kwargs)
        guests.append(g)
        g.start(wait_banner=wait_banner)
        return g

    yield start
    for g in guests:
        g.close()


@pytest.fixture
def tmp_disk():
    directory = tempfile.mkdtemp(prefix='x86virt-disk-')

    def make(size, fill=None, name='disk.img'):
        return harness.make_disk(directory, size, name=name, fill=fill)

    yield make
    shutil.rmtree(directory, ignore_errors=True)
