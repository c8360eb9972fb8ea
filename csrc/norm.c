/* Normalization layers: batch normalization of x (n_batch, channels,
 * spatial) with statistics per channel (spatial = 1: the (N, D) layer;
 * spatial = H*W: the NCHW "spatial" one), and group normalization with
 * statistics per (sample, group) of contiguous channels (layer
 * normalization is the case of one group and spatial = 1).
 *
 * Statistics are sums accumulated in double, for float32 data too: a float
 * accumulator over the 65,536 values of a channel of a (64, C, 32, 32) batch
 * would carry errors near 1e-3 relative, the variance of a channel whose
 * mean is large would drown in the rounding of its sum of squares, and the
 * backward's sum(dout * x_hat), subtracted from every element's gradient,
 * would pass its error on to all of them. In double the rounding of sums of
 * millions of floats stays far below float precision, whatever their order
 * (and the product of two floats is exact); the cost is a conversion and
 * half-width SIMD in loops that mostly wait on memory.
 *
 * Forward takes the statistics in one pass over x, as sums of d = x - shift
 * and d^2, the shift being the statistic's first value: then var = E[d^2] -
 * E[d]^2 cancels only as much as (mean - shift)^2 exceeds var, which a value
 * of the data itself keeps small (the one-pass formula without a shift
 * loses everything to cancellation once the mean is large), and a second
 * pass for the centered sum of squares is saved: over a batch larger than
 * the cache it is a second read of x from memory.
 *
 * Batch norm reads its data sample by sample (each thread a block of
 * channels, the rows or planes of the block in memory order) rather than
 * channel by channel: a channel's planes of a (N, C, H, W) batch lie
 * C*H*W apart, a power of two as often as not, and then all map to the same
 * few cache sets, which evict one another.
 *
 * Every sum is taken in an order fixed by the shape: a channel of
 * batchnorm, a row of groupnorm, are reduced by one thread, down the samples
 * in order, each run of contiguous values in SUM_LANES interleaved partial
 * sums combined in a fixed tree (the same whatever SIMD width the compiler
 * picks); groupnorm's parameter gradients are partial sums over fixed tiles
 * of samples added up in tile order. So results are bit for bit the same
 * for every thread count and every way the wrappers cut a call into pieces.
 *
 * Forward saves mean and inv_std = 1 / sqrt(var + eps) per statistic, and
 * backward recomputes x_hat = (x - mean) * inv_std from x with the very same
 * operations. Saving x_hat instead (forward writing it, backward reading it
 * in place of x) was measured on spatial batchnorm, float32, one thread: 6%
 * faster forward+backward when the arrays fit in L2 (4x32x32x32), 10% slower
 * beyond the cache (64x32x32x32), where the extra array written costs more
 * than the two operations per element it saves; it would also hold a copy
 * of the batch in every cache.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; the last 2 once; every other function here is static):
 *   fastfc_batchnorm_stats_f32, fastfc_batchnorm_stats_f64
 *   fastfc_batchnorm_normalize_f32, fastfc_batchnorm_normalize_f64
 *   fastfc_batchnorm_grad_sums_f32, fastfc_batchnorm_grad_sums_f64
 *   fastfc_batchnorm_input_grad_f32, fastfc_batchnorm_input_grad_f64
 *   fastfc_groupnorm_forward_f32, fastfc_groupnorm_forward_f64
 *   fastfc_groupnorm_backward_f32, fastfc_groupnorm_backward_f64
 *   fastfc_groupnorm_param_grads_f32, fastfc_groupnorm_param_grads_f64
 *   fastfc_groupnorm_chunk_samples
 *   fastfc_groupnorm_tiles */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

/* The run helpers below are inlined into each SIMD clone of their callers
 * (left out of line, they would be compiled for the baseline target only). */
#if defined(__GNUC__)
#define NORM_INLINE static inline __attribute__((always_inline))
#else
#define NORM_INLINE static inline
#endif

/* Asks for the cache line at p, to be written soon. */
#if defined(__GNUC__)
#define PREFETCH_FOR_WRITE(p) __builtin_prefetch((p), 1, 3)
#else
#define PREFETCH_FOR_WRITE(p) ((void)(p))
#endif

/* Partial sums per reduction: 16 doubles are two AVX-512 or four AVX2
 * registers, enough independent additions to hide the adder's latency. */
#define SUM_LANES 16

/* Columns of batchnorm over (N, D) handled together (a block of sums on the
 * stack): a thread walks down the rows of its block, each row a contiguous
 * run of the block's columns. */
#define COLUMN_BLOCK ((int64_t)256)

/* A thread pays for itself on about this many elements (each is read two to
 * three times per call, mostly from cache). */
#define NORM_MIN_PER_THREAD (FASTFC_MIN_PER_THREAD / 2)

/* Groupnorm's backward sums the parameter gradients over tiles of about
 * this many elements (a tile: some samples, one group). */
#define NORM_TILE_ELEMENTS ((int64_t)8192)
/* ... and over at most this many tiles of samples (bounds the scratch). */
#define NORM_MAX_CHUNKS ((int64_t)1024)

static inline double lanes_total(const double *lanes) {
    double quad[4];
    for (int q = 0; q < 4; q++)
        quad[q] = (lanes[q] + lanes[q + 4]) + (lanes[q + 8] + lanes[q + 12]);
    return (quad[0] + quad[1]) + (quad[2] + quad[3]);
}

/* Mean and biased variance of count values from Σ d and Σ d^2, d = value -
 * shift. Rounding can leave a variance of equal values a hair below 0: it
 * is clamped (NaN passes: a NaN statistic must stay NaN). */
static inline void moments(double shift, double sum, double squares, double count, double *mean,
                           double *var) {
    double m = sum / count, v = squares / count - m * m;
    *mean = shift + m;
    *var = v < 0 ? 0.0 : v;
}

int64_t fastfc_groupnorm_chunk_samples(int64_t n_batch, int64_t group_size) {
    int64_t by_size = (NORM_TILE_ELEMENTS + group_size - 1) / group_size;
    int64_t by_count = (n_batch + NORM_MAX_CHUNKS - 1) / NORM_MAX_CHUNKS;
    int64_t samples = by_size > by_count ? by_size : by_count;
    return samples < 1 ? 1 : samples;
}

int64_t fastfc_groupnorm_tiles(const fastfc_norm_geom *g) {
    return (g->n_batch + g->chunk_samples - 1) / g->chunk_samples * g->groups;
}

#define FASTFC_TEMPLATE "norm.c"
#include "instantiate.h"
#else

/* ---- reductions over a contiguous run (a plane, a group's row) ----------- */

/* The run reductions take will_write: NULL, or n values the caller writes
 * right after the reduction (group norm's output row): their cache lines
 * are requested along the way, so that the writes do not then wait on
 * memory one line at a time (measured: 12% off group norm's backward on
 * (64, 32, 32, 32); batch norm writes too long after to gain). */

/* *sum = Σ d, *squares = Σ d^2 over d = x[i] - shift, in double. */
NORM_INLINE void SFX(run_moments)(const REAL *restrict x, int64_t n, double shift, double *sum,
                                  double *squares, const REAL *will_write) {
    double s[SUM_LANES] = {0}, q[SUM_LANES] = {0};
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
        if (will_write) PREFETCH_FOR_WRITE(will_write + i);
#pragma omp simd
        for (int l = 0; l < SUM_LANES; l++) {
            double d = (double)x[i + l] - shift;
            s[l] += d;
            q[l] += d * d;
        }
    }
    for (int l = 0; i < n; i++, l++) {
        double d = (double)x[i] - shift;
        s[l] += d;
        q[l] += d * d;
    }
    *sum = lanes_total(s);
    *squares = lanes_total(q);
}

/* *sum_dout = Σ dout[i], *sum_dout_xhat = Σ dout[i] * x_hat[i], x_hat[i] =
 * (x[i] - mean) * inv_std as forward computed it. */
NORM_INLINE void SFX(run_grad_sums)(const REAL *restrict dout, const REAL *restrict x,
                                    int64_t n, REAL mean, REAL inv_std, double *sum_dout,
                                    double *sum_dout_xhat, const REAL *will_write) {
    double s[SUM_LANES] = {0}, sx[SUM_LANES] = {0};
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
        if (will_write) PREFETCH_FOR_WRITE(will_write + i);
#pragma omp simd
        for (int l = 0; l < SUM_LANES; l++) {
            REAL xhat = (x[i + l] - mean) * inv_std;
            s[l] += (double)dout[i + l];
            sx[l] += (double)dout[i + l] * (double)xhat;
        }
    }
    for (int l = 0; i < n; i++, l++) {
        REAL xhat = (x[i] - mean) * inv_std;
        s[l] += (double)dout[i];
        sx[l] += (double)dout[i] * (double)xhat;
    }
    *sum_dout = lanes_total(s);
    *sum_dout_xhat = lanes_total(sx);
}

/* out = x_hat * gamma + beta over a run sharing one gamma and beta. */
NORM_INLINE void SFX(run_normalize)(const REAL *restrict x, REAL *restrict out, int64_t n,
                                    REAL mean, REAL inv_std, REAL gamma, REAL beta) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] - mean) * inv_std * gamma + beta;
}

/* dx = scale * (dout - a - x_hat * b): the train-mode input gradient, with
 * scale = gamma * inv_std, a = mean of dout, b = mean of dout * x_hat (over
 * the statistic's values; per channel of batchnorm, gamma then a constant). */
NORM_INLINE void SFX(run_input_grad)(const REAL *restrict dout, const REAL *restrict x,
                                     REAL *restrict dx, int64_t n, REAL mean, REAL inv_std,
                                     REAL scale, REAL a, REAL b) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL xhat = (x[i] - mean) * inv_std;
        dx[i] = scale * (dout[i] - a - xhat * b);
    }
}

/* dx = dout * scale: the test-mode input gradient (fixed statistics). */
NORM_INLINE void SFX(run_scale)(const REAL *restrict dout, REAL *restrict dx, int64_t n,
                                REAL scale) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) dx[i] = dout[i] * scale;
}

/* ---- batch normalization -------------------------------------------------
 * Each pass is its own call: the reductions (the statistics, the parameter
 * gradients) over ranges of channels, the element-wise passes (out, dx)
 * over ranges of samples. The wrappers cut long calls into such ranges, and
 * so the element-wise passes write the output in memory order: a range of
 * channels would touch every row of a fresh output at once, and the first
 * piece would take all of its page faults. */

/* Channel c's mean and inv_std, from the shifted sums of its count values
 * in training (and the running averages updated), else from the running
 * averages. */
NORM_INLINE void SFX(channel_stats)(const fastfc_norm_args *a, int64_t c, double shift,
                                    double sum, double squares, double count) {
    REAL *running_mean = (REAL *)a->running_mean, *running_var = (REAL *)a->running_var;
    double mean, var;
    if (a->train) {
        moments(shift, sum, squares, count, &mean, &var);
        running_mean[c] = (REAL)(a->momentum * running_mean[c] + (1.0 - a->momentum) * mean);
        running_var[c] = (REAL)(a->momentum * running_var[c] + (1.0 - a->momentum) * var);
    } else {
        mean = running_mean[c];
        var = running_var[c];
    }
    ((REAL *)a->mean)[c] = (REAL)mean;
    ((REAL *)a->inv_std)[c] = (REAL)(1.0 / sqrt(var + a->eps));
}

/* The column reductions (spatial = 1) go down the batch ROWS_AT_ONCE rows at
 * a time: the block's sums then pass through the cache once per group of
 * rows instead of once per row. Each step handles `rows` rows from x (row
 * stride d) in the columns [0, w); it is called with rows = ROWS_AT_ONCE and,
 * for the last rows of the batch, rows = 1 (always inlined, its loop over the
 * rows unrolls). A column's sum adds up its groups' sums (each in row order)
 * in order down the batch. */
#define ROWS_AT_ONCE 4

NORM_INLINE void SFX(columns_moments)(const REAL *restrict x, int64_t d, int rows, int64_t w,
                                      const double *restrict shift, double *restrict sum,
                                      double *restrict squares) {
#pragma omp simd
    for (int64_t j = 0; j < w; j++) {
        double group_sum = 0.0, group_squares = 0.0;
        for (int r = 0; r < rows; r++) {
            double dev = (double)x[r * d + j] - shift[j];
            group_sum += dev;
            group_squares += dev * dev;
        }
        sum[j] += group_sum;
        squares[j] += group_squares;
    }
}

/* sum[j] += Σ dout, sum_xhat[j] += Σ dout * x_hat over the rows. */
NORM_INLINE void SFX(columns_grad_sums)(const REAL *restrict dout, const REAL *restrict x,
                                        int64_t d, int rows, int64_t w, const REAL *restrict mean,
                                        const REAL *restrict inv_std, double *restrict sum,
                                        double *restrict sum_xhat) {
#pragma omp simd
    for (int64_t j = 0; j < w; j++) {
        double group_sum = 0.0, group_xhat = 0.0;
        for (int r = 0; r < rows; r++) {
            REAL xhat = (x[r * d + j] - mean[j]) * inv_std[j];
            group_sum += (double)dout[r * d + j];
            group_xhat += (double)dout[r * d + j] * (double)xhat;
        }
        sum[j] += group_sum;
        sum_xhat[j] += group_xhat;
    }
}

/* Statistics of channels [c0, c0 + w), w <= COLUMN_BLOCK: with spatial = 1
 * columns of x (n_batch, channels), otherwise the channels' planes, sample
 * by sample, each plane's sums added in order down the batch. */
FASTFC_CLONES static void SFX(bn_stats_block)(const fastfc_norm_args *a, int64_t c0, int64_t w) {
    const int64_t n = a->geom.n_batch, s = a->geom.spatial, sample = a->geom.channels * s;
    const REAL *x = (const REAL *)a->x + c0 * s;
    double shift[COLUMN_BLOCK], sum[COLUMN_BLOCK], squares[COLUMN_BLOCK];
    for (int64_t j = 0; j < w; j++) {
        shift[j] = (double)x[j * s];
        sum[j] = squares[j] = 0.0;
    }
    if (a->train && s == 1) {
        int64_t i = 0;
        for (; i + ROWS_AT_ONCE <= n; i += ROWS_AT_ONCE)
            SFX(columns_moments)(x + i * sample, sample, ROWS_AT_ONCE, w, shift, sum, squares);
        for (; i < n; i++) SFX(columns_moments)(x + i * sample, sample, 1, w, shift, sum, squares);
    } else if (a->train) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < w; j++) {
                double plane_sum, plane_squares;
                SFX(run_moments)(x + i * sample + j * s, s, shift[j], &plane_sum, &plane_squares,
                                 NULL);
                sum[j] += plane_sum;
                squares[j] += plane_squares;
            }
    }
    for (int64_t j = 0; j < w; j++)
        SFX(channel_stats)(a, c0 + j, shift[j], sum[j], squares[j], (double)n * (double)s);
}

/* Σ dout and Σ dout * x_hat of channels [c0, c0 + w) (summed as the
 * statistics are): dbeta, dgamma, and the factors of the input gradient
 * dx = scale * (dout - mean_dout - x_hat * mean_dout_xhat) into grad_factors:
 * [0][c] scale = gamma * inv_std, [1][c] mean_dout, [2][c] mean_dout_xhat. */
FASTFC_CLONES static void SFX(bn_grad_sums_block)(const fastfc_norm_args *a, int64_t c0,
                                                  int64_t w) {
    const int64_t n = a->geom.n_batch, s = a->geom.spatial, sample = a->geom.channels * s;
    const REAL *dout = (const REAL *)a->dout + c0 * s, *x = (const REAL *)a->x + c0 * s;
    const REAL *mean = (const REAL *)a->mean + c0, *inv_std = (const REAL *)a->inv_std + c0;
    double sum[COLUMN_BLOCK], sum_xhat[COLUMN_BLOCK];
    for (int64_t j = 0; j < w; j++) sum[j] = sum_xhat[j] = 0.0;
    if (s == 1) {
        int64_t i = 0;
        for (; i + ROWS_AT_ONCE <= n; i += ROWS_AT_ONCE)
            SFX(columns_grad_sums)(dout + i * sample, x + i * sample, sample, ROWS_AT_ONCE, w,
                                   mean, inv_std, sum, sum_xhat);
        for (; i < n; i++)
            SFX(columns_grad_sums)(dout + i * sample, x + i * sample, sample, 1, w, mean, inv_std,
                                   sum, sum_xhat);
    } else {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < w; j++) {
                double plane, plane_xhat;
                SFX(run_grad_sums)(dout + i * sample + j * s, x + i * sample + j * s, s, mean[j],
                                   inv_std[j], &plane, &plane_xhat, NULL);
                sum[j] += plane;
                sum_xhat[j] += plane_xhat;
            }
    }
    const double count = (double)n * (double)s;
    REAL *scale = (REAL *)a->grad_factors + c0, *mean_dout = scale + a->geom.channels;
    REAL *mean_dout_xhat = mean_dout + a->geom.channels;
    for (int64_t j = 0; j < w; j++) {
        ((REAL *)a->dbeta)[c0 + j] = (REAL)sum[j];
        ((REAL *)a->dgamma)[c0 + j] = (REAL)sum_xhat[j];
        scale[j] = ((const REAL *)a->gamma)[c0 + j] * inv_std[j];
        mean_dout[j] = (REAL)(sum[j] / count);
        mean_dout_xhat[j] = (REAL)(sum_xhat[j] / count);
    }
}

typedef void (*SFX(bn_block_fn))(const fastfc_norm_args *, int64_t, int64_t);

/* A reduction over channels [c_lo, c_hi) on a team, in blocks of adjacent
 * channels (a channel's sums never straddle two threads); with spatial = 1
 * the blocks are whole multiples of 16 columns, so that no two threads
 * share a cache line. */
static void SFX(bn_channels)(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi, int n_threads,
                             SFX(bn_block_fn) run) {
    const int64_t width = c_hi - c_lo;
    if (width <= 0) return;
    int team = fastfc_team(n_threads, a->geom.n_batch * a->geom.spatial * width,
                           NORM_MIN_PER_THREAD);
    int64_t block = (width + team - 1) / team;
    if (a->geom.spatial == 1) block = (block + 15) / 16 * 16;
    if (block > COLUMN_BLOCK) block = COLUMN_BLOCK;
    const int64_t n_blocks = (width + block - 1) / block;
    if (team > n_blocks) team = (int)n_blocks;
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t k = 0; k < n_blocks; k++) {
        int64_t c0 = c_lo + k * block;
        run(a, c0, c_hi - c0 < block ? c_hi - c0 : block);
    }
}

/* The element-wise passes, over the values [lo, hi) of x counted in memory
 * order, lo and hi within the batch: each stretch of one row (spatial = 1)
 * or of one plane goes to a loop over contiguous values. */
FASTFC_CLONES static void SFX(bn_normalize_range)(const fastfc_norm_args *a, int64_t lo,
                                                  int64_t hi) {
    const int64_t s = a->geom.spatial, sample = a->geom.channels * s;
    const REAL *x = (const REAL *)a->x, *mean = (const REAL *)a->mean;
    const REAL *inv_std = (const REAL *)a->inv_std, *gamma = (const REAL *)a->gamma;
    const REAL *beta = (const REAL *)a->beta;
    REAL *out = (REAL *)a->out;
    for (int64_t at = lo; at < hi;) {
        const int64_t in_row = at % sample;
        if (s == 1) {
            const int64_t end = at - in_row + sample < hi ? at - in_row + sample : hi;
            const REAL *restrict xr = x + at - in_row, *restrict m = mean, *restrict is = inv_std;
            const REAL *restrict g = gamma, *restrict b = beta;
            REAL *restrict o = out + at - in_row;
#pragma omp simd
            for (int64_t j = in_row; j < in_row + (end - at); j++)
                o[j] = (xr[j] - m[j]) * is[j] * g[j] + b[j];
            at = end;
        } else {
            const int64_t c = in_row / s, in_plane = in_row % s;
            const int64_t end = at - in_plane + s < hi ? at - in_plane + s : hi;
            SFX(run_normalize)(x + at, out + at, end - at, mean[c], inv_std[c], gamma[c], beta[c]);
            at = end;
        }
    }
}

FASTFC_CLONES static void SFX(bn_input_grad_range)(const fastfc_norm_args *a, int64_t lo,
                                                   int64_t hi) {
    const int64_t channels = a->geom.channels, s = a->geom.spatial, sample = channels * s;
    const REAL *dout = (const REAL *)a->dout, *x = (const REAL *)a->x;
    const REAL *mean = (const REAL *)a->mean, *inv_std = (const REAL *)a->inv_std;
    const REAL *scale = (const REAL *)a->grad_factors, *mean_dout = scale + channels;
    const REAL *mean_dout_xhat = mean_dout + channels;
    REAL *dx = (REAL *)a->dx;
    for (int64_t at = lo; at < hi;) {
        const int64_t in_row = at % sample;
        if (s == 1) {
            const int64_t end = at - in_row + sample < hi ? at - in_row + sample : hi;
            const int64_t row = at - in_row, j_end = in_row + (end - at);
            const REAL *restrict d = dout + row, *restrict xr = x + row;
            const REAL *restrict m = mean, *restrict is = inv_std, *restrict k = scale;
            const REAL *restrict md = mean_dout, *restrict mdx = mean_dout_xhat;
            REAL *restrict o = dx + row;
            if (a->train) {
#pragma omp simd
                for (int64_t j = in_row; j < j_end; j++) {
                    REAL xhat = (xr[j] - m[j]) * is[j];
                    o[j] = k[j] * (d[j] - md[j] - xhat * mdx[j]);
                }
            } else {
#pragma omp simd
                for (int64_t j = in_row; j < j_end; j++) o[j] = d[j] * k[j];
            }
            at = end;
        } else {
            const int64_t c = in_row / s, in_plane = in_row % s;
            const int64_t end = at - in_plane + s < hi ? at - in_plane + s : hi;
            if (a->train)
                SFX(run_input_grad)(dout + at, x + at, dx + at, end - at, mean[c], inv_std[c],
                                    scale[c], mean_dout[c], mean_dout_xhat[c]);
            else
                SFX(run_scale)(dout + at, dx + at, end - at, scale[c]);
            at = end;
        }
    }
}

void SFX(fastfc_batchnorm_stats)(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                 int n_threads) {
    SFX(bn_channels)(a, c_lo, c_hi, n_threads, SFX(bn_stats_block));
}

void SFX(fastfc_batchnorm_normalize)(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                     int n_threads) {
    const int64_t sample = a->geom.channels * a->geom.spatial, first = n_lo * sample;
    FASTFC_PARALLEL_BLOCKS((n_hi - n_lo) * sample, n_threads, NORM_MIN_PER_THREAD, lo, hi,
                           SFX(bn_normalize_range)(a, first + lo, first + hi));
}

void SFX(fastfc_batchnorm_grad_sums)(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                     int n_threads) {
    SFX(bn_channels)(a, c_lo, c_hi, n_threads, SFX(bn_grad_sums_block));
}

void SFX(fastfc_batchnorm_input_grad)(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                      int n_threads) {
    const int64_t sample = a->geom.channels * a->geom.spatial, first = n_lo * sample;
    FASTFC_PARALLEL_BLOCKS((n_hi - n_lo) * sample, n_threads, NORM_MIN_PER_THREAD, lo, hi,
                           SFX(bn_input_grad_range)(a, first + lo, first + hi));
}

/* ---- group (and layer) normalization ------------------------------------- */

/* Row r = n * groups + group: the group_channels * spatial contiguous values
 * of one sample's group. */
FASTFC_CLONES static void SFX(gn_forward_row)(const fastfc_norm_args *a, int64_t r) {
    const fastfc_norm_geom *g = &a->geom;
    const int64_t cpg = g->channels / g->groups, s = g->spatial, len = cpg * s;
    const REAL *x = (const REAL *)a->x + r * len;
    REAL *out = (REAL *)a->out + r * len;
    const int64_t c0 = (r % g->groups) * cpg;
    const REAL *gamma = (const REAL *)a->gamma + c0, *beta = (const REAL *)a->beta + c0;
    double sum, squares, mean, var;
    SFX(run_moments)(x, len, (double)x[0], &sum, &squares, out);
    moments((double)x[0], sum, squares, (double)len, &mean, &var);
    const REAL m = (REAL)mean, is = (REAL)(1.0 / sqrt(var + a->eps));
    ((REAL *)a->mean)[r] = m;
    ((REAL *)a->inv_std)[r] = is;
    if (s == 1) {
#pragma omp simd
        for (int64_t k = 0; k < cpg; k++) out[k] = (x[k] - m) * is * gamma[k] + beta[k];
    } else {
        for (int64_t k = 0; k < cpg; k++)
            SFX(run_normalize)(x + k * s, out + k * s, s, m, is, gamma[k], beta[k]);
    }
}

void SFX(fastfc_groupnorm_forward)(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                   int n_threads) {
    const int64_t len = a->geom.channels / a->geom.groups * a->geom.spatial;
    if (row_hi <= row_lo) return;
    int team = fastfc_team(n_threads, (row_hi - row_lo) * len, NORM_MIN_PER_THREAD);
    if (team > row_hi - row_lo) team = (int)(row_hi - row_lo);
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t r = row_lo; r < row_hi; r++) SFX(gn_forward_row)(a, r);
}

/* One row's gradient sums (pass 1), with spatial = 1: per channel k,
 * dout * x_hat and dout go to the tile's partial sums of dgamma and dbeta;
 * *sum_g, *sum_g_xhat get Σ g and Σ g * x_hat, g = dout * gamma. */
NORM_INLINE void SFX(gn_row_sums_features)(const REAL *restrict dout, const REAL *restrict x,
                                             const REAL *restrict gamma, int64_t cpg, REAL m,
                                             REAL is, double *restrict part_gamma,
                                             double *restrict part_beta, double *sum_g,
                                             double *sum_g_xhat) {
    double s[SUM_LANES] = {0}, sx[SUM_LANES] = {0};
    int64_t k = 0;
    for (; k + SUM_LANES <= cpg; k += SUM_LANES)
#pragma omp simd
        for (int l = 0; l < SUM_LANES; l++) {
            REAL xhat = (x[k + l] - m) * is;
            double d = (double)dout[k + l], gd = d * (double)gamma[k + l];
            part_gamma[k + l] += d * (double)xhat;
            part_beta[k + l] += d;
            s[l] += gd;
            sx[l] += gd * (double)xhat;
        }
    for (int l = 0; k < cpg; k++, l++) {
        REAL xhat = (x[k] - m) * is;
        double d = (double)dout[k], gd = d * (double)gamma[k];
        part_gamma[k] += d * (double)xhat;
        part_beta[k] += d;
        s[l] += gd;
        sx[l] += gd * (double)xhat;
    }
    *sum_g = lanes_total(s);
    *sum_g_xhat = lanes_total(sx);
}

/* The tile t = chunk * groups + group: samples [chunk * chunk_samples, ...)
 * of one group. Writes dx of its rows and its partial parameter gradients
 * partial[chunk][0][channels of the group] (dgamma) and [1] (dbeta). */
FASTFC_CLONES static void SFX(gn_backward_tile)(const fastfc_norm_args *a, int64_t t) {
    const fastfc_norm_geom *g = &a->geom;
    const int64_t cpg = g->channels / g->groups, s = g->spatial, len = cpg * s;
    const int64_t chunk = t / g->groups, group = t % g->groups, c0 = group * cpg;
    const int64_t n_lo = chunk * g->chunk_samples;
    const int64_t n_hi = n_lo + g->chunk_samples < g->n_batch ? n_lo + g->chunk_samples
                                                             : g->n_batch;
    const REAL *gamma = (const REAL *)a->gamma + c0;
    double *part_gamma = a->partial + chunk * 2 * g->channels + c0;
    double *part_beta = part_gamma + g->channels;
    for (int64_t k = 0; k < cpg; k++) part_gamma[k] = part_beta[k] = 0.0;
    for (int64_t n = n_lo; n < n_hi; n++) {
        const int64_t r = n * g->groups + group;
        const REAL *dout = (const REAL *)a->dout + r * len, *x = (const REAL *)a->x + r * len;
        REAL *dx = (REAL *)a->dx + r * len;
        const REAL m = ((const REAL *)a->mean)[r], is = ((const REAL *)a->inv_std)[r];
        double sum_g = 0.0, sum_g_xhat = 0.0;
        if (s == 1) {
            SFX(gn_row_sums_features)(dout, x, gamma, cpg, m, is, part_gamma, part_beta, &sum_g,
                                      &sum_g_xhat);
        } else {
            for (int64_t k = 0; k < cpg; k++) {
                double plane, plane_xhat;
                SFX(run_grad_sums)(dout + k * s, x + k * s, s, m, is, &plane, &plane_xhat,
                                   dx + k * s);
                part_gamma[k] += plane_xhat;
                part_beta[k] += plane;
                sum_g += (double)gamma[k] * plane;
                sum_g_xhat += (double)gamma[k] * plane_xhat;
            }
        }
        const REAL mean_g = (REAL)(sum_g / (double)len);
        const REAL mean_g_xhat = (REAL)(sum_g_xhat / (double)len);
        if (s == 1) {
#pragma omp simd
            for (int64_t k = 0; k < cpg; k++) {
                REAL xhat = (x[k] - m) * is;
                dx[k] = is * (dout[k] * gamma[k] - mean_g - xhat * mean_g_xhat);
            }
        } else {
            for (int64_t k = 0; k < cpg; k++) {
                const REAL *restrict dk = dout + k * s, *restrict xk = x + k * s;
                REAL *restrict dxk = dx + k * s;
                const REAL gk = gamma[k];
#pragma omp simd
                for (int64_t i = 0; i < s; i++) {
                    REAL xhat = (xk[i] - m) * is;
                    dxk[i] = is * (dk[i] * gk - mean_g - xhat * mean_g_xhat);
                }
            }
        }
    }
}

void SFX(fastfc_groupnorm_backward)(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                    int n_threads) {
    const fastfc_norm_geom *g = &a->geom;
    if (tile_hi <= tile_lo) return;
    const int64_t tile_size = g->chunk_samples * (g->channels / g->groups) * g->spatial;
    int team = fastfc_team(n_threads, (tile_hi - tile_lo) * tile_size, NORM_MIN_PER_THREAD);
    if (team > tile_hi - tile_lo) team = (int)(tile_hi - tile_lo);
#pragma omp parallel for num_threads(team) schedule(static)
    for (int64_t t = tile_lo; t < tile_hi; t++) SFX(gn_backward_tile)(a, t);
}

void SFX(fastfc_groupnorm_param_grads)(const fastfc_norm_args *a) {
    const fastfc_norm_geom *g = &a->geom;
    const int64_t chunks = (g->n_batch + g->chunk_samples - 1) / g->chunk_samples;
    for (int64_t c = 0; c < g->channels; c++) {
        double dgamma = 0.0, dbeta = 0.0;
        for (int64_t k = 0; k < chunks; k++) {
            dgamma += a->partial[(k * 2) * g->channels + c];
            dbeta += a->partial[(k * 2 + 1) * g->channels + c];
        }
        ((REAL *)a->dgamma)[c] = (REAL)dgamma;
        ((REAL *)a->dbeta)[c] = (REAL)dbeta;
    }
}

#endif
