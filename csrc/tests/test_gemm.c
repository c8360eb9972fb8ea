/* fastfc's packed GEMM (fastfc_packed_gemm_f32/_f64) against a plain triple
 * loop in long double: every m, n, k in 1..17 (partial register tiles in
 * both directions), both transposes of each operand, leading dimensions
 * larger than the rows (odd ones), alpha/beta combinations (beta = 0 must
 * not read C, which holds NaN then), the bias + ReLU epilogue, 1 and 3
 * threads (the same bits), and sizes that cross the K, row and column
 * blocks. tests/test_csrc.py runs it under ASan/UBSan. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastfc.h"

#include "check.h"

/* op(X)[i, p] of a row-major X with leading dimension ld. */
#define AT(x, trans, ld, i, p) ((trans) == 'N' ? (x)[(i) * (ld) + (p)] : (x)[(p) * (ld) + (i)])

#define DEFINE_CHECK(REAL, SFX, TOL)                                                                \
    static int check_##SFX(char ta, char tb, int64_t m, int64_t n, int64_t k, REAL alpha, REAL beta, \
                           int64_t pad, int epilogue) {                                             \
        int64_t lda = (ta == 'N' ? k : m) + pad, ldb = (tb == 'N' ? n : k) + pad, ldc = n + pad;    \
        int64_t arows = ta == 'N' ? m : k, brows = tb == 'N' ? k : n;                                \
        REAL *a = malloc(sizeof(REAL) * (size_t)(arows * lda));                                     \
        REAL *b = malloc(sizeof(REAL) * (size_t)(brows * ldb));                                     \
        REAL *c = malloc(sizeof(REAL) * (size_t)(m * ldc));                                         \
        REAL *c0 = malloc(sizeof(REAL) * (size_t)(m * ldc));                                        \
        uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(m * 131 + n * 17 + k + pad);                 \
        for (int64_t t = 0; t < arows * lda; t++) a[t] = (REAL)((s = s * 6364136223846793005ull + 1) >> 40) / (REAL)(1 << 24) - (REAL)0.5; \
        for (int64_t t = 0; t < brows * ldb; t++) b[t] = (REAL)((s = s * 6364136223846793005ull + 1) >> 40) / (REAL)(1 << 24) - (REAL)0.5; \
        for (int64_t t = 0; t < m * ldc; t++)                                                       \
            c0[t] = c[t] = beta == 0 && t % ldc < n ? (REAL)NAN : (REAL)(t % 7) - 3;                \
        REAL *bias = malloc(sizeof(REAL) * (size_t)n), *c3 = malloc(sizeof(REAL) * (size_t)(m * ldc)); \
        for (int64_t j = 0; j < n; j++) bias[j] = (REAL)((j % 5) - 2) / 4;                         \
        memcpy(c3, c, sizeof(REAL) * (size_t)(m * ldc));                                            \
        const REAL *b_ep = epilogue ? bias : NULL;                                                  \
        int ok = fastfc_packed_gemm_##SFX(1, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, b_ep, epilogue) == 0 \
              && fastfc_packed_gemm_##SFX(3, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c3, ldc, b_ep, epilogue) == 0 \
              && memcmp(c, c3, sizeof(REAL) * (size_t)(m * ldc)) == 0;                              \
        for (int64_t i = 0; i < m && ok; i++)                                                       \
            for (int64_t j = 0; j < ldc; j++) {                                                     \
                if (j >= n) { /* padding: untouched */                                              \
                    ok = c[i * ldc + j] == c0[i * ldc + j];                                         \
                    continue;                                                                       \
                }                                                                                   \
                long double sum = 0, mag = 0;                                                       \
                for (int64_t p = 0; p < k; p++) {                                                   \
                    long double prod = (long double)AT(a, ta, lda, i, p) * AT(b, tb, ldb, p, j);    \
                    sum += prod;                                                                    \
                    mag += fabsl(prod);                                                             \
                }                                                                                   \
                long double old = beta == 0 ? 0 : beta * (long double)c0[i * ldc + j];               \
                long double want = alpha * sum + old + (epilogue ? bias[j] : 0);                      \
                long double scale = fabsl(alpha) * mag + fabsl(old) + 1;                              \
                if (epilogue && want < 0) want = 0;                                                 \
                if (!(fabsl(c[i * ldc + j] - want) <= TOL * scale)) ok = 0;                          \
            }                                                                                       \
        free(a), free(b), free(c), free(c0), free(bias), free(c3);                                  \
        return ok;                                                                                  \
    }
DEFINE_CHECK(float, f32, 1e-5L)
DEFINE_CHECK(double, f64, 1e-13L)

int main(void) {
    const char trans[2] = {'N', 'T'};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int64_t m = 1; m <= 17; m++)
                for (int64_t n = 1; n <= 17; n++)
                    for (int64_t k = 1; k <= 17; k++) {
                        int64_t pad = (m + n + k) % 3 == 0 ? 3 : 0; /* odd leading dimensions too */
                        CHECK(check_f32(trans[ta], trans[tb], m, n, k, 1.0f, 0.0f, pad, (m + k) % 2),
                              "f32 %c%c m=%ld n=%ld k=%ld", trans[ta], trans[tb], (long)m, (long)n, (long)k);
                        CHECK(check_f64(trans[ta], trans[tb], m, n, k, 1.0, 0.0, pad, (n + k) % 2),
                              "f64 %c%c m=%ld n=%ld k=%ld", trans[ta], trans[tb], (long)m, (long)n, (long)k);
                    }
    /* alpha/beta, and sizes past one K block (256), row block (120) and column block (1024). */
    static const int64_t sizes[][3] = {{7, 9, 300}, {130, 19, 5}, {3, 1030, 2}, {125, 33, 513}, {64, 100, 784}};
    static const double scales[][2] = {{1, 1}, {0.5, -2}, {-1, 0}, {2, 0.25}, {0, 3}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t v = 0; v < sizeof scales / sizeof scales[0]; v++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                    CHECK(check_f32(trans[ta], trans[tb], m, n, k, (float)scales[v][0], (float)scales[v][1], 1,
                                    (int)(v % 2)),
                          "f32 %c%c m=%ld n=%ld k=%ld alpha=%g beta=%g", trans[ta], trans[tb], (long)m,
                          (long)n, (long)k, scales[v][0], scales[v][1]);
                    CHECK(check_f64(trans[ta], trans[tb], m, n, k, scales[v][0], scales[v][1], 1, (int)(v % 2)),
                          "f64 %c%c m=%ld n=%ld k=%ld alpha=%g beta=%g", trans[ta], trans[tb], (long)m,
                          (long)n, (long)k, scales[v][0], scales[v][1]);
                }
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed != 0;
}
