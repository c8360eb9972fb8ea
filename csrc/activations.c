/* Element-wise activations and inverted dropout. Each kernel is a serial
 * chunk function (compiled per SIMD target) run on blocks by an OpenMP team. */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ULL

static inline uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t fastfc_splitmix64(uint64_t seed, uint64_t i) {
    return splitmix64_mix(seed + (i + 1) * SPLITMIX_GAMMA);
}

/* Elements whose 53-bit draw is below this are dropped: ceil(p * 2^53). */
static uint64_t dropout_threshold(double p) {
    return (uint64_t)ceil(p * 9007199254740992.0);
}

#define FASTFC_TEMPLATE "activations.c"
#include "instantiate.h"
#else

/* NaN < 0 is false, so ReLU(NaN) = NaN. */
FASTFC_CLONES static void SFX(relu_forward_chunk)(const REAL *restrict x, REAL *restrict out,
                                                  int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = x[i] < 0 ? (REAL)0 : x[i];
}

void SFX(relu_forward)(const REAL *x, REAL *out, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(relu_forward_chunk)(x + lo, out + lo, hi - lo));
}

FASTFC_CLONES static void SFX(relu_backward_chunk)(const REAL *restrict dout,
                                                   const REAL *restrict x, REAL *restrict dx,
                                                   int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dout[i] : (REAL)0;
}

void SFX(relu_backward)(const REAL *dout, const REAL *x, REAL *dx, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(relu_backward_chunk)(dout + lo, x + lo, dx + lo, hi - lo));
}

/* exp of a non-positive argument only, so neither branch overflows. */
static void SFX(sigmoid_forward_chunk)(const REAL *restrict x, REAL *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        REAL e = R_EXP(-R_FABS(x[i]));
        out[i] = x[i] >= 0 ? (REAL)1 / ((REAL)1 + e) : e / ((REAL)1 + e);
    }
}

void SFX(sigmoid_forward)(const REAL *x, REAL *out, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD / 8, lo, hi,
                           SFX(sigmoid_forward_chunk)(x + lo, out + lo, hi - lo));
}

FASTFC_CLONES static void SFX(sigmoid_backward_chunk)(const REAL *restrict dout,
                                                      const REAL *restrict out,
                                                      REAL *restrict dx, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = dout[i] * out[i] * ((REAL)1 - out[i]);
}

void SFX(sigmoid_backward)(const REAL *dout, const REAL *out, REAL *dx, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(sigmoid_backward_chunk)(dout + lo, out + lo, dx + lo, hi - lo));
}

static void SFX(tanh_forward_chunk)(const REAL *restrict x, REAL *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = R_TANH(x[i]);
}

void SFX(tanh_forward)(const REAL *x, REAL *out, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD / 8, lo, hi,
                           SFX(tanh_forward_chunk)(x + lo, out + lo, hi - lo));
}

FASTFC_CLONES static void SFX(tanh_backward_chunk)(const REAL *restrict dout,
                                                   const REAL *restrict out, REAL *restrict dx,
                                                   int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = dout[i] * ((REAL)1 - out[i] * out[i]);
}

void SFX(tanh_backward)(const REAL *dout, const REAL *out, REAL *dx, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(tanh_backward_chunk)(dout + lo, out + lo, dx + lo, hi - lo));
}

/* Elements [lo, lo + n) of the whole array: the draw depends on the global
 * index only, never on how the array was split among threads. */
FASTFC_CLONES static void SFX(dropout_chunk)(const REAL *restrict in, REAL *restrict out,
                                             int64_t lo, int64_t n, uint64_t threshold,
                                             REAL scale, uint64_t seed) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = splitmix64_mix(seed + ((uint64_t)(lo + i) + 1) * SPLITMIX_GAMMA);
        out[i] = (z >> 11) >= threshold ? in[i] * scale : (REAL)0;
    }
}

void SFX(dropout_apply)(const REAL *in, REAL *out, int64_t n, double p, uint64_t seed,
                        int n_threads) {
    uint64_t threshold = dropout_threshold(p);
    REAL scale = (REAL)(1.0 / (1.0 - p));
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD / 4, lo, hi,
                           SFX(dropout_chunk)(in + lo, out + lo, lo, hi - lo, threshold, scale,
                                              seed));
}

#endif
