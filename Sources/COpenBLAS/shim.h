#ifndef FEDSEG_COPENBLAS_SHIM_H
#define FEDSEG_COPENBLAS_SHIM_H

// pkg-config `openblas` points at OpenBLAS's own cblas.h (with openblas_get_corename and friends),
// not Debian's generic `blas`/`cblas` alternatives.
#include <cblas.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

// Raw CPUID for kernel selection. Returns 0 where the leaf does not exist or the CPU is not x86;
// the decision itself is made in Swift from these registers so it can be unit-tested.
static inline int fedseg_cpuid(uint32_t leaf, uint32_t subleaf,
                               uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned int a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(leaf, subleaf, &a, &b, &c, &d)) {
        return 0;
    }
    *eax = a; *ebx = b; *ecx = c; *edx = d;
    return 1;
#else
    (void)leaf; (void)subleaf;
    *eax = *ebx = *ecx = *edx = 0;
    return 0;
#endif
}

// XCR0 says which register states the OS saves; a CPU flag alone does not make AVX usable.
// Only call after CPUID.1:ECX.OSXSAVE was seen set.
static inline uint64_t fedseg_xgetbv0(void) {
#if defined(__x86_64__) || defined(__i386__)
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
#else
    return 0;
#endif
}

#endif
