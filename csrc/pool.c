/* Max and average pooling over NCHW planes, forward and backward.
 *
 * The N*C planes are independent, so an OpenMP team splits them in blocks;
 * every output and every gradient of a plane is computed by one thread, which
 * makes the backward scatters race-free even for overlapping windows.
 *
 * Max pooling keeps, per output, the flat index (row * width + col) of its
 * maximum within the input plane, so backward is a scatter-add. Ties go to
 * the first maximum in row-major window order. NaN propagates: a window
 * holding a NaN outputs NaN and its argmax is the first NaN (as torch).
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_pool_f32, fastfc_pool_f64
 * whose op runs the static max_pool_forward_f32/_f64 (FASTFC_MAX_POOL_FORWARD),
 * max_pool_backward_f32/_f64, avg_pool_forward_f32/_f64 or
 * avg_pool_backward_f32/_f64. */
#ifndef REAL
#include <string.h>
#include "fastfc.h"
#include "internal.h"

/* The planes split into blocks of about FASTFC_MIN_PER_THREAD input
 * elements, handed out on demand to a team of as many threads as the work
 * pays for: planes are independent (results do not depend on who computes
 * them), and a thread the OS preempts on shared cores then holds up one block
 * instead of half the work. */
typedef struct {
    int team;
    int64_t per_block, n_blocks;
} pool_blocks;

static pool_blocks pool_split(const fastfc_pool_geom *g, int n_threads) {
    pool_blocks b;
    int nt = fastfc_team(n_threads, g->planes * g->height * g->width, FASTFC_MIN_PER_THREAD);
    b.team = g->planes < nt ? (int)g->planes : nt;
    b.per_block = FASTFC_MIN_PER_THREAD / (g->height * g->width);
    if (b.per_block < 1) b.per_block = 1;
    b.n_blocks = (g->planes + b.per_block - 1) / b.per_block;
    return b;
}

/* Planes [*lo, *hi) of block blk. */
static void pool_block(const pool_blocks *b, const fastfc_pool_geom *g, int64_t blk, int64_t *lo,
                       int64_t *hi) {
    *lo = blk * b->per_block;
    *hi = *lo + b->per_block < g->planes ? *lo + b->per_block : g->planes;
}

/* Runs BODY on the blocks [LO, HI) of the planes (see pool_split). */
#define POOL_OVER_PLANES(G, N_THREADS, LO, HI, BODY)                                   \
    do {                                                                               \
        const pool_blocks blocks_ = pool_split((G), (N_THREADS));                      \
        _Pragma("omp parallel for num_threads(blocks_.team) schedule(dynamic, 1)")     \
        for (int64_t blk_ = 0; blk_ < blocks_.n_blocks; blk_++) {                      \
            int64_t LO, HI;                                                            \
            pool_block(&blocks_, (G), blk_, &LO, &HI);                                 \
            BODY;                                                                      \
        }                                                                              \
    } while (0)

static int pool_is_2x2_stride_2(const fastfc_pool_geom *g) {
    return g->pool_h == 2 && g->pool_w == 2 && g->stride == 2;
}

/* Division of offsets by a plane's width w as a multiply and a shift:
 * (off * magic) >> shift == off / w for every off < 2^31 (the offsets within
 * a plane of at most INT32_MAX entries), with shift = 32 + ceil(log2 w) and
 * magic = floor(2^shift / w) + 1 < 2^33: the product's error, below
 * off / 2^shift < 1 / (2w), never reaches the next multiple of 1 / w. A
 * hardware division per index would make the backward pass 1.7x slower;
 * it is used for spans too long for a table (POOL_SPAN_TABLE). */
typedef struct {
    uint64_t magic;
    unsigned shift;
} pool_divisor;

static pool_divisor pool_divisor_of(int64_t w) {
    pool_divisor d;
    unsigned bits = 0;
    while (((int64_t)1 << bits) < w) bits++;
    d.shift = 32 + bits;
    d.magic = (((uint64_t)1 << d.shift) / (uint64_t)w) + 1;
    return d;
}

/* Spans (a window's entries from its first to its last, in row-major
 * order) up to this many entries are checked through a table on the stack,
 * which makes the backward pass of such windows about 1.24x slower than
 * the span check alone (3x3/1, 3x3/2 and 2x2/1 over 512 planes of 64x64,
 * one thread); 2x2/2 has its own exact path. */
#define POOL_SPAN_TABLE 4096

static inline uint32_t pool_divide(uint32_t off, pool_divisor d) {
    return (uint32_t)(((uint64_t)off * d.magic) >> d.shift);
}

#define FASTFC_TEMPLATE "pool.c"
#include "instantiate.h"
#else

/* Windows are scanned in reverse row-major order, starting from their last
 * entry, and v replaces the running best when v >= best or v is NaN. So among
 * equal maxima the first in row-major order wins; a NaN replaces anything and
 * is replaced only by an earlier NaN (v >= NaN is false), which leaves the
 * first NaN. (A forward scan would need a third comparison to keep a NaN, and
 * GCC does not vectorize that form.) */
static inline int SFX(pool_takes)(REAL v, REAL best) {
    return (v >= best) | (v != v);
}

/* Any window size and stride; planes [lo, hi). */
static void SFX(max_pool_planes)(const fastfc_pool_geom *g, const REAL *x, REAL *out,
                                 int32_t *argmax, int64_t lo, int64_t hi) {
    const int64_t plane_in = g->height * g->width, plane_out = g->out_h * g->out_w;
    const int64_t last = (g->pool_h - 1) * g->width + g->pool_w - 1; /* from a window's top */
    for (int64_t q = lo; q < hi; q++) {
        const REAL *xp = x + q * plane_in;
        REAL *op = out + q * plane_out;
        int32_t *ap = argmax + q * plane_out;
        for (int64_t i = 0; i < g->out_h; i++)
            for (int64_t j = 0; j < g->out_w; j++) {
                int64_t top = i * g->stride * g->width + j * g->stride;
                int64_t best_at = top + last;
                REAL best = xp[best_at];
                for (int64_t r = g->pool_h - 1; r >= 0; r--)
                    for (int64_t c = g->pool_w - 1; c >= 0; c--) {
                        int64_t at = top + r * g->width + c;
                        int takes = SFX(pool_takes)(xp[at], best);
                        best = takes ? xp[at] : best;
                        best_at = takes ? at : best_at;
                    }
                op[i * g->out_w + j] = best;
                ap[i * g->out_w + j] = (int32_t)best_at;
            }
    }
}

/* One output row of 2x2/2 windows over input rows r0, r1 (flat index of
 * r0[0]: base; row length w_in), vectorized across the row's windows. */
FASTFC_CLONES static void SFX(max_pool_2x2_row)(const REAL *restrict r0, const REAL *restrict r1,
                                                REAL *restrict out, int32_t *restrict argmax,
                                                int64_t w_out, int32_t base, int32_t w_in) {
#pragma omp simd
    for (int64_t j = 0; j < w_out; j++) {
        const int32_t top = base + 2 * (int32_t)j;
        REAL best = r1[2 * j + 1];
        int32_t at = top + w_in + 1;
        int takes = SFX(pool_takes)(r1[2 * j], best);
        best = takes ? r1[2 * j] : best;
        at = takes ? top + w_in : at;
        takes = SFX(pool_takes)(r0[2 * j + 1], best);
        best = takes ? r0[2 * j + 1] : best;
        at = takes ? top + 1 : at;
        takes = SFX(pool_takes)(r0[2 * j], best);
        best = takes ? r0[2 * j] : best;
        at = takes ? top : at;
        out[j] = best;
        argmax[j] = at;
    }
}

static void SFX(max_pool_2x2_planes)(const fastfc_pool_geom *g, const REAL *x, REAL *out,
                                     int32_t *argmax, int64_t lo, int64_t hi) {
    const int64_t w_in = g->width, plane_in = g->height * w_in;
    const int64_t w_out = g->out_w, plane_out = g->out_h * w_out;
    for (int64_t q = lo; q < hi; q++)
        for (int64_t i = 0; i < g->out_h; i++) {
            const REAL *r0 = x + q * plane_in + 2 * i * w_in;
            SFX(max_pool_2x2_row)(r0, r0 + w_in, out + q * plane_out + i * w_out,
                                  argmax + q * plane_out + i * w_out, w_out,
                                  (int32_t)(2 * i * w_in), (int32_t)w_in);
        }
}

static void SFX(max_pool_forward)(const fastfc_pool_geom *g, const REAL *x, REAL *out,
                                  int32_t *argmax, int n_threads) {
    if (pool_is_2x2_stride_2(g))
        POOL_OVER_PLANES(g, n_threads, lo, hi,
                               SFX(max_pool_2x2_planes)(g, x, out, argmax, lo, hi));
    else
        POOL_OVER_PLANES(g, n_threads, lo, hi,
                               SFX(max_pool_planes)(g, x, out, argmax, lo, hi));
}

/* Gradient of one output row of 2x2/2 windows into input rows d0, d1: every
 * entry of each window is written (dout at its argmax, 0 elsewhere), so dx
 * needs no zeroing first. Same base, w_in as the forward row. Returns the
 * number of argmax entries that name no entry of their window (a tampered or
 * foreign cache); their windows get a zero gradient. Indices are only
 * compared, never used as addresses, so no value of argmax (even one another
 * thread changes meanwhile) makes this read or write out of bounds. */
FASTFC_CLONES static int64_t SFX(max_pool_2x2_row_backward)(const REAL *restrict dout,
                                                            const int32_t *restrict argmax,
                                                            REAL *restrict d0, REAL *restrict d1,
                                                            int64_t w_out, int32_t base,
                                                            int32_t w_in) {
    int32_t stray = 0; /* int32 like the indices: the loop vectorizes in one lane width */
#pragma omp simd reduction(+ : stray)
    for (int64_t j = 0; j < w_out; j++) {
        /* 0, 1 (top row) or w_in, w_in + 1 (bottom row); unsigned: a hostile
         * index cannot overflow the subtraction */
        const uint32_t k = (uint32_t)argmax[j] - (uint32_t)(base + 2 * (int32_t)j);
        const REAL v = dout[j];
        d0[2 * j] = k == 0 ? v : (REAL)0;
        d0[2 * j + 1] = k == 1 ? v : (REAL)0;
        d1[2 * j] = k == (uint32_t)w_in ? v : (REAL)0;
        d1[2 * j + 1] = k == (uint32_t)w_in + 1 ? v : (REAL)0;
        stray += (k > 1) & (k - (uint32_t)w_in > 1);
    }
    return stray;
}

/* dx = 0, then dx[argmax] += dout, plane by plane (accumulating where windows
 * overlap). For 2x2/2 the rows are written whole instead, and only the last
 * row/column no window covers (odd sizes) is zeroed: one pass over dx.
 * Returns the number of argmax entries outside their windows, which are
 * skipped; every geometry checks exactly (an entry right or left of its
 * window, in the rows it spans, is outside it too). Each index is read once
 * and checked before it is used, so the scatter stays inside the plane
 * whatever argmax holds, even if another thread rewrites it. */
static int64_t SFX(max_pool_backward_planes)(const fastfc_pool_geom *g, const REAL *dout,
                                             const int32_t *argmax, REAL *dx, int64_t lo,
                                             int64_t hi) {
    const int64_t w_in = g->width, plane_in = g->height * w_in;
    const int64_t w_out = g->out_w, plane_out = g->out_h * w_out;
    const int fast = pool_is_2x2_stride_2(g);
    /* entries from a window's first to its last, in row-major order */
    const uint32_t span = (uint32_t)((g->pool_h - 1) * w_in + g->pool_w);
    const uint32_t pool_w = (uint32_t)g->pool_w, width = (uint32_t)w_in;
    const pool_divisor by_width = pool_divisor_of(w_in);
    /* which offsets of the span are in the window, for spans that fit */
    unsigned char in_window[POOL_SPAN_TABLE];
    const int tabled = span <= POOL_SPAN_TABLE;
    for (uint32_t off = 0; tabled && off < span; off++) in_window[off] = off % width < pool_w;
    int64_t stray = 0;
    for (int64_t q = lo; q < hi; q++) {
        REAL *restrict dp = dx + q * plane_in;
        const REAL *restrict gp = dout + q * plane_out;
        if (!fast) {
            /* volatile: one load per index, checked and used as that value */
            const volatile int32_t *ap = argmax + q * plane_out;
            memset(dp, 0, (size_t)plane_in * sizeof(REAL));
            for (int64_t i = 0; i < g->out_h; i++) {
                uint32_t top = (uint32_t)(i * g->stride * w_in);
                for (int64_t j = 0; j < w_out; j++, top += (uint32_t)g->stride) {
                    const int32_t at = ap[i * w_out + j];
                    /* unsigned: an index before the window wraps to a huge offset;
                     * within the span, its column must be one of the window's */
                    const uint32_t off = (uint32_t)at - top;
                    if (off >= span || !(tabled ? in_window[off]
                                                : off - pool_divide(off, by_width) * width < pool_w)) {
                        stray++;
                        continue;
                    }
                    dp[at] += gp[i * w_out + j];
                }
            }
            continue;
        }
        const int32_t *ap = argmax + q * plane_out;
        for (int64_t i = 0; i < g->out_h; i++) {
            REAL *d0 = dp + 2 * i * w_in;
            stray += SFX(max_pool_2x2_row_backward)(gp + i * w_out, ap + i * w_out, d0, d0 + w_in,
                                                    w_out, (int32_t)(2 * i * w_in),
                                                    (int32_t)w_in);
            if (w_in & 1) d0[w_in - 1] = d0[2 * w_in - 1] = 0;
        }
        if (g->height & 1) memset(dp + (g->height - 1) * w_in, 0, (size_t)w_in * sizeof(REAL));
    }
    return stray;
}

static int64_t SFX(max_pool_backward)(const fastfc_pool_geom *g, const REAL *dout,
                                      const int32_t *argmax, REAL *dx, int n_threads) {
    const pool_blocks blocks = pool_split(g, n_threads);
    int64_t stray = 0;
#pragma omp parallel for num_threads(blocks.team) schedule(dynamic, 1) reduction(+ : stray)
    for (int64_t blk = 0; blk < blocks.n_blocks; blk++) {
        int64_t lo, hi;
        pool_block(&blocks, g, blk, &lo, &hi);
        stray += SFX(max_pool_backward_planes)(g, dout, argmax, dx, lo, hi);
    }
    return stray;
}

/* out = mean of each window; planes [lo, hi). */
static void SFX(avg_pool_planes)(const fastfc_pool_geom *g, const REAL *x, REAL *out,
                                 int64_t lo, int64_t hi) {
    const int64_t plane_in = g->height * g->width, plane_out = g->out_h * g->out_w;
    const REAL scale = (REAL)1 / (REAL)(g->pool_h * g->pool_w);
    for (int64_t q = lo; q < hi; q++) {
        const REAL *xp = x + q * plane_in;
        REAL *op = out + q * plane_out;
        for (int64_t i = 0; i < g->out_h; i++)
            for (int64_t j = 0; j < g->out_w; j++) {
                const REAL *win = xp + i * g->stride * g->width + j * g->stride;
                REAL sum = 0;
                for (int64_t r = 0; r < g->pool_h; r++)
                    for (int64_t c = 0; c < g->pool_w; c++) sum += win[r * g->width + c];
                op[i * g->out_w + j] = sum * scale;
            }
    }
}

static void SFX(avg_pool_forward)(const fastfc_pool_geom *g, const REAL *x, REAL *out,
                                  int n_threads) {
    POOL_OVER_PLANES(g, n_threads, lo, hi,
                           SFX(avg_pool_planes)(g, x, out, lo, hi));
}

/* dx = 0, then each window's entries += dout / (pool_h * pool_w). */
static void SFX(avg_pool_backward_planes)(const fastfc_pool_geom *g, const REAL *dout, REAL *dx,
                                          int64_t lo, int64_t hi) {
    const int64_t plane_in = g->height * g->width, plane_out = g->out_h * g->out_w;
    const REAL scale = (REAL)1 / (REAL)(g->pool_h * g->pool_w);
    for (int64_t q = lo; q < hi; q++) {
        REAL *dp = dx + q * plane_in;
        memset(dp, 0, (size_t)plane_in * sizeof(REAL));
        for (int64_t i = 0; i < g->out_h; i++)
            for (int64_t j = 0; j < g->out_w; j++) {
                REAL *restrict win = dp + i * g->stride * g->width + j * g->stride;
                const REAL v = dout[q * plane_out + i * g->out_w + j] * scale;
                for (int64_t r = 0; r < g->pool_h; r++)
#pragma omp simd
                    for (int64_t c = 0; c < g->pool_w; c++) win[r * g->width + c] += v;
            }
    }
}

static void SFX(avg_pool_backward)(const fastfc_pool_geom *g, const REAL *dout, REAL *dx,
                                   int n_threads) {
    POOL_OVER_PLANES(g, n_threads, lo, hi,
                           SFX(avg_pool_backward_planes)(g, dout, dx, lo, hi));
}

/* ---- the entry point ------------------------------------------------------ */
int64_t SFX(fastfc_pool)(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src, void *dst,
                         int32_t *argmax, int n_threads) {
    switch (op) {
    case FASTFC_MAX_POOL_FORWARD:
        SFX(max_pool_forward)(g, src, dst, argmax, n_threads);
        return 0;
    case FASTFC_MAX_POOL_BACKWARD:
        return SFX(max_pool_backward)(g, src, argmax, dst, n_threads);
    case FASTFC_AVG_POOL_FORWARD:
        SFX(avg_pool_forward)(g, src, dst, n_threads);
        return 0;
    case FASTFC_AVG_POOL_BACKWARD:
        SFX(avg_pool_backward)(g, src, dst, n_threads);
        return 0;
    }
    return 0;
}

#endif
