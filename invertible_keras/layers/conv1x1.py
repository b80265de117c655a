"""Invertible 1x1 convolution (Glow) with an LU-parameterised weight.

    W = P @ L @ (U + diag(sign * exp(log_abs_s)))      y = x @ W  (over the channel axis)
    log|det J| = (H * W) * sum_c log_abs_s_c

P is a fixed permutation, L unit lower triangular and U strictly upper triangular (trainable,
masked), sign fixed. W is initialised from a random rotation (QR of a Gaussian matrix, seeded).
The inverse is x = y @ W^{-1} with W^{-1} = (U + diag s)^{-1} L^{-1} P^T from triangular solves.
"""

import keras
import numpy as np
import tensorflow as tf

from invertible_keras.layers.base import InvertibleLayer, spatial_size


@keras.saving.register_keras_serializable(package="invertible_keras")
class Invertible1x1Conv(InvertibleLayer):
    """Learned invertible channel mixing.

    Args:
        seed: seed of the random rotation the weight starts from (None: random).

    Input shape: `(batch, d)` or `(batch, H, W, C)`.
    Output shape: same as the input.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, input_shape):
        super().build(input_shape)
        c = input_shape[-1]
        rng = np.random.default_rng(self.seed)
        rotation, _ = np.linalg.qr(rng.standard_normal((c, c)))
        packed, perm = (t.numpy() for t in tf.linalg.lu(rotation))  # rotation[perm] = L @ U
        p = np.eye(c)[perm].T
        l, u = np.tril(packed, -1) + np.eye(c), np.triu(packed)
        s = np.diag(u)
        const = keras.initializers.Constant
        self.permutation = self.add_weight(name="permutation", shape=(c, c), initializer=const(p), trainable=False)
        self.lower = self.add_weight(name="lower", shape=(c, c), initializer=const(l))
        self.upper = self.add_weight(name="upper", shape=(c, c), initializer=const(np.triu(u, 1)))
        self.sign_s = self.add_weight(name="sign_s", shape=(c,), initializer=const(np.sign(s)), trainable=False)
        self.log_abs_s = self.add_weight(name="log_abs_s", shape=(c,), initializer=const(np.log(np.abs(s))))

    def _factors(self):
        c = self.lower.shape[0]
        eye = tf.eye(c, dtype=self.compute_dtype)
        lower = tf.linalg.band_part(self.lower, -1, 0) * (1 - eye) + eye
        upper = tf.linalg.band_part(self.upper, 0, -1) * (1 - eye) + tf.linalg.diag(
            self.sign_s * tf.exp(self.log_abs_s))
        return lower, upper

    def weight(self):
        lower, upper = self._factors()
        return tf.convert_to_tensor(self.permutation) @ lower @ upper

    def inverse_weight(self):
        lower, upper = self._factors()
        eye = tf.eye(lower.shape[0], dtype=self.compute_dtype)
        l_inv = tf.linalg.triangular_solve(lower, eye, lower=True)
        u_inv = tf.linalg.triangular_solve(upper, eye, lower=False)
        return u_inv @ l_inv @ tf.transpose(self.permutation)

    def _forward(self, x, training):
        return _mix(x, self.weight()), self._log_det(x)

    def _inverse(self, y):
        return _mix(y, self.inverse_weight()), -self._log_det(y)

    def _log_det(self, x):
        return tf.fill(tf.shape(x)[:1], spatial_size(x) * tf.reduce_sum(self.log_abs_s))

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


def _mix(x, w):
    """x @ w over the last axis for any rank.

    One MatMul between two reshapes with the static inner dimensions: the same product as
    `tf.tensordot`, without its run-time shape arithmetic (about 10 small ops forward and
    backward per layer, each costing executor time comparable to the tiny MatMul itself).
    """
    if len(x.shape) == 2:
        return x @ w
    inner = x.shape[1:-1]
    if None in inner:  # unknown spatial size: fall back to dynamic shapes
        return tf.tensordot(x, w, axes=[[-1], [0]])
    with tf.name_scope("channel_mix"):  # names the MatMul for bench/profile_step.py
        return tf.reshape(tf.reshape(x, [-1, x.shape[-1]]) @ w, [-1, *inner, w.shape[-1]])

