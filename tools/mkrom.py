#!/usr/bin/env python3
"""Build the image's ROM: the Python that firmware/manifest.py names, compiled
with mpy-cross to .mpy, packed into one read-only file system and compressed.

    mkrom.py --mpy-dir DIR --mpy-cross PATH --build DIR [--mpy-cross-flags FLAGS] MANIFEST

The manifest is MicroPython's own format (package(), module(), ...), executed by
MicroPython's tools/manifestfile.py. Output: BUILD/rom.z (written only when it
changes, so an unchanged tree does not relink) and BUILD/rom/<path>.mpy.

Why not MicroPython's usual freezing (mpy-tool.py -> C structures)? Size: the
stripped image must stay within 384 KiB, and the frozen C form of the drivers
is about 20% larger than their .mpy files, which DEFLATE to about 55%.
The guest unpacks the ROM into RAM at boot (ports/x86_virt/rom.c) and imports
from it as from a file system.

ROM layout (all integers little-endian u32):
    b"XROM", count, then count entries of (name_offset, name_len, data_offset,
    data_len), offsets from the start of the ROM; then names and data.
The entry ".qstrs" (not a module) lists the identifiers the modules use that the
firmware does not intern itself, sorted, each NUL-terminated: the guest interns them
at boot in one pool it binary-searches
(rom.c: rom_intern_names), so that loading a module does not search and grow the
pools MicroPython scans one entry at a time.
Compressed file (rom.z):
    b"XRZ1", raw_size, then the ROM as a raw DEFLATE stream (RFC 1951, made
    with Python's zlib; the guest's decoder is inflate() in rom.c).
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import zlib

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


# The names the modules use, for the guest to intern once at boot in one pool it
# binary-searches (ports/x86_virt/rom.c: rom_intern_names): sorted, each followed by a NUL.
QSTRS_ENTRY = '.qstrs'
NAME = re.compile(rb'^[A-Za-z_][A-Za-z0-9_]*$')


def read_uint(data, at):
    """An .mpy variable-length unsigned int (7 bits a byte, most significant first)."""
    n = 0
    while True:
        b = data[at]
        at += 1
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            return n, at


def mpy_qstrs(data):
    """The strings of an .mpy file's qstr table (its header, n_qstr, n_obj, then each
    qstr: (length << 1) and its bytes and a NUL, or (index << 1) | 1 for one of
    mpy-cross's static qstrs, which the firmware has anyway)."""
    if data[:1] != b'M' or data[1] != 6:
        raise ValueError('not a version 6 .mpy file')
    n_qstr, at = read_uint(data, 4)
    _n_obj, at = read_uint(data, at)
    out = []
    for _ in range(n_qstr):
        n, at = read_uint(data, at)
        if n & 1:
            continue
        n >>= 1
        out.append(bytes(data[at:at + n]))
        at += n + 1
    return out


def firmware_qstrs(header):
    """The identifiers the firmware interns itself, from its qstrdefs.generated.h
    (lines QDEF0/QDEF1(MP_QSTR_..., hash, len, "string")): listed again, such a name
    would get a second id that the firmware's MP_QSTR_ comparisons do not know."""
    return set(FIRMWARE_QSTR.findall(header))


FIRMWARE_QSTR = re.compile(rb'^QDEF[01]\(MP_QSTR_\w*, \d+, \d+, "([A-Za-z_][A-Za-z0-9_]*)"\)',
                           re.M)


def qstr_list(mpys, known=()):
    """Every identifier the modules' qstr tables hold and `known` does not, sorted,
    NUL-terminated (the other strings, messages mostly, are few and are interned as
    they load)."""
    names = set()
    for data in mpys:
        names.update(q for q in mpy_qstrs(data) if NAME.match(q) and len(q) < 256)
    return b''.join(q + b'\0' for q in sorted(names - set(known)))


def compress_rom(rom):
    """The rom.z file for a ROM image: header, then raw DEFLATE."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return b'XRZ1' + struct.pack('<I', len(rom)) + z.compress(rom) + z.flush()


def decompress_rom(packed):
    """The inverse of compress_rom() (the guest does this in C)."""
    if packed[:4] != b'XRZ1':
        raise ValueError('not an XRZ1 file')
    size = struct.unpack_from('<I', packed, 4)[0]
    rom = zlib.decompress(packed[8:], -15)
    if len(rom) != size:
        raise ValueError('ROM size %d, header says %d' % (len(rom), size))
    return rom


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


def remove_stale(rom_dir, names):
    """Delete compiled modules whose source is gone, so that the folder holds
    exactly what the ROM holds (tests list the ROM from it)."""
    for dirpath, _, found in os.walk(rom_dir):
        for f in found:
            path = os.path.join(dirpath, f)
            if f.endswith('.mpy') and os.path.relpath(path, rom_dir).replace(os.sep, '/') \
                    not in names:
                os.remove(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--mpy-dir', required=True)
    ap.add_argument('--mpy-cross', required=True)
    ap.add_argument('--mpy-cross-flags', default='')
    ap.add_argument('--build', required=True)
    ap.add_argument('--firmware-qstrs', help="the firmware's genhdr/qstrdefs.generated.h: "
                    'its names are not listed again (without it, no names list)')
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
    remove_stale(os.path.join(args.build, 'rom'), {name for name, _ in files})
    if args.firmware_qstrs:
        with open(args.firmware_qstrs, 'rb') as f:
            known = firmware_qstrs(f.read())
        files.append((QSTRS_ENTRY, qstr_list([data for _, data in files], known)))
    rom = pack_rom(files)
    packed = compress_rom(rom)

    path = os.path.join(args.build, 'rom.z')
    old = open(path, 'rb').read() if os.path.exists(path) else None
    if packed != old:
        with open(path, 'wb') as f:
            f.write(packed)
        print('ROM %d files, %d bytes of .mpy, %d compressed' % (len(files) - 1, len(rom), len(packed)))


if __name__ == '__main__':
    main()
