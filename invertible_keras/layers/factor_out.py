"""Multi-scale factor-out (Dinh et al., 2017; Glow): part of the channels leave the network.

    (h, z_part) = FactorOut(x):   h      = x[..., C - k:]               (batch, H, W, k)
                                  z_part = flat(x[..., :C - k])         (batch, H * W * (C - k))
    x = FactorOut^-1(h, z_part) = concat([reshape(z_part), h], axis=-1)

with k = C // 2 kept channels. The first C - k channels leave: a coupling returns
[x2 + f(x1), x1], so they are the half that the stage's last coupling changed (Glow, the
authors' code); the untouched half stays in the network. Splitting and flattening only
rearrange entries, so log|det J| = 0.

Unlike the other layers this one has two outputs, the kept channels `h` (the next stage's
input) and the flat part of z that leaves; `inverse` takes the pair back.
"""

import math

import keras
import tensorflow as tf

from invertible_keras.layers.base import InvertibleLayer, to_tensor, zeros_log_det


@keras.saving.register_keras_serializable(package="invertible_keras")
class FactorOut(InvertibleLayer):
    """Splits off the first half of the channels into a flat part of z.

    Input shape: `(batch, H, W, C)` or `(batch, C)`, C even.
    Output shape: the pair `(batch, H, W, C // 2)` (kept) and `(batch, H * W * C // 2)` (z part);
        for vectors `(batch, C // 2)` and `(batch, C // 2)`.
    """

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[-1]
        if channels is None or channels % 2:
            raise ValueError(f"FactorOut '{self.name}' splits the channels in halves and needs an even channel "
                             f"count. Received input shape {tuple(input_shape)}.")

    @property
    def kept_channels(self):
        return self._built_input_shape[-1] // 2

    @property
    def factored_shape(self):
        """Shape of the part that leaves, before flattening, without the batch axis."""
        return (*self._built_input_shape[1:-1], self._built_input_shape[-1] - self.kept_channels)

    @property
    def factored_size(self):
        return math.prod(self.factored_shape)

    def call(self, x, training=None):
        return self.forward_and_log_det(x, training=training)[0]

    def forward_and_log_det(self, x, training=None):
        """Returns `((h, z_part), log_det)`; the log-det is 0."""
        x = to_tensor(self, x)
        if not self.built:
            self.build(x.shape)
        self.check_input_shape(x.shape)
        drop = x.shape[-1] - self.kept_channels
        return (x[..., drop:], tf.reshape(x[..., :drop], [-1, self.factored_size])), zeros_log_det(x)

    def inverse_and_log_det(self, y):
        """`y` = `(h, z_part)`; returns `(x, 0)`."""
        h, z_part = (to_tensor(self, part) for part in y)
        if not self.built:
            raise ValueError(f"FactorOut '{self.name}' is not built: call it on a forward input before inverting.")
        kept_shape, part_shape = self.compute_output_shape(self._built_input_shape)
        self._check_shape(h.shape, kept_shape, "inverse input (kept channels)")
        if len(z_part.shape) != 2 or z_part.shape[-1] != self.factored_size:
            raise ValueError(f"FactorOut '{self.name}' expects the z part of shape (batch, {self.factored_size}). "
                             f"Received shape {tuple(z_part.shape)}.")
        x = tf.concat([tf.reshape(z_part, (-1, *self.factored_shape)), h], axis=-1)
        return x, zeros_log_det(x)

    def inverse(self, y):
        return self.inverse_and_log_det(y)[0]

    def compute_output_shape(self, input_shape):
        *leading, c = input_shape
        kept = c // 2
        return (*leading, kept), (leading[0], math.prod(leading[1:]) * (c - kept))
