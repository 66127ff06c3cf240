#include "nearest_centroid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#define FEDSEG_X86 1
#else
#define FEDSEG_X86 0
#endif

#define BLOCK FEDSEG_CENTROID_BLOCK

size_t fedseg_centroid_blocks(size_t k) { return (k + BLOCK - 1) / BLOCK; }

void fedseg_pack_centroids(const float *centroids, size_t k, size_t d, const float *norms,
                           float *packed, float *packed_norms) {
    size_t blocks = fedseg_centroid_blocks(k);
    for (size_t b = 0; b < blocks; b++) {
        float *block = packed + b * d * BLOCK;
        for (size_t lane = 0; lane < BLOCK; lane++) {
            size_t j = b * BLOCK + lane;
            if (j < k) {
                const float *c = centroids + j * d;
                for (size_t t = 0; t < d; t++) block[t * BLOCK + lane] = c[t];
                packed_norms[j] = norms[j];
            } else {
                for (size_t t = 0; t < d; t++) block[t * BLOCK + lane] = 0;
                packed_norms[j] = INFINITY;
            }
        }
    }
}

// The nearest of one row's 16 per-lane winners: lowest distance, then lowest index. Each lane
// already holds the lowest index among its own ties (blocks are visited in increasing order and
// only a strictly lower distance replaces a lane's winner).
static inline void reduce_lanes(const float *values, const int32_t *indices, int32_t *label, float *best) {
    float m = values[0];
    int32_t mi = indices[0];
    for (int l = 1; l < BLOCK; l++) {
        if (values[l] < m || (values[l] == m && indices[l] < mi)) {
            m = values[l];
            mi = indices[l];
        }
    }
    *label = mi;
    *best = m;
}

#if FEDSEG_X86
typedef float v16f __attribute__((ext_vector_type(16)));
typedef int32_t v16i __attribute__((ext_vector_type(16)));
typedef float v8f __attribute__((ext_vector_type(8)));
typedef double v8d __attribute__((ext_vector_type(8)));

// Macros, not functions: a function returning a 64-byte vector has a different ABI with and
// without AVX-512, so it could not be shared by the kernels.
#define LOAD(vector, pointer) memcpy(&(vector), (pointer), sizeof(vector))
#define STORE(pointer, vector) memcpy((pointer), &(vector), sizeof(vector))
#define LANE_NUMBERS ((v16i){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})

#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define KERNEL_SUFFIX avx2
#define KERNEL_ROWS 6
#define KERNEL_BLOCKS 1
#include "nearest_centroid_kernel.inc"

// AVX-512's tile shape with AVX2's instructions: not fast (its accumulators spill), but it runs
// the AVX-512 kernel's tile logic (two blocks per step, an odd last block) on any AVX2 CPU, so
// tests check that logic where no AVX-512 CPU is at hand.
#define KERNEL_SUFFIX avx2_wide
#define KERNEL_ROWS 8
#define KERNEL_BLOCKS 2
#include "nearest_centroid_kernel.inc"
#pragma clang attribute pop

#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#define KERNEL_SUFFIX avx512
#define KERNEL_ROWS 8
#define KERNEL_BLOCKS 2
#include "nearest_centroid_kernel.inc"
#pragma clang attribute pop
#endif

void fedseg_nearest_centroid_pass(fedseg_nearest_level level, const float *x, size_t rows, size_t d,
                                  const float *packed, const float *packed_norms, size_t blocks,
                                  int32_t *labels, float *best, float *row_norms,
                                  double *sums, float sum_threshold,
                                  const float *centroids, double centred_clip, double centred_clip_target) {
#if FEDSEG_X86
    switch (level) {
    case FEDSEG_NEAREST_AVX512:
        pass_avx512(x, rows, d, packed, packed_norms, blocks, labels, best, row_norms, sums, sum_threshold, centroids, centred_clip, centred_clip_target);
        return;
    case FEDSEG_NEAREST_AVX2:
        pass_avx2(x, rows, d, packed, packed_norms, blocks, labels, best, row_norms, sums, sum_threshold, centroids, centred_clip, centred_clip_target);
        return;
    case FEDSEG_NEAREST_AVX2_WIDE_TILE:
        pass_avx2_wide(x, rows, d, packed, packed_norms, blocks, labels, best, row_norms, sums, sum_threshold, centroids, centred_clip, centred_clip_target);
        return;
    }
#endif
    // No kernel for this level on this architecture: FedSeg uses its GEMM path there instead.
    (void)level; (void)x; (void)rows; (void)d; (void)packed; (void)packed_norms; (void)blocks;
    (void)labels; (void)best; (void)row_norms; (void)sums; (void)sum_threshold;
    (void)centroids; (void)centred_clip; (void)centred_clip_target;
    abort();
}
