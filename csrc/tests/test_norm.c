/* The normalization kernels (norm.c) without Python: batch norm over (N, D)
 * and (N, C, S) and group norm (layer norm included) against straightforward
 * double loops, in both float types' f64 variant; results independent of
 * the thread count and of the pieces a call is cut into (bit for bit).
 * tests/test_csrc.py runs it under the sanitizers, which also see every
 * read and write of the kernels' blocks, planes and tiles stay in bounds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fastfc.h"

#include "check.h"

static double *random_array(int64_t n, unsigned *state, double offset) {
    double *a = malloc((size_t)(n ? n : 1) * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        *state = *state * 1103515245u + 12345u;
        a[i] = offset + ((*state >> 8) & 0xffff) / 16384.0 - 2.0;
    }
    return a;
}

static double max_abs_diff(const double *a, const double *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* The statistics over the values of x (n, c, s) at index i*c*s + k*s + j for
 * k in [k0, k0 + nk) (one channel, or a group's channels) and i, j in
 * [i0, i0 + ni) x [0, s): two-pass mean and biased variance. */
static void loop_moments(const double *x, int64_t c, int64_t s, int64_t i0, int64_t ni,
                         int64_t k0, int64_t nk, double *mean, double *var) {
    double sum = 0, squares = 0, count = (double)ni * nk * s;
    for (int64_t i = i0; i < i0 + ni; i++)
        for (int64_t k = k0; k < k0 + nk; k++)
            for (int64_t j = 0; j < s; j++) sum += x[(i * c + k) * s + j];
    *mean = sum / count;
    for (int64_t i = i0; i < i0 + ni; i++)
        for (int64_t k = k0; k < k0 + nk; k++)
            for (int64_t j = 0; j < s; j++) {
                double d = x[(i * c + k) * s + j] - *mean;
                squares += d * d;
            }
    *var = squares / count;
}

static void test_batchnorm(int64_t n, int64_t c, int64_t s, int train, unsigned seed) {
    const int64_t total = n * c * s;
    const double eps = 1e-5, momentum = 0.75;
    double *x = random_array(total, &seed, 3.0), *dout = random_array(total, &seed, 0.0);
    double *gamma = random_array(c, &seed, 1.0), *beta = random_array(c, &seed, 0.0);
    double *rm = random_array(c, &seed, 0.0), *rv = random_array(c, &seed, 3.0);
    double *rm0 = malloc(c * sizeof(double)), *rv0 = malloc(c * sizeof(double));
    memcpy(rm0, rm, c * sizeof(double));
    memcpy(rv0, rv, c * sizeof(double));
    double *out = malloc(total * sizeof(double)), *dx = malloc(total * sizeof(double));
    double *mean = malloc(c * sizeof(double)), *inv_std = malloc(c * sizeof(double));
    double *dgamma = malloc(c * sizeof(double)), *dbeta = malloc(c * sizeof(double));
    double *factors = malloc(3 * c * sizeof(double));
    fastfc_norm_args a = {0};
    a.geom.n_batch = n, a.geom.channels = c, a.geom.spatial = s;
    a.x = x, a.gamma = gamma, a.beta = beta, a.dout = dout, a.out = out, a.dx = dx;
    a.dgamma = dgamma, a.dbeta = dbeta, a.mean = mean, a.inv_std = inv_std;
    a.running_mean = rm, a.running_var = rv, a.grad_factors = factors;
    a.train = train, a.momentum = momentum, a.eps = eps;
    fastfc_batchnorm_stats_f64(&a, 0, c, 3);
    fastfc_batchnorm_normalize_f64(&a, 0, n, 3);
    fastfc_batchnorm_grad_sums_f64(&a, 0, c, 3);
    fastfc_batchnorm_input_grad_f64(&a, 0, n, 3);

    double *want = malloc(total * sizeof(double)), *want_dx = malloc(total * sizeof(double));
    double err_stats = 0, err_grads = 0;
    for (int64_t k = 0; k < c; k++) {
        double m, v;
        loop_moments(x, c, s, 0, n, k, 1, &m, &v);
        if (train) {
            err_stats = fmax(err_stats, fabs(rm[k] - (momentum * rm0[k] + (1 - momentum) * m)));
            err_stats = fmax(err_stats, fabs(rv[k] - (momentum * rv0[k] + (1 - momentum) * v)));
        } else {
            m = rm0[k], v = rv0[k];
            err_stats = fmax(err_stats, fabs(rm[k] - rm0[k]) + fabs(rv[k] - rv0[k]));
        }
        double is = 1 / sqrt(v + eps), sd = 0, sdx = 0, count = (double)n * s;
        err_stats = fmax(err_stats, fabs(mean[k] - m) + fabs(inv_std[k] - is) / is);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                int64_t at = (i * c + k) * s + j;
                double xhat = (x[at] - m) * is;
                want[at] = xhat * gamma[k] + beta[k];
                sd += dout[at];
                sdx += dout[at] * xhat;
            }
        err_grads = fmax(err_grads, fabs(dbeta[k] - sd) + fabs(dgamma[k] - sdx));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                int64_t at = (i * c + k) * s + j;
                double xhat = (x[at] - m) * is;
                want_dx[at] = train ? gamma[k] * is * (dout[at] - sd / count - xhat * sdx / count)
                                    : gamma[k] * is * dout[at];
            }
    }
    CHECK(err_stats < 1e-12, "batchnorm %lldx%lldx%lld train=%d statistics err %g", (long long)n,
          (long long)c, (long long)s, train, err_stats);
    CHECK(max_abs_diff(out, want, total) < 1e-12, "batchnorm %lldx%lldx%lld train=%d out",
          (long long)n, (long long)c, (long long)s, train);
    CHECK(err_grads < 1e-10 && max_abs_diff(dx, want_dx, total) < 1e-11,
          "batchnorm %lldx%lldx%lld train=%d gradients err %g", (long long)n, (long long)c,
          (long long)s, train, err_grads);

    /* one thread, and the channels and samples in uneven pieces: the same bits */
    double *out2 = malloc(total * sizeof(double)), *dx2 = malloc(total * sizeof(double));
    double *dgamma2 = malloc(c * sizeof(double)), *dbeta2 = malloc(c * sizeof(double));
    memcpy(rm, rm0, c * sizeof(double));
    memcpy(rv, rv0, c * sizeof(double));
    fastfc_norm_args b = a;
    b.out = out2, b.dx = dx2, b.dgamma = dgamma2, b.dbeta = dbeta2;
    for (int64_t lo = 0; lo < c; lo += 3) fastfc_batchnorm_stats_f64(&b, lo, lo + 3 < c ? lo + 3 : c, 1);
    for (int64_t lo = 0; lo < n; lo += 2)
        fastfc_batchnorm_normalize_f64(&b, lo, lo + 2 < n ? lo + 2 : n, 1);
    for (int64_t lo = 0; lo < c; lo += 5)
        fastfc_batchnorm_grad_sums_f64(&b, lo, lo + 5 < c ? lo + 5 : c, 2);
    for (int64_t lo = 0; lo < n; lo += 3)
        fastfc_batchnorm_input_grad_f64(&b, lo, lo + 3 < n ? lo + 3 : n, 1);
    CHECK(memcmp(out, out2, total * sizeof(double)) == 0 &&
              memcmp(dx, dx2, total * sizeof(double)) == 0 &&
              memcmp(dgamma, dgamma2, c * sizeof(double)) == 0 &&
              memcmp(dbeta, dbeta2, c * sizeof(double)) == 0,
          "batchnorm %lldx%lldx%lld train=%d: pieces and threads change no bit", (long long)n,
          (long long)c, (long long)s, train);
    free(x), free(dout), free(gamma), free(beta), free(rm), free(rv), free(rm0), free(rv0);
    free(out), free(dx), free(mean), free(inv_std), free(dgamma), free(dbeta), free(factors);
    free(want), free(want_dx), free(out2), free(dx2), free(dgamma2), free(dbeta2);
}

static void test_groupnorm(int64_t n, int64_t groups, int64_t cpg, int64_t s, unsigned seed) {
    const int64_t c = groups * cpg, total = n * c * s, len = cpg * s;
    const double eps = 1e-5;
    double *x = random_array(total, &seed, -2.0), *dout = random_array(total, &seed, 0.0);
    double *gamma = random_array(c, &seed, 1.0), *beta = random_array(c, &seed, 0.0);
    double *out = malloc(total * sizeof(double)), *dx = malloc(total * sizeof(double));
    double *mean = malloc(n * groups * sizeof(double)), *inv_std = malloc(n * groups * sizeof(double));
    double *dgamma = malloc(c * sizeof(double)), *dbeta = malloc(c * sizeof(double));
    fastfc_norm_args a = {0};
    a.geom.n_batch = n, a.geom.channels = c, a.geom.spatial = s, a.geom.groups = groups;
    a.geom.chunk_samples = fastfc_groupnorm_chunk_samples(n, len);
    double *partial = malloc(((n + a.geom.chunk_samples - 1) / a.geom.chunk_samples) * 2 * c *
                             sizeof(double));
    a.x = x, a.gamma = gamma, a.beta = beta, a.dout = dout, a.out = out, a.dx = dx;
    a.dgamma = dgamma, a.dbeta = dbeta, a.mean = mean, a.inv_std = inv_std, a.partial = partial;
    a.eps = eps;
    fastfc_groupnorm_forward_f64(&a, 0, n * groups, 3);
    fastfc_groupnorm_backward_f64(&a, 0, fastfc_groupnorm_tiles(&a.geom), 3);
    fastfc_groupnorm_param_grads_f64(&a);

    double *want = malloc(total * sizeof(double)), *want_dx = malloc(total * sizeof(double));
    double *want_dgamma = calloc(c, sizeof(double)), *want_dbeta = calloc(c, sizeof(double));
    double err_stats = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t g = 0; g < groups; g++) {
            double m, v, sg = 0, sgx = 0;
            loop_moments(x, c, s, i, 1, g * cpg, cpg, &m, &v);
            double is = 1 / sqrt(v + eps);
            err_stats = fmax(err_stats, fabs(mean[i * groups + g] - m) +
                                            fabs(inv_std[i * groups + g] - is) / is);
            for (int64_t k = g * cpg; k < (g + 1) * cpg; k++)
                for (int64_t j = 0; j < s; j++) {
                    int64_t at = (i * c + k) * s + j;
                    double xhat = (x[at] - m) * is;
                    want[at] = xhat * gamma[k] + beta[k];
                    sg += dout[at] * gamma[k];
                    sgx += dout[at] * gamma[k] * xhat;
                    want_dgamma[k] += dout[at] * xhat;
                    want_dbeta[k] += dout[at];
                }
            for (int64_t k = g * cpg; k < (g + 1) * cpg; k++)
                for (int64_t j = 0; j < s; j++) {
                    int64_t at = (i * c + k) * s + j;
                    double xhat = (x[at] - m) * is;
                    want_dx[at] = is * (dout[at] * gamma[k] - sg / len - xhat * sgx / len);
                }
        }
    CHECK(err_stats < 1e-12, "groupnorm %lldx%lldx%lldx%lld statistics err %g", (long long)n,
          (long long)groups, (long long)cpg, (long long)s, err_stats);
    CHECK(max_abs_diff(out, want, total) < 1e-12 && max_abs_diff(dx, want_dx, total) < 1e-11 &&
              max_abs_diff(dgamma, want_dgamma, c) < 1e-10 &&
              max_abs_diff(dbeta, want_dbeta, c) < 1e-10,
          "groupnorm %lldx%lldx%lldx%lld out and gradients", (long long)n, (long long)groups,
          (long long)cpg, (long long)s);

    /* one thread, rows and tiles in uneven pieces: the same bits */
    double *out2 = malloc(total * sizeof(double)), *dx2 = malloc(total * sizeof(double));
    double *dgamma2 = malloc(c * sizeof(double)), *dbeta2 = malloc(c * sizeof(double));
    fastfc_norm_args b = a;
    b.out = out2, b.dx = dx2, b.dgamma = dgamma2, b.dbeta = dbeta2;
    const int64_t rows = n * groups, tiles = fastfc_groupnorm_tiles(&b.geom);
    for (int64_t lo = 0; lo < rows; lo += 2) fastfc_groupnorm_forward_f64(&b, lo, lo + 2 < rows ? lo + 2 : rows, 1);
    for (int64_t lo = 0; lo < tiles; lo += 3)
        fastfc_groupnorm_backward_f64(&b, lo, lo + 3 < tiles ? lo + 3 : tiles, 2);
    fastfc_groupnorm_param_grads_f64(&b);
    CHECK(memcmp(out, out2, total * sizeof(double)) == 0 &&
              memcmp(dx, dx2, total * sizeof(double)) == 0 &&
              memcmp(dgamma, dgamma2, c * sizeof(double)) == 0 &&
              memcmp(dbeta, dbeta2, c * sizeof(double)) == 0,
          "groupnorm %lldx%lldx%lldx%lld: pieces and threads change no bit", (long long)n,
          (long long)groups, (long long)cpg, (long long)s);
    free(x), free(dout), free(gamma), free(beta), free(out), free(dx), free(mean), free(inv_std);
    free(dgamma), free(dbeta), free(partial), free(want), free(want_dx), free(want_dgamma);
    free(want_dbeta), free(out2), free(dx2), free(dgamma2), free(dbeta2);
}

/* float32 values near 10000 varying by a few units: a float accumulator
 * would lose the variance to cancellation; the double sums find it. */
static void test_float32_far_from_zero(void) {
    enum { N = 3000 };
    static float x[N], out[N];
    float gamma = 1, beta = 0, rm = 0, rv = 1, mean, inv_std;
    double sum = 0, squares = 0;
    for (int i = 0; i < N; i++) {
        x[i] = 10000.0f + (float)(i % 7) - 3.0f;
        sum += x[i];
    }
    for (int i = 0; i < N; i++) squares += (x[i] - sum / N) * (x[i] - sum / N);
    fastfc_norm_args a = {0};
    a.geom.n_batch = N, a.geom.channels = 1, a.geom.spatial = 1;
    a.x = x, a.gamma = &gamma, a.beta = &beta, a.out = out, a.mean = &mean, a.inv_std = &inv_std;
    a.running_mean = &rm, a.running_var = &rv, a.train = 1, a.momentum = 0.9, a.eps = 1e-5;
    fastfc_batchnorm_stats_f32(&a, 0, 1, 2);
    double var = 1.0 / ((double)inv_std * inv_std) - 1e-5, want = squares / N;
    CHECK(fabs(var - want) < 1e-6 * want && fabs(mean - sum / N) < 1e-3,
          "float32 batchnorm of values near 10000: variance %.9g, want %.9g", var, want);
}

int main(void) {
    for (int train = 0; train <= 1; train++) {
        test_batchnorm(1, 1, 1, train, 1);
        test_batchnorm(1, 5, 1, train, 2);
        test_batchnorm(7, 300, 1, train, 3);   /* two column blocks, rows left after groups of 4 */
        test_batchnorm(13, 17, 1, train, 4);
        test_batchnorm(5, 3, 9, train, 5);
        test_batchnorm(2, 7, 33, train, 6);    /* planes past the 16 lanes */
        test_batchnorm(1, 2, 1, train, 7);
    }
    test_groupnorm(1, 1, 1, 1, 11);
    test_groupnorm(6, 1, 37, 1, 12);   /* layer norm, rows past the 16 lanes */
    test_groupnorm(5, 3, 2, 7, 13);
    test_groupnorm(9, 4, 1, 17, 14);   /* instance norm */
    test_groupnorm(700, 2, 3, 1, 15);  /* several samples per tile */
    test_float32_far_from_zero();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed != 0;
}
