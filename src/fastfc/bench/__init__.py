"""`fastfc bench`: fastfc against fastfc.reference and PyTorch, case by case.

    fastfc bench                              # every case, float32, all threads
    fastfc bench --threads 2 --quick          # fewer, shorter rounds
    fastfc bench --case relu --case "mlp 784" --json out.json --plot speedups.png
    fastfc bench --list                       # the case names
    python -m fastfc.bench ...                # the same command

Each case is defined once, in fastfc.bench.cases, as a function that builds
its inputs and returns one callable per contender: fastfc, fastfc.reference (plain NumPy)
and PyTorch (when installed, at its fastest CPU settings: torch.nn.functional
ops, fused Adam, inputs not requiring grad unless the case computes their
gradient), plus, for some cases, a ceiling: the three BLAS GEMMs of an affine
layer alone, or a plain copy moving as many bytes as the kernel does. The
pytest-benchmark suite (benchmarks/bench_epoch.py) builds its epochs from
the same functions.

Every side gets the same data, the same float type and the same number of
threads (fastfc.set_num_threads, torch.set_num_threads, and NumPy's own BLAS
through threadpoolctl). Before timing, each side runs once or twice (the
warm-up) and its results are compared with the reference's. Then the sides
are timed round-robin, one batch of calls of each in turn, the first side
changing every round, so that noise from other processes spreads over all of
them; the table shows the median time per call and the ratios
reference/fastfc and torch/fastfc (above 1: fastfc is faster). The last
column compares fastfc with the ceiling: "GEMM 91%" means the affine layer's
forward+backward takes 1/0.91 times its three GEMMs alone; "copy 70%" means
the kernel moves its bytes at 70% of the speed of a copy of as many bytes on
as many threads (arrays larger than the last-level cache). Bytes are counted
as the arrays read plus the arrays written; a copy into another array also
reads its destination into the cache before writing it, which an update in
place (Adam) does not, so such kernels can pass 100%.

The modules: cases (the cases and CASES, the one list of them, which
`fastfc bench` runs and benchmarks/bench_*.py time under pytest-benchmark,
with the sizes they use), baselines (the NumPy and torch optimizers),
networks (the networks of the training-step and epoch cases, for every
side, from fastfc.models.layer_plan), timing (the warm-up check, the
round-robin timing, run), report (the table and the chart). The command
line is fastfc.cli.bench.
"""
from .cases import (BIG, CASES, CEILING, CONV_SHAPES, EPOCH_SAMPLES, QUICK_EPOCH_SAMPLES, Case, Contenders, Setup,
                    conv_case, epoch_contenders, random_batch, select_cases)
from .baselines import NUMPY_OPTIMIZERS, NumpyAdam, torch_optimizer
from .networks import CNN, SIDES, FastfcNet, ReferenceNet, TorchNet, init_params, mlp, side_nets
from .report import plot_speedups
from .timing import TOLERANCE, check, measure, numpy_blas_threads, run, run_case

__all__ = ["BIG", "CASES", "CEILING", "CONV_SHAPES", "EPOCH_SAMPLES", "QUICK_EPOCH_SAMPLES", "Case", "Contenders",
           "Setup", "conv_case", "epoch_contenders", "random_batch", "select_cases", "NUMPY_OPTIMIZERS",
           "NumpyAdam", "torch_optimizer", "CNN", "SIDES", "FastfcNet", "ReferenceNet", "TorchNet", "init_params",
           "mlp", "side_nets", "plot_speedups", "TOLERANCE", "check", "measure", "numpy_blas_threads", "run",
           "run_case"]
