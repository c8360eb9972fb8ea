"""Fully-connected kernels: fastfc vs fastfc.reference vs PyTorch (float32).

Groups: affine+ReLU and affine forward+backward at the MLP layers' (N, D, M)
shapes, with the three GEMMs alone (same BLAS, same thread split) as the
ceiling; ReLU and dropout, with a plain copy moving as many bytes as the
ceiling of the large array; the softmax and SVM losses. The cases are
fastfc.bench's (family "fc"), the ones `fastfc bench` times."""
import pytest

from benchutil import case_params, time_case


@pytest.mark.parametrize("case, side", case_params("fc"))
def test_fc(benchmark, request, case, side):
    time_case(benchmark, request, case, side)
