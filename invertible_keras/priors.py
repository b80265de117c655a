"""Factorial Gaussian prior on the nuisance variables z_n (paper, Definition 7).

    p(z_n) = prod_k N(z_n,k; mu_k, sigma_k),   sigma_k = softplus(raw_sigma_k)

with mu and sigma learned, as a `tfd.Independent(tfd.Normal)` from tensorflow-probability.
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="invertible_keras")
class FactorialGaussianPrior(keras.layers.Layer):
    """Learned-mean, learned-scale diagonal Gaussian over `dim` variables.

    Args:
        dim: number of nuisance variables.
        initial_scale: sigma at initialisation (the standard normal by default).

    Input shape: `(batch, dim)`. Output: `log_prob`, shape `(batch,)`.
    """

    def __init__(self, dim, initial_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"`dim` must be a positive integer. Received: dim={dim!r}")
        if not initial_scale > 0:
            raise ValueError(f"`initial_scale` must be positive. Received: initial_scale={initial_scale!r}")
        self.dim = dim
        self.initial_scale = float(initial_scale)
        # Build right away: the prior's shape is fixed by `dim`, not by an input.
        self.mean = self.add_weight(name="mean", shape=(dim,), initializer="zeros")
        raw = float(np.log(np.expm1(self.initial_scale)))  # softplus^-1
        self.raw_scale = self.add_weight(name="raw_scale", shape=(dim,), initializer=keras.initializers.Constant(raw))
        self.built = True

    def distribution(self):
        loc = tf.convert_to_tensor(self.mean)
        scale = tf.nn.softplus(tf.convert_to_tensor(self.raw_scale))
        return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)

    def call(self, z_n):
        return self.log_prob(z_n)

    def log_prob(self, z_n):
        if z_n.shape[-1] is not None and z_n.shape[-1] != self.dim:
            raise ValueError(f"The prior is over {self.dim} nuisance variables. Received z_n shape {tuple(z_n.shape)}.")
        return self.distribution().log_prob(z_n)

    def sample(self, n, seed=None):
        return self.distribution().sample(n, seed=seed)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "initial_scale": self.initial_scale}
