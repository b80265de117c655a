"""Post-hoc nuisance classifier: how much class information hides in z_n (paper, Table 2).

The network F is frozen. A fresh MLP D_nc (3 ReLU layers, `models.nuisance_classifier`) is
trained with Adam on the cross-entropy of the labels from the nuisances of the training set,

    min_phi  E_(x, y) ~ train  CE(y, D_nc(z_n(x))),

and its error on the test set is the measure of Table 2: a low error means z_n carries the
label (cross-entropy training: 0.34 % on MNIST), an error near chance means it does not (iCE:
27.70 %). Its cross-entropy is a variational lower bound on I(y; z_n) (paper, appendix A,
Lemma 9), so a better-trained classifier can only reveal more information.

Before the MLP, z_n is standardised per dimension with the training set's mean and variance
(a fixed `keras.layers.Normalization`). It is an invertible affine map, so it removes no
information; it only spares Adam the arbitrary scale of the nuisances of a cross-entropy
network (the iCE prior pulls them to a learned Gaussian, CE does not).
"""

import keras
import numpy as np

from invertible_keras.analysis import network as network_lib
from invertible_keras.models.nuisance import nuisance_classifier


def fit_nuisance_classifier(z_n, y, num_classes, hidden_units=(512, 512, 512), epochs=10,
                            batch_size=128, learning_rate=1e-3, standardize=True, seed=0):
    """Trains a fresh nuisance classifier on `(z_n, y)` and returns it.

    Args:
        z_n: float array `(n, d - C)`, the nuisances of the (frozen) network's training set.
        y: int array `(n,)` of labels in `[0, num_classes)`.
        num_classes: C.
        hidden_units: widths of the ReLU layers (paper: 3 x 1000 for spheres, 3 x 512 for
            images; `config.ice.nuisance_hidden_units`).
        epochs: passes over `(z_n, y)`.
        batch_size: examples per Adam step.
        learning_rate: Adam's learning rate.
        standardize: standardise z_n per dimension first (see the module docstring).
        seed: seeds the initialisation and the shuffling (through `keras.utils.set_random_seed`,
            which also seeds Python's, numpy's and TensorFlow's global generators).

    Returns:
        A `keras.Sequential` mapping raw z_n `(batch, d - C)` to logits `(batch, C)`.
    """
    z_n, y = np.asarray(z_n, np.float32), np.asarray(y)
    if z_n.ndim != 2 or len(z_n) != len(y):
        raise ValueError(f"Expected z_n of shape (n, d - C) and y of shape (n,). "
                         f"Received: z_n shape {z_n.shape}, y shape {y.shape}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    keras.utils.set_random_seed(seed)
    layers = []
    if standardize:
        normalization = keras.layers.Normalization(axis=-1, name="standardize_z_n")
        normalization.adapt(z_n)
        layers.append(normalization)
    mlp = nuisance_classifier(num_classes, tuple(hidden_units))
    classifier = keras.Sequential(layers + [mlp], name="posthoc_nuisance_classifier")
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(z_n, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    return classifier


def classification_error(classifier, z_n, y, batch_size=1024):
    """Fraction of `(z_n, y)` that `classifier` labels wrongly (argmax of its logits)."""
    logits = classifier.predict(np.asarray(z_n, np.float32), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) != np.asarray(y)))


def posthoc_nuisance_error(network, x_train, y_train, x_test, y_test, hidden_units=(512, 512, 512),
                           epochs=10, batch_size=128, learning_rate=1e-3, seed=0):
    """Trains a nuisance classifier on z_n of `x_train` and measures its error (Table 2).

    Args:
        network: anything with `encode(x) -> (z_s, z_n)` (see `analysis.network`).
        x_train, y_train: the training examples (numpy) the classifier is fitted on.
        x_test, y_test: the held-out examples its test error is measured on.
        hidden_units, epochs, batch_size, learning_rate, seed: see `fit_nuisance_classifier`.

    Returns:
        `(classifier, {"train": error, "test": error})`, errors as fractions in [0, 1].
    """
    z_s_train, z_n_train = network_lib.encode(network, x_train)
    _, z_n_test = network_lib.encode(network, x_test)
    num_classes = z_s_train.shape[-1]  # C logits, C classes
    classifier = fit_nuisance_classifier(z_n_train, y_train, num_classes, hidden_units, epochs, batch_size,
                                         learning_rate, seed=seed)
    errors = {"train": classification_error(classifier, z_n_train, y_train),
              "test": classification_error(classifier, z_n_test, y_test)}
    return classifier, errors
