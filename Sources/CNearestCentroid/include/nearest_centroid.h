#ifndef FEDSEG_NEAREST_CENTROID_H
#define FEDSEG_NEAREST_CENTROID_H

#include <stddef.h>
#include <stdint.h>

// The K-means assignment pass, fused: for each row of X, the products with every centroid, the
// nearest centroid and (optionally) the row's addition to its cluster's Double sum, while the row
// is in L1. X is read where it lies (no packed copy of it, unlike a library GEMM), so at small k
// the pass costs little more than its multiply-adds and one read of X.
//
// Centroids are packed once per step into blocks of FEDSEG_CENTROID_BLOCK: block b holds centroids
// b*16 .. b*16+15, dimension-major (for each t, the 16 centroids' t-th coordinates), so one vector
// load gives 16 centroids' coordinate t. Padding centroids are zero with norm +inf: never nearest.

#define FEDSEG_CENTROID_BLOCK 16

// x86-64 only; elsewhere FedSeg uses its GEMM path.
typedef enum {
    // AVX2 and FMA (Haswell and later, Zen).
    FEDSEG_NEAREST_AVX2 = 1,
    // AVX-512F (Skylake-SP and later, Zen 4 and later).
    FEDSEG_NEAREST_AVX512 = 2,
    // AVX-512's tile shape with AVX2 instructions, for tests of that tile logic on AVX2 CPUs.
    FEDSEG_NEAREST_AVX2_WIDE_TILE = 3,
} fedseg_nearest_level;

// Number of blocks for k centroids.
size_t fedseg_centroid_blocks(size_t k);

// Packs k x d row-major centroids into blocks * d * 16 floats, and their squared norms (given,
// k of them) into blocks * 16 floats with +inf padding.
void fedseg_pack_centroids(const float *centroids, size_t k, size_t d, const float *norms,
                           float *packed, float *packed_norms);

// For rows 0..<rows of x (row stride d): labels[r] = argmin_j (norm_j - 2 x_r . c_j), ties to the
// lowest j; best[r] = that minimum; row_norms[r] = |x_r|^2 (Float). When sums is not NULL:
// - centroids NULL: each row with |x_r|^2 <= sum_threshold is added, in Double, to
//   sums[labels[r] * d ...]; rows above it are left to the caller (the exact clipping rule);
// - centroids given (k x d row-major, the same as packed): every row's offset x_r - c_label is
//   added, in Double, scaled by FedSeg's clipping rule when centred_clip > 0 (factor
//   centred_clip_target / |offset| where |offset|^2 > centred_clip^2, the norm in Double).
// The caller checks that the CPU runs `level`.
void fedseg_nearest_centroid_pass(fedseg_nearest_level level, const float *x, size_t rows, size_t d,
                                  const float *packed, const float *packed_norms, size_t blocks,
                                  int32_t *labels, float *best, float *row_norms,
                                  double *sums, float sum_threshold,
                                  const float *centroids, double centred_clip, double centred_clip_target);

#endif
