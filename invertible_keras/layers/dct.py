"""DCTPooling: an invertible global average pooling by the orthonormal 2D DCT-II.

For every channel k the H x W map is transformed by the orthonormal DCT-II over H and W
(`tf.signal.dct(type=2, norm="ortho")`). The coefficient at frequency (0, 0) is

    DC_k = sqrt(H * W) * mean_k,

so the first C outputs are a scaled global average pooling. The output is the flat vector of
all H * W * C coefficients in order of frequency: the DC coefficient of every channel, then the
next-lowest frequency for every channel, and so on, frequencies (u, v) taken in diagonal order
(by u + v, then u). The first n entries are thus the n lowest-frequency components even when n
exceeds the channel count. The transform is orthonormal: log|det J| = 0.
"""

import keras
import numpy as np
import tensorflow as tf

from invertible_keras.layers.base import InvertibleLayer, zeros_log_det


def frequency_order(height, width):
    """Flat indices u * width + v of the (u, v) frequencies in diagonal order."""
    pairs = sorted(((u, v) for u in range(height) for v in range(width)), key=lambda p: (p[0] + p[1], p[0]))
    return np.array([u * width + v for u, v in pairs], dtype=np.int32)


@keras.saving.register_keras_serializable(package="invertible_keras")
class DCTPooling(InvertibleLayer):
    """Orthonormal 2D DCT per channel, flattened lowest frequencies first.

    Input shape: `(batch, H, W, C)` with H, W known.
    Output shape: `(batch, H * W * C)`.
    """

    ranks = (4,)

    def build(self, input_shape):
        super().build(input_shape)
        _, h, w, c = input_shape
        if None in (h, w, c):
            raise ValueError(f"DCTPooling '{self.name}' needs known H, W and C. Received input shape {tuple(input_shape)}.")
        self._order = frequency_order(h, w)
        self._inverse_order = np.argsort(self._order).astype(np.int32)

    def _forward(self, x, training):
        _, h, w, c = self._built_input_shape
        coeffs = _dct2(x, tf.signal.dct)  # (B, H, W, C)
        coeffs = tf.gather(tf.reshape(coeffs, [-1, h * w, c]), self._order, axis=1)
        return tf.reshape(coeffs, [-1, h * w * c]), zeros_log_det(x)

    def _inverse(self, y):
        _, h, w, c = self._built_input_shape
        coeffs = tf.gather(tf.reshape(y, [-1, h * w, c]), self._inverse_order, axis=1)
        return _dct2(tf.reshape(coeffs, [-1, h, w, c]), tf.signal.idct), zeros_log_det(y)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if None in (h, w, c) else h * w * c)


def _dct2(x, transform):
    """Applies an orthonormal type-II (i)DCT over axes 1 and 2 of an NHWC tensor."""
    x = tf.transpose(x, [0, 3, 1, 2])  # B, C, H, W
    x = transform(x, type=2, norm="ortho")  # over W
    x = tf.transpose(transform(tf.transpose(x, [0, 1, 3, 2]), type=2, norm="ortho"), [0, 1, 3, 2])  # over H
    return tf.transpose(x, [0, 2, 3, 1])
