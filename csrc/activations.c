/* Element-wise activations and inverted dropout. Each kernel is a serial
 * chunk function (compiled per SIMD target) run on blocks by an OpenMP team.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; the last 2 once; every other function here is static):
 *   fastfc_relu_forward_f32, fastfc_relu_forward_f64
 *   fastfc_relu_backward_f32, fastfc_relu_backward_f64
 *   fastfc_sigmoid_forward_f32, fastfc_sigmoid_forward_f64
 *   fastfc_sigmoid_backward_f32, fastfc_sigmoid_backward_f64
 *   fastfc_tanh_forward_f32, fastfc_tanh_forward_f64
 *   fastfc_tanh_backward_f32, fastfc_tanh_backward_f64
 *   fastfc_dropout_apply_f32, fastfc_dropout_apply_f64
 *   fastfc_dropout_key
 *   fastfc_dropout_bits */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

uint64_t fastfc_dropout_key(uint64_t seed) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL; /* splitmix64's first output */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

uint32_t fastfc_dropout_bits(uint64_t key, uint64_t i) {
    uint32_t h = fmix32((uint32_t)i ^ (uint32_t)key);
    return fmix32(h ^ ((uint32_t)(i >> 32) + (uint32_t)(key >> 32)));
}

/* Elements whose 32-bit draw is below this are dropped. */
static uint32_t dropout_threshold(double p) {
    double t = ceil(p * 4294967296.0);
    return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
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

void SFX(fastfc_relu_forward)(const REAL *x, REAL *out, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(relu_forward_chunk)(x + lo, out + lo, hi - lo));
}

FASTFC_CLONES static void SFX(relu_backward_chunk)(const REAL *restrict dout,
                                                   const REAL *restrict x, REAL *restrict dx,
                                                   int64_t n) {
    /* dout[i] read whatever the sign, so the select is a blend: a conditional
     * load keeps GCC from vectorizing without AVX-512's masked loads. */
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = dout[i];
        dx[i] = x[i] > 0 ? g : (REAL)0;
    }
}

void SFX(fastfc_relu_backward)(const REAL *dout, const REAL *x, REAL *dx, int64_t n,
                               int n_threads) {
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

void SFX(fastfc_sigmoid_forward)(const REAL *x, REAL *out, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD / 8, lo, hi,
                           SFX(sigmoid_forward_chunk)(x + lo, out + lo, hi - lo));
}

FASTFC_CLONES static void SFX(sigmoid_backward_chunk)(const REAL *restrict dout,
                                                      const REAL *restrict out,
                                                      REAL *restrict dx, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = dout[i] * out[i] * ((REAL)1 - out[i]);
}

void SFX(fastfc_sigmoid_backward)(const REAL *dout, const REAL *out, REAL *dx, int64_t n,
                                  int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(sigmoid_backward_chunk)(dout + lo, out + lo, dx + lo, hi - lo));
}

static void SFX(tanh_forward_chunk)(const REAL *restrict x, REAL *restrict out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = R_TANH(x[i]);
}

void SFX(fastfc_tanh_forward)(const REAL *x, REAL *out, int64_t n, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD / 8, lo, hi,
                           SFX(tanh_forward_chunk)(x + lo, out + lo, hi - lo));
}

FASTFC_CLONES static void SFX(tanh_backward_chunk)(const REAL *restrict dout,
                                                   const REAL *restrict out, REAL *restrict dx,
                                                   int64_t n) {
    /* (1 - t)(1 + t), not 1 - t*t: near saturation 1 - t is exact while t*t
     * rounds away the answer, and with no multiply-add to contract the
     * result is the same whether or not the CPU has FMA. */
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = dout[i] * (((REAL)1 - out[i]) * ((REAL)1 + out[i]));
}

void SFX(fastfc_tanh_backward)(const REAL *dout, const REAL *out, REAL *dx, int64_t n,
                               int n_threads) {
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD, lo, hi,
                           SFX(tanh_backward_chunk)(dout + lo, out + lo, dx + lo, hi - lo));
}

/* Elements [lo, lo + n) of the whole array: the draw depends on the global
 * index only, never on how the array was split among threads. Within a
 * block the high word of the index is constant, so only the low word varies
 * in the SIMD loop (blocks never straddle a multiple of 2^32). */
FASTFC_CLONES static void SFX(dropout_chunk)(const REAL *restrict in, REAL *restrict out,
                                             int64_t lo, int64_t n, uint32_t threshold,
                                             REAL scale, uint64_t key) {
    const uint32_t high = (uint32_t)((uint64_t)lo >> 32) + (uint32_t)(key >> 32);
    const uint32_t low0 = (uint32_t)lo, key_lo = (uint32_t)key;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t h = fmix32(fmix32((low0 + (uint32_t)i) ^ key_lo) ^ high);
        REAL kept = in[i] * scale;
        out[i] = h >= threshold ? kept : (REAL)0;
    }
}

/* in[0, n), out[0, n): elements [first, first + n) of the whole array, split
 * at multiples of 2^32 so each piece has one high word. */
static void SFX(dropout_range)(const REAL *in, REAL *out, int64_t first, int64_t n,
                               uint32_t threshold, REAL scale, uint64_t key) {
    const int64_t span = (int64_t)1 << 32;
    for (int64_t done = 0; done < n;) {
        int64_t at = first + done, piece = span - at % span; /* to the next multiple */
        if (piece > n - done) piece = n - done;
        SFX(dropout_chunk)(in + done, out + done, at, piece, threshold, scale, key);
        done += piece;
    }
}

void SFX(fastfc_dropout_apply)(const REAL *in, REAL *out, int64_t first, int64_t n, double p,
                               uint64_t seed, int n_threads) {
    uint32_t threshold = dropout_threshold(p);
    REAL scale = (REAL)(1.0 / (1.0 - p));
    uint64_t key = fastfc_dropout_key(seed);
    FASTFC_PARALLEL_BLOCKS(n, n_threads, FASTFC_MIN_PER_THREAD / 4, lo, hi,
                           SFX(dropout_range)(in + lo, out + lo, first + lo, hi - lo, threshold,
                                              scale, key));
}

#endif
