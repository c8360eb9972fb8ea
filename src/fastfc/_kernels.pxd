# The types of csrc/fastfc.h that the Cython wrappers share (the BLAS table, each
# family's geometry and argument structs). The functions themselves are declared
# in the wrapper that calls them, generated from their definitions in csrc/*.c
# by python3 csrc/gen_kernel_decls.py.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

cdef extern from "fastfc.h" nogil:
    ctypedef void (*fastfc_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                                     float *alpha, float *a, int *lda, float *b, int *ldb,
                                     float *beta, float *c, int *ldc) noexcept nogil
    ctypedef void (*fastfc_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                                     double *alpha, double *a, int *lda, double *b, int *ldb,
                                     double *beta, double *c, int *ldc) noexcept nogil
    ctypedef struct fastfc_blas:
        fastfc_sgemm_fn sgemm
        fastfc_dgemm_fn dgemm

    # conv.c
    ctypedef struct fastfc_conv_geom:
        int64_t n_batch, channels, height, width
        int64_t n_filters, kernel_h, kernel_w
        int64_t stride, pad
        int64_t out_h, out_w
    # pool.c
    ctypedef struct fastfc_pool_geom:
        int64_t planes, height, width
        int64_t pool_h, pool_w, stride
        int64_t out_h, out_w
    ctypedef enum fastfc_pool_op:
        FASTFC_MAX_POOL_FORWARD, FASTFC_MAX_POOL_BACKWARD, FASTFC_AVG_POOL_FORWARD,
        FASTFC_AVG_POOL_BACKWARD
    # optim.c
    ctypedef struct fastfc_optim_tensor:
        void *param
        const void *grad
        void *state[3]
        int64_t n
        int64_t step
    ctypedef struct fastfc_sgd_config:
        double lr, momentum, dampening, weight_decay
        int nesterov, maximize
    ctypedef struct fastfc_adagrad_config:
        double lr, lr_decay, weight_decay, eps
        int maximize
    ctypedef struct fastfc_rmsprop_config:
        double lr, alpha, eps, weight_decay, momentum
        int maximize
    ctypedef struct fastfc_adam_config:
        double lr, beta1, beta2, eps, weight_decay
        int decoupled, maximize
    ctypedef enum fastfc_optim_rule:
        FASTFC_SGD, FASTFC_SGD_VELOCITY, FASTFC_ADAGRAD, FASTFC_RMSPROP, FASTFC_ADAM
    # norm.c
    ctypedef struct fastfc_norm_geom:
        int64_t n_batch, channels, spatial
        int64_t groups
        int64_t chunk_samples
    ctypedef struct fastfc_norm_args:
        fastfc_norm_geom geom
        const void *x
        const void *gamma
        const void *beta
        const void *dout
        void *out
        void *dx
        void *dgamma
        void *dbeta
        void *mean
        void *inv_std
        void *running_mean
        void *running_var
        void *grad_factors
        double *partial
        int train
        double momentum, eps
