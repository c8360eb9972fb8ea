"""fastfc: course-style neural-network layers over fast C/OpenMP kernels.

    import fastfc.functional as F      # or fastfc.F
    out, cache = F.affine_relu_forward(x, w, b)

`fastfc.reference` holds the same functions in plain NumPy.
"""
__version__ = "0.1.0"

from ._config import get_num_threads, set_num_threads, show_config
from . import functional
from . import functional as F
from . import gradcheck

# fastfc threads around single-threaded BLAS calls; see _config.
from ._config import _pin_blas_to_one_thread

_pin_blas_to_one_thread()
del _pin_blas_to_one_thread

__all__ = ["F", "functional", "gradcheck", "get_num_threads", "set_num_threads", "show_config"]
