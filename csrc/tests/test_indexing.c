/* 64-bit index arithmetic of the kernels, checked without allocating the
 * tensors: arrays past 2^31 and 2^32 elements live in address space that
 * is reserved (mmap, PROT_NONE or MAP_NORESERVE) but never, or barely,
 * touched.
 *   - fastfc_block over n > 2^31 and > 2^32: blocks tile [0, n), aligned;
 *   - fastfc_dropout_bits/key near and past i = 2^32 and 2^63 against a
 *     direct evaluation of the formula in fastfc.h, and dropout_apply on
 *     pieces that start past 2^32 (up to INT64_MAX);
 *   - fastfc_gemm, affine_forward and affine_backward with a recording BLAS
 *     that never dereferences: every block's pointers must sit exactly at
 *     row * leading dimension (int64 products past 2^31 and 2^32);
 *   - conv_forward, max and avg pooling over inputs of more than 2^32
 *     elements, of which a stride reads only a few (sparse mapping).
 * tests/test_csrc.py builds it with ASan/UBSan and runs it; it prints
 * "N passed, M failed" and exits non-zero on failure. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fastfc.h"
#include "internal.h"

#include "check.h"

#define TWO_31 ((int64_t)1 << 31)
#define TWO_32 ((int64_t)1 << 32)

/* ---- address space ---------------------------------------------------------- */

/* bytes of address space, never backed unless written (NULL if refused). */
static char *reserve(int64_t bytes, int writable) {
    void *p = mmap(NULL, (size_t)bytes, writable ? PROT_READ | PROT_WRITE : PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : (char *)p;
}

/* Large enough for every recorded-GEMM operand below (they share it: the
 * recording BLAS never reads or writes). */
#define RESERVED_BYTES ((int64_t)1 << 37)
static char *reserved;

/* ---- fastfc_block ------------------------------------------------------------- */

static void test_block(void) {
    const int64_t sizes[] = {TWO_31 - 1, TWO_31, TWO_31 + 5, TWO_32 - 3, TWO_32 + 17,
                             ((int64_t)1 << 40) + 12345, INT64_MAX / 4};
    const int parts[] = {1, 2, 3, 7, 64, 1000};
    const int64_t aligns[] = {1, 8, 16};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (size_t q = 0; q < sizeof parts / sizeof *parts; q++)
            for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++) {
                int64_t n = sizes[s], align = aligns[a], expect_lo = 0, widest = 0;
                int ok = 1;
                for (int part = 0; part < parts[q]; part++) {
                    int64_t lo, hi;
                    fastfc_block(n, parts[q], part, align, &lo, &hi);
                    /* contiguous, in order, aligned starts, no block past n */
                    ok &= lo == expect_lo && hi >= lo && hi <= n;
                    ok &= lo == n || lo % align == 0;
                    if (hi - lo > widest) widest = hi - lo;
                    expect_lo = hi;
                }
                ok &= expect_lo == n; /* covered */
                /* balanced: no block wider than the even share rounded up to align */
                ok &= widest <= (n + parts[q] - 1) / parts[q] + align - 1;
                CHECK(ok, "fastfc_block n=%lld parts=%d align=%lld", (long long)n, parts[q],
                      (long long)align);
            }
}

/* ---- dropout's counter-based draw ------------------------------------------------ */

static uint32_t murmur3_fmix32(uint32_t h) {
    h ^= h >> 16;
    h = (uint32_t)((uint64_t)h * 0x85ebca6bu);
    h ^= h >> 13;
    h = (uint32_t)((uint64_t)h * 0xc2b2ae35u);
    return h ^ (h >> 16);
}

static uint64_t splitmix64_first(uint64_t seed) {
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The formula of fastfc.h, with the halves taken by masks and sums mod 2^32. */
static uint32_t direct_bits(uint64_t key, uint64_t i) {
    uint32_t low = (uint32_t)(i & 0xffffffffu), key_low = (uint32_t)(key & 0xffffffffu);
    uint32_t high = (uint32_t)(((i >> 32) + (key >> 32)) & 0xffffffffu);
    return murmur3_fmix32(murmur3_fmix32(low ^ key_low) ^ high);
}

static void test_dropout_bits(void) {
    /* splitmix64's first output from state 0 is a published constant */
    CHECK(fastfc_dropout_key(0) == 0xe220a8397b1dcdafULL, "splitmix64(0)");
    const uint64_t seeds[] = {0, 1, 42, 0xdeadbeefULL, UINT64_MAX};
    const uint64_t centres[] = {0, (uint64_t)TWO_31, (uint64_t)TWO_32, 3 * (uint64_t)TWO_32,
                                (uint64_t)1 << 40, (uint64_t)1 << 63, UINT64_MAX - 64};
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        uint64_t key = fastfc_dropout_key(seeds[s]);
        CHECK(key == splitmix64_first(seeds[s]), "key of seed %llu", (unsigned long long)seeds[s]);
        for (size_t c = 0; c < sizeof centres / sizeof *centres; c++) {
            int same = 1;
            for (uint64_t d = 0; d < 128; d++) {
                uint64_t i = centres[c] - (centres[c] ? 64 : 0) + d;
                same &= fastfc_dropout_bits(key, i) == direct_bits(key, i);
            }
            CHECK(same, "dropout bits near %llu, seed %llu", (unsigned long long)centres[c],
                  (unsigned long long)seeds[s]);
        }
        /* the high word matters: i and i + 2^32 draw differently (almost always) */
        int differ = 0;
        for (uint64_t i = 0; i < 64; i++)
            differ += fastfc_dropout_bits(key, i) != fastfc_dropout_bits(key, i + TWO_32);
        CHECK(differ >= 60, "i and i + 2^32 share draws (%d of 64 differ)", differ);
    }
}

/* dropout_apply over pieces whose first index is past 2^32, up to INT64_MAX:
 * each element keeps the draw of its global index, even where a piece
 * straddles a multiple of 2^32. */
static void test_dropout_offsets(void) {
    const int64_t firsts[] = {TWO_32 - 5, 3 * TWO_32 - 16, ((int64_t)1 << 40) + 7, INT64_MAX - 40};
    const uint64_t seed = 77, key = fastfc_dropout_key(seed);
    float in[32], out[32];
    for (int i = 0; i < 32; i++) in[i] = 1.0f;
    for (size_t f = 0; f < sizeof firsts / sizeof *firsts; f++) {
        fastfc_dropout_apply_f32(in, out, firsts[f], 32, 0.5, seed, 2);
        int ok = 1;
        for (int64_t i = 0; i < 32; i++) { /* p = 0.5: kept when the draw is >= 2^31 */
            int kept = direct_bits(key, (uint64_t)(firsts[f] + i)) >= 0x80000000u;
            ok &= out[i] == (kept ? 2.0f : 0.0f);
        }
        CHECK(ok, "dropout_apply from index %lld", (long long)firsts[f]);
    }
}

/* ---- a BLAS that records its calls -------------------------------------------- */

typedef struct {
    char ta, tb;
    int m, n, k, lda, ldb, ldc;
    const char *a, *b, *c;
} gemm_call;

#define MAX_CALLS 256
static gemm_call calls[MAX_CALLS];
static int n_calls;

static void record(char ta, char tb, int m, int n, int k, const void *a, int lda, const void *b,
                   int ldb, const void *c, int ldc) {
#pragma omp critical(fastfc_test_record)
    {
        if (n_calls < MAX_CALLS)
            calls[n_calls] = (gemm_call){ta, tb, m, n, k, lda, ldb, ldc, a, b, c};
        n_calls++;
    }
}

static void recording_sgemm(char *ta, char *tb, int *m, int *n, int *k, float *alpha, float *a,
                            int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) {
    (void)alpha, (void)beta;
    record(*ta, *tb, *m, *n, *k, a, *lda, b, *ldb, c, *ldc);
}

static void recording_dgemm(char *ta, char *tb, int *m, int *n, int *k, double *alpha, double *a,
                            int *lda, double *b, int *ldb, double *beta, double *c, int *ldc) {
    (void)alpha, (void)beta;
    record(*ta, *tb, *m, *n, *k, a, *lda, b, *ldb, c, *ldc);
}

static const fastfc_blas RECORDING = {recording_sgemm, recording_dgemm};

/* One row-major product C[m,n] = op(A) op(B) and where it lies. */
typedef struct {
    char trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldc;
    const char *a, *b, *c;
    int64_t elem; /* bytes per element */
} product;

static int cmp_int64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Sorts the (start, count) blocks by start; the end of [0, end) when they
 * tile it without gaps or overlaps, else -1. */
static int64_t tiled_end(int64_t (*starts)[2], int64_t n_blocks) {
    qsort(starts, (size_t)n_blocks, sizeof starts[0], cmp_int64);
    int64_t next = 0;
    for (int64_t i = 0; i < n_blocks; i++) {
        if (starts[i][0] != next) return -1;
        next = starts[i][0] + starts[i][1];
    }
    return next;
}

/* The recorded calls (all of them p's) must split p's C into row blocks (or
 * column blocks) that tile it, each call's A, B and C at exactly the block's
 * first row (column) times its leading dimension. */
static void check_split(const product *p, const char *what) {
    int64_t starts[MAX_CALLS][2], n_blocks = 0; /* (first row/col, count) */
    int rows = -1, ok = n_calls <= MAX_CALLS;
    for (int i = 0; ok && i < n_calls; i++) {
        const gemm_call *r = &calls[i];
        /* the column-major call computes C^T = op(B)^T op(A)^T */
        int64_t c_off = (r->c - p->c) / p->elem;
        int64_t a_off = (r->b - p->a) / p->elem, b_off = (r->a - p->b) / p->elem;
        ok &= r->ta == p->trans_b && r->tb == p->trans_a && r->k == p->k;
        ok &= r->lda == p->ldb && r->ldb == p->lda && r->ldc == p->ldc;
        int by_rows = r->m == p->n; /* all of C's columns: a block of rows */
        if (rows < 0) rows = by_rows;
        ok &= by_rows == rows;
        if (by_rows) {
            int64_t lo = c_off / p->ldc;
            ok &= c_off == lo * p->ldc && b_off == 0;
            ok &= a_off == (p->trans_a == 'N' ? lo * p->lda : lo);
            starts[n_blocks][0] = lo, starts[n_blocks][1] = r->n;
        } else {
            int64_t lo = c_off;
            ok &= r->n == p->m && a_off == 0;
            ok &= b_off == (p->trans_b == 'N' ? lo : lo * p->ldb);
            starts[n_blocks][0] = lo, starts[n_blocks][1] = r->m;
        }
        n_blocks++;
    }
    int64_t next = tiled_end(starts, n_blocks);
    ok &= n_blocks > 0 && next == (rows ? p->m : p->n);
    CHECK(ok, "%s: %lld blocks, pointers or tiling wrong", what, (long long)n_blocks);
}

/* fastfc_gemm over operands spanning more than 2^32 elements. */
static void test_gemm_offsets(void) {
    const int64_t big = TWO_31 - 8; /* the largest size the BLAS's int takes, aligned */
    struct {
        char ta, tb;
        int64_t m, n, k, lda, ldb, ldc;
        const char *what;
    } cases[] = {
        /* row blocks: A at lo*lda (6.4e9 elements), C at lo*ldc (4.3e9) */
        {'N', 'N', big, 2, 3, 3, 2, 2, "rows N,N"},
        {'T', 'N', big, 2, 3, big, 2, 2, "rows T,N"},
        /* column blocks: B at lo*ldb (6.4e9) for 'T' */
        {'N', 'T', 2, big, 3, 3, 3, big, "columns N,T"},
        {'N', 'N', 2, big, 3, 3, big, big, "columns N,N"},
    };
    const int threads[] = {1, 3, 4};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t t = 0; t < sizeof threads / sizeof *threads; t++)
            for (int f64 = 0; f64 < 2; f64++) {
                product p = {cases[c].ta, cases[c].tb, cases[c].m, cases[c].n, cases[c].k,
                             cases[c].lda, cases[c].ldb, cases[c].ldc,
                             reserved, reserved, reserved, f64 ? 8 : 4};
                n_calls = 0;
                if (f64)
                    fastfc_gemm_f64(&RECORDING, threads[t], p.trans_a, p.trans_b, p.m, p.n, p.k,
                                    1, (const double *)p.a, p.lda, (const double *)p.b, p.ldb, 0,
                                    (double *)p.c, p.ldc);
                else
                    fastfc_gemm_f32(&RECORDING, threads[t], p.trans_a, p.trans_b, p.m, p.n, p.k,
                                    1, (const float *)p.a, p.lda, (const float *)p.b, p.ldb, 0,
                                    (float *)p.c, p.ldc);
                char what[96];
                snprintf(what, sizeof what, "fastfc_gemm %s, %d threads, %s", cases[c].what,
                         threads[t], f64 ? "f64" : "f32");
                check_split(&p, what);
            }
}

/* The recorded calls of a forward split over K (affine_forward_split_k):
 * each multiplies all rows of x's columns [k0, k0 + k) (A at x + k0) by
 * w's rows [k0, k0 + k) (B at w + k0 * d_out, past 2^32 elements here), the
 * blocks tile [0, d_in), and exactly the block at k0 = 0 writes out. */
static void check_split_k(const product *p, const char *what) {
    int64_t starts[MAX_CALLS][2], n_blocks = 0;
    int ok = n_calls <= MAX_CALLS && n_calls > 1, into_out = 0;
    for (int i = 0; ok && i < n_calls; i++) {
        const gemm_call *r = &calls[i];
        int64_t k0 = (r->b - p->a) / p->elem; /* the column-major call swaps A and B */
        ok &= r->m == p->n && r->n == p->m && r->lda == p->ldb && r->ldb == p->lda;
        ok &= (r->a - p->b) / p->elem == k0 * p->ldb;
        if (r->c == p->c) into_out++, ok &= k0 == 0;
        starts[n_blocks][0] = k0, starts[n_blocks][1] = r->k;
        n_blocks++;
    }
    int64_t next = tiled_end(starts, n_blocks);
    ok &= into_out == 1 && next == p->k;
    CHECK(ok, "%s: %lld blocks, pointers or tiling wrong", what, (long long)n_blocks);
}

/* affine forward/backward with x (32 or 96, 2^28) and w (2^28, 16): rows of x
 * start at multiples of 2^31 elements, dw and dx span 2^32 and 2^33. Only the
 * small arrays (b, out, dout, db) are real. The forward splits K on both 32
 * rows on 4 threads (8 rows a thread is too few) and 96 on 2 (w's 2^28 rows
 * outweigh the batch); the backward splits dw's rows and dx's columns. */
static void test_affine_offsets(void) {
    const int64_t n_batch = 32, d_in = (int64_t)1 << 28, d_out = 16;
    float b[16], out[96 * 16], dout[32 * 16], db[16];
    for (int j = 0; j < 16; j++) b[j] = -1.0f - (float)j;
    for (int i = 0; i < 32 * 16; i++) dout[i] = (float)(i % 7);
    const float *x = (const float *)reserved, *w = (const float *)reserved;
    for (int rows = 32; rows <= 96; rows += 64)
        for (int relu = 0; relu < 2; relu++) {
            n_calls = 0;
            fastfc_affine_forward_f32(x, w, b, out, rows, d_in, d_out, relu, &RECORDING,
                                      rows == 32 ? 4 : 2);
            product fwd = {'N', 'N', rows, d_out, d_in, d_in, d_out, d_out,
                           (const char *)x, (const char *)w, (const char *)out, 4};
            char what[64];
            snprintf(what, sizeof what, "affine_forward%s, %d rows", relu ? " (relu)" : "", rows);
            check_split_k(&fwd, what); /* (its partial products are never written here) */
        }
    n_calls = 0;
    float *dw = (float *)reserved, *dx = (float *)reserved;
    fastfc_affine_backward_f32(dout, x, w, NULL, NULL, dx, dw, db, n_batch, d_in, d_out, &RECORDING, 4);
    /* dw = x^T dout, then dx = dout w^T: told apart by where their B lies */
    int n_all = n_calls;
    gemm_call all[MAX_CALLS];
    memcpy(all, calls, sizeof all);
    product dw_prod = {'T', 'N', d_in, d_out, n_batch, d_in, d_out, d_out,
                       (const char *)x, (const char *)dout, (const char *)dw, 4};
    product dx_prod = {'N', 'T', n_batch, d_in, d_out, d_out, d_out, d_in,
                       (const char *)dout, (const char *)w, (const char *)dx, 4};
    for (int want_dw = 1; want_dw >= 0; want_dw--) {
        n_calls = 0;
        for (int i = 0; i < n_all && i < MAX_CALLS; i++)
            if ((all[i].a == (const char *)dout) == want_dw) calls[n_calls++] = all[i];
        check_split(want_dw ? &dw_prod : &dx_prod,
                    want_dw ? "affine_backward dw" : "affine_backward dx");
    }
    int sums = 1;
    for (int j = 0; j < 16; j++) {
        float want = 0;
        for (int i = 0; i < 32; i++) want += dout[i * 16 + j];
        sums &= db[j] == want;
    }
    CHECK(sums, "affine_backward db");
}

/* ---- conv and pooling over a sparse input of more than 2^32 elements ------------- */

/* Naive column-major GEMM for the conv test's tiny products. */
static void naive_sgemm(char *ta, char *tb, int *m, int *n, int *k, float *alpha, float *a,
                        int *lda, float *b, int *ldb, float *beta, float *c, int *ldc) {
    for (int j = 0; j < *n; j++)
        for (int i = 0; i < *m; i++) {
            float s = 0;
            for (int p = 0; p < *k; p++)
                s += (*ta == 'N' ? a[i + p * *lda] : a[p + i * *lda]) *
                     (*tb == 'N' ? b[p + j * *ldb] : b[j + p * *ldb]);
            c[i + j * *ldc] = *alpha * s + (*beta == 0 ? 0 : *beta * c[i + j * *ldc]);
        }
}

static void naive_dgemm(char *ta, char *tb, int *m, int *n, int *k, double *alpha, double *a,
                        int *lda, double *b, int *ldb, double *beta, double *c, int *ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b;
    (void)ldb, (void)beta, (void)c, (void)ldc; /* unused: the float32 kernels only */
}

static const fastfc_blas NAIVE = {naive_sgemm, naive_dgemm};

/* x (3, 1, 1, W) with W = 2^31 - 1: image n starts at n*W, past 2^32 for n = 2;
 * a 1x1 kernel (or window) with stride W - 1 reads columns 0 and W - 1 only. */
static void test_sparse_images(void) {
    const int64_t n_img = 3, width = TWO_31 - 1, stride = width - 1;
    float *x = (float *)reserve(n_img * width * (int64_t)sizeof(float), 1);
    if (!x) {
        printf("skipped the sparse-image tests: %lld GB of address space refused\n",
               (long long)(n_img * width * 4 >> 30));
        return;
    }
    float want[3][2];
    for (int64_t n = 0; n < n_img; n++)
        for (int j = 0; j < 2; j++) {
            float v = (float)(10 * n + j + 1);
            x[n * width + j * stride] = v; /* touches 6 pages */
            want[n][j] = v;
        }

    fastfc_conv_geom g = {n_img, 1, 1, width, 1, 1, 1, stride, 0, 1, 2};
    float w = 2.0f, b = 0.5f, out[6], dw, db, dout[6] = {1, 1, 1, 1, 1, 1};
    int status = fastfc_conv_forward_f32(&g, x, &w, &b, out, &NAIVE, 2);
    int ok = status == 0;
    for (int64_t n = 0; n < n_img; n++)
        for (int j = 0; j < 2; j++) ok &= out[n * 2 + j] == 2.0f * want[n][j] + 0.5f;
    CHECK(ok, "conv_forward over images at offsets past 2^32");
    status = fastfc_conv_backward_f32(&g, dout, x, &w, NULL, &dw, &db, &NAIVE, 2);
    float sum = 0;
    for (int64_t n = 0; n < n_img; n++) sum += want[n][0] + want[n][1];
    CHECK(status == 0 && dw == sum && db == 6.0f, "conv_backward dw over images past 2^32");

    fastfc_pool_geom pg = {n_img, 1, width, 1, 1, stride, 1, 2};
    float pooled[6], averaged[6];
    int32_t argmax[6];
    fastfc_pool_f32(FASTFC_MAX_POOL_FORWARD, &pg, x, pooled, argmax, 2);
    fastfc_pool_f32(FASTFC_AVG_POOL_FORWARD, &pg, x, averaged, NULL, 2);
    ok = 1;
    for (int64_t n = 0; n < n_img; n++)
        for (int j = 0; j < 2; j++) {
            ok &= pooled[n * 2 + j] == want[n][j] && averaged[n * 2 + j] == want[n][j];
            ok &= argmax[n * 2 + j] == (int32_t)(j * stride);
        }
    CHECK(ok, "max/avg pooling over planes at offsets past 2^32");
    munmap(x, (size_t)(n_img * width * (int64_t)sizeof(float)));
}

int main(void) {
    test_block();
    test_dropout_bits();
    test_dropout_offsets();
    reserved = reserve(RESERVED_BYTES, 0);
    if (reserved) {
        test_gemm_offsets();
        test_affine_offsets();
        munmap(reserved, (size_t)RESERVED_BYTES);
    } else {
        printf("skipped the recorded-GEMM tests: 128 GiB of address space refused\n");
    }
    test_sparse_images();
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed != 0;
}
