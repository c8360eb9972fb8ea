/* Internal helpers shared by the kernel files; not part of the public API. */
#ifndef FASTFC_INTERNAL_H
#define FASTFC_INTERNAL_H

#include <stdint.h>

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
#else
#define FASTFC_CLONES
#endif

/* Element-wise loops only use threads when each thread gets enough work to
 * pay for waking the team (about 10 us); below that they run serially. */
#define FASTFC_MIN_PER_THREAD ((int64_t)32768)

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

/* Below this many flops per thread a GEMM split costs more than it saves. */
#define FASTFC_GEMM_MIN_FLOPS_PER_THREAD ((int64_t)1 << 21)

#endif /* FASTFC_INTERNAL_H */
