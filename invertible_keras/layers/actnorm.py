"""ActNorm (Glow): a per-channel affine map with data-dependent initialisation.

    y = (x + b) * exp(log_s)        log|det J| = (H * W) * sum_c log_s_c

`initialize(x)` sets b = -mean(x) and log_s = -log(sqrt(var(x) + epsilon)) per channel, so the
output of the first batch has mean 0 and std 1 per channel; epsilon keeps a constant channel
finite (no NaN). The non-trainable `initialized` flag is saved with the weights: a restored
layer is never initialised again. Initialisation is an explicit step (see
`InvertibleSequential.initialize`), run once before `fit`, not a side effect of `call`.
"""

import keras
import tensorflow as tf

from invertible_keras.layers.base import InvertibleLayer, spatial_size, to_tensor


@keras.saving.register_keras_serializable(package="invertible_keras")
class ActNorm(InvertibleLayer):
    """Per-channel scale and bias, initialised from the first batch.

    Args:
        epsilon: added to the per-channel variance at initialisation (constant channels).

    Input shape: `(batch, d)` or `(batch, H, W, C)`.
    Output shape: same as the input.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[-1]
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")
        self.log_scale = self.add_weight(name="log_scale", shape=(channels,), initializer="zeros")
        self.initialized = self.add_weight(
            name="initialized", shape=(), dtype="bool", initializer="zeros", trainable=False
        )

    @property
    def is_initialized(self):
        return bool(keras.ops.convert_to_numpy(self.initialized))

    def initialize(self, x):
        """Data-dependent init from a batch `x` (eager); a no-op once initialised."""
        x = to_tensor(self, x)
        if not self.built:
            self.build(x.shape)
        self.check_input_shape(x.shape)
        if self.is_initialized:
            return
        mean, var = tf.nn.moments(x, axes=list(range(len(x.shape) - 1)))
        self.bias.assign(-mean)
        self.log_scale.assign(-0.5 * tf.math.log(var + self.epsilon))
        self.initialized.assign(True)

    def _forward(self, x, training):
        y = (x + self.bias) * tf.exp(self.log_scale)
        return y, self._log_det(x)

    def _inverse(self, y):
        x = y * tf.exp(-self.log_scale) - self.bias
        return x, -self._log_det(y)

    def _log_det(self, x):
        return tf.fill(tf.shape(x)[:1], spatial_size(x) * tf.reduce_sum(self.log_scale))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
