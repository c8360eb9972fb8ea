/* Losses over a batch of scores, each returning the mean loss and writing
 * its gradient in the same pass. Per-row work is independent; the loss sum
 * is reduced in double. */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

#define FASTFC_TEMPLATE "losses.c"
#include "instantiate.h"
#else

/* One row: x, dx (n_classes). Max-subtraction keeps exp in range (its
 * argument is <= 0, which the SIMD exp relies on); the loss is
 * log(sum exp(x - max)) - (x[y] - max). Entries of -inf contribute 0. */
FASTFC_CLONES static double SFX(softmax_row)(const REAL *restrict x, REAL *restrict dx,
                                             int64_t label, int64_t n_classes, REAL inv_n) {
    REAL max = x[0];
#pragma omp simd reduction(max : max)
    for (int64_t j = 1; j < n_classes; j++) max = x[j] > max ? x[j] : max;
#pragma omp simd
    for (int64_t j = 0; j < n_classes; j++) dx[j] = R_EXP_NONPOSITIVE(x[j] - max);
    /* The row is in L1 now; sum it in 16 lanes so the loop vectorizes without
     * reassociation flags (GCC's omp simd reductions do not vectorize in the
     * clones of a shared library). Terms in (0, 1], one of them 1. */
    REAL lanes[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= n_classes; j += 16)
        for (int l = 0; l < 16; l++) lanes[l] += dx[j + l];
    REAL sum = 0;
    for (; j < n_classes; j++) sum += dx[j];
    for (int l = 0; l < 16; l++) sum += lanes[l];
    REAL scale = (REAL)1 / sum * inv_n;
#pragma omp simd
    for (int64_t j = 0; j < n_classes; j++) dx[j] *= scale;
    dx[label] -= inv_n;
    return log((double)sum) - ((double)x[label] - (double)max);
}

double SFX(softmax_loss)(const REAL *x, const int64_t *y, REAL *dx, int64_t n_batch,
                         int64_t n_classes, int n_threads) {
    REAL inv_n = (REAL)(1.0 / (double)n_batch);
    double total = 0;
    int nt = fastfc_team(n_threads, n_batch * n_classes, FASTFC_MIN_PER_THREAD / 8);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < n_batch; i++)
        total += SFX(softmax_row)(x + i * n_classes, dx + i * n_classes, y[i], n_classes, inv_n);
    return total / (double)n_batch;
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
        loss += active ? margin : (REAL)0;
        n_positive += active;
        dx[j] = active ? inv_n : (REAL)0;
    }
    dx[label] = -(REAL)n_positive * inv_n;
    return loss;
}

double SFX(svm_loss)(const REAL *x, const int64_t *y, REAL *dx, int64_t n_batch,
                     int64_t n_classes, int n_threads) {
    REAL inv_n = (REAL)(1.0 / (double)n_batch);
    double total = 0;
    int nt = fastfc_team(n_threads, n_batch * n_classes, FASTFC_MIN_PER_THREAD / 4);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < n_batch; i++)
        total += SFX(svm_row)(x + i * n_classes, dx + i * n_classes, y[i], n_classes, inv_n);
    return total / (double)n_batch;
}

double SFX(mse_loss)(const REAL *pred, const REAL *target, REAL *dpred, int64_t n,
                     int n_threads) {
    REAL two_over_n = (REAL)(2.0 / (double)n);
    double total = 0;
    int nt = fastfc_team(n_threads, n, FASTFC_MIN_PER_THREAD);
    (void)nt; /* unused without OpenMP */
#pragma omp parallel for simd num_threads(nt) reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        REAL diff = pred[i] - target[i];
        dpred[i] = two_over_n * diff;
        total += (double)diff * (double)diff;
    }
    return total / (double)n;
}

#endif
