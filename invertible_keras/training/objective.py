"""The training objectives of a fiRevNet: CE, CE + MLE and iCE (paper, Section 4 and Definition 7).

    network.compile(optimizer=keras.optimizers.Adamax(1e-3),
                    loss=Objective("ice", beta=1.0, nuisance_optimizer=keras.optimizers.Adamax(1e-3)))
    network.fit(dataset, ...)

`FiRevNet.compile(loss=objective)` attaches the objective to the network: the prior over z
(`prior`, `priors.LatentPrior`) and the nuisance classifier D_phi (`nuisance_classifier`) are
created for that network and belong to it while it trains, and `FiRevNet.fit` runs the
objective's step. They are not Keras-tracked attributes of the network, so its weights, its
`.keras` file and its SavedModel export stay those of the pure bijection;
`run_dir.training_checkpoint` saves them beside it. Per batch (x, y), with one forward pass
z = F(x) (the authors' order):
  1. `nuisance_steps` steps of D_phi on L_nCE of the current batch's z_n, held constant
     (`tf.stop_gradient`): the adversary is fresh, not the one of the previous batch;
  2. one step of the network and the prior against that D_phi on
         L_sCE + beta * adversary + gamma * L_MLE        (kind="ice")
         L_sCE + gamma * L_MLE                           (kind="ce_mle", the control run)
         L_sCE                                           (kind="ce", the baseline)
With `nuisance_first=False` the two are swapped: the network steps against D_phi as the earlier
batches left it, so D_phi's predictions on this batch are those of a classifier on examples it
has not fitted, then D_phi takes its steps on this batch.
Under "ce" the prior and D_phi are still fitted (the prior on stop_gradient(z) and
stop_gradient(log-det)), so they never change the network and the likelihood and online
nuisance metrics stay comparable between the kinds.
beta is a variable (`adversary_weight`) that `AdversaryWarmup` ramps up. Every term is averaged
over the global batch (`tf.nn.compute_average_loss`), so N replicas of a `tf.distribute`
strategy make the same update as one device.
"""

import math

import keras
import tensorflow as tf

from invertible_keras.models.nuisance_mlp import nuisance_classifier
from invertible_keras.training import losses
from invertible_keras.training.priors import LatentPrior

KINDS = ("ce", "ce_mle", "ice")


class Objective:
    """CE, CE + MLE or iCE, with the prior and nuisance classifier it trains beside the network.

    Args:
        kind: "ice", "ce_mle" or "ce".
        nuisance_optimizer: updates D_phi only (default: Adamax 1e-3, the authors').
        beta: weight of the adversarial term (iCE only); the initial value of
            `adversary_weight`, which `AdversaryWarmup` may change while training.
        gamma: weight of L_MLE (iCE and CE + MLE).
        adversary: one of `losses.ADVERSARIES`.
        nuisance_steps: steps of D_phi per batch.
        nuisance_first: D_phi's steps on a batch come before the network's step on it (the
            authors' order); False: after it.
        semantic_prior: density of z_s in L_MLE, one of `priors.SEMANTIC_PRIORS`.
        nuisance_hidden_units: widths of D_phi's ReLU layers.
        nuisance_dropout: dropout rate of D_phi's hidden layers.
        num_levels: quantisation levels of the data (256 for 8-bit images) to report bits per
            dim; None for continuous data (spheres).
    """

    def __init__(self, kind="ice", nuisance_optimizer=None, beta=1.0, gamma=1.0, adversary="uniform",
                 nuisance_steps=5, nuisance_first=True, semantic_prior="class_conditional",
                 nuisance_hidden_units=(512, 512, 512), nuisance_dropout=0.0, num_levels=None):
        if kind not in KINDS:
            raise ValueError(f"The objective must be one of {KINDS}. Received: {kind!r}")
        if adversary not in losses.ADVERSARIES:
            raise ValueError(f"`adversary` must be one of {losses.ADVERSARIES}. Received: adversary={adversary!r}")
        if not isinstance(nuisance_steps, int) or nuisance_steps < 1:
            raise ValueError(f"`nuisance_steps` must be a positive integer. Received: nuisance_steps={nuisance_steps!r}")
        if not (beta >= 0 and gamma >= 0):
            raise ValueError(f"`beta` and `gamma` must be non-negative. Received: beta={beta!r}, gamma={gamma!r}")
        self.kind, self.beta, self.gamma = kind, float(beta), float(gamma)
        self.adversary, self.nuisance_steps, self.num_levels = adversary, nuisance_steps, num_levels
        self.nuisance_first = bool(nuisance_first)
        self.nuisance_optimizer = nuisance_optimizer or keras.optimizers.Adamax(1e-3)
        self.semantic_prior = semantic_prior
        self.nuisance_hidden_units, self.nuisance_dropout = tuple(nuisance_hidden_units), nuisance_dropout
        self.network = None

    def attach(self, network):
        """Creates the prior, D_phi, the metrics and both optimizers' state for a compiled `network`.

        Called by `FiRevNet.compile` (under a strategy's scope when there is one).
        """
        if self.network is not None and self.network is not network:
            raise ValueError("This objective is attached to another network already; make one per network.")
        self.network = network
        self.num_classes, self.latent_dim = network.num_classes, network.latent_dim
        self.prior = LatentPrior(self.num_classes, self.latent_dim, semantic=self.semantic_prior, name="prior")
        self.nuisance_classifier = nuisance_classifier(self.num_classes, self.nuisance_hidden_units,
                                                       standardize=True, dropout=self.nuisance_dropout)
        self.nuisance_classifier.build((None, self.latent_dim - self.num_classes))
        self.adversary_weight = keras.Variable(self.beta, trainable=False, name="adversary_weight")
        names = ("loss", "semantic_ce", "nuisance_ce", "adversary", "mle")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.nuisance_accuracy = keras.metrics.SparseCategoricalAccuracy(name="nuisance_accuracy")
        self.bits_per_dim = keras.metrics.Mean(name="bits_per_dim")
        # Optimizer state up front: checkpoint restore, and variables under the strategy.
        network.optimizer.build(self.trainable_variables)
        self.nuisance_optimizer.build(self.nuisance_classifier.trainable_variables)

    @property
    def trainable_variables(self):
        """What the network's optimizer updates: the network's weights and the prior's."""
        return self.network.trainable_variables + self.prior.trainable_variables

    @property
    def variables(self):
        """Every variable the objective adds to training: the prior's, D_phi's, the adversary weight."""
        return self.prior.variables + self.nuisance_classifier.variables + [self.adversary_weight]

    @property
    def metrics(self):
        tracked = list(self.trackers.values()) + [self.accuracy, self.nuisance_accuracy]
        return tracked + ([self.bits_per_dim] if self.num_levels else [])

    def terms(self, z, log_det, y, training):
        """Per-example loss terms of the network step, and D_phi's logits, from z = F(x)."""
        z_n = z[:, self.num_classes:]
        nuisance_logits = self.nuisance_classifier(z_n, training=training)
        # The shuffle's seed is the step count: a resumed run draws the same permutations.
        step = tf.cast(self.network.optimizer.iterations, tf.int64)
        terms = {
            "semantic_ce": losses.cross_entropy(y, z[:, : self.num_classes]),
            "nuisance_ce": losses.cross_entropy(y, nuisance_logits),
            "adversary": losses.adversary(y, nuisance_logits, self.adversary,
                                          seed=tf.stack([tf.constant(0, tf.int64), step])),
        }
        if self.kind == "ce":  # the likelihood only fits the prior
            terms["mle"] = losses.mle(tf.stop_gradient(z), y, tf.stop_gradient(log_det), self.prior)
            terms["loss"] = terms["semantic_ce"] + terms["mle"]
        else:
            terms["mle"] = losses.mle(z, y, log_det, self.prior)
            terms["loss"] = terms["semantic_ce"] + self.gamma * terms["mle"]
        if self.kind == "ice":
            terms["loss"] += tf.cast(self.adversary_weight, z.dtype) * terms["adversary"]
        return terms, nuisance_logits

    def fit_nuisance_classifier(self, z_n, y):
        """`nuisance_steps` steps of D_phi on L_nCE(y, D_phi(z_n)) with z_n held constant."""
        z_n = tf.stop_gradient(z_n)
        variables = self.nuisance_classifier.trainable_variables
        for _ in range(self.nuisance_steps):
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(
                    losses.cross_entropy(y, self.nuisance_classifier(z_n, training=True)))
            self.nuisance_optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            z, log_det = self.network.forward_and_log_det(x, training=True)
            if self.nuisance_first:
                with tape.stop_recording():
                    self.fit_nuisance_classifier(z[:, self.num_classes:], y)
            # Automatic control dependencies order D_phi's reads here after (first) or before
            # (not first) its updates on this batch.
            terms, nuisance_logits = self.terms(z, log_det, y, training=True)
            loss = tf.nn.compute_average_loss(terms["loss"])
        if not self.nuisance_first:
            self.fit_nuisance_classifier(z[:, self.num_classes:], y)
        variables = self.trainable_variables
        self.network.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._update_metrics(terms, y, z, nuisance_logits)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        z, log_det = self.network.forward_and_log_det(x, training=False)
        terms, nuisance_logits = self.terms(z, log_det, y, training=False)
        return self._update_metrics(terms, y, z, nuisance_logits)

    def _update_metrics(self, terms, y, z, nuisance_logits):
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name])
        self.accuracy.update_state(y, z[:, : self.num_classes])
        self.nuisance_accuracy.update_state(y, nuisance_logits)
        if self.num_levels:
            self.bits_per_dim.update_state(terms["mle"] / math.log(2.0) + math.log2(self.num_levels))
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(self.network.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces multi-worker logs with strategy.reduce("MEAN", axis=0): give
            # them an axis of length 1 to reduce over (the result is the scalar again).
            logs = {name: value[None] for name, value in logs.items()}
        return logs


class AdversaryWarmup(keras.callbacks.Callback):
    """Ramps the adversary weight of a network's `Objective` up: D_phi trains alone first.

    beta(step) = beta * clip((step - start) / (end - start), 0, 1), with `step` the optimizer's
    iteration count (restored with a checkpoint, so a resumed run continues the ramp).

    Args:
        start: steps with beta = 0.
        end: the step from which beta has its full value (> start).
    """

    def __init__(self, start, end):
        super().__init__()
        if not 0 <= start < end:
            raise ValueError(f"Expected 0 <= start < end. Received: start={start!r}, end={end!r}")
        self.start, self.end = int(start), int(end)

    def weight(self, step, beta):
        return beta * min(1.0, max(0.0, (step - self.start) / (self.end - self.start)))

    def on_epoch_begin(self, epoch, logs=None):
        # One read of the step count per epoch, not a device-to-host copy every batch.
        self._epoch_start = int(self.model.optimizer.iterations.numpy())
        self._assigned = None

    def on_train_batch_begin(self, batch, logs=None):
        objective = self.model.objective
        weight = self.weight(self._epoch_start + batch, objective.beta)
        if weight != self._assigned:  # constant before the ramp and after it
            objective.adversary_weight.assign(weight)
            self._assigned = weight
