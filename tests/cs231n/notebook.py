"""What the notebooks' check cells share: rel_error and the gradient-check loop."""
import numpy as np

from fastfc.cs231n.gradient_check import eval_numerical_gradient


def rel_error(x, y):
    """The notebooks' relative error: max |x - y| / max(1e-8, |x| + |y|)."""
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


def model_gradient_errors(model, X, y, h=1e-5):
    """The notebooks' gradient check, written as they write it: the grads of
    one loss(X, y) call, then each parameter's numerical gradient through
    repeated loss(X, y) calls on the model's own arrays.
    Returns (loss, {name: relative error})."""
    loss, grads = model.loss(X, y)
    errors = {}
    for name in sorted(grads):
        f = lambda _: model.loss(X, y)[0]
        grad_num = eval_numerical_gradient(f, model.params[name], verbose=False, h=h)
        errors[name] = rel_error(grad_num, grads[name])
    return loss, errors
