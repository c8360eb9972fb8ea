/* Instantiates a kernel file for float and double.
 *
 * A kernel file is written once in terms of REAL (the float type), SFX(name)
 * (appends _f32 or _f64) and the math macros below, inside an `#else` branch
 * of `#ifndef REAL`; its first branch defines FASTFC_TEMPLATE as its own name
 * and includes this header, which includes the file twice. The file's first
 * comment lists the functions it exports under their real names (name_f32,
 * name_f64), so that searching for one finds its definition; tests/test_csrc.py
 * checks the list against the definitions, fastfc.h and _kernels.pxd. */
#ifndef FASTFC_TEMPLATE
#error "define FASTFC_TEMPLATE before including instantiate.h"
#endif

#define REAL float
#define SFX(name) name##_f32
#define R_EXP expf
#define R_EXP_NONPOSITIVE fastfc_exp_nonpositive_f32
#define R_LOG logf
#define R_TANH tanhf
#define R_SQRT sqrtf
#define R_FABS fabsf
#define fastfc_gemm_real fastfc_gemm_f32
#define R_BLAS_GEMM sgemm
#include FASTFC_TEMPLATE
#undef REAL
#undef SFX
#undef R_EXP
#undef R_EXP_NONPOSITIVE
#undef R_LOG
#undef R_TANH
#undef R_SQRT
#undef R_FABS
#undef fastfc_gemm_real
#undef R_BLAS_GEMM

#define REAL double
#define SFX(name) name##_f64
#define R_EXP exp
#define R_EXP_NONPOSITIVE exp
#define R_LOG log
#define R_TANH tanh
#define R_SQRT sqrt
#define R_FABS fabs
#define fastfc_gemm_real fastfc_gemm_f64
#define R_BLAS_GEMM dgemm
#include FASTFC_TEMPLATE
#undef REAL
#undef SFX
#undef R_EXP
#undef R_EXP_NONPOSITIVE
#undef R_LOG
#undef R_TANH
#undef R_SQRT
#undef R_FABS
#undef fastfc_gemm_real
#undef R_BLAS_GEMM
