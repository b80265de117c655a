"""The loss terms of cross-entropy and independence cross-entropy (iCE) training.

For a batch (x, y), z = F(x), z_s = z[:, :C], z_n = z[:, C:], d = dim(z) (paper, Def. 7):

    L_sCE  = CE(y, softmax(z_s))                                  semantic cross-entropy
    L_nCE  = CE(y, D_phi(z_n))                                    nuisance cross-entropy
    L_MLE  = -( log p(z_n; mu, sigma) + log|det J_F(x)| ) / d     nuisance likelihood

    network and prior:    min  L_sCE + adversary + gamma * L_MLE
    nuisance classifier:  min  L_nCE  on stop_gradient(z_n)

The adversary term has two forms (`adversary`):
    "negative":  -beta * L_nCE                     the paper's Definition 7 (unbounded below)
    "shuffled":  +beta * CE(y_shuffled, D_phi(z_n))  the authors' public code: push D_phi's
                 prediction towards labels drawn independently of x (bounded).

Every function returns per-example values, shape (batch,): the caller reduces them over the
global batch (`tf.nn.compute_average_loss`) so that N replicas make the same update as one.
"""

import keras
import tensorflow as tf

ADVERSARIES = ("shuffled", "negative")


def cross_entropy(labels, logits):
    """Per-example sparse categorical cross-entropy from logits."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def mle(z_n, log_det, prior, dim):
    """L_MLE per example: negative log-likelihood of z_n under `prior`, plus log-det, per dim."""
    return -(prior.log_prob(z_n) + log_det) / float(dim)


def adversary(labels, nuisance_logits, form, seed=None):
    """The network's adversarial term against the nuisance classifier, per example (unweighted)."""
    if form == "negative":
        return -cross_entropy(labels, nuisance_logits)
    if form == "shuffled":
        return cross_entropy(tf.random.shuffle(labels, seed=seed), nuisance_logits)
    raise ValueError(f"`adversary` must be one of {ADVERSARIES}. Received: adversary={form!r}")
