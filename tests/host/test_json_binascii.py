"""firmware/json.py and firmware/binascii.py (the image's json and binascii)
against CPython's own modules, on the same inputs."""
import binascii as cbinascii
import importlib.util
import json as cjson
import os

import pytest
from hypothesis import given, settings, strategies as st

FIRMWARE = os.path.join(os.path.dirname(__file__), '..', '..', 'firmware')


def load(name):
    spec = importlib.util.spec_from_file_location('fw_' + name, os.path.join(FIRMWARE, name + '.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


json = load('json')
binascii = load('binascii')

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300)
@given(JSON_VALUES)
def test_json_round_trips_and_agrees_with_cpython(value):
    text = json.dumps(value)
    assert cjson.loads(text) == value
    assert json.loads(text) == value
    assert json.loads(cjson.dumps(value)) == value
    assert json.loads(cjson.dumps(value, indent=2)) == value


def test_json_dumps_is_micropythons_format():
    assert json.dumps({'a': [1, 2.5, None, True]}) == '{"a": [1, 2.5, null, true]}'
    assert json.dumps('q"\\\n\x01') == '"q\\"\\\\\\n\\u0001"'
    assert json.loads('"\\ud83d\\ude00 \\u00e9"') == '\U0001F600 \xe9'


@pytest.mark.parametrize('bad', ['', '[1,', '{"a" 1}', '[1] x', '"abc', 'nul'])
def test_json_rejects_bad_input_with_valueerror(bad):
    with pytest.raises(ValueError):
        json.loads(bad)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_binascii_agrees_with_cpython(data):
    assert binascii.hexlify(data) == cbinascii.hexlify(data)
    assert binascii.unhexlify(cbinascii.hexlify(data)) == data
    assert binascii.b2a_base64(data) == cbinascii.b2a_base64(data)
    assert binascii.b2a_base64(data, newline=False) == cbinascii.b2a_base64(data, newline=False)
    assert binascii.a2b_base64(cbinascii.b2a_base64(data)) == data
    assert binascii.crc32(data) == cbinascii.crc32(data)
    assert binascii.crc32(data, 12345) == cbinascii.crc32(data, 12345)


def test_binascii_bad_input():
    with pytest.raises(ValueError):
        binascii.unhexlify(b'abc')
    with pytest.raises(ValueError):
        binascii.unhexlify(b'zz')
    assert binascii.hexlify(b'\x01\xff', b':') == b'01:ff'
