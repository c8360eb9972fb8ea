/* 2-d convolution (NCHW) by im2col + BLAS GEMM, forward and backward.
 *
 * Each image is lowered to a column matrix cols (K, P), K = C*KH*KW rows (one
 * per kernel tap) and P = OH*OW columns (one per output pixel), so that
 *   out[n] (F, P) = w (F, K) @ cols + b,
 * which is NCHW as it stands: no transpose afterwards. Images (or blocks of an
 * image's output pixels) are spread over an OpenMP team, each thread lowering
 * into its own scratch block and calling the BLAS single-threaded. The scratch
 * is bounded (FASTFC_CONV_SCRATCH_BYTES in all) whatever N: large images are
 * lowered a block of output pixels at a time.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_conv_forward_f32, fastfc_conv_forward_f64
 *   fastfc_conv_backward_f32, fastfc_conv_backward_f64 */
#ifndef REAL
#include <stdlib.h>
#include <string.h>
#include "fastfc.h"
#include "internal.h"

/* Total column scratch of one call, all threads together. */
#define FASTFC_CONV_SCRATCH_BYTES ((int64_t)64 << 20)

/* Where kernel tap (kh, kw) of output row i reads in one input channel:
 * input row `row` (or row < 0 when that row is padding), and the output
 * columns [j_lo, j_hi) whose input column j*stride + col_off lies inside. */
typedef struct {
    int64_t row, col_off, j_lo, j_hi;
} conv_span;

static inline conv_span conv_tap_span(const fastfc_conv_geom *g, int64_t i, int64_t kh,
                                      int64_t kw) {
    conv_span s;
    int64_t row = i * g->stride + kh - g->pad;
    s.row = row >= 0 && row < g->height ? row : -1;
    s.col_off = kw - g->pad;
    /* j*stride + col_off >= 0 and < width, solved for j */
    s.j_lo = s.col_off >= 0 ? 0 : (-s.col_off + g->stride - 1) / g->stride;
    int64_t room = g->width - s.col_off;
    s.j_hi = room <= 0 ? 0 : (room + g->stride - 1) / g->stride;
    if (s.j_hi > g->out_w) s.j_hi = g->out_w;
    if (s.j_lo > s.j_hi) s.j_lo = s.j_hi;
    return s;
}

/* Output pixels per lowered block: as many as fit the scratch budget shared by
 * n_threads threads holding n_bufs (K, block) buffers each, at least one. */
static int64_t conv_block_pixels(const fastfc_conv_geom *g, int64_t n_bufs, int n_threads,
                                 int64_t elem_size) {
    int64_t k_rows = g->channels * g->kernel_h * g->kernel_w;
    int64_t n_pixels = g->out_h * g->out_w;
    int64_t fit = FASTFC_CONV_SCRATCH_BYTES / (elem_size * n_bufs * n_threads * k_rows);
    if (fit < 1) fit = 1;
    return fit < n_pixels ? fit : n_pixels;
}

/* Threads worth waking for n_items independent items of item_flops each. */
static int conv_team(int n_threads, int64_t n_items, int64_t item_flops) {
    int nt = fastfc_team(n_threads, n_items * item_flops, FASTFC_GEMM_MIN_FLOPS_PER_THREAD);
    return n_items < nt ? (int)n_items : nt;
}

#define FASTFC_TEMPLATE "conv.c"
#include "instantiate.h"
#else

/* cols (K, p1 - p0): cols[k, p - p0] = x_padded[c, i*stride + kh, j*stride + kw]
 * for k = (c*KH + kh)*KW + kw and p = i*OW + j in [p0, p1); 0 on padding.
 * x_img: (C, H, W), one image. */
static void SFX(im2col)(const fastfc_conv_geom *g, const REAL *x_img, REAL *cols, int64_t p0,
                        int64_t p1) {
    const int64_t np = p1 - p0, s = g->stride;
    REAL *restrict dst_row = cols;
    for (int64_t c = 0; c < g->channels; c++)
        for (int64_t kh = 0; kh < g->kernel_h; kh++)
            for (int64_t kw = 0; kw < g->kernel_w; kw++, dst_row += np)
                for (int64_t p = p0; p < p1;) {
                    /* one output row's stretch [j0, j1) of the pixel block */
                    int64_t i = p / g->out_w, j0 = p % g->out_w;
                    int64_t j1 = j0 + (p1 - p) < g->out_w ? j0 + (p1 - p) : g->out_w;
                    REAL *restrict dst = dst_row + (p - p0); /* dst[j - j0] */
                    conv_span sp = conv_tap_span(g, i, kh, kw);
                    int64_t lo = sp.row < 0 ? j1 : (sp.j_lo > j0 ? sp.j_lo : j0);
                    int64_t hi = sp.row < 0 ? j1 : (sp.j_hi < j1 ? sp.j_hi : j1);
                    if (hi < lo) hi = lo;
                    for (int64_t j = j0; j < lo; j++) dst[j - j0] = 0;
                    if (lo < hi) {
                        /* input column of output column j: j*s + col_off */
                        const REAL *restrict src =
                            x_img + (c * g->height + sp.row) * g->width;
                        if (s == 1) {
                            memcpy(dst + (lo - j0), src + lo + sp.col_off,
                                   (size_t)(hi - lo) * sizeof(REAL));
                        } else {
#pragma omp simd
                            for (int64_t j = lo; j < hi; j++) dst[j - j0] = src[j * s + sp.col_off];
                        }
                    }
                    for (int64_t j = hi; j < j1; j++) dst[j - j0] = 0;
                    p += j1 - j0;
                }
}

/* The adjoint of im2col: dx_img[c, row, col] += dcols[k, p - p0] over every
 * (k, p) that reads (row, col); padding taps are dropped. One image, serial. */
static void SFX(col2im_add)(const fastfc_conv_geom *g, const REAL *dcols, REAL *dx_img,
                            int64_t p0, int64_t p1) {
    const int64_t np = p1 - p0, s = g->stride;
    const REAL *src_row = dcols;
    for (int64_t c = 0; c < g->channels; c++)
        for (int64_t kh = 0; kh < g->kernel_h; kh++)
            for (int64_t kw = 0; kw < g->kernel_w; kw++, src_row += np)
                for (int64_t p = p0; p < p1;) {
                    int64_t i = p / g->out_w, j0 = p % g->out_w;
                    int64_t j1 = j0 + (p1 - p) < g->out_w ? j0 + (p1 - p) : g->out_w;
                    conv_span sp = conv_tap_span(g, i, kh, kw);
                    if (sp.row >= 0) {
                        const REAL *restrict src = src_row + (p - p0); /* src[j - j0] */
                        REAL *restrict dst = dx_img + (c * g->height + sp.row) * g->width;
                        const int64_t off = sp.col_off;
                        int64_t lo = sp.j_lo > j0 ? sp.j_lo : j0;
                        int64_t hi = sp.j_hi < j1 ? sp.j_hi : j1;
                        if (s == 1) {
#pragma omp simd
                            for (int64_t j = lo; j < hi; j++) dst[j + off] += src[j - j0];
                        } else {
                            /* distinct j hit distinct columns: no dependence between lanes */
#pragma omp simd
                            for (int64_t j = lo; j < hi; j++) dst[j * s + off] += src[j - j0];
                        }
                    }
                    p += j1 - j0;
                }
}

int SFX(fastfc_conv_forward)(const fastfc_conv_geom *g, const REAL *x, const REAL *w, const REAL *b,
                             REAL *out, const fastfc_blas *blas, int n_threads) {
    const int64_t k_rows = g->channels * g->kernel_h * g->kernel_w;
    const int64_t n_pixels = g->out_h * g->out_w, n_f = g->n_filters;
    int nt = conv_team(n_threads, g->n_batch, 2 * n_f * k_rows * n_pixels);
    int64_t block = conv_block_pixels(g, 1, nt, (int64_t)sizeof(REAL));
    /* Few images: split them into pixel blocks too, so every thread has work. */
    if (g->n_batch < nt) {
        int64_t per_image = (nt + g->n_batch - 1) / g->n_batch;
        int64_t even = (n_pixels + per_image - 1) / per_image;
        if (even < block) block = even;
    }
    const int64_t n_blocks = (n_pixels + block - 1) / block;
    REAL *scratch = malloc((size_t)(nt * k_rows * block) * sizeof(REAL));
    if (!scratch) return -1;

#pragma omp parallel num_threads(nt)
    {
        REAL *cols = scratch + FASTFC_THREAD_ID() * k_rows * block;
        /* Items are independent, so hand them out on demand: a thread the OS
         * preempts (cores shared with other work) does not hold up the rest. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < g->n_batch * n_blocks; item++) {
            int64_t n = item / n_blocks, p0 = item % n_blocks * block;
            int64_t p1 = p0 + block < n_pixels ? p0 + block : n_pixels;
            SFX(im2col)(g, x + n * g->channels * g->height * g->width, cols, p0, p1);
            REAL *out_blk = out + n * n_f * n_pixels + p0; /* (F, p1 - p0), row stride P */
            for (int64_t f = 0; f < n_f; f++) {
                REAL *restrict row = out_blk + f * n_pixels;
                const REAL bias = b[f];
#pragma omp simd
                for (int64_t p = 0; p < p1 - p0; p++) row[p] = bias;
            }
            fastfc_gemm_real(blas, 1, 'N', 'N', n_f, p1 - p0, k_rows, (REAL)1, w, k_rows, cols,
                             p1 - p0, (REAL)1, out_blk, n_pixels);
        }
    }
    free(scratch);
    return 0;
}

int SFX(fastfc_conv_backward)(const fastfc_conv_geom *g, const REAL *dout, const REAL *x,
                              const REAL *w, REAL *dx, REAL *dw, REAL *db, const fastfc_blas *blas,
                              int n_threads) {
    const int64_t k_rows = g->channels * g->kernel_h * g->kernel_w;
    const int64_t n_pixels = g->out_h * g->out_w, n_f = g->n_filters;
    const int64_t img_size = g->channels * g->height * g->width;
    const int64_t n_grads = n_f * k_rows + n_f; /* dw then db, per thread */
    /* Images are the unit of work: col2im of one image must stay on one thread. */
    int nt = conv_team(n_threads, g->n_batch, (dx ? 4 : 2) * n_f * k_rows * n_pixels);
    const int64_t n_bufs = dx ? 2 : 1; /* cols, and dcols when dx is wanted */
    const int64_t block = conv_block_pixels(g, n_bufs, nt, (int64_t)sizeof(REAL));
    const int64_t buf_size = k_rows * block;
    /* With several threads, each sums its images into its own dw, db; the
     * partial sums are added up at the end in thread order. */
    const int64_t partial_size = nt > 1 ? n_grads : 0;
    REAL *scratch = malloc((size_t)(nt * (n_bufs * buf_size + partial_size)) * sizeof(REAL));
    if (!scratch) return -1;
    REAL *partials = scratch + nt * n_bufs * buf_size;

#pragma omp parallel num_threads(nt)
    {
        const int tid = FASTFC_THREAD_ID();
        REAL *cols = scratch + tid * n_bufs * buf_size;
        REAL *dcols = cols + buf_size;
        REAL *my_dw = nt > 1 ? partials + tid * n_grads : dw;
        REAL *my_db = nt > 1 ? my_dw + n_f * k_rows : db;
        memset(my_dw, 0, (size_t)(n_f * k_rows) * sizeof(REAL));
        memset(my_db, 0, (size_t)n_f * sizeof(REAL));
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g->n_batch; n++) {
            const REAL *dout_img = dout + n * n_f * n_pixels; /* (F, P) */
            for (int64_t f = 0; f < n_f; f++) {
                const REAL *restrict row = dout_img + f * n_pixels;
                REAL sum = 0;
#pragma omp simd reduction(+ : sum)
                for (int64_t p = 0; p < n_pixels; p++) sum += row[p];
                my_db[f] += sum;
            }
            if (dx) memset(dx + n * img_size, 0, (size_t)img_size * sizeof(REAL));
            for (int64_t p0 = 0; p0 < n_pixels; p0 += block) {
                int64_t p1 = p0 + block < n_pixels ? p0 + block : n_pixels;
                SFX(im2col)(g, x + n * img_size, cols, p0, p1);
                /* dw (F, K) += dout_img[:, p0:p1] @ cols^T */
                fastfc_gemm_real(blas, 1, 'N', 'T', n_f, k_rows, p1 - p0, (REAL)1, dout_img + p0,
                                 n_pixels, cols, p1 - p0, (REAL)1, my_dw, k_rows);
                if (dx) {
                    /* dcols (K, p1 - p0) = w^T @ dout_img[:, p0:p1] */
                    fastfc_gemm_real(blas, 1, 'T', 'N', k_rows, p1 - p0, n_f, (REAL)1, w, k_rows,
                                     dout_img + p0, n_pixels, (REAL)0, dcols, p1 - p0);
                    SFX(col2im_add)(g, dcols, dx + n * img_size, p0, p1);
                }
            }
        }
        if (nt > 1) {
            /* implicit barrier above: every partial is complete */
            const int team = FASTFC_TEAM_SIZE();
#pragma omp for schedule(static)
            for (int64_t e = 0; e < n_grads; e++) {
                REAL sum = 0;
                for (int t = 0; t < team; t++) sum += partials[t * n_grads + e];
                if (e < n_f * k_rows)
                    dw[e] = sum;
                else
                    db[e - n_f * k_rows] = sum;
            }
        }
    }
    free(scratch);
    return 0;
}

#endif
