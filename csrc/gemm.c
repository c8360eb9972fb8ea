/* Row-major GEMM over the column-major BLAS, threaded by fastfc itself.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_gemm_f32, fastfc_gemm_f64 */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

#define FASTFC_TEMPLATE "gemm.c"
#include "instantiate.h"
#else

/* One single-threaded BLAS call: the row-major product is the column-major
 * product of the transposes, so A and B swap places. */
static void SFX(gemm_block)(const fastfc_blas *blas, char trans_a, char trans_b, int64_t m,
                            int64_t n, int64_t k, REAL alpha, const REAL *a, int64_t lda,
                            const REAL *b, int64_t ldb, REAL beta, REAL *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
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
