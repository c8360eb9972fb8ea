/* Affine (fully-connected) layer, optionally fused with ReLU.
 * The GEMMs go through gemm.c (the BLAS, or fastfc's packed GEMM where it
 * wins); everything around them (bias, ReLU, bias gradient) is fused into
 * passes made while the data is still in cache, or, on the packed GEMM,
 * into the forward's store.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_affine_forward_f32, fastfc_affine_forward_f64
 *   fastfc_affine_backward_f32, fastfc_affine_backward_f64 */
#ifndef REAL
#include <stdlib.h>
#include "fastfc.h"
#include "internal.h"

#define FASTFC_TEMPLATE "affine.c"
#include "instantiate.h"
#else

/* out rows [lo, hi) = b, each row (out: (n_batch, d_out), b: (d_out)). */
static void SFX(fill_bias_rows)(const REAL *b, REAL *out, int64_t lo, int64_t hi, int64_t d_out) {
    for (int64_t i = lo; i < hi; i++) {
        REAL *restrict row = out + i * d_out;
#pragma omp simd
        for (int64_t j = 0; j < d_out; j++) row[j] = b[j];
    }
}

/* a[0:n] = max(a, 0), NaN kept (as relu_forward). */
static void SFX(relu_in_place)(REAL *restrict a, int64_t n) {
#pragma omp simd
    for (int64_t t = 0; t < n; t++) a[t] = a[t] < 0 ? (REAL)0 : a[t];
}

/* out rows [lo, hi): bias, then GEMM with beta = 1, then ReLU, block by block. */
static void SFX(affine_rows)(const REAL *x, const REAL *w, const REAL *b, REAL *out,
                             int64_t lo, int64_t hi, int64_t d_in, int64_t d_out, int relu,
                             const fastfc_blas *blas) {
    if (hi <= lo) return;
    SFX(fill_bias_rows)(b, out, lo, hi, d_out);
    fastfc_gemm_real(blas, 1, 'N', 'N', hi - lo, d_out, d_in, (REAL)1, x + lo * d_in, d_in, w,
                     d_out, (REAL)1, out + lo * d_out, d_out);
    if (relu) SFX(relu_in_place)(out + lo * d_out, (hi - lo) * d_out);
}

/* A batch too short to give each thread a full row piece (under 48 rows)
 * and a long d_in (a first layer at batch 64: 64 x 784 -> 100): the BLAS
 * runs 32-row pieces at 67 GFLOP/s here and the whole 64 rows over half of
 * K at 81 (benchmarks/README.md), so the threads split K instead. Thread t
 * multiplies its block of x's columns by the same rows of w, thread 0 over
 * the bias in out, the others into partial ((nt - 1) x n_batch x d_out);
 * then each thread adds the partial products to its block of out in thread
 * order (the same sums for a thread count) and applies ReLU there. Returns
 * -1 without touching out when partial cannot be allocated. */
static int SFX(affine_forward_split_k)(const REAL *x, const REAL *w, const REAL *b, REAL *out,
                                       int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                                       const fastfc_blas *blas, int nt) {
    const int64_t size = n_batch * d_out;
    REAL *partial = malloc((size_t)(nt - 1) * (size_t)size * sizeof(REAL));
    if (!partial) return -1;
#pragma omp parallel num_threads(nt)
    {
        const int team = FASTFC_TEAM_SIZE(), t = FASTFC_THREAD_ID();
        int64_t k0, k1;
        fastfc_block(d_in, team, t, FASTFC_GEMM_ROW_ALIGN, &k0, &k1);
        REAL *dst = t == 0 ? out : partial + (t - 1) * size;
        if (t == 0) SFX(fill_bias_rows)(b, out, 0, n_batch, d_out);
        if (k1 > k0)
            fastfc_gemm_real(blas, 1, 'N', 'N', n_batch, d_out, k1 - k0, (REAL)1, x + k0, d_in,
                             w + k0 * d_out, d_out, t == 0 ? (REAL)1 : (REAL)0, dst, d_out);
        else if (t > 0)
            memset(dst, 0, (size_t)size * sizeof(REAL));
#pragma omp barrier
        int64_t lo, hi;
        fastfc_block(size, team, t, 16, &lo, &hi);
        for (int64_t p = 0; p < team - 1; p++) {
            const REAL *restrict add = partial + p * size;
            REAL *restrict sum = out;
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) sum[i] += add[i];
        }
        if (relu && hi > lo) SFX(relu_in_place)(out + lo, hi - lo);
    }
    free(partial);
    return 0;
}

void SFX(fastfc_affine_forward)(const REAL *x, const REAL *w, const REAL *b, REAL *out,
                                int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                                const fastfc_blas *blas, int n_threads) {
    int nt = fastfc_team(n_threads, 2 * n_batch * d_in * d_out, FASTFC_GEMM_MIN_FLOPS_PER_THREAD);
    if (nt > n_batch / 8) nt = n_batch / 8 > 1 ? (int)(n_batch / 8) : 1;
    /* Threads split K where each gets at least 256 of it and either the batch
     * is too short to give each 48 rows or w outweighs the output (more rows
     * d_in than the batch): each thread then reads only its rows of w, the
     * rows of dw it computes in the backward and updates in the optimizer
     * step, where a split by batch rows made both cores read all of w and
     * the optimizer step after it pull w back across (784 -> 100 at batch
     * 64: Adam 20 us slower). */
    const int split_k = nt > 1 && d_in >= 256 * (int64_t)nt && (n_batch / nt < 48 || d_in >= n_batch);
    /* On the unpacked GEMM and on the packed one the bias and ReLU are the
     * store's epilogue. */
    if (!split_k && fastfc_unpacked_gemm_wins(sizeof(REAL), 'N', 'N', d_out, d_in)) {
        int failed = 0;
#pragma omp parallel num_threads(nt) reduction(| : failed)
        {
            int64_t lo, hi;
            fastfc_block(n_batch, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 4, &lo, &hi);
            if (hi > lo)
                failed = SFX(fastfc_unpacked_gemm)('N', hi - lo, d_out, d_in, (REAL)1,
                                                   x + lo * d_in, d_in, w, d_out, (REAL)0,
                                                   out + lo * d_out, d_out, b, relu) != 0;
        }
        if (!failed) return;
    }
    if (fastfc_packed_gemm_wins(sizeof(REAL), 'N', (n_batch + nt - 1) / nt, d_out, d_in)
        && SFX(fastfc_packed_gemm)(nt, 'N', 'N', n_batch, d_out, d_in, (REAL)1, x, d_in, w, d_out,
                                   (REAL)0, out, d_out, b, relu) == 0)
        return;
    if (split_k && SFX(affine_forward_split_k)(x, w, b, out, n_batch, d_in, d_out, relu, blas, nt) == 0)
        return;
    /* Each thread owns a block of batch rows: its bias fill, its single-threaded
     * GEMM and its ReLU touch the same rows, which stay in its cache. */
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        fastfc_block(n_batch, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 4, &lo, &hi);
        SFX(affine_rows)(x, w, b, out, lo, hi, d_in, d_out, relu, blas);
    }
}

/* Columns [j0, j1) of the bias gradient; with relu_out, also the masked
 * gradient dh, in the same pass over dout. Columns go in strips of
 * BIAS_STRIP whose sums stay in registers down all the rows: summing into
 * db row after row made every row's add wait on the previous row's store,
 * and on some buffer placements on the stores to dh (3-5x slower, measured
 * at 64 x 100). Sums run over rows in order, so the result does not depend
 * on the thread count. */
#define BIAS_STRIP 32
FASTFC_CLONES static void SFX(bias_grad_cols)(const REAL *dout, const REAL *relu_out, REAL *dh, REAL *db,
                                int64_t n_batch, int64_t d_out, int64_t j0, int64_t j1) {
    for (int64_t js = j0; js < j1; js += BIAS_STRIP) {
        int64_t w = j1 - js < BIAS_STRIP ? j1 - js : BIAS_STRIP;
        REAL acc[BIAS_STRIP] = {0};
        for (int64_t i = 0; i < n_batch; i++) {
            const REAL *restrict g = dout + i * d_out + js;
            if (relu_out) {
                const REAL *restrict r = relu_out + i * d_out + js;
                REAL *restrict h = dh + i * d_out + js;
                if (w == BIAS_STRIP) { /* a constant trip count: acc lives in registers */
#pragma omp simd
                    for (int64_t j = 0; j < BIAS_STRIP; j++) {
                        /* g[j] loaded unconditionally so that GCC turns the select
                         * into a blend and vectorizes (a conditional load blocks it). */
                        REAL v = r[j] > 0 ? g[j] : (REAL)0;
                        h[j] = v;
                        acc[j] += v;
                    }
                } else {
                    for (int64_t j = 0; j < w; j++) {
                        REAL v = r[j] > 0 ? g[j] : (REAL)0;
                        h[j] = v;
                        acc[j] += v;
                    }
                }
            } else if (w == BIAS_STRIP) {
#pragma omp simd
                for (int64_t j = 0; j < BIAS_STRIP; j++) acc[j] += g[j];
            } else {
                for (int64_t j = 0; j < w; j++) acc[j] += g[j];
            }
        }
        for (int64_t j = 0; j < w; j++) db[js + j] = acc[j];
    }
}

void SFX(fastfc_affine_backward)(const REAL *dout, const REAL *x, const REAL *w,
                                 const REAL *relu_out, REAL *dh, REAL *dx, REAL *dw, REAL *db,
                                 int64_t n_batch, int64_t d_in, int64_t d_out,
                                 const fastfc_blas *blas, int n_threads) {
    FASTFC_PARALLEL_BLOCKS(d_out, n_threads > d_out / 16 ? (int)(d_out / 16 + 1) : n_threads,
                           FASTFC_MIN_PER_THREAD / (n_batch > 0 ? n_batch : 1) + 1, j0, j1,
                           SFX(bias_grad_cols)(dout, relu_out, dh, db, n_batch, d_out, j0, j1));
    const REAL *g = relu_out ? dh : dout; /* (n_batch, d_out) */
    /* dw = x^T g: (d_in, n_batch) @ (n_batch, d_out) */
    fastfc_gemm_real(blas, n_threads, 'T', 'N', d_in, d_out, n_batch, (REAL)1, x, d_in, g, d_out,
                     (REAL)0, dw, d_out);
    /* dx = g w^T: (n_batch, d_out) @ (d_out, d_in), the threads over dx's
     * columns: each reads the rows of w its core holds (see the forward). */
    if (dx) {
        int nt = fastfc_team(n_threads, 2 * n_batch * d_in * d_out, FASTFC_GEMM_MIN_FLOPS_PER_THREAD);
#pragma omp parallel num_threads(nt)
        {
            int64_t lo, hi;
            fastfc_block(d_in, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), FASTFC_GEMM_ROW_ALIGN, &lo, &hi);
            if (hi > lo)
                fastfc_gemm_real(blas, 1, 'N', 'T', n_batch, hi - lo, d_out, (REAL)1, g, d_out,
                                 w + lo * d_out, d_out, (REAL)0, dx + lo, d_in);
        }
    }
}

#endif
