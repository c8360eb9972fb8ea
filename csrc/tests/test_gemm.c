/* fastfc's packed GEMM (fastfc_packed_gemm_f32/_f64) and unpacked GEMM
 * (fastfc_unpacked_gemm_f32/_f64, where the CPU has AVX-512) against a plain
 * triple loop in long double: every m, n, k in 1..17 (partial register tiles
 * in both directions), both transposes of each operand (the unpacked GEMM
 * takes B untransposed only), leading dimensions larger than the rows (odd
 * ones), alpha/beta combinations (beta = 0 must not read C, which holds NaN
 * then), the bias + ReLU epilogue, the same bits from 1 and 3 threads (packed)
 * or from pieces of rows and of columns (unpacked), and sizes that cross the
 * K, row and column blocks and the unpacked GEMM's panels. tests/test_csrc.py
 * runs it under ASan/UBSan. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastfc.h"

#include "check.h"

/* op(X)[i, p] of a row-major X with leading dimension ld. */
#define AT(x, trans, ld, i, p) ((trans) == 'N' ? (x)[(i) * (ld) + (p)] : (x)[(p) * (ld) + (i)])

/* kernel 'p': the packed GEMM, on 1 and on 3 threads; 'u': the unpacked one,
 * whole and in two pieces of rows and of columns. Returns 1 (passed), 0
 * (failed), or -1 where the unpacked GEMM is not available on this CPU. */
#define DEFINE_CHECK(REAL, SFX, TOL)                                                                \
    static int check_##SFX(char kernel, char ta, char tb, int64_t m, int64_t n, int64_t k, REAL alpha, \
                           REAL beta, int64_t pad, int epilogue) {                                  \
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
        int ok;                                                                                     \
        if (kernel == 'p') {                                                                        \
            ok = fastfc_packed_gemm_##SFX(1, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, b_ep, epilogue) == 0 \
                 && fastfc_packed_gemm_##SFX(3, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c3, ldc, b_ep, epilogue) == 0 \
                 && memcmp(c, c3, sizeof(REAL) * (size_t)(m * ldc)) == 0;                           \
        } else {                                                                                    \
            REAL *c4 = malloc(sizeof(REAL) * (size_t)(m * ldc));                                    \
            memcpy(c4, c, sizeof(REAL) * (size_t)(m * ldc));                                        \
            int64_t mh = m / 2, nh = n / 2;                                                         \
            const REAL *a_lo = ta == 'N' ? a + mh * lda : a + mh;                                   \
            int got = fastfc_unpacked_gemm_##SFX(ta, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, b_ep, epilogue); \
            if (got == -1) { /* no AVX-512 here */                                                  \
                free(a), free(b), free(c), free(c0), free(bias), free(c3), free(c4);                \
                return -1;                                                                          \
            }                                                                                       \
            ok = got == 0                                                                           \
                 && fastfc_unpacked_gemm_##SFX(ta, mh, n, k, alpha, a, lda, b, ldb, beta, c3, ldc, b_ep, epilogue) == 0 \
                 && fastfc_unpacked_gemm_##SFX(ta, m - mh, n, k, alpha, a_lo, lda, b, ldb, beta, c3 + mh * ldc, ldc, b_ep, epilogue) == 0 \
                 && fastfc_unpacked_gemm_##SFX(ta, m, nh, k, alpha, a, lda, b, ldb, beta, c4, ldc, b_ep, epilogue) == 0 \
                 && fastfc_unpacked_gemm_##SFX(ta, m, n - nh, k, alpha, a, lda, b + nh, ldb, beta, c4 + nh, ldc, \
                                              b_ep ? b_ep + nh : NULL, epilogue) == 0               \
                 && memcmp(c, c3, sizeof(REAL) * (size_t)(m * ldc)) == 0                            \
                 && memcmp(c, c4, sizeof(REAL) * (size_t)(m * ldc)) == 0;                           \
            free(c4);                                                                               \
        }                                                                                           \
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

/* Counts a check: an unavailable unpacked GEMM (-1) neither passes nor fails. */
static int unavailable;
#define CHECK_KERNEL(result, ...)                       \
    do {                                                \
        int result_ = (result);                         \
        if (result_ == -1) unavailable++;               \
        else CHECK(result_, __VA_ARGS__);               \
    } while (0)

int main(void) {
    const char trans[2] = {'N', 'T'}, kernels[2] = {'p', 'u'};
    for (int kk = 0; kk < 2; kk++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2 - kk; tb++)
                for (int64_t m = 1; m <= 17; m++)
                    for (int64_t n = 1; n <= 17; n++)
                        for (int64_t k = 1; k <= 17; k++) {
                            int64_t pad = (m + n + k) % 3 == 0 ? 3 : 0; /* odd leading dimensions too */
                            CHECK_KERNEL(check_f32(kernels[kk], trans[ta], trans[tb], m, n, k, 1.0f, 0.0f, pad,
                                                   (m + k) % 2),
                                         "%c f32 %c%c m=%ld n=%ld k=%ld", kernels[kk], trans[ta], trans[tb],
                                         (long)m, (long)n, (long)k);
                            CHECK_KERNEL(check_f64(kernels[kk], trans[ta], trans[tb], m, n, k, 1.0, 0.0, pad,
                                                   (n + k) % 2),
                                         "%c f64 %c%c m=%ld n=%ld k=%ld", kernels[kk], trans[ta], trans[tb],
                                         (long)m, (long)n, (long)k);
                        }
    /* alpha/beta, and sizes past one K block (packed 256, unpacked 128), row block
     * (120), column block (1024) and the unpacked GEMM's panels (96 floats, 48
     * doubles; 100 columns run as 88 + 12). */
    static const int64_t sizes[][3] = {{7, 9, 300}, {130, 19, 5}, {3, 1030, 2}, {125, 33, 513},
                                       {64, 100, 784}, {13, 97, 129}, {9, 200, 64}, {5, 52, 257},
                                       {14, 150, 3}, {1, 104, 130}};
    static const double scales[][2] = {{1, 1}, {0.5, -2}, {-1, 0}, {2, 0.25}, {0, 3}};
    for (int kk = 0; kk < 2; kk++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (size_t v = 0; v < sizeof scales / sizeof scales[0]; v++)
                for (int ta = 0; ta < 2; ta++)
                    for (int tb = 0; tb < 2 - kk; tb++) {
                        int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                        CHECK_KERNEL(check_f32(kernels[kk], trans[ta], trans[tb], m, n, k, (float)scales[v][0],
                                               (float)scales[v][1], 1, (int)(v % 2)),
                                     "%c f32 %c%c m=%ld n=%ld k=%ld alpha=%g beta=%g", kernels[kk], trans[ta],
                                     trans[tb], (long)m, (long)n, (long)k, scales[v][0], scales[v][1]);
                        CHECK_KERNEL(check_f64(kernels[kk], trans[ta], trans[tb], m, n, k, scales[v][0],
                                               scales[v][1], 1, (int)(v % 2)),
                                     "%c f64 %c%c m=%ld n=%ld k=%ld alpha=%g beta=%g", kernels[kk], trans[ta],
                                     trans[tb], (long)m, (long)n, (long)k, scales[v][0], scales[v][1]);
                    }
    /* The unpacked GEMM's widths 18..200 (every panel shape, half-vector tails). */
    for (int64_t n = 18; n <= 200; n++)
        for (int ta = 0; ta < 2; ta++) {
            int64_t m = 1 + n % 13, k = 1 + (n * 7) % 150;
            CHECK_KERNEL(check_f32('u', trans[ta], 'N', m, n, k, 1.0f, 0.0f, n % 2, (int)(n % 3 == 0)),
                         "u f32 %cN m=%ld n=%ld k=%ld", trans[ta], (long)m, (long)n, (long)k);
            CHECK_KERNEL(check_f64('u', trans[ta], 'N', m, n, k, 1.0, 0.0, n % 2, (int)(n % 3 == 0)),
                         "u f64 %cN m=%ld n=%ld k=%ld", trans[ta], (long)m, (long)n, (long)k);
        }
    if (unavailable) printf("the unpacked GEMM is not available on this CPU (no AVX-512): %d checks not run\n",
                            unavailable);
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed != 0;
}
