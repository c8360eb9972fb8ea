/* Internal helpers shared by the kernel files; not part of the public API. */
#ifndef FASTFC_INTERNAL_H
#define FASTFC_INTERNAL_H

#include <stdint.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#define FASTFC_THREAD_ID() omp_get_thread_num()
#define FASTFC_TEAM_SIZE() omp_get_num_threads()
#else
#define FASTFC_THREAD_ID() 0
#define FASTFC_TEAM_SIZE() 1
#endif

/* Runtime SIMD dispatch for the hottest element-wise loops: GCC compiles the
 * function once per target and picks one at load time (ifunc), so a portable
 * wheel still runs AVX2/AVX-512 code where the CPU has it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(FASTFC_NO_CLONES) && !defined(__SANITIZE_ADDRESS__)
#define FASTFC_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), noinline))
/* The packed GEMM's microkernel needs FMA: x86-64-v3 (AVX2 + FMA), not plain avx2. */
#define FASTFC_FMA_CLONES __attribute__((target_clones("arch=x86-64-v3", "default"), noinline))
#else
#define FASTFC_CLONES
#define FASTFC_FMA_CLONES
#endif

/* Element-wise loops only use threads when each thread gets enough work to
 * pay for waking the team (about 10 us); below that they run serially. */
#define FASTFC_MIN_PER_THREAD ((int64_t)32768)

/* fastfc's unpacked GEMM (csrc/gemm.c) is compiled where GCC or Clang can
 * target AVX-512 on x86-64, and runs where the CPU has AVX-512F and VL. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTFC_HAVE_AVX512_GEMM 1
static inline int fastfc_cpu_has_avx512(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
}
#else
#define FASTFC_HAVE_AVX512_GEMM 0
#endif

/* Whether fastfc_unpacked_gemm beats the BLAS on a product op(A) B of n
 * columns over k (REALs of real_size bytes, B untransposed), as measured on
 * AMD Zen 4 (family 19h) at the training shapes (benchmarks/gemm_shapes.py,
 * benchmarks/README.md): float32 with at least 48 columns and K >= 64, 1.1-1.6x
 * SciPy's OpenBLAS on one thread's pieces (101-111 GFLOP/s, where its large
 * sgemm runs at 104), while 3-32 columns (its tiles half empty) and products of
 * 64 x 64 x 80-128 lost 5-35%; with A transposed (a weight gradient) only up
 * to 512 columns: 1024 x 1024 x 128 lost 10% (B's rows 4 KB apart). Products
 * of thousands of rows (not a training batch: 2048^3) lose 17%. Independent of
 * m, so that the pieces of a product split by rows all take the same kernel
 * whatever the thread count. Other AVX-512 CPUs (full-width FMAs, where the
 * BLAS's own 64-byte kernels run at twice the rate) and doubles keep the
 * BLAS: unmeasured. */
static inline int fastfc_unpacked_gemm_wins(size_t real_size, char trans_a, char trans_b, int64_t n,
                                            int64_t k) {
#if FASTFC_HAVE_AVX512_GEMM
    return real_size == sizeof(float) && trans_b == 'N' && n >= 48 && k >= 64
        && (trans_a == 'N' || n <= 512) && fastfc_cpu_has_avx512() && __builtin_cpu_is("amdfam19h");
#else
    (void)real_size, (void)trans_a, (void)trans_b, (void)n, (void)k;
    return 0;
#endif
}

/* Whether fastfc_packed_gemm beats the BLAS on one thread's piece (m x n x
 * k, REALs of real_size bytes), as measured at the training shapes
 * (benchmarks/gemm_shapes.py, benchmarks/README.md): float32 with B read
 * untransposed (forward and weight-gradient products, the convolution's
 * forward and input-gradient ones), enough rows and columns to fill its
 * register tiles and a K that pays for the packing, on x86-64 with AVX2 and
 * FMA and without AVX-512 (there the unpacked GEMM or the BLAS's 64-byte
 * kernels win). The BLAS keeps B transposed, K = 27 (a first
 * convolution), the last layers' 3-10 columns, pieces of 32 rows, and
 * doubles, where it won everywhere measured. */
static inline int fastfc_packed_gemm_wins(size_t real_size, char trans_b, int64_t m, int64_t n,
                                          int64_t k) {
#if defined(__GNUC__) && defined(__x86_64__)
    return real_size == sizeof(float) && trans_b == 'N' && m >= 48 && n >= 128 && k >= 64
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
        && !__builtin_cpu_supports("avx512f");
#else
    (void)real_size, (void)trans_b, (void)m, (void)n, (void)k;
    return 0;
#endif
}

static inline int fastfc_team(int n_threads, int64_t work, int64_t min_per_thread) {
    int64_t useful = work / min_per_thread;
    if (useful < 1) useful = 1;
    return (int)(useful < n_threads ? useful : n_threads);
}

/* [lo, hi) of the part-th of n_parts near-equal blocks of n items, each
 * block starting at a multiple of align (except the first). */
static inline void fastfc_block(int64_t n, int n_parts, int part, int64_t align,
                                int64_t *lo, int64_t *hi) {
    int64_t per = (n + n_parts - 1) / n_parts;
    per = (per + align - 1) / align * align;
    int64_t a = per * part, b = a + per;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}


/* Runs BODY on near-equal blocks [LO, HI) of N items (block starts aligned to
 * 16 for SIMD), on as many threads as the work pays for, at most N_THREADS. */
#define FASTFC_PARALLEL_BLOCKS(N, N_THREADS, MIN_PER_THREAD, LO, HI, BODY)               \
    do {                                                                                 \
        int team_ = fastfc_team((N_THREADS), (N), (MIN_PER_THREAD));                     \
        (void)team_; /* unused without OpenMP */                                         \
        _Pragma("omp parallel num_threads(team_)")                                       \
        {                                                                                \
            int64_t LO, HI;                                                              \
            fastfc_block((N), FASTFC_TEAM_SIZE(), FASTFC_THREAD_ID(), 16, &LO, &HI);     \
            BODY;                                                                        \
        }                                                                                \
    } while (0)

/* exp(x) for x <= 0 in a SIMD loop (softmax after max-subtraction): the
 * argument splits as n ln2 + r, |r| <= ln2/2, exp(r) is a degree-6 polynomial
 * (Cephes' expf coefficients), and 2^n is built in the exponent bits. No
 * float-to-int conversion, so NaN passes through as NaN. Results below 2^-125
 * (x < -87) are flushed to zero; -inf gives 0. About 1 ulp elsewhere. */
static inline float fastfc_exp_nonpositive_f32(float x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * 1.44269504088896341f + magic;
    float n = t - magic;
    int32_t n_int;
    memcpy(&n_int, &t, sizeof n_int);
    n_int -= 0x4B400000; /* the bits of magic */
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t scale_bits = (uint32_t)(n_int + 127) << 23; /* unsigned: NaN's garbage n cannot overflow */
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    /* Computed unconditionally so the select below needs no branch. */
    float y = p * scale;
    return x < -87.0f ? 0.0f : y;
}

/* fastfc_gemm's row split starts each thread's rows at a multiple of this;
 * the affine layer splits w's rows (its forward over K, its dx over
 * columns) the same way, so that each core keeps to the rows of w whose
 * gradient it computes, and the optimizer's shares of each tensor follow. */
#define FASTFC_GEMM_ROW_ALIGN 8

/* Below this many flops per thread a GEMM split costs more than it saves.
 * 2^20 (about 12 us of one core's work here): at 2^21 the products of a small
 * network (digits' 200 x 64 -> 100 at 2.6 MFLOP) ran on one thread; split, its
 * forward took 20 us instead of 34 and its backward 35 instead of 43; at 2^18
 * a 64 x 64 -> 100 backward got slower (benchmarks/README.md). */
#define FASTFC_GEMM_MIN_FLOPS_PER_THREAD ((int64_t)1 << 20)

#endif /* FASTFC_INTERNAL_H */
