"""The modules a file workflow reaches for, in the image: hashlib.sha256 (in C,
what mpremote's fs sha256sum uses), json and binascii (firmware/*.py), checked
against CPython's on the same data."""
import binascii
import hashlib
import json

import pytest

pytestmark = pytest.mark.qemu


@pytest.mark.parametrize('n', [0, 1, 55, 56, 63, 64, 65, 1000, 100000])
def test_sha256_matches_cpython(guest, n):
    data = bytes((i * 7 + 3) & 255 for i in range(n))
    guest.exec('import hashlib\ndata = bytes((i * 7 + 3) & 255 for i in range(%d))' % n)
    assert guest.eval('hashlib.sha256(data).digest()') == hashlib.sha256(data).digest()
    # Fed in pieces, and digest() twice.
    guest.exec('h = hashlib.sha256()\nfor i in range(0, len(data), 37):\n    h.update(data[i:i + 37])')
    assert guest.eval('(h.digest(), h.digest())') == (hashlib.sha256(data).digest(),) * 2


def test_json_and_binascii_match_cpython(guest):
    value = {'name': 'caf\xe9 "x"', 'list': [1, 2.5, None, True, False], 'nested': {'a': []}}
    text = guest.eval('__import__("json").dumps(%r)' % (value,))
    assert json.loads(text) == value
    assert guest.eval('__import__("json").loads(%r)' % json.dumps(value)) == value
    data = bytes(range(256))
    guest.exec('import binascii\ndata = bytes(range(256))')
    assert guest.eval('binascii.hexlify(data)') == binascii.hexlify(data)
    assert guest.eval('binascii.unhexlify(binascii.hexlify(data))') == data
    assert guest.eval('binascii.b2a_base64(data)') == binascii.b2a_base64(data)
    assert guest.eval('binascii.a2b_base64(binascii.b2a_base64(data))') == data
    assert guest.eval('binascii.crc32(data)') == binascii.crc32(data)
