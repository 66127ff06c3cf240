#include "packed_varint.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define FEDSEG_X86 1
#else
#define FEDSEG_X86 0
#endif

#define HIGH_BITS 0x8080808080808080ULL
#define LOW_SEVEN 0x7f7f7f7f7f7f7f7fULL

// One bit per byte of an 8-byte load, set where the byte ends a varint (top bit clear): byte i
// goes to bit i.
static inline uint64_t terminator_bits(uint64_t bytes) {
    uint64_t stops = ~bytes & HIGH_BITS;
    return ((stops >> 7) * 0x0102040810204080ULL) >> 56;
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t value;
    memcpy(&value, p, 8);
    return value;
}

// The 8 bytes from `start`, zero past the body's end (which is never read past).
static inline uint64_t padded_load(const uint8_t *body, size_t start, size_t count) {
    if (start + 8 <= count) return load64(body + start);
    uint64_t value = 0;
    memcpy(&value, body + start, count - start);
    return value;
}

static inline uint64_t compact_portable(uint64_t bytes) {
    uint64_t x = bytes & LOW_SEVEN;
    x = ((x & 0x7f007f007f007f00ULL) >> 1) | (x & 0x007f007f007f007fULL);
    x = ((x & 0x3fff00003fff0000ULL) >> 2) | (x & 0x00003fff00003fffULL);
    return ((x & 0x0fffffff00000000ULL) >> 4) | (x & 0x000000000fffffffULL);
}

static inline int64_t zigzag(uint64_t x) { return (int64_t)(x >> 1) ^ -(int64_t)(x & 1); }

// The body of both kernels: `WORD(bytes, length)` turns the 8 bytes at a varint's start (its
// `length` bytes and what follows) into its value. For each 64-byte block, a map of the bytes that
// end a varint; then each varint is read from where it starts, so the loads do not wait on each
// other (the only chain from word to word is clearing the map's lowest bit).
#define DECODE_BODY(WORD, POPCOUNT)                                                                \
    if (count == 0) return 0;                                                                      \
    if (body[count - 1] & 0x80) return -1;                                                         \
    size_t start = 0, n = 0;                                                                       \
    for (size_t block = 0; block < count; block += 64) {                                           \
        uint64_t map = 0;                                                                          \
        size_t i = 0;                                                                              \
        for (; i < 64 && block + i + 8 <= count; i += 8) map |= terminator_bits(load64(body + block + i)) << i; \
        for (; i < 64 && block + i < count; i++) map |= (uint64_t)((body[block + i] & 0x80) == 0) << i; \
        if ((size_t)POPCOUNT(map) > capacity - n) return -1;                                       \
        if (block + 72 <= count) {                                                                 \
            /* Every varint ending here starts at least 8 bytes before the end. */                 \
            while (map) {                                                                          \
                size_t end = block + (size_t)__builtin_ctzll(map);                                 \
                map &= map - 1;                                                                    \
                size_t length = end - start + 1;                                                   \
                if (length > 8) return -1;                                                         \
                out[n++] = zigzag(WORD(load64(body + start), length));                             \
                start = end + 1;                                                                   \
            }                                                                                      \
        } else {                                                                                   \
            while (map) {                                                                          \
                size_t end = block + (size_t)__builtin_ctzll(map);                                 \
                map &= map - 1;                                                                    \
                size_t length = end - start + 1;                                                   \
                if (length > 8) return -1;                                                         \
                out[n++] = zigzag(WORD(padded_load(body, start, count), length));                  \
                start = end + 1;                                                                   \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    return (ptrdiff_t)n;

#define PORTABLE_WORD(bytes, length) compact_portable((bytes) & (~0ULL >> (64 - 8 * (length))))

static ptrdiff_t decode_portable(const uint8_t *body, size_t count, int64_t *out, size_t capacity) {
    DECODE_BODY(PORTABLE_WORD, __builtin_popcountll)
}

#if FEDSEG_X86
#define BMI2_WORD(bytes, length) _pext_u64(_bzhi_u64((bytes), (unsigned)(8 * (length))), LOW_SEVEN)

__attribute__((target("bmi,bmi2,popcnt")))
static ptrdiff_t decode_bmi2(const uint8_t *body, size_t count, int64_t *out, size_t capacity) {
    DECODE_BODY(BMI2_WORD, _mm_popcnt_u64)
}

static int has_bmi2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if ((b & (1u << 8)) == 0 || (b & (1u << 3)) == 0) return 0;  // BMI2 and BMI1
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 23)) != 0;  // and POPCNT
}

// PEXT is microcoded on AMD's families before 19h (and on Hygon's 18h, a Zen 1): one per hundreds
// of cycles, slower than the masks.
static int pext_is_slow(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 1;
    int amd = (b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163);    // "AuthenticAMD"
    int hygon = (b == 0x6f677948 && d == 0x6e65476e && c == 0x656e6975);  // "HygonGenuine"
    if (!amd && !hygon) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 1;
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    return family < 0x19;
}
#endif

int fedseg_varint_kernel_runs(fedseg_varint_kernel kernel) {
    switch (kernel) {
    case FEDSEG_VARINT_PORTABLE: return 1;
#if FEDSEG_X86
    case FEDSEG_VARINT_BMI2: return has_bmi2();
#endif
    default: return 0;
    }
}

fedseg_varint_kernel fedseg_varint_best_kernel(void) {
#if FEDSEG_X86
    if (has_bmi2() && !pext_is_slow()) return FEDSEG_VARINT_BMI2;
#endif
    return FEDSEG_VARINT_PORTABLE;
}

#define COUNT_BODY                                                                                 \
    size_t terminators = 0, i = 0;                                                                 \
    for (; i + 8 <= count; i += 8) terminators += (size_t)__builtin_popcountll(~load64(body + i) & HIGH_BITS); \
    for (; i < count; i++) terminators += (body[i] & 0x80) == 0;                                   \
    return terminators;

static size_t count_portable(const uint8_t *body, size_t count) { COUNT_BODY }

#if FEDSEG_X86
__attribute__((target("popcnt"))) static size_t count_popcnt(const uint8_t *body, size_t count) { COUNT_BODY }

static int has_popcnt(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 23)) != 0;
}
#endif

size_t fedseg_varint_count(const uint8_t *body, size_t count) {
#if FEDSEG_X86
    // CPUID is asked once (in a virtual machine each CPUID is a trap to the hypervisor).
    static int popcnt = -1;
    int known = __atomic_load_n(&popcnt, __ATOMIC_RELAXED);
    if (known < 0) {
        known = has_popcnt();
        __atomic_store_n(&popcnt, known, __ATOMIC_RELAXED);
    }
    if (known) return count_popcnt(body, count);
#endif
    return count_portable(body, count);
}

ptrdiff_t fedseg_decode_packed_sint64(fedseg_varint_kernel kernel, const uint8_t *body, size_t count, int64_t *out,
                                      size_t capacity) {
#if FEDSEG_X86
    if (kernel == FEDSEG_VARINT_BMI2) return decode_bmi2(body, count, out, capacity);
#endif
    (void)kernel;
    return decode_portable(body, count, out, capacity);
}
