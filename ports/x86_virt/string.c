// memcpy, memmove and memset for the port, in place of MicroPython's
// shared/libc/string0.c ones (the Makefile renames those out of the way).
//
// Why our own: under TCG every taken branch ends a translation block, so a
// copy loop costs about one block per iteration whatever the host does; and
// MicroPython calls memmove to shift the tail of a bytearray after every
// slice store, even when the slice keeps its length (buf[0:6] = mac shifts
// the rest of a 1514-byte frame buffer onto itself). string0.c's memmove
// sends that to a memcpy that goes byte by byte whenever an address is odd.
// Here: nothing is copied onto itself, x86 loads and stores words at any
// alignment, and the loops move 16 bytes per iteration. The file is compiled
// with -fno-tree-loop-distribute-patterns so that GCC does not turn these
// loops back into calls to themselves.

#include <stddef.h>
#include <stdint.h>

typedef uint32_t word_t __attribute__((aligned(1), may_alias));

void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    for (; n >= 16; n -= 16, d += 16, s += 16) {
        word_t a = ((const word_t *)s)[0], b = ((const word_t *)s)[1];
        word_t c = ((const word_t *)s)[2], e = ((const word_t *)s)[3];
        ((word_t *)d)[0] = a;
        ((word_t *)d)[1] = b;
        ((word_t *)d)[2] = c;
        ((word_t *)d)[3] = e;
    }
    for (; n >= 4; n -= 4, d += 4, s += 4) {
        *(word_t *)d = *(const word_t *)s;
    }
    for (; n; n--) {
        *d++ = *s++;
    }
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d == s || n == 0) {
        return dst;
    }
    // Forward is safe unless dst starts inside (src, src + n): as unsigned
    // numbers, dst - src is then below n (and wraps to a large one when dst
    // lies before src).
    if ((uintptr_t)d - (uintptr_t)s >= n) {
        return memcpy(dst, src, n);
    }
    d += n;
    s += n;
    for (; n >= 16; n -= 16) {
        d -= 16;
        s -= 16;
        word_t a = ((const word_t *)s)[0], b = ((const word_t *)s)[1];
        word_t c = ((const word_t *)s)[2], e = ((const word_t *)s)[3];
        ((word_t *)d)[3] = e;
        ((word_t *)d)[2] = c;
        ((word_t *)d)[1] = b;
        ((word_t *)d)[0] = a;
    }
    for (; n; n--) {
        *--d = *--s;
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    word_t w = (uint8_t)c * 0x01010101u;
    for (; n >= 16; n -= 16, d += 16) {
        ((word_t *)d)[0] = w;
        ((word_t *)d)[1] = w;
        ((word_t *)d)[2] = w;
        ((word_t *)d)[3] = w;
    }
    for (; n; n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}
