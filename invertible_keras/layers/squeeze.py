"""Squeeze: an invertible space-to-depth rearrangement (i-RevNet's psi, Glow's squeeze).

    y = space_to_depth(x, factor):  (B, H, W, C) -> (B, H/f, W/f, f*f*C)

A permutation of entries, so log|det J| = 0.
"""

import keras
import tensorflow as tf

from invertible_keras.layers.base import InvertibleLayer, zeros_log_det


@keras.saving.register_keras_serializable(package="invertible_keras")
class Squeeze(InvertibleLayer):
    """Trades spatial resolution for channels with `tf.nn.space_to_depth`.

    Args:
        factor: block size; H and W must be divisible by it.

    Input shape: `(batch, H, W, C)`.
    Output shape: `(batch, H / factor, W / factor, C * factor**2)`.
    """

    ranks = (4,)

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"`factor` must be an integer >= 2. Received: factor={factor!r}")
        self.factor = factor

    def build(self, input_shape):
        super().build(input_shape)
        self._check_divisible(input_shape)

    def _check_divisible(self, shape):
        self._check_rank(tuple(shape), "input")
        h, w = shape[1], shape[2]
        if any(s is not None and s % self.factor for s in (h, w)):
            raise ValueError(
                f"Squeeze '{self.name}' needs height and width divisible by factor={self.factor}. "
                f"Received input shape {tuple(shape)}."
            )

    def _forward(self, x, training):
        self._check_divisible(x.shape)
        return tf.nn.space_to_depth(x, self.factor), zeros_log_det(x)

    def _inverse(self, y):
        return tf.nn.depth_to_space(y, self.factor), zeros_log_det(y)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        f = self.factor
        return (b, None if h is None else h // f, None if w is None else w // f,
                None if c is None else c * f * f)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
