/* 2-d convolution (NCHW), forward and backward: by im2col + BLAS GEMM, and by
 * Winograd's minimal filtering F(2x2, 3x3) for 3x3, stride-1 layers with enough
 * channels (the common training layer, where it does 16 multiplies per output
 * tile and channel pair instead of im2col's 36).
 *
 * im2col: each image is lowered to a column matrix cols (K, P), K = C*KH*KW rows
 * (one per kernel tap) and P = OH*OW columns (one per output pixel), so that
 *   out[n] (F, P) = w (F, K) @ cols + b,
 * which is NCHW as it stands: no transpose afterwards. Images (or blocks of an
 * image's output pixels) are spread over an OpenMP team, each thread lowering
 * into its own scratch block and calling the BLAS single-threaded. The scratch
 * is bounded (FASTFC_CONV_SCRATCH_BYTES in all) whatever N: large images are
 * lowered a block of output pixels at a time.
 *
 * Winograd (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
 * 2016): each 2x2 output tile y comes from the 4x4 input tile d under it as
 *   y = A^T [ (G g G^T) .* (B^T d B) ] A,
 * so that, summed over channels, the 16 positions xi of the 4x4 transform domain
 * are 16 GEMMs over a block of T tiles:
 *   M[xi] (F, T) = U[xi] (F, C) @ V[xi] (C, T),  U = G g G^T,  V = B^T d B.
 * The backward is the same algebra: dx is the convolution of dout with the
 * filters flipped and transposed (padding 2 - pad), and the filters' gradient in
 * the transform domain is dU[xi] = sum over tiles of (A dy A^T)[xi] V[xi]^T,
 * brought back by dw = G^T dU G. Tiles are counted over the whole batch, so a
 * block may span images; blocks are spread over the team like im2col's.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_conv_forward_f32, fastfc_conv_forward_f64
 *   fastfc_conv_backward_f32, fastfc_conv_backward_f64 */
#ifndef REAL
#include <math.h>
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

/* A lowered block of columns is sized to stay in a core's L2 while the BLAS
 * reads it: measured (benchmarks/README.md) 20-30% faster than whole 32x32
 * images at K = 75 and 147 (5x5 and 7x7 kernels on RGB), the same at K = 27.
 * The forward's GEMM wants its block smaller than the backward's. */
#define FASTFC_CONV_FORWARD_BLOCK_BYTES ((int64_t)80 << 10)
#define FASTFC_CONV_BACKWARD_BLOCK_BYTES ((int64_t)160 << 10)
/* ... but never narrower than this many pixels: thinner GEMMs lose more than the
 * cache saves. */
#define FASTFC_CONV_MIN_BLOCK_PIXELS 128

/* Output pixels per lowered block: block_bytes' worth of a (K, block) buffer in
 * multiples of 32 (at least FASTFC_CONV_MIN_BLOCK_PIXELS), within the scratch budget shared by
 * n_threads threads holding n_bufs such buffers each; at least one. */
static int64_t conv_block_pixels(const fastfc_conv_geom *g, int64_t n_bufs, int n_threads,
                                 int64_t elem_size, int64_t block_bytes) {
    int64_t k_rows = g->channels * g->kernel_h * g->kernel_w;
    int64_t n_pixels = g->out_h * g->out_w;
    int64_t cached = block_bytes / (elem_size * k_rows) / 32 * 32; /* whole GEMM tiles */
    if (cached < FASTFC_CONV_MIN_BLOCK_PIXELS) cached = FASTFC_CONV_MIN_BLOCK_PIXELS;
    int64_t fit = FASTFC_CONV_SCRATCH_BYTES / (elem_size * n_bufs * n_threads * k_rows);
    if (fit > cached) fit = cached;
    if (fit < 1) fit = 1;
    return fit < n_pixels ? fit : n_pixels;
}

/* Threads worth waking for n_items independent items of item_flops each. */
static int conv_team(int n_threads, int64_t n_items, int64_t item_flops) {
    int nt = fastfc_team(n_threads, n_items * item_flops, FASTFC_GEMM_MIN_FLOPS_PER_THREAD);
    return n_items < nt ? (int)n_items : nt;
}

/* Winograd takes 3x3, stride-1 layers with at least this many input channels:
 * with fewer, its 16 GEMMs (inner dimension C) are too thin to beat im2col's one
 * (inner dimension 9 C). Measured (benchmarks/README.md): 3 channels lose 1.5-2x,
 * 4 tie, 8 to 128 win 1.2-3x, whatever the number of filters. */
#define WINO_MIN_CHANNELS 8
/* Tiles per work item: 16 GEMMs of this many columns, while one item's transformed
 * tiles (16 (C + F) values each) stay near the caches; 64-256 measured alike. */
#define WINO_TILE_BLOCK 128
/* Tiles of one tile row transformed together (in SIMD, from stack rows). */
#define WINO_RUN 32
/* Input channels transformed together (see wino_input). */
#define WINO_CHANNEL_GROUP 16

/* Values between the starts of consecutive transform positions xi in a (16, ch, nb)
 * buffer: ch * nb, padded by 16 so that the 16 streams of a transform do not all
 * fall in the same cache set when ch * nb is a multiple of 1024 (a 4 KiB stride). */
static inline int64_t wino_xi_stride(int64_t ch, int64_t nb) { return ch * nb + 16; }

/* The values of a (16, ch, tb) buffer, its padding included. */
static inline int64_t wino_buffer_size(int64_t ch, int64_t tb) {
    return 16 * wino_xi_stride(ch, tb);
}

/* One stride-1 3x3 convolution in Winograd's terms: the forward itself, or the
 * backward's dx (dout convolved with the flipped filters). */
typedef struct {
    int64_t in_h, in_w, pad;  /* one input plane, zero-padded by pad on each side */
    int64_t out_h, out_w;     /* one output plane: in + 2 pad - 2 */
    int64_t tiles_w, tiles;   /* 2x2 output tiles per tile row, per image */
} wino_plan;

static wino_plan wino_make_plan(int64_t in_h, int64_t in_w, int64_t pad) {
    wino_plan pl;
    pl.in_h = in_h, pl.in_w = in_w, pl.pad = pad;
    pl.out_h = in_h + 2 * pad - 2, pl.out_w = in_w + 2 * pad - 2;
    pl.tiles_w = (pl.out_w + 1) / 2;
    pl.tiles = (pl.out_h + 1) / 2 * pl.tiles_w;
    return pl;
}

/* A run of tiles: len consecutive tiles in one tile row of one image, from tile
 * column tw0 of tile row th (the transforms run over a run in SIMD); its first
 * `whole` tiles have both output columns inside the plane (the last tile of an
 * odd-width plane has one). */
typedef struct {
    int64_t img, th, tw0, len, whole;
} wino_run;

/* The run that starts at tile t (counted over the batch) and ends by t1. */
static inline wino_run wino_run_at(const wino_plan *pl, int64_t t, int64_t t1) {
    wino_run rn;
    int64_t r = t % pl->tiles;
    rn.img = t / pl->tiles, rn.th = r / pl->tiles_w, rn.tw0 = r % pl->tiles_w;
    rn.len = pl->tiles_w - rn.tw0;
    if (rn.len > t1 - t) rn.len = t1 - t;
    if (rn.len > WINO_RUN) rn.len = WINO_RUN;
    int64_t inside = (pl->out_w - 2 * rn.tw0) / 2;
    rn.whole = inside < rn.len ? inside : rn.len;
    return rn;
}

static int conv_winograd_fits(const fastfc_conv_geom *g) {
    return g->kernel_h == 3 && g->kernel_w == 3 && g->stride == 1 && g->pad <= 2
        && g->channels >= WINO_MIN_CHANNELS;
}

/* Tiles per work item for n_tiles tiles over nt threads, each holding
 * 16 * ch_sum transformed values per tile plus fixed_bytes, within the
 * scratch budget; 0 when not even one tile per thread fits (im2col then). */
static int64_t wino_tile_block(int64_t n_tiles, int64_t ch_sum, int nt, int64_t elem_size,
                               int64_t fixed_bytes) {
    /* the two buffers' padding (wino_buffer_size) comes off the top */
    int64_t room = FASTFC_CONV_SCRATCH_BYTES - fixed_bytes - nt * 2 * 16 * 16 * elem_size;
    int64_t fit = room > 0 ? room / (elem_size * 16 * ch_sum * nt) : 0;
    int64_t even = (n_tiles + nt - 1) / nt;
    int64_t tb = WINO_TILE_BLOCK < even ? WINO_TILE_BLOCK : even;
    return tb < fit ? tb : fit;
}

#define FASTFC_TEMPLATE "conv.c"
#include "instantiate.h"
#else

/* One thread's C (m, n) = op(A) (m, k) @ B (k, n) + beta * C, B untransposed,
 * for a piece of a layer whose pieces' widths n vary with the batch (a last
 * pixel block, the tiles of one image): on fastfc's unpacked GEMM when
 * unpacked (decided once per layer, on the widest piece's width), else
 * fastfc_gemm's choice, which is then the BLAS or the packed GEMM for every
 * piece (its rule wants n >= 48). So an image's output does not depend on
 * the images beside it in the batch. */
static void SFX(conv_gemm)(const fastfc_blas *blas, int unpacked, char trans_a, int64_t m,
                           int64_t n, int64_t k, const REAL *a, int64_t lda, const REAL *b,
                           int64_t ldb, REAL beta, REAL *c, int64_t ldc) {
    if (unpacked && SFX(fastfc_unpacked_gemm)(trans_a, m, n, k, (REAL)1, a, lda, b, ldb, beta, c,
                                              ldc, NULL, 0) == 0)
        return;
    fastfc_gemm_real(blas, 1, trans_a, 'N', m, n, k, (REAL)1, a, lda, b, ldb, beta, c, ldc);
}

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

/* ---- Winograd F(2x2, 3x3) ------------------------------------------------ */

/* Whether every |a[i]| of a[0..n) is at most 2^48 (float) or 2^496 (double); NaN
 * is not. Within that, no sum Winograd forms can overflow (products of two values
 * stay below 2^100 or 2^996, and the transforms and GEMMs add up fewer than 2^20
 * of them per result, times 2^4 for the transforms' factors, for any layer with
 * fewer than 2^20 channels or tiles), and neither can the direct sum's. */
static int SFX(all_within_winograd_range)(const REAL *a, int64_t n, int n_threads) {
    const REAL limit = (REAL)ldexp(1.0, sizeof(REAL) == sizeof(float) ? 48 : 496);
    int64_t outside = 0;
    int nt = fastfc_team(n_threads, n, FASTFC_MIN_PER_THREAD);
#pragma omp parallel for simd num_threads(nt) reduction(+ : outside)
    for (int64_t i = 0; i < n; i++) outside += !(R_FABS(a[i]) <= limit);
    return outside == 0;
}

/* v (16, ch, t1 - t0): B^T d B for tiles t0..t1-1 of every input channel, v[xi, c, t - t0]
 * for xi = 4 row + column of the transform. Tile t is tile t % tiles of image
 * t / tiles; d is the 4x4 patch of in (n_batch, ch, in_h, in_w) under it, zero
 * outside the plane. */
FASTFC_CLONES static void SFX(wino_input)(const wino_plan *pl, int64_t ch, const REAL *in,
                                          int64_t t0, int64_t t1, REAL *v) {
    const int64_t nb = t1 - t0, plane = pl->in_h * pl->in_w, w = pl->in_w;
    const int64_t xi_stride = wino_xi_stride(ch, nb);
    const REAL zero_row[2 * WINO_RUN + 2] = {0}; /* stands in for rows of padding */
    /* B^T d of WINO_CHANNEL_GROUP channels: all of them are computed before any is
     * read back, so that no load waits on the (misaligned) stores just before it */
    REAL e[WINO_CHANNEL_GROUP][4][2 * WINO_RUN + 2];
    for (int64_t t = t0, run; t < t1; t += run) {
        const wino_run rn = wino_run_at(pl, t, t1);
        run = rn.len;
        /* the run reads columns x0 + x, x in [0, n_cols), of rows y0..y0+3; those in
         * [lo, hi) lie inside the plane */
        const int64_t n_cols = 2 * run + 2, y0 = 2 * rn.th - pl->pad, x0 = 2 * rn.tw0 - pl->pad;
        const int64_t lo = x0 < 0 ? -x0 : 0, hi = w - x0 < n_cols ? w - x0 : n_cols;
        for (int g = 0; g < WINO_CHANNEL_GROUP; g++)
            for (int i = 0; i < 4; i++)
                for (int64_t x = 0; x < n_cols; x++)
                    if (x < lo || x >= hi) e[g][i][x] = 0;
        for (int64_t c0 = 0; c0 < ch; c0 += WINO_CHANNEL_GROUP) {
            const int64_t n_group = ch - c0 < WINO_CHANNEL_GROUP ? ch - c0 : WINO_CHANNEL_GROUP;
            for (int64_t g = 0; g < n_group; g++) {
                const REAL *src = in + (rn.img * ch + c0 + g) * plane + x0;
                const REAL *r[4]; /* r[i][x] = d row i at column x0 + x, for x in [lo, hi) */
                for (int i = 0; i < 4; i++)
                    r[i] = y0 + i >= 0 && y0 + i < pl->in_h ? src + (y0 + i) * w : zero_row;
                REAL(*eg)[2 * WINO_RUN + 2] = e[g];
#pragma omp simd
                for (int64_t x = lo; x < hi; x++) { /* e = B^T d, a column at a time */
                    eg[0][x] = r[0][x] - r[2][x];
                    eg[1][x] = r[1][x] + r[2][x];
                    eg[2][x] = r[2][x] - r[1][x];
                    eg[3][x] = r[1][x] - r[3][x];
                }
            }
            for (int64_t g = 0; g < n_group; g++) {
                REAL *dst = v + (c0 + g) * nb + (t - t0); /* dst[xi * xi_stride + q], tile t + q */
                for (int i = 0; i < 4; i++) { /* e B, tile q reading columns 2q..2q+3 */
                    REAL *restrict o0 = dst + (4 * i) * xi_stride, *restrict o1 = o0 + xi_stride;
                    REAL *restrict o2 = o1 + xi_stride, *restrict o3 = o2 + xi_stride;
                    const REAL *ei = e[g][i];
#pragma omp simd
                    for (int64_t q = 0; q < run; q++) {
                        o0[q] = ei[2 * q] - ei[2 * q + 2];
                        o1[q] = ei[2 * q + 1] + ei[2 * q + 2];
                        o2[q] = ei[2 * q + 2] - ei[2 * q + 1];
                        o3[q] = ei[2 * q + 1] - ei[2 * q + 3];
                    }
                }
            }
        }
    }
}

/* The output tiles t0..t1-1 of out (n_batch, ch, out_h, out_w), y = A^T m A (+ bias[c]
 * unless bias is NULL) from m (16, ch, t1 - t0); a tile's parts beyond the plane
 * (odd out_h, out_w) are dropped. */
FASTFC_CLONES static void SFX(wino_output)(const wino_plan *pl, int64_t ch, const REAL *m,
                                           int64_t t0, int64_t t1, const REAL *bias, REAL *out) {
    const int64_t nb = t1 - t0, plane = pl->out_h * pl->out_w, w = pl->out_w;
    const int64_t xi_stride = wino_xi_stride(ch, nb);
    REAL bottom_sink[2 * WINO_RUN]; /* the second row of a tile row past out_h */
    for (int64_t t = t0, run; t < t1; t += run) {
        const wino_run rn = wino_run_at(pl, t, t1);
        run = rn.len;
        const int64_t y0 = 2 * rn.th, x0 = 2 * rn.tw0, whole = rn.whole;
        for (int64_t c = 0; c < ch; c++) {
            const REAL b = bias ? bias[c] : 0;
            const REAL *src = m + c * nb + (t - t0); /* src[xi * xi_stride + q] */
            REAL *top = out + (rn.img * ch + c) * plane + y0 * w + x0;
            REAL *bottom = y0 + 1 < pl->out_h ? top + w : bottom_sink;
            /* in two passes, [0, whole) then the rest, so that q < whole is the
             * same for every lane of a pass */
            for (int64_t q0 = 0; q0 < run; q0 = whole > q0 ? whole : run) {
                const int64_t q1 = whole > q0 ? whole : run;
#pragma omp simd
                for (int64_t q = q0; q < q1; q++) {
                    REAL s[2][4]; /* A^T m */
                    for (int j = 0; j < 4; j++) {
                        REAL m0 = src[j * xi_stride + q], m1 = src[(4 + j) * xi_stride + q];
                        REAL m2 = src[(8 + j) * xi_stride + q], m3 = src[(12 + j) * xi_stride + q];
                        s[0][j] = m0 + m1 + m2;
                        s[1][j] = m1 - m2 - m3;
                    }
                    top[2 * q] = s[0][0] + s[0][1] + s[0][2] + b; /* s A */
                    bottom[2 * q] = s[1][0] + s[1][1] + s[1][2] + b;
                    if (q < whole) {
                        top[2 * q + 1] = s[0][1] - s[0][2] - s[0][3] + b;
                        bottom[2 * q + 1] = s[1][1] - s[1][2] - s[1][3] + b;
                    }
                }
            }
        }
    }
}

/* mg (16, ch, t1 - t0) = A dy A^T, the adjoint of wino_output: dy the 2x2 tiles
 * t0..t1-1 of dout (n_batch, ch, out_h, out_w), zero beyond the plane. */
FASTFC_CLONES static void SFX(wino_output_adjoint)(const wino_plan *pl, int64_t ch,
                                                   const REAL *dout, int64_t t0, int64_t t1,
                                                   REAL *mg) {
    const int64_t nb = t1 - t0, plane = pl->out_h * pl->out_w, w = pl->out_w;
    const int64_t xi_stride = wino_xi_stride(ch, nb);
    const REAL zero_row[2 * WINO_RUN] = {0}; /* stands in for a row past out_h */
    for (int64_t t = t0, run; t < t1; t += run) {
        const wino_run rn = wino_run_at(pl, t, t1);
        run = rn.len;
        const int64_t y0 = 2 * rn.th, x0 = 2 * rn.tw0, whole = rn.whole;
        for (int64_t c = 0; c < ch; c++) {
            const REAL *top = dout + (rn.img * ch + c) * plane + y0 * w + x0;
            const REAL *bottom = y0 + 1 < pl->out_h ? top + w : zero_row;
            REAL *dst = mg + c * nb + (t - t0); /* dst[xi * xi_stride + q] */
            for (int64_t q0 = 0; q0 < run; q0 = whole > q0 ? whole : run) { /* as above */
                const int64_t q1 = whole > q0 ? whole : run;
#pragma omp simd
                for (int64_t q = q0; q < q1; q++) {
                    /* a = A dy: column 1 of the last tile of an odd-width plane is 0 */
                    REAL t_0 = top[2 * q], b_0 = bottom[2 * q];
                    REAL t_1 = q < whole ? top[2 * q + 1] : 0;
                    REAL b_1 = q < whole ? bottom[2 * q + 1] : 0;
                    REAL a[4][2] = {{t_0, t_1}, {t_0 + b_0, t_1 + b_1}, {t_0 - b_0, t_1 - b_1},
                                    {-b_0, -b_1}};
                    for (int i = 0; i < 4; i++) { /* a A^T */
                        dst[(4 * i + 0) * xi_stride + q] = a[i][0];
                        dst[(4 * i + 1) * xi_stride + q] = a[i][0] + a[i][1];
                        dst[(4 * i + 2) * xi_stride + q] = a[i][0] - a[i][1];
                        dst[(4 * i + 3) * xi_stride + q] = -a[i][1];
                    }
                }
            }
        }
    }
}

/* u (16, F, C) = G g G^T for the 3x3 filters g = w[f, c] of w (F, C, 3, 3); with
 * flip, u (16, C, F) of the filters that compute dx: g[kh][kw] = w[f, c, 2-kh, 2-kw]. */
static void SFX(wino_filters)(const REAL *w, int64_t n_f, int64_t n_c, int flip, REAL *u) {
    const int64_t pairs = n_f * n_c;
    for (int64_t f = 0; f < n_f; f++)
        for (int64_t c = 0; c < n_c; c++) {
            const REAL *src = w + (f * n_c + c) * 9;
            REAL g[3][3], a[4][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    g[i][j] = flip ? src[(2 - i) * 3 + 2 - j] : src[i * 3 + j];
            for (int j = 0; j < 3; j++) { /* a = G g */
                a[0][j] = g[0][j];
                a[1][j] = (REAL)0.5 * (g[0][j] + g[1][j] + g[2][j]);
                a[2][j] = (REAL)0.5 * (g[0][j] - g[1][j] + g[2][j]);
                a[3][j] = g[2][j];
            }
            REAL *dst = u + (flip ? c * n_f + f : f * n_c + c); /* dst[xi * pairs] */
            for (int i = 0; i < 4; i++) { /* a G^T */
                dst[(4 * i + 0) * pairs] = a[i][0];
                dst[(4 * i + 1) * pairs] = (REAL)0.5 * (a[i][0] + a[i][1] + a[i][2]);
                dst[(4 * i + 2) * pairs] = (REAL)0.5 * (a[i][0] - a[i][1] + a[i][2]);
                dst[(4 * i + 3) * pairs] = a[i][2];
            }
        }
}

/* dw[f, c] (3x3) = G^T du G, the adjoint of wino_filters (no flip), for the pairs
 * [p0, p1) of du (16, F*C). */
static void SFX(wino_filters_adjoint)(const REAL *du, int64_t pairs, int64_t p0, int64_t p1,
                                      REAL *dw) {
    for (int64_t p = p0; p < p1; p++) {
        REAL b[3][4];
        for (int j = 0; j < 4; j++) { /* b = G^T du */
            REAL u0 = du[j * pairs + p], u1 = du[(4 + j) * pairs + p];
            REAL u2 = du[(8 + j) * pairs + p], u3 = du[(12 + j) * pairs + p];
            b[0][j] = u0 + (REAL)0.5 * (u1 + u2);
            b[1][j] = (REAL)0.5 * (u1 - u2);
            b[2][j] = (REAL)0.5 * (u1 + u2) + u3;
        }
        REAL *dst = dw + p * 9;
        for (int i = 0; i < 3; i++) { /* b G */
            dst[i * 3 + 0] = b[i][0] + (REAL)0.5 * (b[i][1] + b[i][2]);
            dst[i * 3 + 1] = (REAL)0.5 * (b[i][1] - b[i][2]);
            dst[i * 3 + 2] = (REAL)0.5 * (b[i][1] + b[i][2]) + b[i][3];
        }
    }
}

/* out (n_batch, n_out, out_h, out_w) = the 3x3 stride-1 convolution of in
 * (n_batch, n_in, in_h, in_w) by the transformed filters u (16, n_out, n_in), plus
 * bias (or none, NULL): tile blocks of tb over the team, v and m per thread. */
static void SFX(wino_convolve)(const wino_plan *pl, int64_t n_batch, int64_t n_in, int64_t n_out,
                               const REAL *in, const REAL *u, const REAL *bias, REAL *out,
                               int64_t tb, REAL *scratch, const fastfc_blas *blas, int nt) {
    const int64_t n_tiles = n_batch * pl->tiles, n_items = (n_tiles + tb - 1) / tb;
    const int unpacked = fastfc_unpacked_gemm_wins(sizeof(REAL), 'N', 'N', WINO_TILE_BLOCK, n_in);
#pragma omp parallel num_threads(nt)
    {
        REAL *v = scratch + FASTFC_THREAD_ID() * (wino_buffer_size(n_in, tb)
                                                  + wino_buffer_size(n_out, tb));
        REAL *m = v + wino_buffer_size(n_in, tb);
        /* independent items, handed out on demand (see conv_im2col_forward) */
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < n_items; item++) {
            int64_t t0 = item * tb, t1 = t0 + tb < n_tiles ? t0 + tb : n_tiles, nb = t1 - t0;
            SFX(wino_input)(pl, n_in, in, t0, t1, v);
            for (int xi = 0; xi < 16; xi++)
                SFX(conv_gemm)(blas, unpacked, 'N', n_out, nb, n_in, u + xi * n_out * n_in, n_in,
                               v + xi * wino_xi_stride(n_in, nb), nb, (REAL)0,
                               m + xi * wino_xi_stride(n_out, nb), nb);
            SFX(wino_output)(pl, n_out, m, t0, t1, bias, out);
        }
    }
}

/* Forward by Winograd; 1 when it declines and the caller runs im2col: when the
 * scratch would not fit, or when x or w holds a NaN, an infinity or a value beyond
 * all_within_winograd_range's bound. The transforms would spread a special value
 * over its whole 2x2 tile (Inf - Inf), where the direct sum reaches only the outputs
 * whose window holds it, and huge values could overflow in them where the direct
 * sum does not: im2col's result is the reference's. (The bias is added after the
 * transforms, to every output alike, as in the direct sum.) */
static int SFX(conv_winograd_forward)(const fastfc_conv_geom *g, const REAL *x, const REAL *w,
                                      const REAL *b, REAL *out, const fastfc_blas *blas,
                                      int n_threads) {
    const int64_t n_c = g->channels, n_f = g->n_filters, sz = (int64_t)sizeof(REAL);
    const wino_plan pl = wino_make_plan(g->height, g->width, g->pad);
    const int64_t n_tiles = g->n_batch * pl.tiles, u_size = 16 * n_f * n_c;
    int nt = conv_team(n_threads, n_tiles, 32 * n_f * n_c);
    int64_t tb = wino_tile_block(n_tiles, n_c + n_f, nt, sz, u_size * sz);
    if (tb == 0 || !SFX(all_within_winograd_range)(w, n_f * n_c * 9, n_threads)
        || !SFX(all_within_winograd_range)(x, g->n_batch * n_c * g->height * g->width, n_threads))
        return 1;
    REAL *scratch = malloc(
        (size_t)(u_size + nt * (wino_buffer_size(n_c, tb) + wino_buffer_size(n_f, tb)))
        * sizeof(REAL));
    if (!scratch) return -1;
    SFX(wino_filters)(w, n_f, n_c, 0, scratch);
    SFX(wino_convolve)(&pl, g->n_batch, n_c, n_f, x, scratch, b, out, tb, scratch + u_size, blas,
                       nt);
    free(scratch);
    return 0;
}

/* Backward by Winograd; 1 when it declines and the caller runs im2col (as the
 * forward: the scratch, or dout, x or w out of range). */
static int SFX(conv_winograd_backward)(const fastfc_conv_geom *g, const REAL *dout,
                                       const REAL *x, const REAL *w, REAL *dx, REAL *dw, REAL *db,
                                       const fastfc_blas *blas, int n_threads) {
    const int64_t n_c = g->channels, n_f = g->n_filters, sz = (int64_t)sizeof(REAL);
    const int64_t pairs = n_f * n_c, u_size = 16 * pairs, n_pixels = g->out_h * g->out_w;
    const wino_plan fwd = wino_make_plan(g->height, g->width, g->pad);
    const int64_t n_tiles = g->n_batch * fwd.tiles;
    int nt = conv_team(n_threads, n_tiles, (dx ? 64 : 32) * pairs);
    /* du's per-thread partial sums (for several threads) and the sum, then the
     * flipped filters for dx in the same place */
    const int64_t fixed = (nt > 1 ? nt + 1 : 1) * u_size;
    int64_t tb = wino_tile_block(n_tiles, n_c + n_f, nt, sz, fixed * sz);
    if (tb == 0 || !SFX(all_within_winograd_range)(w, pairs * 9, n_threads)
        || !SFX(all_within_winograd_range)(x, g->n_batch * n_c * g->height * g->width, n_threads)
        || !SFX(all_within_winograd_range)(dout, g->n_batch * n_f * n_pixels, n_threads))
        return 1;
    REAL *scratch = malloc(
        (size_t)(fixed + nt * (wino_buffer_size(n_c, tb) + wino_buffer_size(n_f, tb)))
        * sizeof(REAL));
    if (!scratch) return -1;
    REAL *du = scratch, *partials = scratch + u_size, *work = scratch + fixed;
    const int64_t n_items = (n_tiles + tb - 1) / tb;

#pragma omp parallel num_threads(nt)
    {
        const int tid = FASTFC_THREAD_ID(), team = FASTFC_TEAM_SIZE();
        REAL *v = work + tid * (wino_buffer_size(n_c, tb) + wino_buffer_size(n_f, tb));
        REAL *mg = v + wino_buffer_size(n_c, tb);
        REAL *my_du = team > 1 ? partials + tid * u_size : du;
        memset(my_du, 0, (size_t)u_size * sizeof(REAL));
        /* db: each filter's sum in a fixed order, whatever the team */
#pragma omp for schedule(static) nowait
        for (int64_t f = 0; f < n_f; f++) {
            REAL sum = 0;
            for (int64_t n = 0; n < g->n_batch; n++) {
                const REAL *restrict row = dout + (n * n_f + f) * n_pixels;
#pragma omp simd reduction(+ : sum)
                for (int64_t p = 0; p < n_pixels; p++) sum += row[p];
            }
            db[f] = sum;
        }
        /* du: static blocks, so that a team of a given size always sums alike */
#pragma omp for schedule(static)
        for (int64_t item = 0; item < n_items; item++) {
            int64_t t0 = item * tb, t1 = t0 + tb < n_tiles ? t0 + tb : n_tiles, nb = t1 - t0;
            SFX(wino_input)(&fwd, n_c, x, t0, t1, v);
            SFX(wino_output_adjoint)(&fwd, n_f, dout, t0, t1, mg);
            for (int xi = 0; xi < 16; xi++)
                fastfc_gemm_real(blas, 1, 'N', 'T', n_f, n_c, nb, (REAL)1,
                                 mg + xi * wino_xi_stride(n_f, nb), nb,
                                 v + xi * wino_xi_stride(n_c, nb), nb, (REAL)1,
                                 my_du + xi * pairs, n_c);
        }
        if (team > 1) { /* implicit barrier above: every partial is complete */
#pragma omp for schedule(static)
            for (int64_t e = 0; e < u_size; e++) {
                REAL sum = 0;
                for (int t = 0; t < team; t++) sum += partials[t * u_size + e];
                du[e] = sum;
            }
        }
        /* du is complete (the barrier ending the loop above, or one thread) */
        int64_t p0, p1;
        fastfc_block(pairs, team, tid, 1, &p0, &p1);
        SFX(wino_filters_adjoint)(du, pairs, p0, p1, dw);
    }
    if (dx) {
        /* dx = dout convolved with the flipped filters, transposed: pad 2 - pad */
        const wino_plan bwd = wino_make_plan(g->out_h, g->out_w, 2 - g->pad);
        SFX(wino_filters)(w, n_f, n_c, 1, du);
        SFX(wino_convolve)(&bwd, g->n_batch, n_f, n_c, dout, du, NULL, dx, tb, work, blas, nt);
    }
    free(scratch);
    return 0;
}

static int SFX(conv_im2col_forward)(const fastfc_conv_geom *g, const REAL *x, const REAL *w,
                                     const REAL *b, REAL *out, const fastfc_blas *blas,
                                     int n_threads) {
    const int64_t k_rows = g->channels * g->kernel_h * g->kernel_w;
    const int64_t n_pixels = g->out_h * g->out_w, n_f = g->n_filters;
    int nt = conv_team(n_threads, g->n_batch, 2 * n_f * k_rows * n_pixels);
    int64_t block = conv_block_pixels(g, 1, nt, (int64_t)sizeof(REAL),
                                      FASTFC_CONV_FORWARD_BLOCK_BYTES);
    /* Few images: split them into pixel blocks too, so every thread has work. */
    if (g->n_batch < nt) {
        int64_t per_image = (nt + g->n_batch - 1) / g->n_batch;
        int64_t even = (n_pixels + per_image - 1) / per_image;
        if (even < block) block = even;
    }
    const int64_t n_blocks = (n_pixels + block - 1) / block;
    const int unpacked = fastfc_unpacked_gemm_wins(sizeof(REAL), 'N', 'N', n_pixels, k_rows);
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
            SFX(conv_gemm)(blas, unpacked, 'N', n_f, p1 - p0, k_rows, w, k_rows, cols, p1 - p0,
                           (REAL)1, out_blk, n_pixels);
        }
    }
    free(scratch);
    return 0;
}

static int SFX(conv_im2col_backward)(const fastfc_conv_geom *g, const REAL *dout, const REAL *x,
                                      const REAL *w, REAL *dx, REAL *dw, REAL *db,
                                      const fastfc_blas *blas, int n_threads) {
    const int64_t k_rows = g->channels * g->kernel_h * g->kernel_w;
    const int64_t n_pixels = g->out_h * g->out_w, n_f = g->n_filters;
    const int64_t img_size = g->channels * g->height * g->width;
    const int64_t n_grads = n_f * k_rows + n_f; /* dw then db, per thread */
    /* Images are the unit of work: col2im of one image must stay on one thread. */
    int nt = conv_team(n_threads, g->n_batch, (dx ? 4 : 2) * n_f * k_rows * n_pixels);
    const int64_t n_bufs = dx ? 2 : 1; /* cols, and dcols when dx is wanted */
    const int64_t block = conv_block_pixels(g, n_bufs, nt, (int64_t)sizeof(REAL),
                                            FASTFC_CONV_BACKWARD_BLOCK_BYTES);
    const int64_t buf_size = k_rows * block;
    const int unpacked = fastfc_unpacked_gemm_wins(sizeof(REAL), 'T', 'N', n_pixels, n_f);
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
                    SFX(conv_gemm)(blas, unpacked, 'T', k_rows, p1 - p0, n_f, w, k_rows,
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

int SFX(fastfc_conv_forward)(const fastfc_conv_geom *g, const REAL *x, const REAL *w, const REAL *b,
                             REAL *out, const fastfc_blas *blas, int n_threads) {
    int status = conv_winograd_fits(g)
        ? SFX(conv_winograd_forward)(g, x, w, b, out, blas, n_threads)
        : 1;
    return status == 1 ? SFX(conv_im2col_forward)(g, x, w, b, out, blas, n_threads) : status;
}

int SFX(fastfc_conv_backward)(const fastfc_conv_geom *g, const REAL *dout, const REAL *x,
                              const REAL *w, REAL *dx, REAL *dw, REAL *db, const fastfc_blas *blas,
                              int n_threads) {
    int status = conv_winograd_fits(g)
        ? SFX(conv_winograd_backward)(g, dout, x, w, dx, dw, db, blas, n_threads)
        : 1;
    return status == 1 ? SFX(conv_im2col_backward)(g, dout, x, w, dx, dw, db, blas, n_threads)
                       : status;
}

#endif
