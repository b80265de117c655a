"""The invertible layer contract.

An invertible layer is a bijection y = f(x) with a tractable Jacobian:

    call(x)                 -> y
    inverse(y)              -> x
    forward_and_log_det(x)  -> (y, log|det dy/dx|)      log-det shape: (batch,)
    inverse_and_log_det(y)  -> (x, log|det dx/dy|)      = -forward log-det at x

Subclasses write the transform once, analytically, in `_forward(x, training)` and
`_inverse(y)`, each returning `(output, log_det)`. This base class converts and validates
inputs (rank, channel count against the built layer) so that bad input fails with a
`ValueError` naming the received shape instead of deep inside TensorFlow, and it records the
build shape so that `.keras` saving restores layers that were built through
`forward_and_log_det` rather than `__call__`.

The direction is always explicit: `training` only switches batch-norm statistics inside
coupling subnets, never the direction.
"""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="invertible_keras")
class InvertibleLayer(keras.layers.Layer):
    """Base class of every invertible layer.

    Args:
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    The class attribute `ranks` lists the input ranks a layer accepts (batch axis included):
    2 for vectors `(batch, d)`, 4 for NHWC images.
    """

    ranks = (2, 4)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._built_input_shape = None

    # ----------------------------------------------------------------- public API
    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_rank(input_shape, "input")
        self._built_input_shape = (None,) + input_shape[1:]  # any batch size

    def call(self, x, training=None):
        self.check_input_shape(x.shape)
        return self._forward(x, training)[0]

    def check_input_shape(self, shape):
        """Raises a ValueError unless `shape` fits the forward input this layer was built for."""
        self._check_shape(shape, self._built_input_shape, "input")

    def forward_and_log_det(self, x, training=None):
        """Returns `(y, log|det dy/dx|)`, the log-det of shape `(batch,)`."""
        x = to_tensor(self, x)
        if not self.built:
            self.build(x.shape)
        self.check_input_shape(x.shape)
        return self._forward(x, training)

    def inverse_and_log_det(self, y):
        """Returns `(x, log|det dx/dy|)`; always runs in inference mode."""
        y = to_tensor(self, y)
        if not self.built:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' is not built: call it on a "
                f"forward input before inverting. Received inverse input shape {tuple(y.shape)}."
            )
        self._check_shape(y.shape, self.compute_output_shape(self._built_input_shape), "inverse input")
        return self._inverse(y)

    def inverse(self, y):
        return self.inverse_and_log_det(y)[0]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_build_config(self):
        if self._built_input_shape is None:
            return {}
        return {"input_shape": list(self._built_input_shape)}

    def build_from_config(self, config):
        if config.get("input_shape") is not None:
            self.build(tuple(config["input_shape"]))

    # ------------------------------------------------------- for subclasses to write
    def _forward(self, x, training):
        raise NotImplementedError

    def _inverse(self, y):
        raise NotImplementedError

    # ------------------------------------------------------------------- helpers
    def _check_rank(self, shape, what):
        if len(shape) not in self.ranks:
            expected = " or ".join(_RANK_NAMES[r] for r in self.ranks)
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' expects {what} of rank "
                f"{' or '.join(map(str, self.ranks))} ({expected}). Received {what} shape {tuple(shape)}."
            )

    def _check_shape(self, shape, expected, what):
        """Checks the rank, and every non-batch dimension known both here and at build time."""
        shape = tuple(shape)
        if expected is None:
            self._check_rank(shape, what)
            return
        expected = tuple(expected)
        if len(shape) != len(expected) or any(
            e is not None and s is not None and s != e for s, e in zip(shape[1:], expected[1:])
        ):
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' was built for {what} shape "
                f"{_shape_str(expected)}. Received {what} shape {_shape_str(shape)}."
            )


_RANK_NAMES = {2: "(batch, features)", 4: "(batch, height, width, channels)"}


def _shape_str(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def spatial_size(x):
    """Number of positions that share per-channel parameters: H*W for images, 1 for vectors.

    A Python number when the shape is static (no ops in the graph), else a scalar tensor.
    """
    inner = x.shape[1:-1]
    if None not in inner:
        return float(math.prod(inner))
    return tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), x.dtype)


def sum_except_batch(x):
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def zeros_log_det(x):
    return tf.zeros(tf.shape(x)[:1], x.dtype)


def to_tensor(layer, x):
    """`x` as a tensor of `layer`'s compute dtype; ValueError naming the layer for non-floating input."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise ValueError(
            f"{layer.__class__.__name__} '{layer.name}' expects a floating point tensor. "
            f"Received dtype {x.dtype.name} with shape {tuple(x.shape)}."
        )
    if x.dtype != layer.compute_dtype:
        x = tf.cast(x, layer.compute_dtype)
    return x
