// A DEFLATE (RFC 1951) decoder: raw stream in, at most out_size bytes out.
#ifndef X86_VIRT_INFLATE_H
#define X86_VIRT_INFLATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Returns the number of bytes written, or 0 for corrupt or oversized input.
size_t inflate(const uint8_t *in, const uint8_t *in_end, uint8_t *out, size_t out_size);
#endif
