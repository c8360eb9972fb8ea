# cython: language_level=3
"""Facts about how the C kernels were built, for fastfc.show_config()."""
from fastfc._kernels cimport fastfc_openmp_enabled, fastfc_max_threads, fastfc_simd_level


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastfc_openmp_enabled())


def max_threads():
    """OpenMP's own default team size (1 without OpenMP)."""
    return fastfc_max_threads()


def simd_level():
    """Widest SIMD instruction set this CPU gives the dispatched kernels."""
    return fastfc_simd_level().decode()
