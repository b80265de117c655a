"""Coupling layers (NICE / RevNet / Real NVP), the building block of a fiRevNet.

The input is split in two halves along the channel (last) axis, x = [x1, x2]. One half is
transformed conditioned on the other, then the halves are swapped (a fixed permutation, as in
RevNet) so that the next coupling transforms the other half:

    additive:  y = [x2 + f(x1),            x1]      log|det J| = 0
    affine:    y = [x2 * s(x1) + t(x1),    x1]      log|det J| = sum log s(x1)

with the bounded scale  log s = clamp * (2/pi) * atan(h / clamp)  (FrEIA's soft clamp), so
|log s| < clamp for any input. The inverse is analytic:

    x1 = y[c:],  x2 = y[:c] - f(x1)            (additive)
    x1 = y[c:],  x2 = (y[:c] - t(x1)) / s(x1)  (affine)

`f` is a bottleneck subnet: dense (vectors) or 3x3 -> 1x1 -> 3x3 conv (images), ReLU, optional
batch norm (the paper's MNIST model), and optionally (`global_context`, images) a global branch
before the last conv, h + W mean_{H,W}(h): a 3x3 subnet sees only a 5x5 window of x1, and the
branch lets f write into x2 what depends on the whole image (for iCE: the class, which z_s holds
as DC components of whole channels). Its last layer is zero-initialised, so a new coupling is
the identity. With batch norm the inverse uses inference statistics: it is the exact inverse
of the forward pass in inference mode.
"""

import math

import keras
import tensorflow as tf

from invertible_keras.layers.base import InvertibleLayer, sum_except_batch, zeros_log_det


def soft_clamp(raw, clamp):
    """log s = clamp * (2/pi) * atan(raw / clamp): |log s| < clamp, log s = raw near 0."""
    return clamp * (2.0 / math.pi) * tf.atan(raw / clamp)


class Coupling(InvertibleLayer):
    """Shared split / subnet / swap machinery; subclasses write `_couple` and `_uncouple`.

    Args:
        hidden_units: width of the subnet's hidden layers (units or filters).
        kernel_size: spatial size of the outer conv kernels (images only).
        batch_norm: whether the subnet uses batch normalisation after its hidden layers;
            synchronized across replicas under `tf.distribute` (statistics of the global batch).
        zero_init: zero-initialise the subnet's last layer so the coupling starts as the
            identity (the standard stability choice of Glow and i-RevNet).
        global_context: add a `GlobalContext` branch before the subnet's last conv (images
            only; ignored by dense subnets, which see all of x1 already).
    """

    def __init__(self, hidden_units=64, kernel_size=3, batch_norm=False, zero_init=True, global_context=False,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(hidden_units, int) or hidden_units < 1:
            raise ValueError(f"`hidden_units` must be a positive integer. Received: hidden_units={hidden_units!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be a positive odd integer. Received: kernel_size={kernel_size!r}")
        self.hidden_units = hidden_units
        self.kernel_size = kernel_size
        self.batch_norm = bool(batch_norm)
        self.zero_init = bool(zero_init)
        self.global_context = bool(global_context)

    subnet_outputs_per_channel = 1

    def build(self, input_shape):
        super().build(input_shape)
        channels = input_shape[-1]
        if channels is None or channels % 2:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' splits channels into two equal halves "
                f"and needs an even, known channel count. Received input shape {tuple(input_shape)}."
            )
        self.half = channels // 2
        self.subnet = self._make_subnet(len(input_shape), self.half * self.subnet_outputs_per_channel)
        self.subnet.build(tuple(input_shape[:-1]) + (self.half,))

    def _make_subnet(self, rank, out_channels):
        common = {"dtype": self.dtype_policy}
        last_init = "zeros" if self.zero_init else "glorot_uniform"
        if rank == 2:
            hidden = [keras.layers.Dense(self.hidden_units, use_bias=not self.batch_norm, **common)
                      for _ in range(2)]
            last = keras.layers.Dense(out_channels, kernel_initializer=last_init, **common)
        else:
            hidden = [
                keras.layers.Conv2D(self.hidden_units, k, padding="same", use_bias=not self.batch_norm, **common)
                for k in (self.kernel_size, 1)
            ]
            last = keras.layers.Conv2D(out_channels, self.kernel_size, padding="same",
                                       kernel_initializer=last_init, **common)
        layers = []
        for layer in hidden:
            layers.append(layer)
            if self.batch_norm:
                layers.append(keras.layers.BatchNormalization(synchronized=True, **common))
            layers.append(keras.layers.ReLU(**common))
        if self.global_context and rank == 4:
            layers.append(GlobalContext(**common))
        return keras.Sequential(layers + [last], name="subnet")

    # One `tf.split` rather than two slices: its gradient is one concat of the two halves'
    # gradients, where each slice's gradient (StridedSliceGrad) writes a zero-padded full-size
    # tensor and the two are then added (`bench/profile_step.py` measures it).
    def _forward(self, x, training):
        x1, x2 = tf.split(x, 2, axis=-1)
        y2, log_det = self._couple(x2, self.subnet(x1, training=training))
        return tf.concat([y2, x1], axis=-1), log_det

    def _inverse(self, y):
        y2, x1 = tf.split(y, 2, axis=-1)
        x2, log_det = self._uncouple(y2, self.subnet(x1, training=False))
        return tf.concat([x1, x2], axis=-1), log_det

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_units": self.hidden_units,
            "kernel_size": self.kernel_size,
            "batch_norm": self.batch_norm,
            "zero_init": self.zero_init,
            "global_context": self.global_context,
        }


@keras.saving.register_keras_serializable(package="invertible_keras")
class GlobalContext(keras.layers.Layer):
    """h + Dense(mean_{H,W}(h)), broadcast over H and W: a global branch inside a conv subnet.

    Not invertible itself (it lives inside a coupling's f). The dense layer is zero-initialised,
    so the branch starts switched off.

    Input shape: `(batch, H, W, F)`.
    Output shape: same as the input.
    """

    def build(self, input_shape):
        self.dense = keras.layers.Dense(input_shape[-1], kernel_initializer="zeros", dtype=self.dtype_policy)
        self.dense.build((input_shape[0], input_shape[-1]))

    def call(self, h):
        return h + self.dense(tf.reduce_mean(h, axis=(1, 2)))[:, None, None, :]


@keras.saving.register_keras_serializable(package="invertible_keras")
class AdditiveCoupling(Coupling):
    """Additive (volume-preserving) coupling: y = [x2 + f(x1), x1].

    Args: see `Coupling`.

    Input shape: `(batch, d)` or `(batch, H, W, C)` with an even last axis.
    Output shape: same as the input.
    """

    def _couple(self, x2, h):
        return x2 + h, zeros_log_det(x2)

    def _uncouple(self, y2, h):
        return y2 - h, zeros_log_det(y2)


@keras.saving.register_keras_serializable(package="invertible_keras")
class AffineCoupling(Coupling):
    """Affine coupling with a bounded scale: y = [x2 * s(x1) + t(x1), x1].

    Args:
        clamp: bound on |log s|; log s = clamp * (2/pi) * atan(h / clamp), so the scale stays
            in (exp(-clamp), exp(clamp)) for any input, and equals 1 at a zero subnet output.
        **kwargs: see `Coupling`.

    Input shape: `(batch, d)` or `(batch, H, W, C)` with an even last axis.
    Output shape: same as the input.
    """

    subnet_outputs_per_channel = 2

    def __init__(self, hidden_units=64, clamp=2.0, **kwargs):
        super().__init__(hidden_units=hidden_units, **kwargs)
        if not clamp > 0:
            raise ValueError(f"`clamp` must be positive. Received: clamp={clamp!r}")
        self.clamp = float(clamp)

    def log_scale_and_shift(self, h):
        raw, shift = tf.split(h, 2, axis=-1)
        return soft_clamp(raw, self.clamp), shift

    def _couple(self, x2, h):
        log_s, t = self.log_scale_and_shift(h)
        return x2 * tf.exp(log_s) + t, sum_except_batch(log_s)

    def _uncouple(self, y2, h):
        log_s, t = self.log_scale_and_shift(h)
        return (y2 - t) * tf.exp(-log_s), -sum_except_batch(log_s)

    def get_config(self):
        return {**super().get_config(), "clamp": self.clamp}
