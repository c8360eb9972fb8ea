/* Optimizer updates: torch.optim's SGD, Adagrad, RMSprop, Adam/AdamW and the
 * course notes' velocity-form momentum. Each call updates a list of
 * parameter arrays in one pass over their elements (read grad, update the
 * parameter and state in place), one OpenMP team for the whole list.
 *
 * The loops follow torch's single-tensor CPU code operation by operation
 * (lerp for the first moments, sqrt(v) / sqrt(bias_correction2) + eps, ...;
 * Adam multiplies by 1 / sqrt(bias_correction2)), so trajectories agree with
 * torch to float rounding. Which state arrays a
 * variant uses is a compile-time flag of an always-inlined loop body (the
 * arrays may be NULL); scalar switches (weight decay, maximize, nesterov,
 * the first momentum step) are selects, which vectorize.
 *
 * Exports (from the REAL/SFX template below, once per float type, see
 * instantiate.h; every other function here is static):
 *   fastfc_optim_step_f32, fastfc_optim_step_f64
 * whose rule runs the static sgd_part_f32/_f64 (FASTFC_SGD), velocity_part
 * (FASTFC_SGD_VELOCITY), adagrad_part, rmsprop_part or adam_part. */
#ifndef REAL
#include <math.h>
#include "fastfc.h"
#include "internal.h"

#if defined(__GNUC__)
#define OPTIM_INLINE static inline __attribute__((always_inline))
#else
#define OPTIM_INLINE static inline
#endif

/* The optimizers read 2-5 arrays and write 1-4 per element: heavier than
 * one activation, so a thread pays for itself on fewer elements. */
#define OPTIM_MIN_PER_THREAD (FASTFC_MIN_PER_THREAD / 2)
/* Elements per block handed out to the team (a multiple of the SIMD width). */
#define OPTIM_BLOCK ((int64_t)16384)
/* The most threads one update uses (the size of its table of shares). */
#define OPTIM_MAX_TEAM 256

/* Updates elements [off, off + len) of one tensor. */
typedef void (*optim_part_fn)(const void *config, const fastfc_optim_tensor *t, int64_t off,
                              int64_t len);

/* The tensors laid end to end form one index space; updates the part of
 * each tensor that falls inside [lo, hi) of it. */
static void optim_parts_in(optim_part_fn part, const void *config,
                           const fastfc_optim_tensor *tensors, int64_t n_tensors, int64_t lo,
                           int64_t hi) {
    int64_t base = 0;
    for (int64_t k = 0; k < n_tensors && base < hi; k++) {
        int64_t n = tensors[k].n;
        int64_t start = lo > base ? lo - base : 0;
        int64_t end = hi - base < n ? hi - base : n;
        if (end > start) part(config, &tensors[k], start, end - start);
        base += n;
    }
}

/* The o-th of size shares of each tensor, as the other kernels split a
 * layer's rows among size threads (a weight gradient is split by rows, so
 * is a forward over K; each core's cache holds its rows of both), numbered
 * in blocks of OPTIM_BLOCK across the tensors: block b of owner o is
 * [*start, *start + *len) of tensor *which; 0 past the last block. */
static int optim_share_block(const fastfc_optim_tensor *tensors, int64_t n_tensors, int size,
                             int o, int64_t b, int64_t *which, int64_t *start, int64_t *len) {
    for (int64_t k = 0; k < n_tensors; k++) {
        int64_t lo, hi;
        fastfc_block(tensors[k].n, size, o, 16, &lo, &hi);
        int64_t blocks = (hi - lo + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
        if (b < blocks) {
            *which = k;
            *start = lo + b * OPTIM_BLOCK;
            *len = hi - *start < OPTIM_BLOCK ? hi - *start : OPTIM_BLOCK;
            return 1;
        }
        b -= blocks;
    }
    return 0;
}

/* Each thread owns a near-equal share of every tensor (optim_share_block:
 * the rows its core computed the gradient of, and read in the forward),
 * and updates it block by block; a thread done with its share takes the
 * remaining blocks of the others'. Each element's update is the same
 * whoever computes it, and on shared cores a thread the OS preempts then
 * holds up one block rather than its whole share. (Shares of the tensors
 * laid end to end, as before, gave a 784-512-512-10 network's first core
 * most of the first layer and the second core the rest: each updated rows
 * the other core's cache held.) */
static void optim_run(optim_part_fn part, const void *config, const fastfc_optim_tensor *tensors,
                      int64_t n_tensors, int n_threads) {
    int64_t total = 0;
    for (int64_t k = 0; k < n_tensors; k++) total += tensors[k].n;
    int team = fastfc_team(n_threads, total, OPTIM_MIN_PER_THREAD);
    if (team > OPTIM_MAX_TEAM) team = OPTIM_MAX_TEAM;
    if (team == 1) {
        optim_parts_in(part, config, tensors, n_tensors, 0, total);
        return;
    }
    /* next[t]: the first unclaimed block of thread t's share, a cache line each */
    struct { int64_t block; char pad[56]; } next[OPTIM_MAX_TEAM];
    for (int t = 0; t < team; t++) next[t].block = 0; /* here: no barrier a preempted thread holds up */
#pragma omp parallel num_threads(team)
    {
        const int size = FASTFC_TEAM_SIZE(), t = FASTFC_THREAD_ID();
        for (int k = 0; k < size; k++) { /* its own share first, then the others' */
            const int owner = (t + k) % size;
            for (;;) {
                int64_t b, which, start, len;
#pragma omp atomic capture
                b = next[owner].block++;
                if (!optim_share_block(tensors, n_tensors, size, owner, b, &which, &start, &len))
                    break;
                part(config, &tensors[which], start, len);
            }
        }
    }
}

#define FASTFC_TEMPLATE "optim.c"
#include "instantiate.h"
#else

/* The k-th state array of t at element off, as REAL. */
#define STATE(t, k, off) ((t)->state[k] ? (REAL *)(t)->state[k] + (off) : (REAL *)0)

/* ---- SGD ----------------------------------------------------------------
 * g = +-grad + wd * p; with momentum: b = g on the first step, else
 * b = mu * b + (1 - dampening) * g, and g = nesterov ? g + mu * b : b;
 * p = p - lr * g. */
typedef struct {
    REAL neg_lr, weight_decay, momentum, one_minus_dampening;
    int use_wd, nesterov, maximize, first;
} SFX(sgd_scalars);

OPTIM_INLINE void SFX(sgd_body)(REAL *restrict p, const REAL *restrict grad, REAL *restrict buf,
                                int64_t n, const SFX(sgd_scalars) *s, const int has_momentum) {
    const REAL neg_lr = s->neg_lr, wd = s->weight_decay, mu = s->momentum;
    const REAL keep = s->one_minus_dampening;
    const int use_wd = s->use_wd, nesterov = s->nesterov, maximize = s->maximize;
    const int first = s->first;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = maximize ? -grad[i] : grad[i];
        g = use_wd ? g + wd * p[i] : g;
        if (has_momentum) {
            REAL b = first ? g : buf[i] * mu + keep * g;
            buf[i] = b;
            g = nesterov ? g + mu * b : b;
        }
        p[i] = p[i] + neg_lr * g;
    }
}

FASTFC_CLONES static void SFX(sgd_chunk)(REAL *p, const REAL *grad, REAL *buf, int64_t n,
                                         const SFX(sgd_scalars) *s) {
    if (buf)
        SFX(sgd_body)(p, grad, buf, n, s, 1);
    else
        SFX(sgd_body)(p, grad, buf, n, s, 0);
}

static void SFX(sgd_part)(const void *config, const fastfc_optim_tensor *t, int64_t off,
                          int64_t len) {
    const fastfc_sgd_config *c = config;
    SFX(sgd_scalars) s = {(REAL)-c->lr,   (REAL)c->weight_decay, (REAL)c->momentum,
                          (REAL)(1.0 - c->dampening), c->weight_decay != 0, c->nesterov,
                          c->maximize, t->step == 1};
    SFX(sgd_chunk)((REAL *)t->param + off, (const REAL *)t->grad + off, STATE(t, 0, off), len, &s);
}

/* ---- course-style momentum: v = mu * v - lr * g; p = p + v --------------- */
FASTFC_CLONES static void SFX(velocity_chunk)(REAL *restrict p, const REAL *restrict grad,
                                              REAL *restrict v, int64_t n, REAL mu, REAL lr) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL vi = mu * v[i] - lr * grad[i];
        v[i] = vi;
        p[i] = p[i] + vi;
    }
}

static void SFX(velocity_part)(const void *config, const fastfc_optim_tensor *t, int64_t off,
                               int64_t len) {
    const fastfc_sgd_config *c = config;
    SFX(velocity_chunk)((REAL *)t->param + off, (const REAL *)t->grad + off, STATE(t, 0, off),
                        len, (REAL)c->momentum, (REAL)c->lr);
}

/* ---- Adagrad --------------------------------------------------------------
 * clr = lr / (1 + (step - 1) * lr_decay); g = +-grad + wd * p;
 * sum = sum + g * g; p = p - clr * g / (sqrt(sum) + eps). */
FASTFC_CLONES static void SFX(adagrad_chunk)(REAL *restrict p, const REAL *restrict grad,
                                             REAL *restrict sum, int64_t n, REAL neg_clr,
                                             REAL wd, REAL eps, int use_wd, int maximize) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = maximize ? -grad[i] : grad[i];
        g = use_wd ? g + wd * p[i] : g;
        REAL s = sum[i] + g * g;
        sum[i] = s;
        p[i] = p[i] + neg_clr * g / (R_SQRT(s) + eps);
    }
}

static void SFX(adagrad_part)(const void *config, const fastfc_optim_tensor *t, int64_t off,
                              int64_t len) {
    const fastfc_adagrad_config *c = config;
    double clr = c->lr / (1.0 + (double)(t->step - 1) * c->lr_decay);
    SFX(adagrad_chunk)((REAL *)t->param + off, (const REAL *)t->grad + off, STATE(t, 0, off),
                       len, (REAL)-clr, (REAL)c->weight_decay, (REAL)c->eps,
                       c->weight_decay != 0, c->maximize);
}

/* ---- RMSprop --------------------------------------------------------------
 * g = +-grad + wd * p; v = alpha * v + (1 - alpha) * g * g;
 * centered: ga = lerp(ga, g, 1 - alpha), avg = sqrt(v - ga * ga) + eps,
 * else avg = sqrt(v) + eps; momentum: b = mu * b + g / avg, p = p - lr * b,
 * else p = p - lr * g / avg. */
typedef struct {
    REAL neg_lr, alpha, one_minus_alpha, eps, weight_decay, momentum;
    int use_wd, maximize;
} SFX(rmsprop_scalars);

OPTIM_INLINE void SFX(rmsprop_body)(REAL *restrict p, const REAL *restrict grad,
                                    REAL *restrict sq, REAL *restrict buf, REAL *restrict ga,
                                    int64_t n, const SFX(rmsprop_scalars) *s,
                                    const int has_momentum, const int centered) {
    const REAL neg_lr = s->neg_lr, alpha = s->alpha, w = s->one_minus_alpha, eps = s->eps;
    const REAL wd = s->weight_decay, mu = s->momentum;
    const int use_wd = s->use_wd, maximize = s->maximize;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = maximize ? -grad[i] : grad[i];
        g = use_wd ? g + wd * p[i] : g;
        REAL v = sq[i] * alpha + w * g * g;
        sq[i] = v;
        REAL avg;
        if (centered) {
            REAL a = ga[i] + w * (g - ga[i]);
            ga[i] = a;
            avg = R_SQRT(v - a * a) + eps;
        } else {
            avg = R_SQRT(v) + eps;
        }
        if (has_momentum) {
            REAL b = buf[i] * mu + g / avg;
            buf[i] = b;
            p[i] = p[i] + neg_lr * b;
        } else {
            p[i] = p[i] + neg_lr * g / avg;
        }
    }
}

FASTFC_CLONES static void SFX(rmsprop_chunk)(REAL *p, const REAL *grad, REAL *sq, REAL *buf,
                                             REAL *ga, int64_t n,
                                             const SFX(rmsprop_scalars) *s) {
    if (buf && ga)
        SFX(rmsprop_body)(p, grad, sq, buf, ga, n, s, 1, 1);
    else if (buf)
        SFX(rmsprop_body)(p, grad, sq, buf, ga, n, s, 1, 0);
    else if (ga)
        SFX(rmsprop_body)(p, grad, sq, buf, ga, n, s, 0, 1);
    else
        SFX(rmsprop_body)(p, grad, sq, buf, ga, n, s, 0, 0);
}

static void SFX(rmsprop_part)(const void *config, const fastfc_optim_tensor *t, int64_t off,
                              int64_t len) {
    const fastfc_rmsprop_config *c = config;
    SFX(rmsprop_scalars) s = {(REAL)-c->lr, (REAL)c->alpha, (REAL)(1.0 - c->alpha),
                              (REAL)c->eps, (REAL)c->weight_decay, (REAL)c->momentum,
                              c->weight_decay != 0, c->maximize};
    SFX(rmsprop_chunk)((REAL *)t->param + off, (const REAL *)t->grad + off, STATE(t, 0, off),
                       STATE(t, 1, off), STATE(t, 2, off), len, &s);
}

/* ---- Adam / AdamW ---------------------------------------------------------
 * AdamW first scales p by 1 - lr * wd; Adam adds wd * p to g instead.
 * m = lerp(m, g, 1 - beta1); v = beta2 * v + (1 - beta2) * g * g;
 * amsgrad: vmax = max(vmax, v), used in place of v below;
 * p = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),
 * bc1 = 1 - beta1^step and bc2 = 1 - beta2^step in double. */
typedef struct {
    REAL neg_step_size, inv_bc2_sqrt, eps, one_minus_beta1, beta2, one_minus_beta2;
    REAL weight_decay, decay_factor;
    int use_wd, decoupled, maximize;
} SFX(adam_scalars);

OPTIM_INLINE void SFX(adam_body)(REAL *restrict p, const REAL *restrict grad, REAL *restrict m,
                                 REAL *restrict v, REAL *restrict vmax, int64_t n,
                                 const SFX(adam_scalars) *s, const int amsgrad) {
    const REAL neg_step = s->neg_step_size, inv_bc2_sqrt = s->inv_bc2_sqrt, eps = s->eps;
    const REAL w1 = s->one_minus_beta1, beta2 = s->beta2, w2 = s->one_minus_beta2;
    const REAL wd = s->weight_decay, decay = s->decay_factor;
    const int use_wd = s->use_wd, decoupled = s->decoupled, maximize = s->maximize;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        REAL g = maximize ? -grad[i] : grad[i];
        REAL pi = p[i];
        g = use_wd && !decoupled ? g + wd * pi : g;
        pi = decoupled ? pi * decay : pi;
        REAL mi = m[i] + w1 * (g - m[i]);
        m[i] = mi;
        REAL vi = v[i] * beta2 + w2 * g * g;
        v[i] = vi;
        if (amsgrad) {
            vi = vmax[i] > vi ? vmax[i] : vi;
            vmax[i] = vi;
        }
        /* torch divides by sqrt(bc2); one division fewer per element (the
         * divider is the bottleneck on one thread) costs at most an ulp. */
        REAL denom = R_SQRT(vi) * inv_bc2_sqrt + eps;
        p[i] = pi + neg_step * mi / denom;
    }
}

FASTFC_CLONES static void SFX(adam_chunk)(REAL *p, const REAL *grad, REAL *m, REAL *v,
                                          REAL *vmax, int64_t n, const SFX(adam_scalars) *s) {
    if (vmax)
        SFX(adam_body)(p, grad, m, v, vmax, n, s, 1);
    else
        SFX(adam_body)(p, grad, m, v, vmax, n, s, 0);
}

static void SFX(adam_part)(const void *config, const fastfc_optim_tensor *t, int64_t off,
                           int64_t len) {
    const fastfc_adam_config *c = config;
    double step = (double)t->step;
    double bc1 = 1.0 - pow(c->beta1, step), bc2 = 1.0 - pow(c->beta2, step);
    SFX(adam_scalars) s = {(REAL)(-(c->lr / bc1)),   (REAL)(1.0 / sqrt(bc2)),
                           (REAL)c->eps,             (REAL)(1.0 - c->beta1),
                           (REAL)c->beta2,           (REAL)(1.0 - c->beta2),
                           (REAL)c->weight_decay,    (REAL)(1.0 - c->lr * c->weight_decay),
                           c->weight_decay != 0,     c->decoupled,
                           c->maximize};
    SFX(adam_chunk)((REAL *)t->param + off, (const REAL *)t->grad + off, STATE(t, 0, off),
                    STATE(t, 1, off), STATE(t, 2, off), len, &s);
}

/* ---- the entry point ------------------------------------------------------ */
void SFX(fastfc_optim_step)(fastfc_optim_rule rule, const void *config,
                            const fastfc_optim_tensor *tensors, int64_t n_tensors, int n_threads) {
    static const optim_part_fn parts[] = {
        [FASTFC_SGD] = SFX(sgd_part),         [FASTFC_SGD_VELOCITY] = SFX(velocity_part),
        [FASTFC_ADAGRAD] = SFX(adagrad_part), [FASTFC_RMSPROP] = SFX(rmsprop_part),
        [FASTFC_ADAM] = SFX(adam_part),
    };
    optim_run(parts[rule], config, tensors, n_tensors, n_threads);
}

#undef STATE
#endif
