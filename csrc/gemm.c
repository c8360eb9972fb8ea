/* Row-major GEMM, threaded by fastfc itself: over the column-major BLAS, or
 * over fastfc's own packed GEMM where that is faster (the training shapes'
 * one-thread pieces, measured in benchmarks/gemm_shapes.py).
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_gemm_f32, fastfc_gemm_f64
 *   fastfc_packed_gemm_f32, fastfc_packed_gemm_f64 */
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
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                REAL v = beta == 0 ? (REAL)0 : beta * c[i * ldc + j];
                if (bias) v += bias[j];
                c[i * ldc + j] = relu && v < 0 ? (REAL)0 : v;
            }
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

/* ---- over the BLAS ------------------------------------------------------- */

/* One single-threaded product: the packed GEMM where it wins, else one BLAS
 * call (the row-major product is the column-major product of the
 * transposes, so A and B swap places). */
static void SFX(gemm_block)(const fastfc_blas *blas, char trans_a, char trans_b, int64_t m,
                            int64_t n, int64_t k, REAL alpha, const REAL *a, int64_t lda,
                            const REAL *b, int64_t ldb, REAL beta, REAL *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
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
    if (nt <= 1) {
        SFX(gemm_block)(blas, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* Split the rows of C when there are enough of them, else its columns. */
    int split_rows = m >= n || m >= 32 * (int64_t)nt;
    /* A row split whose pieces the packed GEMM wins: its team packs B once. */
    if (split_rows && fastfc_packed_gemm_wins(sizeof(REAL), trans_b, (m + nt - 1) / nt, n, k)
        && SFX(fastfc_packed_gemm)(nt, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                   NULL, 0) == 0)
        return;
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        if (split_rows) {
            fastfc_block(m, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 8, &lo, &hi);
            const REAL *a_blk = trans_a == 'N' ? a + lo * lda : a + lo;
            SFX(gemm_block)(blas, trans_a, trans_b, hi - lo, n, k, alpha, a_blk, lda, b, ldb,
                            beta, c + lo * ldc, ldc);
        } else {
            fastfc_block(n, FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 16, &lo, &hi);
            const REAL *b_blk = trans_b == 'N' ? b + lo : b + lo * ldb;
            SFX(gemm_block)(blas, trans_a, trans_b, m, hi - lo, k, alpha, a, lda, b_blk, ldb,
                            beta, c + lo, ldc);
        }
    }
}

#endif
