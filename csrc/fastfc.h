/* fastfc: plain C99 kernels for fully-connected and small convolutional
 * networks. No Python here: the Cython wrappers in src/fastfc/ validate
 * arguments and call these functions with the GIL released.
 *
 * Conventions, for every kernel:
 *   - arrays are C-contiguous (row-major) and do not alias unless stated;
 *   - sizes and indices are int64_t; shapes are given in the comments;
 *   - each kernel exists for float (suffix _f32) and double (suffix _f64);
 *   - n_threads is the OpenMP team size to use (>= 1); no global state;
 *   - inputs were validated by the caller: kernels trust them.
 *
 * The prototypes between BEGIN/END GENERATED lines are written from the
 * definitions in the csrc/ kernel files by csrc/gen_kernel_decls.py (so is _kernels.pxd):
 * edit a definition, then run python3 csrc/gen_kernel_decls.py. */
#ifndef FASTFC_H
#define FASTFC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The functions declared here are the library's exported symbols; it is
 * built with -fvisibility=hidden, so every other one stays internal. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* ---- BLAS, handed in as function pointers ------------------------------
 * Fortran-convention (column-major) GEMM with 32-bit sizes, exactly the
 * signature of scipy.linalg.cython_blas sgemm/dgemm. The wrappers fill a
 * fastfc_blas once at import; standalone C tests plug in a plain GEMM. */
typedef void (*fastfc_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                                float *alpha, float *a, int *lda, float *b, int *ldb,
                                float *beta, float *c, int *ldc);
typedef void (*fastfc_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                                double *alpha, double *a, int *lda, double *b, int *ldb,
                                double *beta, double *c, int *ldc);
typedef struct {
    fastfc_sgemm_fn sgemm;
    fastfc_dgemm_fn dgemm;
} fastfc_blas;

/* Row-major GEMM on top of the column-major BLAS:
 *   C[M,N] = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T ('N'/'T').
 * The BLAS is called single-threaded from inside fastfc's own OpenMP team:
 * the M rows (or, when M is small, the N columns) of C are split in blocks.
 * All sizes and leading dimensions must fit in int (checked by wrappers).
 * Where its pieces run faster on fastfc's own packed GEMM, they do:
 * fastfc_packed_gemm is that kernel on one thread, any sizes, no BLAS
 * (returns -1, C unchanged, when its packing buffers cannot be allocated). */
/* BEGIN GENERATED from gemm.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
int fastfc_packed_gemm_f32(int n_threads, char trans_a, char trans_b, int64_t m, int64_t n,
                           int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                           int64_t ldb, float beta, float *c, int64_t ldc, const float *bias,
                           int relu);
int fastfc_packed_gemm_f64(int n_threads, char trans_a, char trans_b, int64_t m, int64_t n,
                           int64_t k, double alpha, const double *a, int64_t lda, const double *b,
                           int64_t ldb, double beta, double *c, int64_t ldc, const double *bias,
                           int relu);
int fastfc_unpacked_gemm_f32(char trans_a, int64_t m, int64_t n, int64_t k, float alpha,
                             const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                             float *c, int64_t ldc, const float *bias, int relu);
int fastfc_unpacked_gemm_f64(char trans_a, int64_t m, int64_t n, int64_t k, double alpha,
                             const double *a, int64_t lda, const double *b, int64_t ldb,
                             double beta, double *c, int64_t ldc, const double *bias, int relu);
void fastfc_gemm_f32(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                     int64_t ldb, float beta, float *c, int64_t ldc);
void fastfc_gemm_f64(const fastfc_blas *blas, int n_threads, char trans_a, char trans_b, int64_t m,
                     int64_t n, int64_t k, double alpha, const double *a, int64_t lda,
                     const double *b, int64_t ldb, double beta, double *c, int64_t ldc);
/* END GENERATED gemm.c */

/* ---- build facts (config.c) ----------------------------------------------
 * fastfc_openmp_enabled: 1 if built with OpenMP;
 * fastfc_max_threads: omp_get_max_threads(), 1 without OpenMP;
 * fastfc_simd_level: the widest SIMD the CPU offers to the clones;
 * fastfc_gemm_kernels: fastfc's own GEMM that float32 products of suitable
 * shapes take on this CPU, or none. */
/* BEGIN GENERATED from config.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
int fastfc_openmp_enabled(void);
int fastfc_max_threads(void);
const char *fastfc_simd_level(void);
const char *fastfc_gemm_kernels(void);
/* END GENERATED config.c */

/* ---- row gather (gather.c) -------------------------------------------------
 * x: (n_rows, row_len); index: (n_index,) each in [0, n_rows);
 * out: (n_index, row_len) = x[index]. */
/* BEGIN GENERATED from gather.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
void fastfc_gather_rows_f32(const float *x, int64_t row_len, const int64_t *index, int64_t n_index,
                            float *out, int n_threads);
void fastfc_gather_rows_f64(const double *x, int64_t row_len, const int64_t *index, int64_t n_index,
                            double *out, int n_threads);
/* END GENERATED gather.c */

/* ---- affine (affine.c) ------------------------------------------------------
 * x: (n_batch, d_in), w: (d_in, d_out), b: (d_out), out: (n_batch, d_out).
 * relu != 0 fuses ReLU into the epilogue (then out is also what backward needs). */
/* Backward: dout: (n_batch, d_out); x: (n_batch, d_in); w: (d_in, d_out).
 * relu_out: NULL for a plain affine layer, else the ReLU output of the fused
 *   forward (n_batch, d_out); then dh (n_batch, d_out) is scratch for the
 *   masked upstream gradient, otherwise dh is unused and may be NULL.
 * dx: (n_batch, d_in), or NULL to skip (first layer); dw: (d_in, d_out); db: (d_out). */
/* BEGIN GENERATED from affine.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
void fastfc_affine_forward_f32(const float *x, const float *w, const float *b, float *out,
                               int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                               const fastfc_blas *blas, int n_threads);
void fastfc_affine_forward_f64(const double *x, const double *w, const double *b, double *out,
                               int64_t n_batch, int64_t d_in, int64_t d_out, int relu,
                               const fastfc_blas *blas, int n_threads);
void fastfc_affine_backward_f32(const float *dout, const float *x, const float *w,
                                const float *relu_out, float *dh, float *dx, float *dw, float *db,
                                int64_t n_batch, int64_t d_in, int64_t d_out,
                                const fastfc_blas *blas, int n_threads);
void fastfc_affine_backward_f64(const double *dout, const double *x, const double *w,
                                const double *relu_out, double *dh, double *dx, double *dw,
                                double *db, int64_t n_batch, int64_t d_in, int64_t d_out,
                                const fastfc_blas *blas, int n_threads);
/* END GENERATED affine.c */

/* ---- element-wise activations (activations.c), all arrays of n elements --- */
/* relu_backward: dx = dout where x > 0 else 0 (0 at exactly 0 and at NaN, as torch).
 * sigmoid_backward: out: the forward output; dx = dout * out * (1 - out).
 * tanh_backward: out: the forward output; dx = dout * (1 - out^2). */
/* Inverted dropout over elements [first, first + n) of an array: in[i] and
 * out[i] are its element first + i, kept when fastfc_dropout_bits(key, first + i),
 * read as a fraction of 2^32, is >= p, and then scaled by 1/(1-p). The mask is
 * a pure function of (seed, index), so it is the same whatever the thread count
 * and however the array is cut into calls (the wrappers cut long ones into
 * pieces to check for Ctrl-C in between), and backward recomputes it instead of
 * storing it. Forward: in = x, out = y. Backward: in = dout, out = dx. */
/* fastfc_dropout_key and fastfc_dropout_bits: the counter-based generator
 * behind dropout, cheap enough to run at memory speed in 8 or 16 SIMD lanes
 * (32-bit multiplies only):
 *   key = splitmix64(seed)                      (once per call)
 *   h   = fmix32((uint32)i ^ key_lo)            (murmur3's finalizer)
 *   h   = fmix32(h ^ ((uint32)(i >> 32) + key_hi))
 * Element i is kept when h >= min(ceil(p * 2^32), 2^32 - 1). */
/* BEGIN GENERATED from activations.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
uint64_t fastfc_dropout_key(uint64_t seed);
uint32_t fastfc_dropout_bits(uint64_t key, uint64_t i);
void fastfc_relu_forward_f32(const float *x, float *out, int64_t n, int n_threads);
void fastfc_relu_forward_f64(const double *x, double *out, int64_t n, int n_threads);
void fastfc_relu_backward_f32(const float *dout, const float *x, float *dx, int64_t n,
                              int n_threads);
void fastfc_relu_backward_f64(const double *dout, const double *x, double *dx, int64_t n,
                              int n_threads);
void fastfc_sigmoid_forward_f32(const float *x, float *out, int64_t n, int n_threads);
void fastfc_sigmoid_forward_f64(const double *x, double *out, int64_t n, int n_threads);
void fastfc_sigmoid_backward_f32(const float *dout, const float *out, float *dx, int64_t n,
                                 int n_threads);
void fastfc_sigmoid_backward_f64(const double *dout, const double *out, double *dx, int64_t n,
                                 int n_threads);
void fastfc_tanh_forward_f32(const float *x, float *out, int64_t n, int n_threads);
void fastfc_tanh_forward_f64(const double *x, double *out, int64_t n, int n_threads);
void fastfc_tanh_backward_f32(const float *dout, const float *out, float *dx, int64_t n,
                              int n_threads);
void fastfc_tanh_backward_f64(const double *dout, const double *out, double *dx, int64_t n,
                              int n_threads);
void fastfc_dropout_apply_f32(const float *in, float *out, int64_t first, int64_t n, double p,
                              uint64_t seed, int n_threads);
void fastfc_dropout_apply_f64(const double *in, double *out, int64_t first, int64_t n, double p,
                              uint64_t seed, int n_threads);
/* END GENERATED activations.c */

/* ---- losses (losses.c); labels y are int64 in [0, n_classes) ---------------
 * x: (n_batch, n_classes) scores, dx: same shape, are rows of a batch of
 * n_total >= n_batch rows (n_total = n_batch for a whole batch; the wrappers
 * hand a long batch over in pieces). dx is the gradient of the batch's mean
 * loss; the return value is these rows' share of it (their loss sum / n_total). */
/* mse_loss: pred, target, dpred: n elements of n_total >= n; dpred is the gradient of
 * the mean squared error over all n_total, the return value these elements'
 * share of it (their sum of squared errors / n_total). */
/* BEGIN GENERATED from losses.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
double fastfc_softmax_loss_f32(const float *x, const int64_t *y, float *dx, int64_t n_batch,
                               int64_t n_classes, int64_t n_total, int n_threads);
double fastfc_softmax_loss_f64(const double *x, const int64_t *y, double *dx, int64_t n_batch,
                               int64_t n_classes, int64_t n_total, int n_threads);
double fastfc_svm_loss_f32(const float *x, const int64_t *y, float *dx, int64_t n_batch,
                           int64_t n_classes, int64_t n_total, int n_threads);
double fastfc_svm_loss_f64(const double *x, const int64_t *y, double *dx, int64_t n_batch,
                           int64_t n_classes, int64_t n_total, int n_threads);
double fastfc_mse_loss_f32(const float *pred, const float *target, float *dpred, int64_t n,
                           int64_t n_total, int n_threads);
double fastfc_mse_loss_f64(const double *pred, const double *target, double *dpred, int64_t n,
                           int64_t n_total, int n_threads);
/* END GENERATED losses.c */

/* ---- conv (conv.c): 2-d convolution, NCHW, by im2col or Winograd + GEMM -----
 * out[n, f, i, j] = b[f] + sum over c, kh, kw of
 *     w[f, c, kh, kw] * x_padded[n, c, i*stride + kh, j*stride + kw]
 * (zero padding of pad on each side). The caller fills out_h, out_w with
 * (height + 2*pad - kernel_h) / stride + 1 (likewise for the width): rows and
 * columns a stride does not reach are ignored. K = channels*kernel_h*kernel_w,
 * out_h*out_w, n_filters must fit in int (the BLAS). 3x3, stride-1 layers with
 * at least 8 input channels and pad <= 2 run Winograd's F(2x2, 3x3) (same
 * results up to rounding, about 2.25x fewer multiplies; inputs holding a NaN, an
 * infinity or a value beyond 2^48 (float) or 2^496 (double) go to im2col, which
 * spreads special values as the direct sum does). Both kernels allocate a bounded
 * scratch (64 MiB in all) and return 0, or -1 if that fails. */
typedef struct {
    int64_t n_batch, channels, height, width; /* x: (n_batch, channels, height, width) */
    int64_t n_filters, kernel_h, kernel_w;    /* w: (n_filters, channels, kernel_h, kernel_w) */
    int64_t stride, pad;                      /* stride >= 1, pad >= 0 */
    int64_t out_h, out_w;                     /* out: (n_batch, n_filters, out_h, out_w) */
} fastfc_conv_geom;
/* Forward: b: (n_filters); out: as above.
 * Backward: dout: like out; x, w: the forward's; dx: like x, or NULL to skip it (first
 *   layer); dw: like w; db: (n_filters). */
/* BEGIN GENERATED from conv.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
int fastfc_conv_forward_f32(const fastfc_conv_geom *g, const float *x, const float *w,
                            const float *b, float *out, const fastfc_blas *blas, int n_threads);
int fastfc_conv_forward_f64(const fastfc_conv_geom *g, const double *x, const double *w,
                            const double *b, double *out, const fastfc_blas *blas, int n_threads);
int fastfc_conv_backward_f32(const fastfc_conv_geom *g, const float *dout, const float *x,
                             const float *w, float *dx, float *dw, float *db,
                             const fastfc_blas *blas, int n_threads);
int fastfc_conv_backward_f64(const fastfc_conv_geom *g, const double *dout, const double *x,
                             const double *w, double *dx, double *dw, double *db,
                             const fastfc_blas *blas, int n_threads);
/* END GENERATED conv.c */

/* ---- pool (pool.c): max and average pooling over planes ------------------
 * x: (planes, height, width) with planes = N*C; out, argmax, dout:
 * (planes, out_h, out_w), out_h = (height - pool_h) / stride + 1 (likewise
 * out_w; leftover rows and columns are ignored). Windows may overlap. */
typedef struct {
    int64_t planes, height, width;
    int64_t pool_h, pool_w, stride;
    int64_t out_h, out_w;
} fastfc_pool_geom;
/* One entry point per float type runs any of the four kernels (op); src and
 * dst are float arrays for _f32, double for _f64:
 *   FASTFC_MAX_POOL_FORWARD: src = x, dst = out; writes argmax, the flat
 *     index row*width + col of each window's maximum in its input plane
 *     (height*width must fit in int32); ties -> first in row-major window
 *     order; a window holding NaN gives NaN and the index of its first NaN.
 *   FASTFC_MAX_POOL_BACKWARD: src = dout, dst = dx (planes, height, width) =
 *     scatter-add of dout at argmax. Returns the number of argmax entries
 *     found outside their own window (a tampered cache; exact for 2x2/2,
 *     else outside the window's row-major span): those are skipped, and any
 *     argmax values, even ones another thread changes during the call, keep
 *     every access inside the planes.
 *   FASTFC_AVG_POOL_FORWARD: src = x, dst = out, the mean of each window.
 *   FASTFC_AVG_POOL_BACKWARD: src = dout, dst = dx = each window's share
 *     dout / (pool_h*pool_w), summed over windows.
 * argmax is unused (may be NULL) by average pooling; the return value is 0
 * but for FASTFC_MAX_POOL_BACKWARD. */
typedef enum {
    FASTFC_MAX_POOL_FORWARD,
    FASTFC_MAX_POOL_BACKWARD,
    FASTFC_AVG_POOL_FORWARD,
    FASTFC_AVG_POOL_BACKWARD
} fastfc_pool_op;
/* BEGIN GENERATED from pool.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
int64_t fastfc_pool_f32(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src, void *dst,
                        int32_t *argmax, int n_threads);
int64_t fastfc_pool_f64(fastfc_pool_op op, const fastfc_pool_geom *g, const void *src, void *dst,
                        int32_t *argmax, int n_threads);
/* END GENERATED pool.c */

/* ---- optimizers (optim.c): torch.optim's update rules, one fused pass -----
 * Each call updates a list of parameter arrays in place from their gradients
 * (one OpenMP team over all their elements, laid end to end). Hyperparameters
 * are doubles; per-tensor scalars (bias corrections, Adagrad's decayed lr)
 * are computed in double, the element-wise math in the arrays' type. */
typedef struct {
    void *param;       /* (n): float for _f32, double for _f64; updated in place */
    const void *grad;  /* (n) */
    void *state[3];    /* (n) each: the rule's state arrays (listed below), NULL when unused */
    int64_t n;
    int64_t step;      /* updates of this array including this one (1 on the first) */
} fastfc_optim_tensor;

/* SGD. state[0]: momentum buffer, NULL for plain SGD (momentum == 0); on
 * step == 1 it is set to the gradient, as torch does with a new buffer. */
typedef struct {
    double lr, momentum, dampening, weight_decay;
    int nesterov, maximize;
} fastfc_sgd_config;
/* The course notes' momentum: v = momentum * v - lr * grad; p += v.
 * state[0]: the velocity v. Reads only lr and momentum. */

/* Adagrad. state[0]: the running sum of squared gradients. */
typedef struct {
    double lr, lr_decay, weight_decay, eps;
    int maximize;
} fastfc_adagrad_config;

/* RMSprop. state[0]: square average; state[1]: momentum buffer (NULL
 * without momentum); state[2]: gradient average (NULL unless centered). */
typedef struct {
    double lr, alpha, eps, weight_decay, momentum;
    int maximize;
} fastfc_rmsprop_config;

/* Adam (decoupled == 0: weight decay added to the gradient) and AdamW
 * (decoupled != 0: p scaled by 1 - lr * weight_decay). state[0]: exp_avg;
 * state[1]: exp_avg_sq; state[2]: max_exp_avg_sq (NULL unless amsgrad). */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled, maximize;
} fastfc_adam_config;

/* One entry point per float type applies any rule: config points to the
 * rule's config struct (fastfc_sgd_config for FASTFC_SGD and
 * FASTFC_SGD_VELOCITY, fastfc_adagrad_config, ...); tensors hold float
 * arrays for _f32, double for _f64. */
typedef enum {
    FASTFC_SGD,
    FASTFC_SGD_VELOCITY,
    FASTFC_ADAGRAD,
    FASTFC_RMSPROP,
    FASTFC_ADAM
} fastfc_optim_rule;
/* BEGIN GENERATED from optim.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
void fastfc_optim_step_f32(fastfc_optim_rule rule, const void *config,
                           const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads);
void fastfc_optim_step_f64(fastfc_optim_rule rule, const void *config,
                           const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads);
/* END GENERATED optim.c */

/* ---- normalization (norm.c): batch, spatial batch, layer, group ----------
 * x, out, dout, dx: (n_batch, channels, spatial) (spatial = H*W for NCHW
 * maps, 1 for (N, D) with channels = D); gamma, beta, dgamma, dbeta:
 * (channels). Statistics are the mean and biased variance, summed in double
 * in an order fixed by the shape (results do not depend on the thread count
 * or on how a call is cut into channel ranges, row ranges or tiles); forward
 * saves mean and inv_std = 1 / sqrt(var + eps), from which backward
 * recomputes x_hat = (x - mean) * inv_std; out = x_hat * gamma + beta.
 * Train-mode backward: dx = gamma * inv_std * (dout - mean(dout) -
 * x_hat * mean(dout * x_hat)), the means over the statistic's values;
 * dgamma = Σ dout * x_hat, dbeta = Σ dout over (batch, spatial). */
typedef struct {
    int64_t n_batch, channels, spatial;
    int64_t groups;        /* group norm: groups of channels / groups adjacent channels */
    int64_t chunk_samples; /* group norm backward: see fastfc_groupnorm_chunk_samples */
} fastfc_norm_geom;

/* The arrays of a call (float for _f32, double for _f64), those the kernel
 * does not use may be NULL. */
typedef struct {
    fastfc_norm_geom geom;
    const void *x, *gamma, *beta, *dout;
    void *out, *dx, *dgamma, *dbeta;
    void *mean, *inv_std;            /* batch norm (channels); group norm (n_batch, groups) */
    void *running_mean, *running_var; /* batch norm (channels) */
    void *grad_factors;              /* batch norm backward scratch (3, channels) */
    double *partial;                 /* group norm backward scratch (chunks, 2, channels) */
    int train;                       /* batch norm: batch statistics (1) or running ones (0) */
    double momentum, eps;
} fastfc_norm_args;

/* Batch norm, in passes called in turn, each over a range (so that a long
 * call can be cut into pieces): the reductions over channels [c_lo, c_hi),
 * the element-wise passes over samples [n_lo, n_hi).
 *   batchnorm_stats: with train, mean and inv_std from the batch, and running
 *     = momentum * running + (1 - momentum) * batch statistic (the biased
 *     variance); without, from the running statistics, left alone. Reads x
 *     (train), running_mean, running_var, eps; writes mean, inv_std.
 *   batchnorm_normalize: out from x, mean, inv_std, gamma, beta.
 *   batchnorm_grad_sums: dgamma = Σ dout * x_hat, dbeta = Σ dout, and in
 *     grad_factors gamma * inv_std and the means of dout and dout * x_hat
 *     over the channel's n_batch * spatial values. Reads dout, x, gamma,
 *     mean, inv_std.
 *   batchnorm_input_grad: dx from dout, x, mean, inv_std, grad_factors
 *     (with train; without, dx = dout * gamma * inv_std: fixed statistics).
 *
 * Group norm: row r = n * groups + group holds the channels/groups * spatial
 * contiguous values of one sample's group (layer norm: groups = 1, spatial = 1).
 * Forward of rows [row_lo, row_hi): reads x, gamma, beta, eps; writes mean,
 * inv_std (per row), out. Backward of tiles [tile_lo, tile_hi) of
 * fastfc_groupnorm_tiles(geom) (tile t: samples [t / groups * chunk_samples, ...)
 * of group t % groups): reads dout, x, gamma, mean, inv_std; writes dx and
 * the tile's sums into partial; after every tile, groupnorm_param_grads adds
 * them up in tile order into dgamma, dbeta. */
/* BEGIN GENERATED from norm.c by python3 csrc/gen_kernel_decls.py: edit the definitions */
int64_t fastfc_groupnorm_chunk_samples(int64_t n_batch, int64_t group_size);
int64_t fastfc_groupnorm_tiles(const fastfc_norm_geom *g);
void fastfc_batchnorm_stats_f32(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                int n_threads);
void fastfc_batchnorm_stats_f64(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                int n_threads);
void fastfc_batchnorm_normalize_f32(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                    int n_threads);
void fastfc_batchnorm_normalize_f64(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                    int n_threads);
void fastfc_batchnorm_grad_sums_f32(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                    int n_threads);
void fastfc_batchnorm_grad_sums_f64(const fastfc_norm_args *a, int64_t c_lo, int64_t c_hi,
                                    int n_threads);
void fastfc_batchnorm_input_grad_f32(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                     int n_threads);
void fastfc_batchnorm_input_grad_f64(const fastfc_norm_args *a, int64_t n_lo, int64_t n_hi,
                                     int n_threads);
void fastfc_groupnorm_forward_f32(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                  int n_threads);
void fastfc_groupnorm_forward_f64(const fastfc_norm_args *a, int64_t row_lo, int64_t row_hi,
                                  int n_threads);
void fastfc_groupnorm_backward_f32(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                   int n_threads);
void fastfc_groupnorm_backward_f64(const fastfc_norm_args *a, int64_t tile_lo, int64_t tile_hi,
                                   int n_threads);
void fastfc_groupnorm_param_grads_f32(const fastfc_norm_args *a);
void fastfc_groupnorm_param_grads_f64(const fastfc_norm_args *a);
/* END GENERATED norm.c */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* FASTFC_H */
