"""tools/mkrom.py, the image's ROM builder, on the host (no QEMU): its LZ4 coder
round-trips, and a ROM packs names and data where its layout says."""
import os
import random
import struct
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tools'))
import mkrom  # noqa: E402


@pytest.mark.parametrize('data', [
    b'', b'a', b'abcd', b'abcde' * 3, bytes(1000), bytes(range(256)) * 40,
    b'overlapping run: ' + b'x' * 300 + b' end',
], ids=['empty', '1', '4', 'repeat', 'zeros', 'ramp', 'overlap'])
def test_lz4_round_trips(data):
    block = mkrom.lz4_compress(data)
    assert mkrom.lz4_decompress(block, len(data)) == data


def test_lz4_round_trips_random_and_compresses_repetition():
    rnd = random.Random(1)
    words = [b'virtio', b'queue', b'descriptor', b'avail', b'used', b'notify', b'feature']
    data = b' '.join(rnd.choice(words) for _ in range(4000))
    block = mkrom.lz4_compress(data)
    assert mkrom.lz4_decompress(block, len(data)) == data
    assert len(block) < len(data) * 0.6


def test_lz4_decoder_refuses_a_wrong_size():
    block = mkrom.lz4_compress(b'hello hello hello')
    with pytest.raises(ValueError):
        mkrom.lz4_decompress(block, 5)


def test_pack_rom_layout():
    rom = mkrom.pack_rom([('a.mpy', b'AAA'), ('pkg/b.mpy', b'BBBBB')])
    assert rom[:4] == b'XROM'
    assert struct.unpack_from('<I', rom, 4)[0] == 2
    entries = [struct.unpack_from('<4I', rom, 8 + 16 * i) for i in range(2)]
    got = {rom[no:no + nl].decode(): rom[do:do + dl] for no, nl, do, dl in entries}
    assert got == {'a.mpy': b'AAA', 'pkg/b.mpy': b'BBBBB'}
    assert all(do % 4 == 0 for _, _, do, _ in entries)
