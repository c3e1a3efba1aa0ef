"""The port's memcpy, memmove and memset (ports/x86_virt/string.c) under MicroPython's own
users of them: slice stores, overlapping memoryview moves, deletes and inserts. The same
code runs under CPython here; every result must be the same bytes."""
import pytest

pytestmark = pytest.mark.qemu

# Lengths around the 16- and 4-byte steps of the copy loops, offsets at every alignment,
# overlaps in both directions and none.
CASES = '''
def cases():
    out = []
    base = bytes([(i * 7 + 3) & 0xFF for i in range(300)])
    for n in (0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 64, 200):
        for src, dst in ((0, 1), (1, 0), (5, 2), (2, 5), (3, 19), (19, 3), (0, 16),
                         (16, 0), (7, 7), (40, 90), (90, 40)):
            b = bytearray(base)
            m = memoryview(b)
            m[dst:dst + n] = m[src:src + n]          # memmove, possibly overlapping
            out.append(bytes(b))
        b = bytearray(base)
        b[6:6 + n] = base[100:100 + n]               # a store that keeps the length
        out.append(bytes(b))
        b = bytearray(base)
        b[9:9 + n] = b''                             # the tail moves down
        out.append(bytes(b))
        b = bytearray(base)
        b[11:11] = base[:n]                          # the tail moves up
        out.append(bytes(b))
        out.append(bytes(bytearray(n)))              # zeroed memory
        out.append(bytes(b'\\xa5' * n))
    return out
'''


def test_copies_moves_and_fills_match_cpython(guest):
    expected = {}
    exec(CASES, expected)
    guest.exec(CASES)
    got = guest.eval('cases()', timeout=60)
    want = expected['cases']()
    assert len(got) == len(want)
    bad = [k for k, (a, b) in enumerate(zip(got, want)) if a != b]
    assert not bad, 'cases %s differ' % bad[:10]
