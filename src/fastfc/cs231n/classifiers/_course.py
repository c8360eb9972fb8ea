"""What the course's models share on top of fastfc.models."""
import numpy as np


def draw_weights(shapes, weight_scale):
    """weight_scale * np.random.randn(*shape) for each shape, in order, from
    NumPy's global generator, as the course's constructors draw W1, W2, ...
    (so np.random.seed reproduces the notebooks' numbers)."""
    return [weight_scale * np.random.randn(*shape) for shape in shapes]


class CourseModel:
    """Mixed into a fastfc.models.Sequential subclass: the course's L2 term,
    0.5 * reg * sum(W**2) over the weights (gradient reg * W); reg may be
    changed after construction (model.reg = 1.0), as the notebooks do."""

    _l2_factor = 0.5

    def _set_weights(self, weights):
        """W1, W2, ... set to the arrays of weights (cast to the model's
        dtype); the biases stay zero."""
        for index, weight in enumerate(weights, 1):
            self.params[f"W{index}"] = weight
