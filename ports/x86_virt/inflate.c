// Inflate: a DEFLATE (RFC 1951) decoder, for the ROM (rom.c). Small and
// plain rather than fast: it runs once, at boot. Depends on nothing but the
// C library's memcpy/memset, so the host tests build and check it too.
#include <string.h>

#include "inflate.h"

#define MAX_BITS    15          // longest Huffman code
#define MAX_LITLEN  288         // literal/length alphabet
#define MAX_DIST    30          // distance alphabet

typedef struct {
    const uint8_t *in, *in_end;
    uint32_t bit_buf;           // bits not yet used, LSB first
    int bit_count;
    uint8_t *out, *out_start, *out_end;
    bool error;
} inflate_t;

// A canonical Huffman code (RFC 1951, 3.2.2): how many codes of each length,
// and the symbols ordered by code.
typedef struct {
    uint16_t count[MAX_BITS + 1];
    uint16_t symbol[MAX_LITLEN];
} huffman_t;

static uint32_t bits(inflate_t *s, int n) {
    while (s->bit_count < n) {
        if (s->in == s->in_end) {
            s->error = true;
            return 0;
        }
        s->bit_buf |= (uint32_t)*s->in++ << s->bit_count;
        s->bit_count += 8;
    }
    uint32_t v = s->bit_buf & ((1u << n) - 1);
    s->bit_buf >>= n;
    s->bit_count -= n;
    return v;
}

static void huffman_build(huffman_t *h, const uint8_t *lengths, int n) {
    uint16_t offset[MAX_BITS + 2];
    memset(h->count, 0, sizeof(h->count));
    for (int i = 0; i < n; i++) {
        h->count[lengths[i]]++;
    }
    h->count[0] = 0;
    offset[1] = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        offset[len + 1] = offset[len] + h->count[len];
    }
    for (int i = 0; i < n; i++) {
        if (lengths[i]) {
            h->symbol[offset[lengths[i]]++] = i;
        }
    }
}

// Huffman codes are packed most significant bit first: extend the code a bit
// at a time until it falls within the codes of that length.
static int huffman_decode(inflate_t *s, const huffman_t *h) {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len <= MAX_BITS; len++) {
        code |= bits(s, 1);
        int count = h->count[len];
        if (code - first < count) {
            return h->symbol[index + code - first];
        }
        index += count;
        first = (first + count) << 1;
        code <<= 1;
    }
    s->error = true;
    return 0;
}

static const uint16_t length_base[29] = {
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
    35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258,
};
static const uint8_t length_extra[29] = {
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
};
static const uint16_t dist_base[30] = {
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
    257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
};
static const uint8_t dist_extra[30] = {
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
};

// One block's compressed data: literals, and (length, distance) copies.
static void inflate_codes(inflate_t *s, const huffman_t *litlen, const huffman_t *dist) {
    for (;;) {
        int sym = huffman_decode(s, litlen);
        if (s->error) {
            return;
        }
        if (sym < 256) {
            if (s->out == s->out_end) {
                s->error = true;
                return;
            }
            *s->out++ = sym;
        } else if (sym == 256) {
            return;                             // end of block
        } else {
            sym -= 257;
            if (sym >= 29) {
                s->error = true;
                return;
            }
            size_t len = length_base[sym] + bits(s, length_extra[sym]);
            int d = huffman_decode(s, dist);
            if (d >= 30) {
                s->error = true;
                return;
            }
            size_t distance = dist_base[d] + bits(s, dist_extra[d]);
            if (s->error || distance > (size_t)(s->out - s->out_start)
                || len > (size_t)(s->out_end - s->out)) {
                s->error = true;
                return;
            }
            const uint8_t *from = s->out - distance;
            while (len--) {
                *s->out++ = *from++;            // may overlap: byte by byte
            }
        }
    }
}

static huffman_t litlen_code, dist_code;        // static: too big for comfort on the stack

static void inflate_fixed(inflate_t *s) {
    uint8_t lengths[MAX_LITLEN];
    int i = 0;
    for (; i < 144; i++) lengths[i] = 8;
    for (; i < 256; i++) lengths[i] = 9;
    for (; i < 280; i++) lengths[i] = 7;
    for (; i < 288; i++) lengths[i] = 8;
    huffman_build(&litlen_code, lengths, MAX_LITLEN);
    for (i = 0; i < MAX_DIST; i++) lengths[i] = 5;
    huffman_build(&dist_code, lengths, MAX_DIST);
    inflate_codes(s, &litlen_code, &dist_code);
}

static void inflate_dynamic(inflate_t *s) {
    static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    uint8_t lengths[MAX_LITLEN + MAX_DIST];
    int nlen = bits(s, 5) + 257, ndist = bits(s, 5) + 1, ncode = bits(s, 4) + 4;
    if (nlen > MAX_LITLEN || ndist > MAX_DIST) {
        s->error = true;
        return;
    }
    memset(lengths, 0, 19);
    for (int i = 0; i < ncode; i++) {
        lengths[order[i]] = bits(s, 3);
    }
    huffman_build(&litlen_code, lengths, 19);   // the code-length code
    for (int i = 0; i < nlen + ndist && !s->error;) {
        int sym = huffman_decode(s, &litlen_code);
        int repeat = 0, value = 0;
        if (sym < 16) {
            lengths[i++] = sym;
            continue;
        } else if (sym == 16) {                 // previous length, 3-6 times
            if (i == 0) {
                s->error = true;
                break;
            }
            value = lengths[i - 1];
            repeat = 3 + bits(s, 2);
        } else if (sym == 17) {                 // zero, 3-10 times
            repeat = 3 + bits(s, 3);
        } else {                                // zero, 11-138 times
            repeat = 11 + bits(s, 7);
        }
        if (i + repeat > nlen + ndist) {
            s->error = true;
            break;
        }
        while (repeat--) {
            lengths[i++] = value;
        }
    }
    if (s->error) {
        return;
    }
    huffman_build(&litlen_code, lengths, nlen);
    huffman_build(&dist_code, lengths + nlen, ndist);
    inflate_codes(s, &litlen_code, &dist_code);
}

static void inflate_stored(inflate_t *s) {
    s->bit_buf = 0;                             // to a byte boundary
    s->bit_count = 0;
    if (s->in_end - s->in < 4) {
        s->error = true;
        return;
    }
    size_t len = s->in[0] | (s->in[1] << 8);
    size_t nlen = s->in[2] | (s->in[3] << 8);
    s->in += 4;
    if (len != (~nlen & 0xffff) || len > (size_t)(s->in_end - s->in)
        || len > (size_t)(s->out_end - s->out)) {
        s->error = true;
        return;
    }
    memcpy(s->out, s->in, len);
    s->out += len;
    s->in += len;
}

// Returns the number of bytes written, or 0 on corrupt input.
size_t inflate(const uint8_t *in, const uint8_t *in_end, uint8_t *out, size_t out_size) {
    inflate_t s = { in, in_end, 0, 0, out, out, out + out_size, false };
    bool last;
    do {
        last = bits(&s, 1);
        switch (bits(&s, 2)) {
            case 0:
                inflate_stored(&s);
                break;
            case 1:
                inflate_fixed(&s);
                break;
            case 2:
                inflate_dynamic(&s);
                break;
            default:
                s.error = true;
        }
    } while (!last && !s.error);
    return s.error ? 0 : (size_t)(s.out - out);
}
