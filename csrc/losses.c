/* Losses over a batch of scores, each returning the mean loss and writing
 * its gradient in the same pass. Per-row work is independent; the loss sum
 * is reduced in double.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_softmax_loss_f32, fastfc_softmax_loss_f64
 *   fastfc_svm_loss_f32, fastfc_svm_loss_f64
 *   fastfc_mse_loss_f32, fastfc_mse_loss_f64 */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

#define FASTFC_TEMPLATE "losses.c"
#include "instantiate.h"
#else

/* Rows are handled in blocks of about this many scores, so that the three
 * passes below run on data still in L1 and, with few classes, the exp loop
 * runs over many rows at once instead of a short vector loop per row. */
#define SOFTMAX_BLOCK ((int64_t)2048)

/* The exp pass over a block: dx holds x - max(row) <= 0 on entry (the SIMD
 * exp relies on that) and exp of it on exit. -inf gives exactly 0. */
FASTFC_CLONES static void SFX(softmax_exp_block)(REAL *restrict dx, int64_t n) {
#pragma omp simd
    for (int64_t t = 0; t < n; t++) dx[t] = R_EXP_NONPOSITIVE(dx[t]);
}

/* Sum of one row of exponentials in (0, 1], in 16 lanes so the loop
 * vectorizes without reassociation flags (GCC's omp simd reductions do not
 * vectorize in the clones of a shared library). */
static REAL SFX(row_sum)(const REAL *restrict e, int64_t n) {
    REAL lanes[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) lanes[l] += e[j + l];
    REAL sum = 0;
    for (; j < n; j++) sum += e[j];
    for (int l = 0; l < 16; l++) sum += lanes[l];
    return sum;
}

/* Rows [r0, r1): x, dx (rows, n_classes). Returns the summed loss of the
 * rows, log(sum exp(x - max)) - (x[y] - max) each. */
static double SFX(softmax_rows)(const REAL *x, const int64_t *y, REAL *dx, int64_t r0,
                                int64_t r1, int64_t n_classes, REAL inv_n) {
    double loss = 0;
    for (int64_t i = r0; i < r1; i++) {
        const REAL *restrict xi = x + i * n_classes;
        REAL *restrict di = dx + i * n_classes;
        REAL max = xi[0];
        for (int64_t j = 1; j < n_classes; j++) max = xi[j] > max ? xi[j] : max;
#pragma omp simd
        for (int64_t j = 0; j < n_classes; j++) di[j] = xi[j] - max;
        loss += (double)max - (double)xi[y[i]];
    }
    SFX(softmax_exp_block)(dx + r0 * n_classes, (r1 - r0) * n_classes);
    for (int64_t i = r0; i < r1; i++) {
        REAL *restrict di = dx + i * n_classes;
        REAL sum = SFX(row_sum)(di, n_classes);
        REAL scale = (REAL)1 / sum * inv_n;
#pragma omp simd
        for (int64_t j = 0; j < n_classes; j++) di[j] *= scale;
        di[y[i]] -= inv_n;
        loss += log((double)sum);
    }
    return loss;
}

double SFX(fastfc_softmax_loss)(const REAL *x, const int64_t *y, REAL *dx, int64_t n_batch,
                                int64_t n_classes, int64_t n_total, int n_threads) {
    REAL inv_n = (REAL)(1.0 / (double)n_total);
    int64_t rows_per_block = SOFTMAX_BLOCK / n_classes > 1 ? SOFTMAX_BLOCK / n_classes : 1;
    int64_t n_blocks = (n_batch + rows_per_block - 1) / rows_per_block;
    double total = 0;
    int nt = fastfc_team(n_threads, n_batch * n_classes, FASTFC_MIN_PER_THREAD / 8);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t blk = 0; blk < n_blocks; blk++) {
        int64_t r0 = blk * rows_per_block;
        int64_t r1 = r0 + rows_per_block < n_batch ? r0 + rows_per_block : n_batch;
        total += SFX(softmax_rows)(x, y, dx, r0, r1, n_classes, inv_n);
    }
    return total / (double)n_total;
}

/* Multiclass hinge loss, margin 1: sum over j != y of max(0, x_j - x_y + 1). */
static double SFX(svm_row)(const REAL *restrict x, REAL *restrict dx, int64_t label,
                           int64_t n_classes, REAL inv_n) {
    REAL correct = x[label];
    double loss = 0;
    int64_t n_positive = 0;
    for (int64_t j = 0; j < n_classes; j++) {
        REAL margin = x[j] - correct + (REAL)1;
        int active = j != label && margin > 0;
        /* a NaN margin (a NaN score) is not > 0 but must reach the loss, as in
         * the reference: a diverged model must not show a finite loss */
        loss += active || (j != label && margin != margin) ? margin : (REAL)0;
        n_positive += active;
        dx[j] = active ? inv_n : (REAL)0;
    }
    dx[label] = -(REAL)n_positive * inv_n;
    return loss;
}

double SFX(fastfc_svm_loss)(const REAL *x, const int64_t *y, REAL *dx, int64_t n_batch,
                            int64_t n_classes, int64_t n_total, int n_threads) {
    REAL inv_n = (REAL)(1.0 / (double)n_total);
    double total = 0;
    int nt = fastfc_team(n_threads, n_batch * n_classes, FASTFC_MIN_PER_THREAD / 4);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < n_batch; i++)
        total += SFX(svm_row)(x + i * n_classes, dx + i * n_classes, y[i], n_classes, inv_n);
    return total / (double)n_total;
}

double SFX(fastfc_mse_loss)(const REAL *pred, const REAL *target, REAL *dpred, int64_t n,
                            int64_t n_total, int n_threads) {
    REAL two_over_n = (REAL)(2.0 / (double)n_total);
    double total = 0;
    int nt = fastfc_team(n_threads, n, FASTFC_MIN_PER_THREAD);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for simd num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        REAL diff = pred[i] - target[i];
        dpred[i] = two_over_n * diff;
        total += (double)diff * (double)diff;
    }
    return total / (double)n_total;
}

#endif
