"""Pure NumPy twin of fastfc.functional: the same functions, names and
signatures, written for clarity. It is the oracle of the tests and the
baseline of the benchmarks, and never imports the compiled extension."""
import math

import numpy as np


def _into(out, result):
    """result, or result copied into out when out is given: the twin of the
    out=, dx=, dw=, db= arguments with which fastfc writes into arrays the
    caller owns (their shape and dtype must match exactly)."""
    if out is None:
        return result
    if out.shape != result.shape or out.dtype != result.dtype:
        raise ValueError(f"the output array must be {result.dtype} {result.shape}, "
                         f"got {out.dtype} {out.shape}")
    np.copyto(out, result)
    return out


def gather_rows(x, index, *, out=None):
    """x[index] along the first axis: a shuffled batch's rows of the data set.
    index: 1-d integers, each in [0, len(x)) (negative ones are refused)."""
    index = np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"index must be an array of integers, got dtype {index.dtype}")
    if index.ndim != 1:
        raise ValueError(f"index must be 1-d, got shape {index.shape}")
    if index.size and (index.min() < 0 or index.max() >= len(x)):
        raise ValueError(f"index entries must lie in [0, {len(x)})")
    return _into(out, x[index])


def affine_forward(x, w, b, *, out=None):
    """out = x.reshape(N, D) @ w + b. Inputs x (N, d_1, ..., d_k), w (D, M), b (M,).
    Returns (out (N, M), cache (x, w, b))."""
    out = _into(out, x.reshape(x.shape[0], -1) @ w + b)
    return out, (x, w, b)


def affine_backward(dout, cache, compute_dx=True, *, dx=None, dw=None, db=None):
    """Returns (dx shaped like x or None, dw (D, M), db (M,))."""
    x, w, _ = cache
    x2 = x.reshape(x.shape[0], -1)
    if not compute_dx and dx is not None:
        raise ValueError("dx is given but compute_dx is False")
    dx = _into(dx, (dout @ w.T).reshape(x.shape)) if compute_dx else None
    return dx, _into(dw, x2.T @ dout), _into(db, dout.sum(axis=0))


def relu_forward(x, *, out=None):
    """out = max(0, x), NaN propagating. Returns (out, cache = x)."""
    return _into(out, np.where(x < 0, np.zeros_like(x), x)), x


def relu_backward(dout, cache, *, dx=None):
    """dx = dout where x > 0 else 0."""
    x = cache
    return _into(dx, np.where(x > 0, dout, np.zeros_like(dout)))


def affine_relu_forward(x, w, b, *, out=None):
    """ReLU(affine(x)). Returns (out, cache (x, w, b, out))."""
    a, _ = affine_forward(x, w, b)
    out, _ = relu_forward(a, out=out)
    return out, (x, w, b, out)


def affine_relu_backward(dout, cache, compute_dx=True, *, dx=None, dw=None, db=None):
    """Returns (dx or None, dw, db) of the affine-ReLU pair."""
    x, w, b, out = cache
    da = relu_backward(dout, out)
    return affine_backward(da, (x, w, b), compute_dx, dx=dx, dw=dw, db=db)


def sigmoid_forward(x, *, out=None):
    """1 / (1 + exp(-x)) without overflow. Returns (out, cache = out)."""
    e = np.exp(-np.abs(x))
    out = _into(out, np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False))
    return out, out


def sigmoid_backward(dout, cache, *, dx=None):
    s = cache
    return _into(dx, dout * s * (1 - s))


def tanh_forward(x, *, out=None):
    """Returns (tanh(x), cache = the output)."""
    out = _into(out, np.tanh(x))
    return out, out


def tanh_backward(dout, cache, *, dx=None):
    t = cache
    return _into(dx, dout * ((1 - t) * (1 + t)))  # 1 - t**2, without cancellation near |t| = 1


def _splitmix64(z):
    """splitmix64's output for state z (a Python int), as a Python int."""
    mask = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _fmix32(h):
    """murmur3's 32-bit finalizer on a uint32 array (multiplies wrap mod 2**32)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def dropout_keep_mask(seed, n, p, offset=0):
    """Which of elements [offset, offset + n) dropout keeps: the same
    counter-based draw as csrc/activations.c, so both drop the same elements
    for a seed. Element i hashes its index with a key made from the seed and
    is kept when the 32-bit result is >= p * 2**32."""
    key = _splitmix64(seed)
    index = np.arange(offset, offset + n, dtype=np.uint64)
    low = index.astype(np.uint32)
    high = (index >> np.uint64(32)).astype(np.uint32) + np.uint32(key >> 32)
    h = _fmix32(_fmix32(low ^ np.uint32(key & 0xFFFFFFFF)) ^ high)
    threshold = min(math.ceil(p * 2.0**32), 2**32 - 1)
    return h >= np.uint32(threshold)


def dropout_forward(x, p, train=True, seed=None, *, offset=0, out=None):
    """Inverted dropout: drop with probability p, scale the rest by 1/(1-p);
    x is elements [offset, offset + x.size) of the array the mask is drawn for.
    Returns (out, cache (p, train, seed, shape, dtype, offset))."""
    if seed is None:
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    cache = (p, train, seed, x.shape, x.dtype, offset)
    return _into(out, _dropout_apply(x, p, seed, offset) if train else x), cache


def dropout_backward(dout, cache, *, dx=None):
    p, train, seed, _, _, offset = cache
    return _into(dx, _dropout_apply(dout, p, seed, offset) if train else dout)


def _dropout_apply(a, p, seed, offset):
    keep = dropout_keep_mask(seed, a.size, p, offset).reshape(a.shape)
    scale = a.dtype.type(1.0 / (1.0 - p))
    return np.where(keep, a * scale, np.zeros_like(a))


def softmax_loss(x, y):
    """Softmax cross-entropy averaged over N. Inputs x (N, C), y (N,).
    Returns (loss, dx (N, C))."""
    n = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = np.mean(np.log(sums[:, 0]) - shifted[rows, y])
    dx = exp / sums
    dx[rows, y] -= 1
    return float(loss), dx / n


def svm_loss(x, y):
    """Multiclass hinge loss, margin 1, averaged over N. Returns (loss, dx)."""
    n = x.shape[0]
    rows = np.arange(n)
    margins = np.maximum(0, x - x[rows, y][:, None] + 1)
    margins[rows, y] = 0
    loss = margins.sum() / n
    positive = (margins > 0).astype(x.dtype)
    positive[rows, y] = -positive.sum(axis=1)
    return float(loss), positive / n


def mse_loss(pred, target):
    """Mean over all elements of (pred - target)**2. Returns (loss, dpred)."""
    diff = pred - target
    return float(np.mean(diff * diff)), 2 * diff / diff.size


# ---- convolution and pooling (NCHW) ----------------------------------------
# Output size along an axis: (size + 2*pad - window) // stride + 1; rows and
# columns a stride does not reach are ignored, as in PyTorch.


def _windows(xp, kh, kw, stride, out_h, out_w):
    """Read-only view (N, C, out_h, out_w, kh, kw) of the windows of xp (N, C, H, W)."""
    sn, sc, sh, sw = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (xp.shape[0], xp.shape[1], out_h, out_w, kh, kw),
        (sn, sc, sh * stride, sw * stride, sh, sw), writeable=False)


def _conv_geometry(x, w, stride, pad):
    """(padded x, out_h, out_w) of a convolution."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h = (x.shape[2] + 2 * pad - w.shape[2]) // stride + 1
    out_w = (x.shape[3] + 2 * pad - w.shape[3]) // stride + 1
    return xp, out_h, out_w


def _im2col(xp, kh, kw, stride, out_h, out_w):
    """cols (N*out_h*out_w, C*kh*kw): one row per output pixel, one column per tap."""
    win = _windows(xp, kh, kw, stride, out_h, out_w)
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, xp.shape[1] * kh * kw)


def conv_forward(x, w, b, stride=1, pad=0, *, out=None):
    """Convolution by im2col (stride tricks) and one matmul.

    Inputs: x (N, C, H, W), w (F, C, HH, WW), b (F,), stride, pad.
    Returns (out (N, F, H', W'), cache (x, w, b, conv_param))."""
    n, f = x.shape[0], w.shape[0]
    xp, out_h, out_w = _conv_geometry(x, w, stride, pad)
    cols = _im2col(xp, w.shape[2], w.shape[3], stride, out_h, out_w)
    rows = cols @ w.reshape(f, -1).T + b  # (N*H'*W', F)
    out = _into(out, np.ascontiguousarray(rows.reshape(n, out_h, out_w, f).transpose(0, 3, 1, 2)))
    return out, (x, w, b, {"stride": stride, "pad": pad})


def conv_backward(dout, cache, compute_dx=True, *, dx=None, dw=None, db=None):
    """Returns (dx (N, C, H, W) or None, dw (F, C, HH, WW), db (F,)); col2im adds
    the column gradients back one kernel tap at a time."""
    x, w, _, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp, out_h, out_w = _conv_geometry(x, w, stride, pad)
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(-1, f)  # (N*H'*W', F)
    cols = _im2col(xp, kh, kw, stride, out_h, out_w)
    dw = _into(dw, (dout_rows.T @ cols).reshape(w.shape))
    db = _into(db, dout.sum(axis=(0, 2, 3)))
    if not compute_dx:
        if dx is not None:
            raise ValueError("dx is given but compute_dx is False")
        return None, dw, db
    dcols = (dout_rows @ w.reshape(f, -1)).reshape(n, out_h, out_w, c, kh, kw)
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += \
                dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return _into(dx, dxp[:, :, pad:pad + h, pad:pad + wd]), dw, db


def _naive_windows(out_shape, kh, kw, stride):
    """For each entry (n, c, i, j) of an output of out_shape (N, C, H', W'),
    in row-major order: (n, c, i, j, rows, cols), the slices of the kh x kw
    input window it reads (windows stride apart). The naive versions' loop."""
    for n, c, i, j in np.ndindex(*out_shape):
        yield n, c, i, j, slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw)


def conv_forward_naive(x, w, b, stride=1, pad=0):
    """The definition, one output at a time (tiny inputs only):
    out[n, f, i, j] = sum(x_padded[n, :, i*stride:i*stride+HH, j*stride:j*stride+WW] * w[f]) + b[f]."""
    n_batch, n_f, kh, kw = x.shape[0], w.shape[0], w.shape[2], w.shape[3]
    xp, out_h, out_w = _conv_geometry(x, w, stride, pad)
    out = np.zeros((n_batch, n_f, out_h, out_w), dtype=x.dtype)
    for n, f, i, j, rows, cols in _naive_windows(out.shape, kh, kw, stride):
        out[n, f, i, j] = np.sum(xp[n, :, rows, cols] * w[f]) + b[f]
    return out, (x, w, b, {"stride": stride, "pad": pad})


def conv_backward_naive(dout, cache, compute_dx=True):
    """Each output's gradient flows back to its window and filter (tiny inputs only)."""
    x, w, _, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    h, wd = x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    xp, out_h, out_w = _conv_geometry(x, w, stride, pad)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    out_shape = (x.shape[0], w.shape[0], out_h, out_w)
    for n, f, i, j, rows, cols in _naive_windows(out_shape, kh, kw, stride):
        dw[f] += xp[n, :, rows, cols] * dout[n, f, i, j]
        dxp[n, :, rows, cols] += w[f] * dout[n, f, i, j]
    dx = dxp[:, :, pad:pad + h, pad:pad + wd] if compute_dx else None
    return dx, dw, dout.sum(axis=(0, 2, 3))


def _pool_param(pool_height, pool_width, stride):
    return {"pool_height": pool_height, "pool_width": pool_width, "stride": stride}


def _pool_shape(x, pool_param):
    """(ph, pw, stride, H', W') of pooling x (N, C, H, W)."""
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    return ph, pw, stride, (x.shape[2] - ph) // stride + 1, (x.shape[3] - pw) // stride + 1


def _pool_windows(x, pool_param):
    """The windows of x as a copy (N, C, H', W', ph*pw), taps in row-major order."""
    ph, pw, stride, out_h, out_w = _pool_shape(x, pool_param)
    win = _windows(x, ph, pw, stride, out_h, out_w)
    return win.reshape(win.shape[:4] + (ph * pw,))


def _scatter_windows(x, pool_param, part):
    """dx shaped like x: dx[tap k of each window] += part(k) (N, C, H', W'), tap by tap."""
    ph, pw, stride, out_h, out_w = _pool_shape(x, pool_param)
    dx = np.zeros_like(x)
    for k in range(ph * pw):
        i, j = divmod(k, pw)
        dx[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += part(k)
    return dx


def max_pool_forward(x, pool_height=2, pool_width=2, stride=2, *, out=None):
    """Max over each window. Ties: the first maximum in row-major window order;
    a window with NaN gives NaN (np.argmax picks the first NaN).
    Returns (out (N, C, H', W'), cache (x, argmax, pool_param)), argmax the tap
    index within the window (row-major)."""
    pool_param = _pool_param(pool_height, pool_width, stride)
    win = _pool_windows(x, pool_param)
    argmax = win.argmax(axis=-1)
    out = _into(out, np.take_along_axis(win, argmax[..., None], axis=-1)[..., 0])
    return out, (x, argmax, pool_param)


def max_pool_backward(dout, cache, *, dx=None):
    """dx: each dout entry added at its window's argmax (accumulating on overlaps)."""
    x, argmax, pool_param = cache
    zero = np.zeros_like(dout)
    return _into(dx, _scatter_windows(x, pool_param, lambda k: np.where(argmax == k, dout, zero)))


def avg_pool_forward(x, pool_height=2, pool_width=2, stride=2, *, out=None):
    """Mean over each window. Returns (out (N, C, H', W'), cache (x, pool_param))."""
    pool_param = _pool_param(pool_height, pool_width, stride)
    return _into(out, _pool_windows(x, pool_param).mean(axis=-1)), (x, pool_param)


def avg_pool_backward(dout, cache, *, dx=None):
    """dx: dout / (ph*pw) added to every entry of its window."""
    x, pool_param = cache
    share = dout / (pool_param["pool_height"] * pool_param["pool_width"])
    return _into(dx, _scatter_windows(x, pool_param, lambda k: share))


def max_pool_forward_naive(x, pool_height=2, pool_width=2, stride=2):
    """The definition, one window at a time (tiny inputs only). Returns (out, cache (x, pool_param))."""
    pool_param = _pool_param(pool_height, pool_width, stride)
    _, _, _, out_h, out_w = _pool_shape(x, pool_param)
    out = np.zeros(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for n, c, i, j, rows, cols in _naive_windows(out.shape, pool_height, pool_width, stride):
        out[n, c, i, j] = np.max(x[n, c, rows, cols])
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """Each window's gradient goes to its first maximum (tiny inputs only)."""
    x, pool_param = cache
    ph, pw, stride, out_h, out_w = _pool_shape(x, pool_param)
    dx = np.zeros_like(x)
    for n, c, i, j, rows, cols in _naive_windows(x.shape[:2] + (out_h, out_w), ph, pw, stride):
        window = x[n, c, rows, cols]
        r, q = np.unravel_index(np.argmax(window), window.shape)
        dx[n, c, rows.start + r, cols.start + q] += dout[n, c, i, j]
    return dx


# ---- normalization -------------------------------------------------------------
# The statistics are computed in float64 (as the kernels sum in double), then
# rounded to x's dtype; mean, inv_std = 1 / sqrt(var + eps) and
# x_hat = (x - mean) * inv_std are what the caches hold and backward uses.


def _moments(x, axis, eps):
    """(mean, inv_std) of x over axis (biased variance), in x's dtype, keepdims."""
    mean = x.mean(axis=axis, dtype=np.float64, keepdims=True)
    var = np.mean((x - mean) ** 2, axis=axis, keepdims=True)
    return mean.astype(x.dtype), (1 / np.sqrt(var + eps)).astype(x.dtype)


def _batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps, out, axes):
    """Batch norm with statistics over axes (all but the channel axis 1);
    gamma etc. broadcast along axis 1."""
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    if train:
        mean = x.mean(axis=axes, dtype=np.float64)
        var = np.mean((x - mean.reshape(shape)) ** 2, axis=axes)
        running_mean[...] = momentum * running_mean + (1 - momentum) * mean
        running_var[...] = momentum * running_var + (1 - momentum) * var
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
    mean = mean.astype(x.dtype)
    x_hat = (x - mean.reshape(shape)) * inv_std.reshape(shape)
    out = _into(out, x_hat * gamma.reshape(shape) + beta.reshape(shape))
    return out, (x, gamma, mean, inv_std, train)


def _batchnorm_backward(dout, cache, dx, dgamma, dbeta, axes):
    x, gamma, mean, inv_std, train = cache
    shape = [1] * x.ndim
    shape[1] = x.shape[1]
    inv_std = inv_std.reshape(shape)
    x_hat = (x - mean.reshape(shape)) * inv_std
    g = dout * gamma.reshape(shape)
    if train:
        n = x.size // x.shape[1]
        grad = inv_std / n * (n * g - g.sum(axis=axes, keepdims=True)
                              - x_hat * (g * x_hat).sum(axis=axes, keepdims=True))
    else:
        grad = g * inv_std
    return (_into(dx, grad), _into(dgamma, (dout * x_hat).sum(axis=axes)),
            _into(dbeta, dout.sum(axis=axes)))


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train=True, momentum=0.9,
                      eps=1e-5, out=None):
    """Batch norm of x (N, D) over the batch; gamma, beta, running stats (D,).
    Training uses the batch's mean and biased variance and updates
    running = momentum * running + (1 - momentum) * batch stat in place; test
    mode uses the running stats. Returns (out, cache (x, gamma, mean, inv_std, train))."""
    return _batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps,
                              out, 0)


def batchnorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Returns (dx, dgamma, dbeta); train mode: dx = inv_std / N * (N g - sum g -
    x_hat sum(g x_hat)), g = dout * gamma; test mode: dx = g * inv_std."""
    return _batchnorm_backward(dout, cache, dx, dgamma, dbeta, 0)


def spatial_batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train=True,
                              momentum=0.9, eps=1e-5, out=None):
    """batchnorm_forward for x (N, C, H, W), statistics per channel over N, H, W."""
    return _batchnorm_forward(x, gamma, beta, running_mean, running_var, train, momentum, eps,
                              out, (0, 2, 3))


def spatial_batchnorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    return _batchnorm_backward(dout, cache, dx, dgamma, dbeta, (0, 2, 3))


def _groupnorm_forward(x, gamma, beta, groups, eps):
    """Group norm of x (N, C, S): (out, mean (N, G), inv_std (N, G))."""
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    mean, inv_std = _moments(xg, 2, eps)
    x_hat = ((xg - mean) * inv_std).reshape(x.shape)
    out = x_hat * gamma.reshape(1, c, 1) + beta.reshape(1, c, 1)
    return out, mean.reshape(n, groups), inv_std.reshape(n, groups)


def _groupnorm_backward(dout, x, gamma, mean, inv_std, groups):
    """Group norm's (dx, dgamma, dbeta) on x (N, C, S) viewed as (N, G, C/G * S)."""
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    g = (dout * gamma.reshape(1, c, 1)).reshape(xg.shape)
    mean, inv_std = mean.reshape(n, groups, 1), inv_std.reshape(n, groups, 1)
    x_hat = (xg - mean) * inv_std
    size = xg.shape[2]
    dx = inv_std / size * (size * g - g.sum(axis=2, keepdims=True)
                           - x_hat * (g * x_hat).sum(axis=2, keepdims=True))
    x_hat = x_hat.reshape(x.shape)
    return dx.reshape(x.shape), (dout * x_hat).sum(axis=(0, 2)), dout.sum(axis=(0, 2))


def layernorm_forward(x, gamma, beta, *, eps=1e-5, out=None):
    """Layer norm of each row of x (N, D) (biased variance), then * gamma + beta (D,).
    Returns (out, cache (x, gamma, mean (N,), inv_std (N,)))."""
    n, d = x.shape
    result, mean, inv_std = _groupnorm_forward(x.reshape(n, d, 1), gamma, beta, 1, eps)
    return _into(out, result.reshape(n, d)), (x, gamma, mean.reshape(n), inv_std.reshape(n))


def layernorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Returns (dx, dgamma, dbeta): per row, dx = inv_std / D (D g - sum g - x_hat sum(g x_hat))."""
    x, gamma, mean, inv_std = cache
    n, d = x.shape
    grads = _groupnorm_backward(dout.reshape(n, d, 1), x.reshape(n, d, 1), gamma, mean, inv_std, 1)
    return _into(dx, grads[0].reshape(n, d)), _into(dgamma, grads[1]), _into(dbeta, grads[2])


def groupnorm_forward(x, gamma, beta, num_groups, *, eps=1e-5, out=None):
    """Group norm of x (N, C, H, W): statistics per sample and group of C/G
    adjacent channels, then * gamma + beta per channel (C,).
    Returns (out, cache (x, gamma, mean (N, G), inv_std (N, G), num_groups))."""
    n, c, h, w = x.shape
    result, mean, inv_std = _groupnorm_forward(x.reshape(n, c, h * w), gamma, beta, num_groups, eps)
    return _into(out, result.reshape(x.shape)), (x, gamma, mean, inv_std, num_groups)


def groupnorm_backward(dout, cache, *, dx=None, dgamma=None, dbeta=None):
    """Returns (dx, dgamma, dbeta): layernorm_backward's formula per sample and group."""
    x, gamma, mean, inv_std, num_groups = cache
    n, c, h, w = x.shape
    shape3 = (n, c, h * w)
    grads = _groupnorm_backward(dout.reshape(shape3), x.reshape(shape3), gamma, mean, inv_std,
                                num_groups)
    return _into(dx, grads[0].reshape(x.shape)), _into(dgamma, grads[1]), _into(dbeta, grads[2])
