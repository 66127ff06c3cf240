#include "packed_varint.h"

#include <pthread.h>
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

#define PORTABLE_WORD(bytes, length) compact_portable((bytes) & (~0ULL >> (64 - 8 * (length))))

// The portable kernel: for each 64-byte block, a map of the bytes that end a varint; then each
// varint is read from where it starts, so that the loads do not wait on each other (the only chain
// from word to word is clearing the map's lowest bit).
static ptrdiff_t decode_portable(const uint8_t *body, size_t count, int64_t *out, size_t capacity) {
    if (count == 0) return 0;
    if (body[count - 1] & 0x80) return -1;
    size_t start = 0, n = 0;
    for (size_t block = 0; block < count; block += 64) {
        uint64_t map = 0;
        size_t i = 0;
        for (; i < 64 && block + i + 8 <= count; i += 8) map |= terminator_bits(load64(body + block + i)) << i;
        for (; i < 64 && block + i < count; i++) map |= (uint64_t)((body[block + i] & 0x80) == 0) << i;
        if ((size_t)__builtin_popcountll(map) > capacity - n) return -1;
        // Every varint ending in this block starts at least 8 bytes before the body's end, or
        // is read through a zero-padded copy.
        int whole = block + 72 <= count;
        while (map) {
            size_t end = block + (size_t)__builtin_ctzll(map);
            map &= map - 1;
            size_t length = end - start + 1;
            if (length > 8) return -1;
            uint64_t bytes = whole ? load64(body + start) : padded_load(body, start, count);
            out[n++] = zigzag(PORTABLE_WORD(bytes, length));
            start = end + 1;
        }
    }
    return (ptrdiff_t)n;
}

#if FEDSEG_X86
// The SSE4.1 kernel, after Plaisance, Kurz and Lemire's Masked VByte (2015): for each 12-bit mask
// of continuation bits (bit i: byte i of a 16-byte load has its top bit set), a shuffle that
// gathers the complete varints of at most 4 bytes at the start of those 12 bytes, up to 4 of
// them, each into a 32-bit lane, and how many bytes they take. The words an update carries are
// 2 to 4 bytes long, so nearly every load yields 3 or 4 words.
static uint8_t simd_shuffles[4096][16] __attribute__((aligned(16)));
static uint8_t simd_lanes[4096];
static uint8_t simd_consumed[4096];
static pthread_once_t simd_tables_once = PTHREAD_ONCE_INIT;

static void build_simd_tables(void) {
    for (unsigned mask = 0; mask < 4096; mask++) {
        memset(simd_shuffles[mask], 0x80, 16);  // 0x80: a zero byte
        unsigned position = 0, lanes = 0;
        while (lanes < 4) {
            unsigned length = 1;
            while (position + length - 1 < 12 && ((mask >> (position + length - 1)) & 1)) length++;
            if (position + length > 12 || length > 4) break;  // ends past the window, or too long
            for (unsigned b = 0; b < length; b++) simd_shuffles[mask][4 * lanes + b] = (uint8_t)(position + b);
            position += length;
            lanes++;
        }
        simd_lanes[mask] = (uint8_t)lanes;
        simd_consumed[mask] = (uint8_t)position;
    }
}

// One varint of at most 8 bytes at `*position`, as the portable kernel reads it; -1 when longer.
static inline int scalar_varint(const uint8_t *body, size_t count, size_t *position, int64_t *word) {
    uint64_t bytes = padded_load(body, *position, count);
    uint64_t stops = ~bytes & HIGH_BITS;
    if (stops == 0) return -1;
    size_t length = (size_t)__builtin_ctzll(stops) / 8 + 1;
    if (*position + length > count) return -1;
    *word = zigzag(PORTABLE_WORD(bytes, length));
    *position += length;
    return 0;
}

__attribute__((target("sse4.1")))
static ptrdiff_t decode_sse41(const uint8_t *body, size_t count, int64_t *out, size_t capacity) {
    pthread_once(&simd_tables_once, build_simd_tables);
    if (count == 0) return 0;
    if (body[count - 1] & 0x80) return -1;
    const __m128i low = _mm_set1_epi32(0x7f), second = _mm_set1_epi32(0x7f << 7), third = _mm_set1_epi32(0x7f << 14),
                  fourth = _mm_set1_epi32(0x7f << 21), one = _mm_set1_epi32(1);
    size_t position = 0, n = 0;
    // Four words are stored at each step (the lanes past the last varint hold zeros): room for
    // them, and 16 bytes to load.
    while (position + 16 <= count && n + 4 <= capacity) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(body + position));
        unsigned mask = (unsigned)_mm_movemask_epi8(bytes) & 0xfff;
        unsigned lanes = simd_lanes[mask];
        if (lanes == 0) {  // a varint of 5 bytes or more comes first
            if (scalar_varint(body, count, &position, out + n)) return -1;
            n++;
            continue;
        }
        __m128i x = _mm_shuffle_epi8(bytes, _mm_load_si128((const __m128i *)simd_shuffles[mask]));
        // Byte b of a lane holds bits 7b to 7b + 6 of the value.
        __m128i value = _mm_or_si128(_mm_or_si128(_mm_and_si128(x, low), _mm_and_si128(_mm_srli_epi32(x, 1), second)),
                                     _mm_or_si128(_mm_and_si128(_mm_srli_epi32(x, 2), third), _mm_and_si128(_mm_srli_epi32(x, 3), fourth)));
        // At most 28 bits: zigzag in the 32-bit lane, then sign-extended to 64.
        __m128i word = _mm_xor_si128(_mm_srli_epi32(value, 1), _mm_sub_epi32(_mm_setzero_si128(), _mm_and_si128(value, one)));
        _mm_storeu_si128((__m128i *)(out + n), _mm_cvtepi32_epi64(word));
        _mm_storeu_si128((__m128i *)(out + n + 2), _mm_cvtepi32_epi64(_mm_srli_si128(word, 8)));
        n += lanes;
        position += simd_consumed[mask];
    }
    while (position < count) {
        if (n == capacity || scalar_varint(body, count, &position, out + n)) return -1;
        n++;
    }
    return (ptrdiff_t)n;
}

static int has_sse41(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 19)) != 0 && (c & (1u << 9)) != 0;  // SSE4.1, SSSE3
}
#endif

int fedseg_varint_kernel_runs(fedseg_varint_kernel kernel) {
    switch (kernel) {
    case FEDSEG_VARINT_PORTABLE: return 1;
#if FEDSEG_X86
    case FEDSEG_VARINT_SSE41: return has_sse41();
#endif
    default: return 0;
    }
}

fedseg_varint_kernel fedseg_varint_best_kernel(void) {
#if FEDSEG_X86
    if (has_sse41()) return FEDSEG_VARINT_SSE41;
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
    if (kernel == FEDSEG_VARINT_SSE41) return decode_sse41(body, count, out, capacity);
#endif
    (void)kernel;
    return decode_portable(body, count, out, capacity);
}
