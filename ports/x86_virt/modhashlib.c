// `hashlib` with sha256 (FIPS 180-4, section 6.2), MicroPython's interface:
//     h = hashlib.sha256(b'data'); h.update(b'more'); h.digest() -> 32 bytes
// (mpremote's `fs sha256sum` computes the digest in the guest with it.)
// MicroPython's own hashlib lives in extmod/, which the source we build from
// does not ship.
#include <string.h>

#include "py/runtime.h"

typedef struct {
    mp_obj_base_t base;
    uint32_t state[8];
    uint64_t length;        // bytes hashed so far
    uint8_t block[64];
    uint32_t used;          // bytes in block
    bool final;             // digest() called: no more updates
} sha256_obj_t;

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

// Initial hash value H(0) (section 5.3.3).
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

// The hash computation for one 512-bit block (section 6.2.2).
static void compress(uint32_t *h, const uint8_t *p) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++) {
        w[t] = (uint32_t)p[4 * t] << 24 | p[4 * t + 1] << 16 | p[4 * t + 2] << 8 | p[4 * t + 3];
    }
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = ROTR(w[t - 15], 7) ^ ROTR(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = ROTR(w[t - 2], 17) ^ ROTR(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = hh + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void add(sha256_obj_t *self, const uint8_t *p, size_t n) {
    self->length += n;
    while (n > 0) {
        size_t take = 64 - self->used < n ? 64 - self->used : n;
        memcpy(self->block + self->used, p, take);
        self->used += take;
        p += take;
        n -= take;
        if (self->used == 64) {
            compress(self->state, self->block);
            self->used = 0;
        }
    }
}

static mp_obj_t sha256_update(mp_obj_t self_in, mp_obj_t data) {
    sha256_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->final) {
        mp_raise_ValueError(MP_ERROR_TEXT("hash is final"));
    }
    mp_buffer_info_t buf;
    mp_get_buffer_raise(data, &buf, MP_BUFFER_READ);
    add(self, buf.buf, buf.len);
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_2(sha256_update_obj, sha256_update);

// Padding (section 5.1.1): 0x80, zeros, the length in bits, big-endian.
static mp_obj_t sha256_digest(mp_obj_t self_in) {
    sha256_obj_t *self = MP_OBJ_TO_PTR(self_in);
    self->final = true;
    uint64_t bits = self->length * 8;
    sha256_obj_t copy = *self;      // digest() may be called again
    static const uint8_t pad[64] = {0x80};
    add(&copy, pad, copy.used < 56 ? 56 - copy.used : 120 - copy.used);
    uint8_t len_be[8];
    for (int i = 0; i < 8; i++) {
        len_be[i] = bits >> (56 - 8 * i);
    }
    add(&copy, len_be, 8);
    uint8_t out[32];
    for (int i = 0; i < 8; i++) {
        out[4 * i] = copy.state[i] >> 24;
        out[4 * i + 1] = copy.state[i] >> 16;
        out[4 * i + 2] = copy.state[i] >> 8;
        out[4 * i + 3] = copy.state[i];
    }
    return mp_obj_new_bytes(out, 32);
}
static MP_DEFINE_CONST_FUN_OBJ_1(sha256_digest_obj, sha256_digest);

static mp_obj_t sha256_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 0, 1, false);
    sha256_obj_t *self = mp_obj_malloc(sha256_obj_t, type);
    memcpy(self->state, H0, sizeof(H0));
    self->length = 0;
    self->used = 0;
    self->final = false;
    if (n_args == 1) {
        sha256_update(MP_OBJ_FROM_PTR(self), args[0]);
    }
    return MP_OBJ_FROM_PTR(self);
}

static const mp_rom_map_elem_t sha256_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR_update), MP_ROM_PTR(&sha256_update_obj) },
    { MP_ROM_QSTR(MP_QSTR_digest), MP_ROM_PTR(&sha256_digest_obj) },
};
static MP_DEFINE_CONST_DICT(sha256_locals_dict, sha256_locals_dict_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    sha256_type,
    MP_QSTR_sha256,
    MP_TYPE_FLAG_NONE,
    make_new, sha256_make_new,
    locals_dict, &sha256_locals_dict
    );

static const mp_rom_map_elem_t hashlib_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR_hashlib) },
    { MP_ROM_QSTR(MP_QSTR_sha256), MP_ROM_PTR(&sha256_type) },
};
static MP_DEFINE_CONST_DICT(hashlib_module_globals, hashlib_module_globals_table);

const mp_obj_module_t mp_module_hashlib = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&hashlib_module_globals,
};
MP_REGISTER_MODULE(MP_QSTR_hashlib, mp_module_hashlib);
