"""The cs231n assignment-2 package, on fastfc's C kernels.

Laid out like the course's own `cs231n` package, so that a notebook runs
after replacing `cs231n.` with `fastfc.cs231n.` in its imports:

    from fastfc.cs231n.classifiers.fc_net import *
    from fastfc.cs231n.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
    from fastfc.cs231n.solver import Solver

Modules: layers, fast_layers, layer_utils, optim, solver, gradient_check,
classifiers.fc_net (TwoLayerNet, FullyConnectedNet), classifiers.cnn
(ThreeLayerConvNet). Names, signatures, dict parameters, defaults and
results are the course's; every layer is an adapter over fastfc.functional
and the models are fastfc.models networks, so training runs on fastfc's
no-copy fast path.

Which course year each convention follows (2018+ where they differ):
- dropout: dropout_param['p'] and FullyConnectedNet(dropout_keep_ratio=...)
  are the probability of KEEPING a unit (2018+). The 2017 meaning (the
  probability of dropping one) is FullyConnectedNet(dropout=...), and
  {'p': 1 - p_drop} for dropout_forward.
- normalization: FullyConnectedNet(normalization=None|'batchnorm'|'layernorm')
  (2018+); the 2017 keyword use_batchnorm=True is accepted too.
- regularization: loss + 0.5 * reg * sum(W**2) over the weights, gradient
  reg * W (every year).
- update rules, Solver, gradient checks: the same in every year.
- dtypes: TwoLayerNet computes in float64 (the course's has no dtype
  argument and keeps NumPy's float64); FullyConnectedNet and
  ThreeLayerConvNet default to float32 as the course's (pass
  dtype=np.float64 for gradient checks, as the notebooks do).

Where fastfc differs from the course on purpose:
- dropout masks come from fastfc's hash generator (seeded by
  dropout_param['seed'], or by a seed drawn from np.random), not from
  np.random.rand: same statistics, different masks, and np.random's state
  is never reset by a dropout seed.
- caches are what the C kernels need, not the course's tuples: pass them
  only to the matching backward function.
- the *_naive layers and the fast_layers are the same C kernels.
- Solver checkpoints are a plain .npz of the parameters and a .json of the
  rest, never a pickle.
- bad dict parameters (missing or misspelled keys, a wrong mode, p outside
  (0, 1], eps <= 0, running statistics of the wrong shape) raise a
  ValueError/TypeError naming the key.
"""
