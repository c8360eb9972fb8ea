/* Facts about the build and the CPU, for fastfc.show_config(). */
#include "fastfc.h"
#include "internal.h"

int fastfc_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fastfc_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *fastfc_simd_level(void) {
#if defined(__GNUC__) && defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "sse2";
#else
    return "baseline";
#endif
}

/* Which of fastfc's own GEMMs this CPU gives float32 products whose shape
 * suits them (csrc/internal.h's rules; the rest go to the BLAS). */
const char *fastfc_gemm_kernels(void) {
    if (fastfc_unpacked_gemm_wins(sizeof(float), 'N', 'N', 4096, 4096)) return "unpacked (AVX-512)";
    if (fastfc_packed_gemm_wins(sizeof(float), 'N', 4096, 4096, 4096)) return "packed (AVX2)";
    return "none (the BLAS for every product)";
}
