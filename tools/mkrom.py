#!/usr/bin/env python3
"""Build the image's ROM: the Python that firmware/manifest.py names, compiled
with mpy-cross to .mpy, packed into one read-only file system and compressed.

    mkrom.py --mpy-dir DIR --mpy-cross PATH --build DIR [--mpy-cross-flags FLAGS] MANIFEST

The manifest is MicroPython's own format (package(), module(), ...), executed by
MicroPython's tools/manifestfile.py. Output: BUILD/rom.lz (written only when it
changes, so an unchanged tree does not relink) and BUILD/rom/<path>.mpy.

Why not MicroPython's usual freezing (mpy-tool.py -> C structures)? Size: the
stripped image must stay within 256 KiB, and the frozen C form of the drivers
is about 20% larger than their .mpy files, which compress to about 60%.
The guest unpacks the ROM into RAM at boot (ports/x86_virt/rom.c) and imports
from it as from a file system.

ROM layout (all integers little-endian u32):
    b"XROM", count, then count entries of (name_offset, name_len, data_offset,
    data_len), offsets from the start of the ROM; then names and data.
Compressed file (rom.lz):
    b"XLZ4", raw_size, then one LZ4 block (the LZ4 block format: sequences of
    a token byte [literal count:4 | match length - 4:4], literal-count
    extension bytes, literals, 2-byte match offset, match-length extension
    bytes; the last sequence has literals only).
"""
import argparse
import os
import struct
import subprocess
import sys

MIN_MATCH = 4
MAX_OFFSET = 65535
HASH_CHAIN = 64             # candidates tried per position (ratio vs. build time)
LAST_LITERALS = 5           # LZ4: the block ends with at least 5 literal bytes


def _length_bytes(n):
    out = bytearray()
    while n >= 255:
        out.append(255)
        n -= 255
    out.append(n)
    return out


def lz4_compress(data):
    """An LZ4 block of `data`: greedy matching over hash chains of 4-byte prefixes."""
    n = len(data)
    out = bytearray()
    chains = {}
    anchor = 0
    i = 0
    limit = n - LAST_LITERALS
    while i < limit - MIN_MATCH + 1:
        key = data[i:i + MIN_MATCH]
        best_len, best_off = 0, 0
        cands = chains.get(key)
        if cands:
            for j in reversed(cands[-HASH_CHAIN:]):
                off = i - j
                if off > MAX_OFFSET:
                    break
                k = MIN_MATCH
                while i + k < limit and data[j + k] == data[i + k]:
                    k += 1
                if k > best_len:
                    best_len, best_off = k, off
            cands.append(i)
        else:
            chains[key] = [i]
        if best_len < MIN_MATCH:
            i += 1
            continue
        _emit(out, data[anchor:i], best_len, best_off)
        for p in range(i + 1, min(i + best_len, limit - MIN_MATCH + 1)):
            chains.setdefault(data[p:p + MIN_MATCH], []).append(p)
        i += best_len
        anchor = i
    _emit(out, data[anchor:], 0, 0)
    return bytes(out)


def _emit(out, literals, match_len, offset):
    lit = len(literals)
    ml = match_len - MIN_MATCH if match_len else 0
    out.append((min(lit, 15) << 4) | min(ml, 15))
    if lit >= 15:
        out += _length_bytes(lit - 15)
    out += literals
    if match_len:
        out += struct.pack('<H', offset)
        if ml >= 15:
            out += _length_bytes(ml - 15)


def lz4_decompress(block, size):
    """The reference decoder (the guest's is ports/x86_virt/rom.c); used to check."""
    out = bytearray()
    i = 0
    while i < len(block):
        token = block[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = block[i]
                i += 1
                lit += b
                if b != 255:
                    break
        out += block[i:i + lit]
        i += lit
        if i >= len(block):
            break
        off = block[i] | (block[i + 1] << 8)
        i += 2
        ml = token & 15
        if ml == 15:
            while True:
                b = block[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += MIN_MATCH
        for _ in range(ml):
            out.append(out[-off])
    if len(out) != size:
        raise ValueError('LZ4 round trip: %d bytes, expected %d' % (len(out), size))
    return bytes(out)


def pack_rom(files):
    """files: list of (name, bytes) -> the ROM image (see the module doc)."""
    header = 8 + 16 * len(files)
    names = b''.join(name.encode() for name, _ in files)
    entries = []
    name_off = header
    data_off = header + len(names)
    data_off += -data_off % 4
    blobs = bytearray()
    for name, data in files:
        entries.append(struct.pack('<4I', name_off, len(name.encode()), data_off + len(blobs), len(data)))
        name_off += len(name.encode())
        blobs += data
        blobs += bytes(-len(blobs) % 4)
    rom = bytearray(b'XROM' + struct.pack('<I', len(files)) + b''.join(entries) + names)
    rom += bytes(-len(rom) % 4)
    return bytes(rom + blobs)


def manifest_files(mpy_dir, manifest, variables):
    sys.path.insert(0, os.path.join(mpy_dir, 'tools'))
    import manifestfile
    m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, variables)
    try:
        m.execute(manifest)
    except manifestfile.ManifestFileError as e:
        sys.exit('mkrom: %s' % e)
    return m.files()


def compile_mpy(mpy_cross, flags, src, target, out, opt):
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return
    os.makedirs(os.path.dirname(out), exist_ok=True)
    print('MPY %s' % target)
    args = [mpy_cross] + flags + ['-s', target, '-o', out, src]
    if opt is not None:
        args.insert(1, '-O%d' % opt)
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit('mkrom: mpy-cross failed on %s:\n%s' % (src, p.stdout))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--mpy-dir', required=True)
    ap.add_argument('--mpy-cross', required=True)
    ap.add_argument('--mpy-cross-flags', default='')
    ap.add_argument('--build', required=True)
    ap.add_argument('manifest')
    args = ap.parse_args()

    variables = {'MPY_DIR': os.path.abspath(args.mpy_dir), 'MPY_LIB_DIR': None,
                 'PORT_DIR': os.path.abspath(os.path.dirname(args.manifest))}
    flags = args.mpy_cross_flags.split()
    files = []
    for r in manifest_files(args.mpy_dir, os.path.abspath(args.manifest), variables):
        if not r.target_path.endswith('.py'):
            sys.exit('mkrom: %s: only .py files go into the ROM' % r.full_path)
        name = r.target_path[:-3] + '.mpy'
        out = os.path.join(args.build, 'rom', name)
        compile_mpy(args.mpy_cross, flags, r.full_path, r.target_path, out, r.opt)
        with open(out, 'rb') as f:
            files.append((name, f.read()))
    files.sort()
    rom = pack_rom(files)
    block = lz4_compress(rom)
    lz4_decompress(block, len(rom))
    packed = b'XLZ4' + struct.pack('<I', len(rom)) + block

    path = os.path.join(args.build, 'rom.lz')
    old = open(path, 'rb').read() if os.path.exists(path) else None
    if packed != old:
        with open(path, 'wb') as f:
            f.write(packed)
        print('ROM %d files, %d bytes of .mpy, %d compressed' % (len(files), len(rom), len(packed)))


if __name__ == '__main__':
    main()
