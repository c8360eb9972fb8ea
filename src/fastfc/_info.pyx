# cython: language_level=3
"""Facts about how the C kernels were built, for fastfc.show_config()."""

cdef extern from "fastfc.h" nogil:
    # BEGIN GENERATED from config.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int fastfc_openmp_enabled()
    int fastfc_max_threads()
    const char *fastfc_simd_level()
    const char *fastfc_gemm_kernels()
    # END GENERATED config.c


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastfc_openmp_enabled())


def max_threads():
    """OpenMP's own default team size (1 without OpenMP)."""
    return fastfc_max_threads()


def simd_level():
    """Widest SIMD instruction set this CPU gives the dispatched kernels."""
    return fastfc_simd_level().decode()


def gemm_kernels():
    """fastfc's own GEMM that float32 products of suitable shapes run on here
    (unpacked AVX-512, packed AVX2), or none: the BLAS for all."""
    return fastfc_gemm_kernels().decode()
