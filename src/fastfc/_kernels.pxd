# Declarations of the C kernels in csrc/fastfc.h, for the Cython wrappers. The
# functions are generated from their definitions in csrc/*.c: edit those and run
# python3 csrc/gen_kernel_decls.py (tests/test_csrc.py fails until the blocks agree).
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

    # BEGIN GENERATED from gemm.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    void fastfc_gemm_f32(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b,
                         int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                         const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
    void fastfc_gemm_f64(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b,
                         int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                         int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                         int64_t ldc)
    # END GENERATED gemm.c

    # BEGIN GENERATED from config.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int fastfc_openmp_enabled()
    int fastfc_max_threads()
    const char *fastfc_simd_level()
    # END GENERATED config.c

    # BEGIN GENERATED from affine.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    void fastfc_affine_forward_f32(const float *x, const float *w, const float *b, float *out,
                                   int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                                   const fastfc_blas *blas, int n_threads)
    void fastfc_affine_forward_f64(const double *x, const double *w, const double *b, double *out,
                                   int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                                   const fastfc_blas *blas, int n_threads)
    void fastfc_affine_backward_f32(const float *dout, const float *x, const float *w,
                                    const float *relu_out, float *dh, float *dx, float *dw,
                                    float *db, int64_t n_batch, int64_t d_in, int64_t d_out,
                                    const fastfc_blas *blas, int n_threads)
    void fastfc_affine_backward_f64(const double *dout, const double *x, const double *w,
                                    const double *relu_out, double *dh, double *dx, double *dw,
                                    double *db, int64_t n_batch, int64_t d_in, int64_t d_out,
                                    const fastfc_blas *blas, int n_threads)
    # END GENERATED affine.c

    # BEGIN GENERATED from activations.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    uint64_t fastfc_dropout_key(uint64_t seed)
    uint32_t fastfc_dropout_bits(uint64_t key, uint64_t i)
    void fastfc_relu_forward_f32(const float *x, float *out, int64_t n, int n_threads)
    void fastfc_relu_forward_f64(const double *x, double *out, int64_t n, int n_threads)
    void fastfc_relu_backward_f32(const float *dout, const float *x, float *dx, int64_t n,
                                  int n_threads)
    void fastfc_relu_backward_f64(const double *dout, const double *x, double *dx, int64_t n,
                                  int n_threads)
    void fastfc_sigmoid_forward_f32(const float *x, float *out, int64_t n, int n_threads)
    void fastfc_sigmoid_forward_f64(const double *x, double *out, int64_t n, int n_threads)
    void fastfc_sigmoid_backward_f32(const float *dout, const float *out, float *dx, int64_t n,
                                     int n_threads)
    void fastfc_sigmoid_backward_f64(const double *dout, const double *out, double *dx, int64_t n,
                                     int n_threads)
    void fastfc_tanh_forward_f32(const float *x, float *out, int64_t n, int n_threads)
    void fastfc_tanh_forward_f64(const double *x, double *out, int64_t n, int n_threads)
    void fastfc_tanh_backward_f32(const float *dout, const float *out, float *dx, int64_t n,
                                  int n_threads)
    void fastfc_tanh_backward_f64(const double *dout, const double *out, double *dx, int64_t n,
                                  int n_threads)
    void fastfc_dropout_apply_f32(const float *in_, float *out, int64_t first, int64_t n, double p,
                                  uint64_t seed, int n_threads)
    void fastfc_dropout_apply_f64(const double *in_, double *out, int64_t first, int64_t n,
                                  double p, uint64_t seed, int n_threads)
    # END GENERATED activations.c

    # BEGIN GENERATED from losses.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    double fastfc_softmax_loss_f32(const float *x, const int64_t *y, float *dx, int64_t n_batch,
                                   int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_softmax_loss_f64(const double *x, const int64_t *y, double *dx, int64_t n_batch,
                                   int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_svm_loss_f32(const float *x, const int64_t *y, float *dx, int64_t n_batch,
                               int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_svm_loss_f64(const double *x, const int64_t *y, double *dx, int64_t n_batch,
                               int64_t n_classes, int64_t n_total, int n_threads)
    double fastfc_mse_loss_f32(const float *pred, const float *target, float *dpred, int64_t n,
                               int64_t n_total, int n_threads)
    double fastfc_mse_loss_f64(const double *pred, const double *target, double *dpred, int64_t n,
                               int64_t n_total, int n_threads)
    # END GENERATED losses.c

    # conv.c
    ctypedef struct fastfc_conv_geom:
        int64_t n_batch, channels, height, width
        int64_t n_filters, kernel_h, kernel_w
        int64_t stride, pad
        int64_t out_h, out_w
    # BEGIN GENERATED from conv.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int fastfc_conv_forward_f32(const fastfc_conv_geom *g, const float *x, const float *w,
                                const float *b, float *out, const fastfc_blas *blas, int n_threads)
    int fastfc_conv_forward_f64(const fastfc_conv_geom *g, const double *x, const double *w,
                                const double *b, double *out, const fastfc_blas *blas,
                                int n_threads)
    int fastfc_conv_backward_f32(const fastfc_conv_geom *g, const float *dout, const float *x,
                                 const float *w, float *dx, float *dw, float *db,
                                 const fastfc_blas *blas, int n_threads)
    int fastfc_conv_backward_f64(const fastfc_conv_geom *g, const double *dout, const double *x,
                                 const double *w, double *dx, double *dw, double *db,
                                 const fastfc_blas *blas, int n_threads)
    # END GENERATED conv.c

    # pool.c
    ctypedef struct fastfc_pool_geom:
        int64_t planes, height, width
        int64_t pool_h, pool_w, stride
        int64_t out_h, out_w
    ctypedef enum fastfc_pool_op:
        FASTFC_MAX_POOL_FORWARD, FASTFC_MAX_POOL_BACKWARD, FASTFC_AVG_POOL_FORWARD,
        FASTFC_AVG_POOL_BACKWARD
    # BEGIN GENERATED from pool.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int64_t fastfc_pool_f32(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src,
                            void *dst, int32_t *argmax, int n_threads)
    int64_t fastfc_pool_f64(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src,
                            void *dst, int32_t *argmax, int n_threads)
    # END GENERATED pool.c

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
    # BEGIN GENERATED from optim.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    void fastfc_optim_step_f32(fastfc_optim_rule rule, const void *config,
                               const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads)
    void fastfc_optim_step_f64(fastfc_optim_rule rule, const void *config,
                               const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads)
    # END GENERATED optim.c

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
    # BEGIN GENERATED from norm.c by python3 csrc/gen_kernel_decls.py: edit the definitions
    int64_t fastfc_groupnorm_chunk_samples(int64_t n_batch, int64_t group_size)
    int64_t fastfc_groupnorm_tiles(const fastfc_norm_geom *g)
    void fastfc_batchnorm_stats_f32(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                    int n_threads)
    void fastfc_batchnorm_stats_f64(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                    int n_threads)
    void fastfc_batchnorm_normalize_f32(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                        int n_threads)
    void fastfc_batchnorm_normalize_f64(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                        int n_threads)
    void fastfc_batchnorm_grad_sums_f32(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                        int n_threads)
    void fastfc_batchnorm_grad_sums_f64(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                        int n_threads)
    void fastfc_batchnorm_input_grad_f32(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                         int n_threads)
    void fastfc_batchnorm_input_grad_f64(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                         int n_threads)
    void fastfc_groupnorm_forward_f32(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                      int n_threads)
    void fastfc_groupnorm_forward_f64(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                      int n_threads)
    void fastfc_groupnorm_backward_f32(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                       int n_threads)
    void fastfc_groupnorm_backward_f64(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                       int n_threads)
    void fastfc_groupnorm_param_grads_f32(const fastfc_norm_args *a)
    void fastfc_groupnorm_param_grads_f64(const fastfc_norm_args *a)
    # END GENERATED norm.c