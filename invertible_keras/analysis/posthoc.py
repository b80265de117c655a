"""Post-hoc nuisance classifier: how much class information hides in z_n (paper, Table 2).

The network F is frozen. A fresh MLP D_nc (3 ReLU layers, `models.nuisance_classifier`) is
trained with Adam on the cross-entropy of the labels from the nuisances of the training set,

    min_phi  E_(x, y) ~ train  CE(y, D_nc(z_n(x))),

with early stopping on a held-out validation slice of the training set (the weights of the
epoch with the lowest validation loss are kept), and its error on the test set is the measure
of Table 2, repeated over several seeds (mean and standard deviation): a low error means z_n carries the
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
from invertible_keras.models.nuisance_mlp import nuisance_classifier


def fit_nuisance_classifier(z_n, y, num_classes, hidden_units=(512, 512, 512), max_epochs=30,
                            batch_size=256, learning_rate=1e-3, validation_size=5_000, patience=3,
                            standardize=True, seed=0):
    """Trains a fresh nuisance classifier on `(z_n, y)`, early-stopped, and returns it.

    Args:
        z_n: float array `(n, k)`, nuisances (or any features) of the training set.
        y: int array `(n,)` of labels in `[0, num_classes)`.
        num_classes: C.
        hidden_units: widths of the ReLU layers (paper: 3 x 1000 for spheres, 3 x 512 for
            images; `config.ice.nuisance_hidden_units`).
        max_epochs: at most this many passes over the training part.
        batch_size: examples per Adam step.
        learning_rate: Adam's learning rate.
        validation_size: examples held out (a random slice, drawn with `seed`) for early
            stopping; at most a fifth of `n`.
        patience: epochs without a lower validation loss before stopping.
        standardize: standardise z_n per dimension first (see the module docstring).
        seed: seeds the slice, the initialisation and the shuffling (through
            `keras.utils.set_random_seed`).

    Returns:
        A `keras.Sequential` mapping raw z_n `(batch, k)` to logits `(batch, C)`.
    """
    z_n, y = np.asarray(z_n, np.float32), np.asarray(y)
    if z_n.ndim != 2 or len(z_n) != len(y):
        raise ValueError(f"Expected z_n of shape (n, k) and y of shape (n,). "
                         f"Received: z_n shape {z_n.shape}, y shape {y.shape}")
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"`max_epochs` must be a positive integer. Received: max_epochs={max_epochs!r}")
    keras.utils.set_random_seed(seed)
    order = np.random.default_rng(seed).permutation(len(y))
    held_out = min(int(validation_size), len(y) // 5)
    val, fit = order[:held_out], order[held_out:]
    layers = []
    if standardize:
        normalization = keras.layers.Normalization(axis=-1, name="standardize_z_n")
        normalization.adapt(z_n[fit])
        layers.append(normalization)
    mlp = nuisance_classifier(num_classes, tuple(hidden_units))
    classifier = keras.Sequential(layers + [mlp], name="posthoc_nuisance_classifier")
    classifier.compile(optimizer=keras.optimizers.Adam(learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    classifier.fit(z_n[fit], y[fit], batch_size=batch_size, epochs=max_epochs, shuffle=True, verbose=0,
                   validation_data=(z_n[val], y[val]) if held_out else None, callbacks=[stop] if held_out else [])
    return classifier


def classification_error(classifier, z_n, y, batch_size=1024):
    """Fraction of `(z_n, y)` that `classifier` labels wrongly (argmax of its logits)."""
    logits = classifier.predict(np.asarray(z_n, np.float32), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) != np.asarray(y)))


def posthoc_error(features_train, y_train, features_test, y_test, num_classes, seeds=(0, 1, 2), **fit_kwargs):
    """Post-hoc classifier error of features (z_n, a part of it, or pixels), over seeds.

    Args:
        features_train, y_train: the training split's features and labels.
        features_test, y_test: the test split's.
        num_classes: C.
        seeds: one classifier per seed.
        **fit_kwargs: passed to `fit_nuisance_classifier`.

    Returns:
        `(classifier of the first seed, {"test": mean, "test_sd": sd, "test_per_seed": [...],
        "train": mean, "train_sd": sd})`, errors as fractions.
    """
    classifiers, errors = [], {"train": [], "test": []}
    for seed in seeds:
        classifier = fit_nuisance_classifier(features_train, y_train, num_classes, seed=seed, **fit_kwargs)
        classifiers.append(classifier)
        errors["train"].append(classification_error(classifier, features_train, y_train))
        errors["test"].append(classification_error(classifier, features_test, y_test))
    summary = {}
    for split, values in errors.items():
        summary[split], summary[f"{split}_sd"] = float(np.mean(values)), float(np.std(values))
    summary["test_per_seed"] = errors["test"]
    return classifiers[0], summary


def posthoc_nuisance_error(network, x_train, y_train, x_test, y_test, parts=None, seeds=(0, 1, 2), **fit_kwargs):
    """Trains nuisance classifiers on z_n of `x_train` and measures their error (Table 2).

    Args:
        network: anything with `encode(x) -> (z_s, z_n)` (see `analysis.network`).
        x_train, y_train: the training examples (numpy) the classifiers are fitted on.
        x_test, y_test: the held-out examples their test error is measured on.
        parts: optional `{name: (start, stop)}` column ranges of z_n measured separately too
            (`FiRevNet.nuisance_parts`: the last stage's non-logit entries, each factored-out
            scale); only with more than one part.
        seeds: one classifier per seed (mean and sd are reported).
        **fit_kwargs: passed to `fit_nuisance_classifier`.

    Returns:
        `(classifier of the first seed, errors)`: errors as `posthoc_error`, plus `"parts"`
        `{name: errors}` when `parts` has more than one entry.
    """
    z_s_train, z_n_train = network_lib.encode(network, x_train)
    _, z_n_test = network_lib.encode(network, x_test)
    num_classes = z_s_train.shape[-1]  # C logits, C classes
    classifier, errors = posthoc_error(z_n_train, y_train, z_n_test, y_test, num_classes, seeds, **fit_kwargs)
    if parts and len(parts) > 1:
        errors["parts"] = {name: posthoc_error(z_n_train[:, a:b], y_train, z_n_test[:, a:b], y_test, num_classes,
                                               seeds, **fit_kwargs)[1]
                           for name, (a, b) in parts.items()}
    return classifier, errors
