/* Row-major GEMM, threaded by fastfc itself: over the column-major BLAS, or
 * over one of fastfc's own kernels where that is faster (the training shapes'
 * one-thread pieces, measured in benchmarks/gemm_shapes.py): the unpacked
 * AVX-512 GEMM, else the packed GEMM.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_gemm_f32, fastfc_gemm_f64
 *   fastfc_packed_gemm_f32, fastfc_packed_gemm_f64
 *   fastfc_unpacked_gemm_f32, fastfc_unpacked_gemm_f64 */
#ifndef REAL
#include <math.h>
#include <stdlib.h>
#include "fastfc.h"
#include "internal.h"

/* The packed GEMM's blocking (BLIS's names): a register tile of GEMM_MR rows
 * by two vectors of columns, K in blocks of GEMM_KC (a packed panel of B
 * stays in L1 across a tile's rows), rows in blocks of GEMM_MC and columns
 * in blocks of GEMM_NC (the packed A block in L2, the packed B block in L2/L3).
 * Vectors are 32 bytes, GCC's generic vectors: AVX2 + FMA registers in the
 * x86-64-v3 clone, two SSE registers in the baseline clone (correct anywhere,
 * used by fastfc_gemm only where fastfc_packed_gemm_wins says; no 64-byte AVX-512
 * microkernel: no machine here to test one on). */
#define GEMM_MR 6
#define GEMM_VEC_BYTES 32
#define GEMM_KC 256
#define GEMM_MC 120
#define GEMM_NC 1024

/* The unpacked GEMM (AVX-512): B is read where it lies, row by row, and a
 * register tile holds UNPACKED_MR(nv) rows of C by nv vectors of 64 bytes
 * (up to UNPACKED_PANEL_VECS), the last vector half wide (32 bytes) where the
 * columns' tail fits in it (Zen 4 runs a 32-byte FMA in half a 64-byte one's
 * time). The accumulators, one B row's vectors and a broadcast fit the 32
 * zmm registers (4 x 6: 24 + 6 + 1; with 7 vectors GCC ran out and re-read B
 * for every row's FMA, 30% slower). No packing: B's rows of a panel are
 * contiguous in memory, and K in blocks of UNPACKED_KC keeps a block of B in
 * L1/L2 across the tiles of all rows. */
#define UNPACKED_KC 128
#define UNPACKED_PANEL_VECS 6
#define UNPACKED_MR(nv) ((nv) == 1 ? 12 : (nv) <= 3 ? 8 : (nv) == 4 ? 6 : (nv) == 5 ? 5 : 4)

#if FASTFC_HAVE_AVX512_GEMM
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512vl,fma"), always_inline)) inline
/* Per float type, the vector operations the template below names by SFX:
 * z* on 64-byte vectors, h* on 32-byte ones; *_tail on the first n lanes;
 * max0 is max(0, v) with NaN kept (MAXPS returns its second operand on NaN)
 * and -0 kept, as relu_forward. + and * are GCC's vector operators. */
typedef __m512 zvec_f32;
typedef __m256 hvec_f32;
typedef __m512d zvec_f64;
typedef __m256d hvec_f64;
static AVX512 __m512 zzero_f32(void) { return _mm512_setzero_ps(); }
static AVX512 __m512 zset1_f32(float x) { return _mm512_set1_ps(x); }
static AVX512 __m512 zload_f32(const float *p) { return _mm512_loadu_ps(p); }
static AVX512 __m512 zload_tail_f32(const float *p, int n) { return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p); }
static AVX512 __m512 zfma_f32(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
static AVX512 void zstore_tail_f32(float *p, __m512 v, int n) { _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), v); }
static AVX512 __m512 zmax0_f32(__m512 v) { return _mm512_max_ps(_mm512_setzero_ps(), v); } /* NaN kept */
static AVX512 __m256 hset1_f32(float x) { return _mm256_set1_ps(x); }
static AVX512 __m256 hmax0_f32(__m256 v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
static AVX512 __m256 hzero_f32(void) { return _mm256_setzero_ps(); }
static AVX512 __m256 hload_tail_f32(const float *p, int n) { return _mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), p); }
static AVX512 __m256 hfma_f32(__m512 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(_mm512_castps512_ps256(a), b, c); }
static AVX512 void hstore_tail_f32(float *p, __m256 v, int n) { _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), v); }
static AVX512 __m512d zzero_f64(void) { return _mm512_setzero_pd(); }
static AVX512 __m512d zset1_f64(double x) { return _mm512_set1_pd(x); }
static AVX512 __m512d zload_f64(const double *p) { return _mm512_loadu_pd(p); }
static AVX512 __m512d zload_tail_f64(const double *p, int n) { return _mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), p); }
static AVX512 __m512d zfma_f64(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
static AVX512 void zstore_tail_f64(double *p, __m512d v, int n) { _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), v); }
static AVX512 __m512d zmax0_f64(__m512d v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
static AVX512 __m256d hset1_f64(double x) { return _mm256_set1_pd(x); }
static AVX512 __m256d hmax0_f64(__m256d v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
static AVX512 __m256d hzero_f64(void) { return _mm256_setzero_pd(); }
static AVX512 __m256d hload_tail_f64(const double *p, int n) { return _mm256_maskz_loadu_pd((__mmask8)((1u << n) - 1), p); }
static AVX512 __m256d hfma_f64(__m512d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(_mm512_castpd512_pd256(a), b, c); }
static AVX512 void hstore_tail_f64(double *p, __m256d v, int n) { _mm256_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), v); }
#endif

#define FASTFC_TEMPLATE "gemm.c"
#include "instantiate.h"
#else

/* ---- fastfc's packed GEMM ------------------------------------------------ */

#define VL (GEMM_VEC_BYTES / (int)sizeof(REAL)) /* REALs per vector */
#define NR (2 * VL)                             /* columns of a register tile */
typedef REAL SFX(vec) __attribute__((vector_size(GEMM_VEC_BYTES)));

/* Packs op(A)[i0:i0+mc, p0:p0+kc] into panels of GEMM_MR rows, each stored
 * K-major (ap[p * MR + r]); rows past mc are zeros. */
static inline void SFX(pack_a)(const REAL *a, char trans_a, int64_t lda, int64_t i0, int64_t p0,
                               int64_t mc, int64_t kc, REAL *restrict ap) {
    for (int64_t ir = 0; ir < mc; ir += GEMM_MR, ap += GEMM_MR * kc) {
        int64_t rows = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
        if (trans_a == 'N') { /* A's rows are op(A)'s: read each along K */
            for (int64_t r = 0; r < rows; r++) {
                const REAL *src = a + (i0 + ir + r) * lda + p0;
                for (int64_t p = 0; p < kc; p++) ap[p * GEMM_MR + r] = src[p];
            }
        } else {
            for (int64_t p = 0; p < kc; p++)
                for (int64_t r = 0; r < rows; r++) ap[p * GEMM_MR + r] = a[(p0 + p) * lda + i0 + ir + r];
        }
        for (int64_t p = 0; p < kc; p++)
            for (int64_t r = rows; r < GEMM_MR; r++) ap[p * GEMM_MR + r] = 0;
    }
}

/* Packs op(B)[p0:p0+kc, j0:j0+nc] into panels of NR columns, each stored
 * K-major (bp[p * NR + c]); columns past nc are zeros. */
static inline void SFX(pack_b)(const REAL *b, char trans_b, int64_t ldb, int64_t p0, int64_t j0,
                               int64_t kc, int64_t nc, REAL *restrict bp) {
    for (int64_t jr = 0; jr < nc; jr += NR, bp += NR * kc) {
        int64_t cols = nc - jr < NR ? nc - jr : NR;
        if (trans_b == 'N' && cols == NR) { /* the common case: a row's NR REALs in one copy */
            const REAL *src = b + p0 * ldb + j0 + jr;
            for (int64_t p = 0; p < kc; p++) memcpy(bp + p * NR, src + p * ldb, NR * sizeof(REAL));
            continue;
        }
        if (trans_b == 'N') {
            for (int64_t p = 0; p < kc; p++) {
                const REAL *src = b + (p0 + p) * ldb + j0 + jr;
                for (int64_t c = 0; c < cols; c++) bp[p * NR + c] = src[c];
            }
        } else { /* B's rows are op(B)'s columns: read each along K */
            for (int64_t c = 0; c < cols; c++) {
                const REAL *src = b + (j0 + jr + c) * ldb + p0;
                for (int64_t p = 0; p < kc; p++) bp[p * NR + c] = src[p];
            }
        }
        for (int64_t p = 0; p < kc; p++)
            for (int64_t c = cols; c < NR; c++) bp[p * NR + c] = 0;
    }
}

/* The register tile: C[0:rows, 0:cols] = alpha * ap (MR x kc panel) @ bp
 * (kc x NR panel) + beta * C, where beta == 0 never reads C (it may hold
 * NaN), as the BLAS; then + bias[0:cols] (NULL: none) and, with relu, the
 * negative values set to 0 (NaN kept, as relu_forward). Twelve accumulators,
 * two B vectors and a broadcast fit the 16 AVX2 registers; a whole tile is
 * merged into C straight from them, a partial one through a buffer. */
static inline __attribute__((always_inline)) void SFX(micro_tile)(int64_t kc, const REAL *restrict ap,
                                                                  const REAL *restrict bp, int64_t rows,
                                                                  int64_t cols, REAL alpha, REAL beta,
                                                                  const REAL *bias, int relu,
                                                                  REAL *restrict c, int64_t ldc) {
    SFX(vec) acc[GEMM_MR][2];
    for (int r = 0; r < GEMM_MR; r++) acc[r][0] = acc[r][1] = (SFX(vec)){0};
    for (int64_t p = 0; p < kc; p++, ap += GEMM_MR, bp += NR) {
        SFX(vec) b0, b1;
        memcpy(&b0, bp, sizeof b0);
        memcpy(&b1, bp + VL, sizeof b1);
#pragma GCC unroll 6
        for (int r = 0; r < GEMM_MR; r++) {
            acc[r][0] += b0 * ap[r];
            acc[r][1] += b1 * ap[r];
        }
    }
    if (rows == GEMM_MR && cols == NR) {
        SFX(vec) bias_v[2] = {{0}, {0}};
        if (bias) memcpy(bias_v, bias, sizeof bias_v);
#pragma GCC unroll 6
        for (int r = 0; r < GEMM_MR; r++) {
            REAL *row = c + r * ldc;
            for (int h = 0; h < 2; h++) {
                SFX(vec) v = acc[r][h] * alpha;
                if (beta != 0) {
                    SFX(vec) old;
                    memcpy(&old, row + h * VL, sizeof old);
                    v += old * beta;
                }
                if (bias) v += bias_v[h];
                if (relu) {
                    __typeof__(v < v) negative = v < (SFX(vec)){0};
                    v = (SFX(vec))((__typeof__(negative))v & ~negative);
                }
                memcpy(row + h * VL, &v, sizeof v);
            }
        }
        return;
    }
    REAL tile[GEMM_MR * NR] __attribute__((aligned(64)));
    for (int r = 0; r < GEMM_MR; r++) {
        memcpy(tile + r * NR, &acc[r][0], sizeof acc[r][0]);
        memcpy(tile + r * NR + VL, &acc[r][1], sizeof acc[r][1]);
    }
    for (int64_t r = 0; r < rows; r++) {
        REAL *restrict row = c + r * ldc;
        const REAL *restrict t = tile + r * NR;
        for (int64_t j = 0; j < cols; j++) {
            REAL v = alpha * t[j];
            if (beta != 0) v += beta * row[j];
            if (bias) v += bias[j];
            row[j] = relu && v < 0 ? (REAL)0 : v;
        }
    }
}

/* Rows [i0, i1) of C against one packed block of B (K rows pc.. of kc,
 * columns jc.. of nc, in bp): A's rows packed block by block into ap, then
 * the register tiles. beta and bias belong to the product's first K block,
 * relu to its last; the blocks between add to C. */
FASTFC_FMA_CLONES static void SFX(packed_rows)(char trans_a, const REAL *a, int64_t lda, int64_t i0,
                                                int64_t i1, int64_t pc, int64_t kc, int64_t jc,
                                                int64_t nc, const REAL *bp, REAL *ap, REAL alpha,
                                                REAL beta, const REAL *bias, int relu, REAL *c,
                                                int64_t ldc) {
    for (int64_t ic = i0; ic < i1; ic += GEMM_MC) {
        int64_t mc = i1 - ic < GEMM_MC ? i1 - ic : GEMM_MC;
        SFX(pack_a)(a, trans_a, lda, ic, pc, mc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
            int64_t cols = nc - jr < NR ? nc - jr : NR;
            for (int64_t ir = 0; ir < mc; ir += GEMM_MR) {
                int64_t rows = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
                SFX(micro_tile)(kc, ap + ir * kc, bp + jr * kc, rows, cols, alpha, beta,
                                bias ? bias + jc + jr : NULL, relu, c + (ic + ir) * ldc + jc + jr, ldc);
            }
        }
    }
}

/* C = beta * C (beta == 0: C not read), + bias[N] (NULL: none), then ReLU:
 * what fastfc's GEMMs leave when K = 0 or alpha = 0, as the BLAS does. */
static void SFX(scale_with_epilogue)(int64_t m, int64_t n, REAL beta, REAL *c, int64_t ldc,
                                     const REAL *bias, int relu) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            REAL v = beta == 0 ? (REAL)0 : beta * c[i * ldc + j];
            if (bias) v += bias[j];
            c[i * ldc + j] = relu && v < 0 ? (REAL)0 : v;
        }
}

/* Row-major C[M,N] = alpha * op(A) @ op(B) + beta * C (+ bias[N], then ReLU)
 * on fastfc's packed kernel, n_threads sharing each packed block of B (its
 * panels packed by all, then each thread's rows, in register-tile
 * multiples, against it). Each element's sum runs over K in one order,
 * whatever the thread count or the rows around it. Returns 0, or -1 when
 * the packing buffers cannot be allocated (C unchanged). */
int SFX(fastfc_packed_gemm)(int n_threads, char trans_a, char trans_b, int64_t m, int64_t n, int64_t k,
                            REAL alpha, const REAL *a, int64_t lda, const REAL *b, int64_t ldb, REAL beta,
                            REAL *c, int64_t ldc, const REAL *bias, int relu) {
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == 0) { /* C = beta * C, as the BLAS, then the epilogue */
        SFX(scale_with_epilogue)(m, n, beta, c, ldc, bias, relu);
        return 0;
    }
    int nt = n_threads > 1 ? n_threads : 1;
    int64_t kc_max = k < GEMM_KC ? k : GEMM_KC, nc_max = n < GEMM_NC ? n : GEMM_NC;
    int64_t mc_max = m < GEMM_MC ? m : GEMM_MC;
    /* Each panel rounded up to 64 bytes: a vector load never splits a cache line. */
    size_t a_size = ((size_t)((mc_max + GEMM_MR - 1) / GEMM_MR * GEMM_MR * kc_max) * sizeof(REAL) + 63) / 64 * 64;
    size_t b_size = ((size_t)((nc_max + NR - 1) / NR * NR * kc_max) * sizeof(REAL) + 63) / 64 * 64;
    char *buffer = malloc(b_size + (size_t)nt * a_size + 64);
    if (!buffer) return -1;
    REAL *bp = (REAL *)(buffer + (64 - (uintptr_t)buffer % 64));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        const int team = FASTFC_TEAM_SIZE(), tid = FASTFC_THREAD_ID();
        REAL *ap = (REAL *)((char *)bp + b_size + (size_t)tid * a_size);
        int64_t lo, hi;
        fastfc_block(m, team, tid, GEMM_MR, &lo, &hi);
        for (int64_t jc = 0; jc < n; jc += GEMM_NC) {
            int64_t nc = n - jc < GEMM_NC ? n - jc : GEMM_NC;
            for (int64_t pc = 0; pc < k; pc += GEMM_KC) {
                int64_t kc = k - pc < GEMM_KC ? k - pc : GEMM_KC;
                int64_t q0, q1; /* this thread's share of B's panels */
                fastfc_block((nc + NR - 1) / NR, team, tid, 1, &q0, &q1);
                if (q1 > q0)
                    SFX(pack_b)(b, trans_b, ldb, pc, jc + q0 * NR, kc,
                                (q1 * NR < nc ? q1 * NR : nc) - q0 * NR, bp + q0 * NR * kc);
#pragma omp barrier
                SFX(packed_rows)(trans_a, a, lda, lo, hi, pc, kc, jc, nc, bp, ap, alpha,
                                 pc == 0 ? beta : (REAL)1, pc == 0 ? bias : NULL, relu && pc + kc >= k,
                                 c, ldc);
#pragma omp barrier /* before the next block of B is packed over this one */
            }
        }
    }
    free(buffer);
    return 0;
}

#undef VL
#undef NR

/* ---- fastfc's unpacked GEMM (AVX-512) ----------------------------------- */

#if FASTFC_HAVE_AVX512_GEMM
#define ZL ((int)(64 / sizeof(REAL))) /* REALs per 64-byte vector */

/* C[0:rows, 0:width] (+)= alpha * op(A)[0:rows, 0:kb] @ B[0:kb, 0:width], from
 * one register tile of MR rows by NV vectors (HALF: the last one 32 bytes).
 * first: this is the product's first K block (beta * C, or C not read at all
 * when beta == 0, then + bias); else C is added to. last: the last K block
 * (ReLU). Every element's sum runs over the block's K in order, whatever the
 * tile's place. MR, NV, HALF and TRANS_A are constants where it is inlined. */
__attribute__((target("avx512f,avx512vl,fma"), always_inline)) static inline void
SFX(unpacked_tile)(const int MR, const int NV, const int HALF, const int TRANS_A, int64_t rows,
                   int64_t width, int64_t kb, const REAL *a, int64_t lda, const REAL *b,
                   int64_t ldb, REAL alpha, REAL beta, int first, int last, const REAL *bias,
                   int relu, REAL *c, int64_t ldc) {
    const int NZ = HALF ? NV - 1 : NV;      /* 64-byte vectors */
    const int tail = (int)(width - (int64_t)ZL * (NV - 1)); /* columns in the last vector */
    SFX(zvec) acc[12][UNPACKED_PANEL_VECS];
    SFX(hvec) acc_half[12];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
#pragma GCC unroll 6
        for (int v = 0; v < NZ; v++) acc[r][v] = SFX(zzero)();
        acc_half[r] = SFX(hzero)();
    }
    /* Where op(A)'s rows start; a partial tile's missing rows repeat its last
     * one (their sums are never stored), so that no read leaves A. */
    int64_t row_at[12];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) row_at[r] = (r < rows ? r : rows - 1) * (TRANS_A ? 1 : lda);
    for (int64_t p = 0; p < kb; p++) {
        const REAL *brow = b + p * ldb;
        const REAL *ap = a + (TRANS_A ? p * lda : p);
        SFX(zvec) bz[UNPACKED_PANEL_VECS];
        SFX(hvec) bh = SFX(hzero)();
#pragma GCC unroll 6
        for (int v = 0; v < NZ; v++)
            bz[v] = v == NV - 1 ? SFX(zload_tail)(brow + ZL * v, tail) : SFX(zload)(brow + ZL * v);
        if (HALF) bh = SFX(hload_tail)(brow + ZL * (NV - 1), tail);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            SFX(zvec) ar = SFX(zset1)(ap[row_at[r]]);
#pragma GCC unroll 6
            for (int v = 0; v < NZ; v++) acc[r][v] = SFX(zfma)(ar, bz[v], acc[r][v]);
            if (HALF) acc_half[r] = SFX(hfma)(ar, bh, acc_half[r]);
        }
    }
    /* The merge into C, vector by vector (C's columns past width untouched). */
    const SFX(zvec) alpha_z = SFX(zset1)(alpha), beta_z = SFX(zset1)(beta);
    const SFX(hvec) alpha_h = SFX(hset1)(alpha), beta_h = SFX(hset1)(beta);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        if (r >= rows) break;
        REAL *crow = c + r * ldc;
#pragma GCC unroll 6
        for (int v = 0; v < NZ; v++) {
            const int lanes = v == NV - 1 ? tail : ZL;
            SFX(zvec) x = acc[r][v] * alpha_z;
            if (!first) x = x + SFX(zload_tail)(crow + ZL * v, lanes);
            else {
                if (beta != 0) x = x + beta_z * SFX(zload_tail)(crow + ZL * v, lanes);
                if (bias) x = x + SFX(zload_tail)(bias + ZL * v, lanes);
            }
            if (last && relu) x = SFX(zmax0)(x);
            SFX(zstore_tail)(crow + ZL * v, x, lanes);
        }
        if (HALF) {
            REAL *cl = crow + ZL * (NV - 1);
            SFX(hvec) x = acc_half[r] * alpha_h;
            if (!first) x = x + SFX(hload_tail)(cl, tail);
            else {
                if (beta != 0) x = x + beta_h * SFX(hload_tail)(cl, tail);
                if (bias) x = x + SFX(hload_tail)(bias + ZL * (NV - 1), tail);
            }
            if (last && relu) x = SFX(hmax0)(x);
            SFX(hstore_tail)(cl, x, tail);
        }
    }
}

/* One K block of rows [0, m) against one panel of B's columns (width <= the
 * panel's), tile after tile, NV and HALF fixed for the panel. */
#define UNPACKED_CASE(NV, HALF, TRANS_A)                                                         \
    for (int64_t i = 0; i < m; i += UNPACKED_MR(NV))                                             \
        SFX(unpacked_tile)(UNPACKED_MR(NV), NV, HALF, TRANS_A,                                   \
                           m - i < UNPACKED_MR(NV) ? m - i : UNPACKED_MR(NV), width, kb,         \
                           TRANS_A ? a + i : a + i * lda, lda, b, ldb, alpha, beta, first, last, \
                           bias, relu, c + i * ldc, ldc)
#define UNPACKED_NV(NV, TRANS_A)                                   \
    case NV:                                                       \
        if (half) UNPACKED_CASE(NV, 1, TRANS_A); else UNPACKED_CASE(NV, 0, TRANS_A); \
        break
__attribute__((target("avx512f,avx512vl,fma"), noinline)) static void
SFX(unpacked_panel)(int trans_a, int64_t m, int64_t width, int64_t kb, const REAL *a,
                    int64_t lda, const REAL *b, int64_t ldb, REAL alpha, REAL beta, int first,
                    int last, const REAL *bias, int relu, REAL *c, int64_t ldc) {
    int nv = (int)((width + ZL - 1) / ZL);
    int half = width - (int64_t)ZL * (nv - 1) <= ZL / 2;
    if (trans_a) {
        switch (nv) {
            UNPACKED_NV(1, 1); UNPACKED_NV(2, 1); UNPACKED_NV(3, 1); UNPACKED_NV(4, 1);
            UNPACKED_NV(5, 1); UNPACKED_NV(6, 1);
        }
    } else {
        switch (nv) {
            UNPACKED_NV(1, 0); UNPACKED_NV(2, 0); UNPACKED_NV(3, 0); UNPACKED_NV(4, 0);
            UNPACKED_NV(5, 0); UNPACKED_NV(6, 0);
        }
    }
}
#undef UNPACKED_NV
#undef UNPACKED_CASE
#endif

/* Row-major C[M,N] = alpha * op(A) @ B + beta * C (+ bias[N], then ReLU), B
 * untransposed, on one thread, with fastfc's unpacked AVX-512 kernel. Each
 * element's sum runs over K in one order whatever the rows or columns around
 * it, so a product split among threads by rows or columns gives the same
 * bits. beta == 0 never reads C (it may hold NaN), as the BLAS. Returns 0, or
 * -1 (C unchanged) where this CPU (or build) has no AVX-512. */
int SFX(fastfc_unpacked_gemm)(char trans_a, int64_t m, int64_t n, int64_t k, REAL alpha,
                              const REAL *a, int64_t lda, const REAL *b, int64_t ldb, REAL beta,
                              REAL *c, int64_t ldc, const REAL *bias, int relu) {
#if FASTFC_HAVE_AVX512_GEMM
    if (!fastfc_cpu_has_avx512()) return -1;
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == 0) { /* C = beta * C, as the BLAS, then the epilogue */
        SFX(scale_with_epilogue)(m, n, beta, c, ldc, bias, relu);
        return 0;
    }
    const int64_t panel = (int64_t)UNPACKED_PANEL_VECS * ZL;
    for (int64_t p0 = 0; p0 < k; p0 += UNPACKED_KC) {
        int64_t kb = k - p0 < UNPACKED_KC ? k - p0 : UNPACKED_KC;
        for (int64_t j0 = 0, width; j0 < n; j0 += width) {
            width = n - j0 < panel ? n - j0 : panel;
            /* A last panel of at most half a vector (a tile of 32-byte FMAs
             * on as many broadcasts: bound by the loads) takes half a vector
             * from the one before: 100 columns run as 88 + 12, not 96 + 4. */
            if (n - j0 > panel && n - j0 - panel <= ZL / 2) width = panel - ZL / 2;
            SFX(unpacked_panel)(trans_a == 'T', m, width, kb,
                                trans_a == 'T' ? a + p0 * lda : a + p0, lda, b + p0 * ldb + j0,
                                ldb, alpha, beta, p0 == 0, p0 + kb >= k, bias ? bias + j0 : NULL,
                                relu, c + j0, ldc);
        }
    }
    return 0;
#else
    (void)trans_a, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b;
    (void)ldb, (void)beta, (void)c, (void)ldc, (void)bias, (void)relu;
    return -1;
#endif
}

#undef ZL

/* ---- over the BLAS ------------------------------------------------------- */

/* One single-threaded product: the unpacked GEMM where the caller found it
 * wins (for the whole product, so that every piece of a split one takes the
 * same kernel), else the packed GEMM where that wins, else one BLAS call (the
 * row-major product is the column-major product of the transposes, so A and
 * B swap places). */
static void SFX(gemm_block)(const fastfc_blas *blas, int unpacked, char trans_a, char trans_b,
                            int64_t m, int64_t n, int64_t k, REAL alpha, const REAL *a,
                            int64_t lda, const REAL *b, int64_t ldb, REAL beta, REAL *c,
                            int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (unpacked && SFX(fastfc_unpacked_gemm)(trans_a, m, n, k, alpha, a, lda, b, ldb, beta, c,
                                              ldc, NULL, 0) == 0)
        return;
    if (fastfc_packed_gemm_wins(sizeof(REAL), trans_b, m, n, k)
        && SFX(fastfc_packed_gemm)(1, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                   NULL, 0) == 0)
        return; /* (-1: no memory for its panels; the BLAS needs none) */
    int im = (int)m, in = (int)n, ik = (int)k, ilda = (int)lda, ildb = (int)ldb, ildc = (int)ldc;
    blas->R_BLAS_GEMM(&trans_b, &trans_a, &in, &im, &ik, &alpha, (REAL *)b, &ildb,
                      (REAL *)a, &ilda, &beta, c, &ildc);
}

void SFX(fastfc_gemm)(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b,
                      int64_t m, int64_t n, int64_t k, REAL alpha, const REAL *a, int64_t lda,
                      const REAL *b, int64_t ldb, REAL beta, REAL *c, int64_t ldc) {
    int nt = fastfc_team(n_threads, 2 * m * n * k, FASTFC_GEMM_MIN_FLOPS_PER_THREAD);
    int unpacked = fastfc_unpacked_gemm_wins(sizeof(REAL), trans_a, trans_b, n, k);
    if (nt <= 1) {
        SFX(gemm_block)(blas, unpacked, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                        ldc);
        return;
    }
    /* Split the rows of C when there are enough of them, else its columns. */
    int split_rows = m >= n || m >= 32 * (int64_t)nt;
    /* A row split whose pieces the packed GEMM wins: its team packs B once. */
    if (!unpacked && split_rows
        && fastfc_packed_gemm_wins(sizeof(REAL), trans_b, (m + nt - 1) / nt, n, k)
        && SFX(fastfc_packed_gemm)(nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                   NULL, 0) == 0)
        return;
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        if (split_rows) {
            fastfc_block(m, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), FASTFC_GEMM_ROW_ALIGN, &lo, &hi);
            const REAL *a_blk = trans_a == 'N' ? a + lo * lda : a + lo;
            SFX(gemm_block)(blas, unpacked, trans_a, trans_b, hi - lo, n, k, alpha, a_blk, lda, b,
                            ldb, beta, c + lo * ldc, ldc);
        } else {
            fastfc_block(n, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 16, &lo, &hi);
            const REAL *b_blk = trans_b == 'N' ? b + lo : b + lo * ldb;
            SFX(gemm_block)(blas, unpacked, trans_a, trans_b, m, hi - lo, k, alpha, a, lda, b_blk,
                            ldb, beta, c + lo, ldc);
        }
    }
}

#endif
