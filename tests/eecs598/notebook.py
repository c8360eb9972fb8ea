"""What the notebooks' check cells share: the gradient check of a model,
written as the notebooks write it (eecs598.grad on the model's own tensors)."""
import pytest

torch = pytest.importorskip("torch")

import fastfc.eecs598 as eecs598  # noqa: E402


def model_gradient_errors(model, X, y, names=None):
    """The grads of one loss(X, y) call, then each parameter's numerical
    gradient (compute_numeric_gradient through repeated loss(X, y) calls on
    the model's own tensors) and its relative error: (loss, {name: error})."""
    loss, grads = model.loss(X, y)
    errors = {}
    for name in sorted(grads) if names is None else names:
        f = lambda _: model.loss(X, y)[0]  # noqa: E731 (as the notebooks write it)
        grad_num = eecs598.grad.compute_numeric_gradient(f, model.params[name])
        errors[name] = eecs598.grad.rel_error(grad_num, grads[name])
    return loss.item(), errors


def layer_gradient_errors(forward, backward, args, dout):
    """The notebooks' layer check: the numerical gradient of
    sum(forward(*args)[0] * dout) for each tensor argument, against the
    backward's; returns the list of relative errors (one per argument)."""
    _, cache = forward(*args)
    analytic = backward(dout, cache)
    analytic = analytic if isinstance(analytic, tuple) else (analytic,)
    errors = []
    for k, grad in enumerate(analytic):
        def f(value, k=k):
            return forward(*args[:k], value, *args[k + 1:])[0]
        numeric = eecs598.grad.compute_numeric_gradient(f, args[k], dout)
        errors.append(eecs598.grad.rel_error(numeric, grad))
    return errors
