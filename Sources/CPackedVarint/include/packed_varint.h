#ifndef FEDSEG_PACKED_VARINT_H
#define FEDSEG_PACKED_VARINT_H

#include <stddef.h>
#include <stdint.h>

/// How a packed body's varints are turned into words.
typedef enum {
    /// A map of the bytes that end a varint, then masks and shifts per word: any CPU.
    FEDSEG_VARINT_PORTABLE = 0,
    /// SSE4.1 (with SSSE3's byte shuffle): up to four varints of at most 4 bytes per 16-byte load.
    FEDSEG_VARINT_SSE41 = 1,
} fedseg_varint_kernel;

/// The kernel this CPU runs best: SSE4.1 on x86-64 CPUs that have it, else portable.
fedseg_varint_kernel fedseg_varint_best_kernel(void);

/// Whether this CPU can run `kernel`.
int fedseg_varint_kernel_runs(fedseg_varint_kernel kernel);

/// The number of bytes with the top bit clear: the number of varints in a body that ends with one.
size_t fedseg_varint_count(const uint8_t *body, size_t count);

/// Decodes a packed `sint64` body whose varints are each at most 8 bytes long into `out`, which
/// has room for `capacity` words. Returns the number of words, or -1 when the body is not such a
/// sequence (a varint longer than 8 bytes, a last byte that does not end one, more than `capacity`
/// words): the caller then decodes it the general way. `kernel` must be one this CPU runs
/// (`fedseg_varint_kernel_runs`).
ptrdiff_t fedseg_decode_packed_sint64(fedseg_varint_kernel kernel, const uint8_t *body, size_t count, int64_t *out,
                                      size_t capacity);

#endif
