"""The factorial Gaussian prior over the latent z = [z_s, z_n] of iCE training (paper, Def. 7).

    p(z | y) = p(z_s | y) * prod_k N(z_n,k; mu_k, sigma_k),     sigma = softplus(raw_sigma)

The nuisance part has a learned mean and scale per variable (`tfd.Independent(tfd.Normal)` from
tensorflow-probability). The semantic part `semantic` is one of

    "none"               no density on z_s: the likelihood counts the log-determinant of the
                         whole bijection but a density on z_n only, so stretching the
                         directions that feed the logits raises it without limit;
    "standard"           N(z_s; 0, 1), the authors' code (a density on every entry of z);
    "class_conditional"  N(z_s; m_y, s) with learned class means m_y (C x C) and a learned
                         shared scale s (C).

With "class_conditional", -log p(x, y) = -log p(z_s | y) - log p(z_n) - log|det J| is the
likelihood of a model in which z_n is independent of y by construction (the factorial prior
of the paper's Lemma 10): fitting it to data pushes the label out of z_n, which the adversary
alone measurably does not do (RESULTS.md, "iCE ablations").
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

SEMANTIC_PRIORS = ("none", "standard", "class_conditional")


@keras.saving.register_keras_serializable(package="invertible_keras")
class LatentPrior(keras.layers.Layer):
    """Factorial Gaussian density over z = [z_s, z_n], optionally conditioned on the label.

    Args:
        num_classes: C, the width of z_s.
        latent_dim: d, the width of z.
        semantic: density of z_s, one of `SEMANTIC_PRIORS` (see the module docstring).
        initial_scale: every learned sigma at initialisation (a standard normal by default).

    Call: `log_prob(z, y)` with z `(batch, d)` and integer labels y `(batch,)` returns
    `(batch,)`.
    """

    def __init__(self, num_classes, latent_dim, semantic="class_conditional", initial_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(latent_dim, int) or not isinstance(num_classes, int) or not 1 <= num_classes < latent_dim:
            raise ValueError("`num_classes` and `latent_dim` must be integers with 1 <= num_classes < latent_dim. "
                             f"Received: num_classes={num_classes!r}, latent_dim={latent_dim!r}")
        if semantic not in SEMANTIC_PRIORS:
            raise ValueError(f"`semantic` must be one of {SEMANTIC_PRIORS}. Received: semantic={semantic!r}")
        if not initial_scale > 0:
            raise ValueError(f"`initial_scale` must be positive. Received: initial_scale={initial_scale!r}")
        self.num_classes, self.latent_dim = num_classes, latent_dim
        self.semantic, self.initial_scale = semantic, float(initial_scale)
        raw = keras.initializers.Constant(float(np.log(np.expm1(self.initial_scale))))  # softplus^-1
        # Built right away: the shapes are fixed by the arguments, not by an input.
        nuisance_dim = latent_dim - num_classes
        self.nuisance_mean = self.add_weight(name="nuisance_mean", shape=(nuisance_dim,), initializer="zeros")
        self.nuisance_raw_scale = self.add_weight(name="nuisance_raw_scale", shape=(nuisance_dim,), initializer=raw)
        if semantic == "class_conditional":
            self.class_means = self.add_weight(name="class_means", shape=(num_classes, num_classes),
                                               initializer="zeros")
            self.semantic_raw_scale = self.add_weight(name="semantic_raw_scale", shape=(num_classes,),
                                                      initializer=raw)
        self.built = True

    def nuisance_distribution(self):
        scale = tf.nn.softplus(tf.convert_to_tensor(self.nuisance_raw_scale))
        return tfd.Independent(tfd.Normal(tf.convert_to_tensor(self.nuisance_mean), scale), 1)

    def semantic_distribution(self, y):
        """p(z_s | y) as a batch of distributions (None for `semantic="none"`)."""
        if self.semantic == "standard":
            return tfd.Independent(tfd.Normal(tf.zeros(self.num_classes), 1.0), 1)
        if self.semantic == "class_conditional":
            loc = tf.gather(tf.convert_to_tensor(self.class_means), y)
            return tfd.Independent(tfd.Normal(loc, tf.nn.softplus(tf.convert_to_tensor(self.semantic_raw_scale))), 1)
        return None

    def log_prob(self, z, y):
        if z.shape[-1] is not None and z.shape[-1] != self.latent_dim:
            raise ValueError(f"The prior is over z of width {self.latent_dim}. Received z shape {tuple(z.shape)}.")
        log_p = self.nuisance_distribution().log_prob(z[:, self.num_classes:])
        semantic = self.semantic_distribution(y)
        return log_p if semantic is None else log_p + semantic.log_prob(z[:, : self.num_classes])

    def call(self, z, y):
        return self.log_prob(z, y)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "latent_dim": self.latent_dim,
                "semantic": self.semantic, "initial_scale": self.initial_scale}
