"""CE and iCE training of a fiRevNet with `model.fit` (paper, Section 4 and Definition 7).

`Trainer` is a `keras.Model` in the keras-io GAN pattern: it holds the fiRevNet (`network`),
the factorial Gaussian prior on z_n (`prior`) and the nuisance classifier D_phi
(`nuisance_classifier`); `compile()` takes two optimizers; `train_step` makes

  1. one step of the network and the prior on
         L_sCE + beta * adversary + gamma * L_MLE        (loss="ice")
         L_sCE                                           (loss="ce", the baseline)
  2. `nuisance_steps` steps of D_phi on L_nCE with z_n held constant (`tf.stop_gradient`).

The prior is fitted under "ce" too, but on stop_gradient(z_n) and stop_gradient(log-det), so it
never changes the network and the likelihood metrics stay comparable between the two losses.
Every term is averaged over the global batch (`tf.nn.compute_average_loss`), so N replicas
of a `tf.distribute` strategy make the same update as one device.

Deviation from DESIGN.md: the training logic lives in this wrapper rather than in `FiRevNet`
itself, so the exported and saved classifier stays a pure invertible network; `Trainer`
calls the very same `FiRevNet`, and `trainer(x)` returns its logits.
"""

import math

import keras
import tensorflow as tf

from invertible_keras import losses
from invertible_keras.models.nuisance import nuisance_classifier
from invertible_keras.priors import FactorialGaussianPrior

LOSSES = ("ce", "ice")


class Trainer(keras.Model):
    """A fiRevNet with its prior and nuisance classifier, trained by `fit`.

    Args:
        network: a built `FiRevNet` (needs `num_classes`, `latent_dim`, `forward_and_log_det`).
        nuisance_hidden_units: widths of D_phi's ReLU layers.
    """

    def __init__(self, network, nuisance_hidden_units=(512, 512, 512), **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.num_classes = network.num_classes
        self.latent_dim = network.latent_dim
        nuisance_dim = self.latent_dim - self.num_classes
        self.prior = FactorialGaussianPrior(nuisance_dim, name="prior")
        self.nuisance_classifier = nuisance_classifier(self.num_classes, nuisance_hidden_units)
        self.nuisance_classifier.build((None, nuisance_dim))
        names = ("loss", "semantic_ce", "nuisance_ce", "mle")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.nuisance_accuracy = keras.metrics.SparseCategoricalAccuracy(name="nuisance_accuracy")
        self.bits_per_dim = keras.metrics.Mean(name="bits_per_dim")

    def compile(self, optimizer, nuisance_optimizer, loss="ice", beta=1.0, gamma=1.0, adversary="shuffled",
                nuisance_steps=1, num_levels=None, **kwargs):
        """Args:
            optimizer: updates the network and the prior.
            nuisance_optimizer: updates the nuisance classifier only.
            loss: "ice" or "ce".
            beta: weight of the adversarial term (iCE only).
            gamma: weight of L_MLE (iCE only).
            adversary: "shuffled" (authors' code) or "negative" (paper's -L_nCE).
            nuisance_steps: steps of D_phi per batch.
            num_levels: quantisation levels of the data (256 for 8-bit images) to report
                bits per dim; None for continuous data (spheres).
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`, `steps_per_execution`).
        """
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}. Received: loss={loss!r}")
        if adversary not in losses.ADVERSARIES:
            raise ValueError(f"`adversary` must be one of {losses.ADVERSARIES}. Received: adversary={adversary!r}")
        if not isinstance(nuisance_steps, int) or nuisance_steps < 1:
            raise ValueError(f"`nuisance_steps` must be a positive integer. Received: nuisance_steps={nuisance_steps!r}")
        super().compile(optimizer=optimizer, **kwargs)
        self.nuisance_optimizer = nuisance_optimizer
        self.loss_kind, self.beta, self.gamma = loss, float(beta), float(gamma)
        self.adversary, self.nuisance_steps, self.num_levels = adversary, nuisance_steps, num_levels

    def build_optimizers(self):
        """Creates optimizer state up front (checkpoint restore, variables under a strategy)."""
        self.optimizer.build(self.main_variables)
        self.nuisance_optimizer.build(self.nuisance_classifier.trainable_variables)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 runs a symbolic build at the start of `fit` under a strategy, reducing a
        # sample batch with a collective MEAN that fails under MultiWorkerMirroredStrategy.
        # Every variable of this model exists before `fit` (`build_optimizers`), so skip it.
        if not (self.optimizer.built and self.nuisance_optimizer.built):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def main_variables(self):
        return self.network.trainable_variables + self.prior.trainable_variables

    @property
    def metrics(self):
        tracked = list(self.trackers.values()) + [self.accuracy, self.nuisance_accuracy]
        return tracked + ([self.bits_per_dim] if self.num_levels else [])

    def call(self, x, training=None):
        return self.network(x, training=training)

    def _terms(self, x, y, training):
        """Per-example loss terms of the network step and the batch's z_s, z_n."""
        z, log_det = self.network.forward_and_log_det(x, training=training)
        z_s, z_n = z[:, : self.num_classes], z[:, self.num_classes:]
        nuisance_logits = self.nuisance_classifier(z_n, training=training)
        terms = {
            "semantic_ce": losses.cross_entropy(y, z_s),
            "nuisance_ce": losses.cross_entropy(y, nuisance_logits),
        }
        if self.loss_kind == "ice":
            terms["mle"] = losses.mle(z_n, log_det, self.prior, self.latent_dim)
            terms["loss"] = (terms["semantic_ce"] + self.gamma * terms["mle"]
                             + self.beta * losses.adversary(y, nuisance_logits, self.adversary))
        else:
            terms["mle"] = losses.mle(tf.stop_gradient(z_n), tf.stop_gradient(log_det), self.prior, self.latent_dim)
            terms["loss"] = terms["semantic_ce"] + terms["mle"]  # the mle term only fits the prior
        return terms, z_s, z_n, nuisance_logits

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            terms, z_s, z_n, nuisance_logits = self._terms(x, y, training=True)
            loss = tf.nn.compute_average_loss(terms["loss"])
        variables = self.main_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

        z_n = tf.stop_gradient(z_n)
        nuisance_variables = self.nuisance_classifier.trainable_variables
        for _ in range(self.nuisance_steps):
            with tf.GradientTape() as tape:
                nuisance_loss = tf.nn.compute_average_loss(
                    losses.cross_entropy(y, self.nuisance_classifier(z_n, training=True)))
            grads = tape.gradient(nuisance_loss, nuisance_variables)
            self.nuisance_optimizer.apply_gradients(zip(grads, nuisance_variables))
        return self._update_metrics(terms, y, z_s, nuisance_logits)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        terms, z_s, _, nuisance_logits = self._terms(x, y, training=False)
        return self._update_metrics(terms, y, z_s, nuisance_logits)

    def _update_metrics(self, terms, y, z_s, nuisance_logits):
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        self.accuracy.update_state(y, z_s)
        self.nuisance_accuracy.update_state(y, nuisance_logits)
        if self.num_levels:
            self.bits_per_dim.update_state(terms["mle"] / math.log(2.0) + math.log2(self.num_levels))
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces multi-worker logs with strategy.reduce("MEAN", axis=0): give
            # them an axis of length 1 to reduce over (the result is the scalar again).
            logs = {name: value[None] for name, value in logs.items()}
        return logs
