"""The loss terms of cross-entropy and independence cross-entropy (iCE) training.

For a batch (x, y), z = F(x), z_s = z[:, :C], z_n = z[:, C:], d = dim(z) (paper, Def. 7):

    L_sCE  = CE(y, softmax(z_s))                                  semantic cross-entropy
    L_nCE  = CE(y, D_phi(z_n))                                    nuisance cross-entropy
    L_MLE  = -( log p(z | y) + log|det J_F(x)| ) / d              likelihood (`priors`)

    nuisance classifier:  min  L_nCE  on stop_gradient(z_n)      (first, `nuisance_steps` times)
    network and prior:    min  L_sCE + beta * adversary + gamma * L_MLE

The adversary term has three forms (`adversary`), all pushing D_phi's prediction from z_n away
from the true label:
    "negative":  -L_nCE                          the paper's Definition 7 (unbounded below)
    "shuffled":  CE(y_shuffled, D_phi(z_n))      the authors' public code: labels drawn
                 independently of x (bounded, noisy: the permutation is resampled each batch;
                 the Objective seeds it with the step count, so a resumed run draws the same)
    "uniform":   CE(uniform, D_phi(z_n))         = -mean_c log softmax(D_phi(z_n))_c: the
                 expected value of "shuffled" over label permutations with uniform classes,
                 deterministic (bounded below by log C).

Every function returns per-example values, shape (batch,): the caller reduces them over the
global batch (`tf.nn.compute_average_loss`) so that N replicas make the same update as one.
"""

import keras
import tensorflow as tf

ADVERSARIES = ("uniform", "shuffled", "negative")


def cross_entropy(labels, logits):
    """Per-example sparse categorical cross-entropy from logits."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def mle(z, y, log_det, prior):
    """L_MLE per example: -(log p(z | y) + log|det J|) / d, with `prior` a `LatentPrior`."""
    return -(prior.log_prob(z, y) + log_det) / float(z.shape[-1])


def adversary(labels, nuisance_logits, form, seed=None):
    """The network's adversarial term against the nuisance classifier, per example (unweighted).

    `seed` (shuffled only): a stateless seed, an int tensor of shape (2,), that fixes the
    permutation; None draws it from TensorFlow's stateful generator.
    """
    if form == "negative":
        return -cross_entropy(labels, nuisance_logits)
    if form == "shuffled":
        shuffled = (tf.random.shuffle(labels) if seed is None
                    else tf.random.experimental.stateless_shuffle(labels, seed=seed))
        return cross_entropy(shuffled, nuisance_logits)
    if form == "uniform":
        return -tf.reduce_mean(tf.nn.log_softmax(nuisance_logits), axis=-1)
    raise ValueError(f"`adversary` must be one of {ADVERSARIES}. Received: adversary={form!r}")
