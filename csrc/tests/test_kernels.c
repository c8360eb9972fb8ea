/* Standalone test of the C kernels, with no Python and no BLAS library: a
 * plain column-major reference GEMM is plugged into fastfc_blas, and each
 * kernel is compared with straightforward loops. tests/test_csrc.py builds it
 * with AddressSanitizer and UndefinedBehaviorSanitizer and runs it.
 * Exit status 0 and a "N passed, 0 failed" line mean every check held. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastfc.h"

#include "check.h"

/* Column-major C = alpha op(A) op(B) + beta C, the Fortran BLAS contract. */
static void naive_dgemm(char *ta, char *tb, int *m, int *n, int *k, double *alpha, double *a,
                        int *lda, double *b, int *ldb, double *beta, double *c, int *ldc) {
    for (int j = 0; j < *n; j++)
        for (int i = 0; i < *m; i++) {
            double s = 0;
            for (int p = 0; p < *k; p++) {
                double av = *ta == 'N' ? a[i + p * *lda] : a[p + i * *lda];
                double bv = *tb == 'N' ? b[p + j * *ldb] : b[j + p * *ldb];
                s += av * bv;
            }
            double old = *beta == 0 ? 0 : *beta * c[i + j * *ldc];
            c[i + j * *ldc] = *alpha * s + old;
        }
}

static void naive_sgemm(char *ta, char *tb, int *m, int *n, int *k, float *alpha, float *a,
                        int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) {
    for (int j = 0; j < *n; j++)
        for (int i = 0; i < *m; i++) {
            double s = 0;
            for (int p = 0; p < *k; p++) {
                float av = *ta == 'N' ? a[i + p * *lda] : a[p + i * *lda];
                float bv = *tb == 'N' ? b[p + j * *ldb] : b[j + p * *ldb];
                s += (double)av * bv;
            }
            float old = *beta == 0 ? 0 : *beta * c[i + j * *ldc];
            c[i + j * *ldc] = *alpha * (float)s + old;
        }
}

static const fastfc_blas BLAS = {naive_sgemm, naive_dgemm};

static double *random_array(int64_t n, unsigned *state) {
    double *a = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        *state = *state * 1103515245u + 12345u;
        a[i] = ((*state >> 8) & 0xffff) / 32768.0 - 1.0;
    }
    return a;
}

static double max_abs_diff(const double *a, const double *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* Row-major GEMM through fastfc_gemm, every transpose pair and thread count. */
static void test_gemm(void) {
    unsigned st = 1;
    const int64_t m = 37, n = 29, k = 23;
    double *a = random_array(m * k, &st), *b = random_array(k * n, &st);
    double *c = calloc((size_t)(m * n), sizeof(double)), *want = calloc((size_t)(m * n), sizeof(double));
    for (int t = 0; t < 4; t++) {
        char ta = t & 1 ? 'T' : 'N', tb = t & 2 ? 'T' : 'N';
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t p = 0; p < k; p++)
                    s += (ta == 'N' ? a[i * k + p] : a[p * m + i]) * (tb == 'N' ? b[p * n + j] : b[j * k + p]);
                want[i * n + j] = 2 * s;
            }
        for (int threads = 1; threads <= 3; threads++) {
            memset(c, 0, (size_t)(m * n) * sizeof(double));
            fastfc_gemm_f64(&BLAS, threads, ta, tb, m, n, k, 2.0, a, ta == 'N' ? k : m, b,
                            tb == 'N' ? n : k, 0.0, c, n);
            CHECK(max_abs_diff(c, want, m * n) < 1e-12, "gemm %c%c threads %d", ta, tb, threads);
        }
    }
    free(a); free(b); free(c); free(want);
}

static void test_affine(void) {
    unsigned st = 2;
    const int64_t nb = 19, di = 13, dout_ = 11;
    double *x = random_array(nb * di, &st), *w = random_array(di * dout_, &st);
    double *b = random_array(dout_, &st), *g = random_array(nb * dout_, &st);
    double *out = malloc(sizeof(double) * nb * dout_), *want = malloc(sizeof(double) * nb * dout_);
    double *dx = malloc(sizeof(double) * nb * di), *dw = malloc(sizeof(double) * di * dout_);
    double *db = malloc(sizeof(double) * dout_), *dh = malloc(sizeof(double) * nb * dout_);
    for (int relu = 0; relu <= 1; relu++) {
        fastfc_affine_forward_f64(x, w, b, out, nb, di, dout_, relu, &BLAS, 2);
        for (int64_t i = 0; i < nb; i++)
            for (int64_t j = 0; j < dout_; j++) {
                double s = b[j];
                for (int64_t p = 0; p < di; p++) s += x[i * di + p] * w[p * dout_ + j];
                want[i * dout_ + j] = relu && s < 0 ? 0 : s;
            }
        CHECK(max_abs_diff(out, want, nb * dout_) < 1e-12, "affine forward relu=%d", relu);

        fastfc_affine_backward_f64(g, x, w, relu ? out : NULL, dh, dx, dw, db, nb, di, dout_, &BLAS, 2);
        double err = 0;
        for (int64_t j = 0; j < dout_; j++) {
            double s = 0;
            for (int64_t i = 0; i < nb; i++) s += relu && out[i * dout_ + j] <= 0 ? 0 : g[i * dout_ + j];
            err = fmax(err, fabs(s - db[j]));
        }
        for (int64_t p = 0; p < di; p++)
            for (int64_t j = 0; j < dout_; j++) {
                double s = 0;
                for (int64_t i = 0; i < nb; i++)
                    s += x[i * di + p] * (relu && out[i * dout_ + j] <= 0 ? 0 : g[i * dout_ + j]);
                err = fmax(err, fabs(s - dw[p * dout_ + j]));
            }
        for (int64_t i = 0; i < nb; i++)
            for (int64_t p = 0; p < di; p++) {
                double s = 0;
                for (int64_t j = 0; j < dout_; j++)
                    s += (relu && out[i * dout_ + j] <= 0 ? 0 : g[i * dout_ + j]) * w[p * dout_ + j];
                err = fmax(err, fabs(s - dx[i * di + p]));
            }
        CHECK(err < 1e-12, "affine backward relu=%d err %g", relu, err);
    }
    /* dx may be skipped. */
    fastfc_affine_backward_f64(g, x, w, NULL, NULL, NULL, dw, db, nb, di, dout_, &BLAS, 2);
    CHECK(1, "affine backward without dx");
    free(x); free(w); free(b); free(g); free(out); free(want); free(dx); free(dw); free(db); free(dh);
}

static void test_activations_and_dropout(void) {
    const int64_t n = 100003; /* enough for several threads, not a SIMD multiple */
    float *x = malloc(sizeof(float) * n), *y1 = malloc(sizeof(float) * n), *y2 = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 7919) % 2001 - 1000) / 100.0f;
    x[5] = NAN;
    fastfc_relu_forward_f32(x, y1, n, 3);
    int ok = isnan(y1[5]);
    for (int64_t i = 0; i < n; i++)
        if (i != 5) ok &= y1[i] == (x[i] < 0 ? 0.0f : x[i]);
    CHECK(ok, "relu forward");

    fastfc_dropout_apply_f32(x, y1, 0, n, 0.3, 99, 1);
    fastfc_dropout_apply_f32(x, y2, 0, n, 0.3, 99, 4);
    CHECK(memcmp(y1, y2, sizeof(float) * n) == 0, "dropout mask independent of threads");
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) kept += y1[i] != 0 || x[i] == 0;
    CHECK(fabs((double)kept / n - 0.7) < 0.01, "dropout keeps 70%%: %g", (double)kept / n);
    /* in pieces at offsets that are no SIMD multiple (the wrappers cut long
     * calls so): each element keeps its draw */
    memset(y2, 0, sizeof(float) * n);
    for (int64_t lo = 0; lo < n; lo += 7919)
        fastfc_dropout_apply_f32(x + lo, y2 + lo, lo, n - lo < 7919 ? n - lo : 7919, 0.3, 99, 2);
    CHECK(memcmp(y1, y2, sizeof(float) * n) == 0, "dropout in pieces = in one call");

    fastfc_sigmoid_forward_f32(x, y1, n, 2);
    ok = 1;
    for (int64_t i = 0; i < n; i++)
        if (i != 5) ok &= fabsf(y1[i] - 1.0f / (1.0f + expf(-x[i]))) < 1e-6f;
    CHECK(ok, "sigmoid forward");
    free(x); free(y1); free(y2);
}

/* The losses of a batch, whole and in pieces of rows (or elements) that each
 * add their share: the same dx bit for bit, the same loss to rounding. */
typedef double (*class_loss_fn)(const double *, const int64_t *, double *, int64_t, int64_t,
                                int64_t, int);

static void check_class_loss_pieces(class_loss_fn loss_fn, const double *x, const int64_t *y,
                                    int64_t nb, int64_t nc, double loss, const double *dx,
                                    const char *name) {
    double *dx_pieces = malloc(sizeof(double) * nb * nc), sum = 0;
    for (int64_t lo = 0; lo < nb; lo += 3) {
        int64_t rows = nb - lo < 3 ? nb - lo : 3;
        sum += loss_fn(x + lo * nc, y + lo, dx_pieces + lo * nc, rows, nc, nb, 2);
    }
    CHECK(fabs(sum - loss) < 1e-14 * fabs(loss), "%s in pieces: loss %.17g vs %.17g", name, sum,
          loss);
    CHECK(memcmp(dx, dx_pieces, sizeof(double) * nb * nc) == 0, "%s in pieces: dx", name);
    free(dx_pieces);
}

static void test_losses(void) {
    const int64_t nb = 7, nc = 5;
    double x[35], dx[35];
    int64_t y[7] = {0, 4, 2, 2, 1, 3, 0};
    for (int i = 0; i < 35; i++) x[i] = sin(i * 1.7) * 3;
    double loss = fastfc_softmax_loss_f64(x, y, dx, nb, nc, nb, 2), want = 0;
    for (int64_t i = 0; i < nb; i++) {
        double s = 0;
        for (int64_t j = 0; j < nc; j++) s += exp(x[i * nc + j]);
        want += log(s) - x[i * nc + y[i]];
        for (int64_t j = 0; j < nc; j++) {
            double p = exp(x[i * nc + j]) / s - (j == y[i]);
            CHECK(fabs(dx[i * nc + j] - p / nb) < 1e-14, "softmax dx[%lld,%lld]", (long long)i, (long long)j);
        }
    }
    CHECK(fabs(loss - want / nb) < 1e-12, "softmax loss %g vs %g", loss, want / nb);
    check_class_loss_pieces(fastfc_softmax_loss_f64, x, y, nb, nc, loss, dx, "softmax");
    loss = fastfc_svm_loss_f64(x, y, dx, nb, nc, nb, 2);
    check_class_loss_pieces(fastfc_svm_loss_f64, x, y, nb, nc, loss, dx, "svm");

    double target[35], dpred[35], dpieces[35], sum = 0;
    for (int i = 0; i < 35; i++) target[i] = cos(i * 0.3);
    loss = fastfc_mse_loss_f64(x, target, dpred, 35, 35, 2);
    for (int64_t lo = 0; lo < 35; lo += 17)
        sum += fastfc_mse_loss_f64(x + lo, target + lo, dpieces + lo, 35 - lo < 17 ? 35 - lo : 17, 35, 2);
    CHECK(fabs(sum - loss) < 1e-14 * loss && memcmp(dpred, dpieces, sizeof dpred) == 0,
          "mse in pieces: loss %.17g vs %.17g", sum, loss);
}

/* The entry points that dispatch on an op or a rule: each reaches its kernel
 * (checked on cases small enough to work out by hand). */
static void test_pool_entry_point(void) {
    /* one 2x4 plane, 2x2 windows, stride 2: windows {1, 5, 2, 6}, {3, 7, 8, 4} */
    const fastfc_pool_geom g = {1, 2, 4, 2, 2, 2, 1, 2};
    const double x[8] = {1, 2, 3, 8, 5, 6, 7, 4}, dout[2] = {10, 20};
    double out[2], dx[8];
    int32_t argmax[2];
    fastfc_pool_f64(FASTFC_MAX_POOL_FORWARD, &g, x, out, argmax, 2);
    CHECK(out[0] == 6 && out[1] == 8 && argmax[0] == 5 && argmax[1] == 3, "max pool forward");
    int64_t stray = fastfc_pool_f64(FASTFC_MAX_POOL_BACKWARD, &g, dout, dx, argmax, 2);
    CHECK(stray == 0 && dx[5] == 10 && dx[3] == 20 && dx[0] == 0 && dx[7] == 0,
          "max pool backward");
    argmax[1] = 0; /* outside the second window: skipped and counted */
    stray = fastfc_pool_f64(FASTFC_MAX_POOL_BACKWARD, &g, dout, dx, argmax, 2);
    CHECK(stray == 1 && dx[0] == 0, "max pool backward of a tampered argmax: %lld stray",
          (long long)stray);
    fastfc_pool_f64(FASTFC_AVG_POOL_FORWARD, &g, x, out, NULL, 2);
    CHECK(out[0] == 3.5 && out[1] == 5.5, "avg pool forward");
    CHECK(fastfc_pool_f64(FASTFC_AVG_POOL_BACKWARD, &g, dout, dx, NULL, 2) == 0 &&
              dx[0] == 2.5 && dx[5] == 2.5 && dx[3] == 5 && dx[6] == 5,
          "avg pool backward");
}

static void test_optim_entry_point(void) {
    double p[3] = {1, 2, 3}, grad[3] = {0.5, -1, 2}, v[3] = {1, 1, 1};
    fastfc_optim_tensor t = {p, grad, {NULL, NULL, NULL}, 3, 1};
    const fastfc_sgd_config sgd = {0.5, 0, 0, 0, 0, 0};
    fastfc_optim_step_f64(FASTFC_SGD, &sgd, &t, 1, 2);
    CHECK(p[0] == 0.75 && p[1] == 2.5 && p[2] == 2, "plain SGD");
    const fastfc_sgd_config momentum = {0.5, 0.9, 0, 0, 0, 0};
    t.state[0] = v;
    fastfc_optim_step_f64(FASTFC_SGD_VELOCITY, &momentum, &t, 1, 2);
    /* v = 0.9 v - 0.5 grad; p += v */
    const double v_want[3] = {0.65, 1.4, -0.1}, p_want[3] = {1.4, 3.9, 1.9};
    for (int i = 0; i < 3; i++)
        CHECK(fabs(v[i] - v_want[i]) < 1e-15 && fabs(p[i] - p_want[i]) < 1e-15,
              "velocity SGD [%d]: v %.17g, p %.17g", i, v[i], p[i]);
    float pf[2] = {1, -1}, gf[2] = {1, 1}, sum_sq[2] = {0, 0};
    fastfc_optim_tensor tf = {pf, gf, {sum_sq, NULL, NULL}, 2, 1};
    const fastfc_adagrad_config adagrad = {0.1, 0, 0, 0, 0};
    fastfc_optim_step_f32(FASTFC_ADAGRAD, &adagrad, &tf, 1, 2);
    /* sum = g^2 = 1; p -= lr * g / sqrt(sum) */
    CHECK(sum_sq[0] == 1 && fabsf(pf[0] - 0.9f) < 1e-7f && fabsf(pf[1] + 1.1f) < 1e-7f,
          "Adagrad (float): %.9g %.9g", pf[0], pf[1]);
}

/* Convolution, forward and backward, against direct loops: im2col (3 channels,
 * stride 2) and Winograd (3x3, stride 1, 8+ channels) over odd sizes, pad 0..2,
 * tile blocks spanning images and tile rows longer than one SIMD run, 1 and 3
 * threads, float and double. */
static void test_conv(void) {
    const int64_t cases[][6] = {/* n, c, h, w, f, pad; stride 1 */
                                {3, 8, 7, 9, 5, 0}, {2, 9, 6, 5, 4, 2}, {1, 8, 5, 70, 3, 1},
                                {2, 16, 1, 1, 2, 1}, {13, 8, 9, 7, 3, 1}, {2, 3, 7, 8, 4, 1}};
    unsigned st = 7;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        for (int threads = 1; threads <= 3; threads += 2) {
            const int64_t *cs = cases[ci];
            const int64_t stride = cs[1] == 3 ? 2 : 1, pad = cs[5];
            fastfc_conv_geom g = {cs[0], cs[1], cs[2], cs[3], cs[4], 3, 3, stride, pad, 0, 0};
            g.out_h = (g.height + 2 * pad - 3) / stride + 1;
            g.out_w = (g.width + 2 * pad - 3) / stride + 1;
            const int64_t nx = g.n_batch * g.channels * g.height * g.width;
            const int64_t nw = g.n_filters * g.channels * 9;
            const int64_t no = g.n_batch * g.n_filters * g.out_h * g.out_w;
            double *x = random_array(nx, &st), *w = random_array(nw, &st);
            double *b = random_array(g.n_filters, &st), *dout = random_array(no, &st);
            double *out = malloc(sizeof(double) * no), *want = calloc((size_t)no, sizeof(double));
            double *dx = malloc(sizeof(double) * nx), *dw = malloc(sizeof(double) * nw);
            double *db = malloc(sizeof(double) * g.n_filters);
            double *want_dx = calloc((size_t)nx, sizeof(double));
            double *want_dw = calloc((size_t)nw, sizeof(double));
            double *want_db = calloc((size_t)g.n_filters, sizeof(double));
            float *xf = malloc(sizeof(float) * nx), *wf = malloc(sizeof(float) * nw);
            float *bf = malloc(sizeof(float) * g.n_filters), *of = malloc(sizeof(float) * no);
            float *doutf = malloc(sizeof(float) * no);
            float *dwf = malloc(sizeof(float) * nw), *dbf = malloc(sizeof(float) * g.n_filters);
            for (int64_t n = 0; n < g.n_batch; n++)
                for (int64_t f = 0; f < g.n_filters; f++)
                    for (int64_t i = 0; i < g.out_h; i++)
                        for (int64_t j = 0; j < g.out_w; j++) {
                            int64_t o = ((n * g.n_filters + f) * g.out_h + i) * g.out_w + j;
                            want[o] = b[f];
                            want_db[f] += dout[o];
                            for (int64_t c = 0; c < g.channels; c++)
                                for (int64_t kh = 0; kh < 3; kh++)
                                    for (int64_t kw = 0; kw < 3; kw++) {
                                        int64_t y = i * stride + kh - pad, xx = j * stride + kw - pad;
                                        if (y < 0 || y >= g.height || xx < 0 || xx >= g.width) continue;
                                        int64_t xi = ((n * g.channels + c) * g.height + y) * g.width + xx;
                                        int64_t wi = ((f * g.channels + c) * 3 + kh) * 3 + kw;
                                        want[o] += w[wi] * x[xi];
                                        want_dx[xi] += w[wi] * dout[o];
                                        want_dw[wi] += x[xi] * dout[o];
                                    }
                        }
            int ok = fastfc_conv_forward_f64(&g, x, w, b, out, &BLAS, threads) == 0
                && fastfc_conv_backward_f64(&g, dout, x, w, dx, dw, db, &BLAS, threads) == 0;
            CHECK(ok && max_abs_diff(out, want, no) < 1e-12 && max_abs_diff(dx, want_dx, nx) < 1e-12
                      && max_abs_diff(dw, want_dw, nw) < 1e-11
                      && max_abs_diff(db, want_db, g.n_filters) < 1e-11,
                  "conv (double) case %zu threads %d", ci, threads);
            for (int64_t i = 0; i < nx; i++) xf[i] = (float)x[i];
            for (int64_t i = 0; i < nw; i++) wf[i] = (float)w[i];
            for (int64_t i = 0; i < g.n_filters; i++) bf[i] = (float)b[i];
            for (int64_t i = 0; i < no; i++) doutf[i] = (float)dout[i];
            ok = fastfc_conv_forward_f32(&g, xf, wf, bf, of, &BLAS, threads) == 0
                && fastfc_conv_backward_f32(&g, doutf, xf, wf, NULL, dwf, dbf, &BLAS, threads) == 0;
            double err = 0; /* relative to the sums' sizes: at most 72 terms of |v| < 1, 9 C */
            for (int64_t i = 0; i < no; i++) err = fmax(err, fabs(of[i] - want[i]));
            for (int64_t i = 0; i < nw; i++) err = fmax(err, fabs(dwf[i] - want_dw[i]) / 16);
            CHECK(ok && err < 1e-4, "conv (float, no dx) case %zu threads %d: err %g", ci, threads,
                  err);
            free(x); free(w); free(b); free(dout); free(out); free(want); free(dx); free(dw);
            free(db); free(want_dx); free(want_dw); free(want_db); free(xf); free(wf); free(bf);
            free(of); free(doutf); free(dwf); free(dbf);
        }
}

static void test_affine_forward_split_k(void) {
    /* few rows, long K: the threads split K (affine_forward_split_k); 803 is
     * no multiple of the 16-element K blocks, and exact-size buffers let ASan
     * catch a partial product written past its end */
    unsigned st = 5;
    const int64_t nb = 40, di = 803, dout_ = 100;
    double *x = random_array(nb * di, &st), *w = random_array(di * dout_, &st), *b = random_array(dout_, &st);
    double *out = malloc(sizeof(double) * nb * dout_), *want = malloc(sizeof(double) * nb * dout_);
    for (int relu = 0; relu <= 1; relu++) {
        for (int64_t i = 0; i < nb; i++)
            for (int64_t j = 0; j < dout_; j++) {
                double s = b[j];
                for (int64_t p = 0; p < di; p++) s += x[i * di + p] * w[p * dout_ + j];
                want[i * dout_ + j] = relu && s < 0 ? 0 : s;
            }
        for (int threads = 2; threads <= 3; threads++) {
            fastfc_affine_forward_f64(x, w, b, out, nb, di, dout_, relu, &BLAS, threads);
            CHECK(max_abs_diff(out, want, nb * dout_) < 1e-11, "affine forward split over K, relu=%d, %d threads",
                  relu, threads);
        }
    }
    free(x), free(w), free(b), free(out), free(want);
}

static void test_gather_rows(void) {
    /* exact-size buffers: ASan catches a row copied past either end */
    const int64_t n_rows = 97, row_len = 131, n_index = 200; /* enough for 3 threads */
    float *x = malloc(sizeof(float) * n_rows * row_len), *out = malloc(sizeof(float) * n_index * row_len);
    double *xd = malloc(sizeof(double) * n_rows * row_len), *outd = malloc(sizeof(double) * n_index * row_len);
    int64_t *index = malloc(sizeof(int64_t) * n_index);
    for (int64_t i = 0; i < n_rows * row_len; i++) x[i] = (float)(xd[i] = (double)i);
    for (int64_t i = 0; i < n_index; i++) index[i] = (i * 37 + 11) % n_rows; /* repeats, first and last rows */
    index[0] = 0, index[n_index - 1] = n_rows - 1;
    for (int threads = 1; threads <= 3; threads++) {
        memset(out, 0, sizeof(float) * n_index * row_len);
        memset(outd, 0, sizeof(double) * n_index * row_len);
        fastfc_gather_rows_f32(x, row_len, index, n_index, out, threads);
        fastfc_gather_rows_f64(xd, row_len, index, n_index, outd, threads);
        int64_t wrong = 0;
        for (int64_t i = 0; i < n_index; i++)
            for (int64_t j = 0; j < row_len; j++) {
                double want = (double)(index[i] * row_len + j);
                wrong += out[i * row_len + j] != (float)want || outd[i * row_len + j] != want;
            }
        CHECK(wrong == 0, "gather_rows on %d threads: %lld wrong elements", threads, (long long)wrong);
    }
    fastfc_gather_rows_f32(x, row_len, index, 0, NULL, 2); /* no rows: touches nothing */
    free(x), free(out), free(xd), free(outd), free(index);
}

int main(void) {
    test_gather_rows();
    test_gemm();
    test_affine();
    test_affine_forward_split_k();
    test_activations_and_dropout();
    test_losses();
    test_pool_entry_point();
    test_optim_entry_point();
    test_conv();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed != 0;
}
