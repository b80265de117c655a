"""Oracles o(x): the label a point "really" has, to judge metamers (paper, Definition 2).

A metamer keeps the classifier's logits by construction; whether it still shows the class the
classifier reports must be judged by something else, the oracle:

* Spheres: the exact rule of the data, outer iff |x| > (R1 + R2) / 2 (`data.spheres.oracle`),
  exact everywhere in R^d, also off the spheres.
* Images: a standard Keras CNN trained separately on the training split (a stand-in for the
  human observer of the paper's figures 4 and 6). It is saved as a `.keras` file in a cache
  directory and reused by every later evaluation with the same settings. Its accuracy on the
  evaluation data is reported beside every attack rate, since a rate can only be as good as
  the oracle.

An oracle is a callable `oracle(x) -> int labels (numpy)` with a `description` string.
"""

import os

import keras
import numpy as np

from invertible_keras import data
from invertible_keras.run_dir import atomic_path
from invertible_keras.data import spheres

CACHE_ENV = "INVERTIBLE_KERAS_CACHE"


class SpheresOracle:
    """The exact rule on the norm, outer (1) iff |x| > (R1 + R2) / 2.

    Args:
        radii: `(R1, R2)`.
    """

    def __init__(self, radii=(1.0, 10.0)):
        self.radii = tuple(float(r) for r in radii)
        self.description = f"exact rule |x| > (R1 + R2) / 2, radii={self.radii}"

    def __call__(self, x):
        return spheres.oracle(np.asarray(x), self.radii)


class CNNOracle:
    """A trained Keras CNN classifier used as the oracle of an image data set.

    Args:
        model: a Keras model mapping images to class logits.
        path: the `.keras` file it was loaded from or saved to.
    """

    def __init__(self, model, path):
        self.model, self.path = model, str(path)
        self.description = f"Keras CNN {self.path}"

    def __call__(self, x, batch_size=1024):
        logits = self.model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
        return np.argmax(logits, axis=-1).astype(np.int32)


def default_cache_dir():
    """`$INVERTIBLE_KERAS_CACHE`, else `~/.cache/invertible_keras`."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "invertible_keras")


def cnn_classifier(input_shape, num_classes):
    """A standard small CNN (two conv blocks, a dense layer), unbuilt and uncompiled."""
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(num_classes),
    ], name="oracle_cnn")


def cnn_oracle(data_config, cache_dir=None, epochs=2, steps_per_epoch=None, batch_size=128,
               learning_rate=1e-3, seed=0):
    """Loads the cached CNN oracle of a data set, or trains and caches it first.

    The file is `<cache_dir>/oracles/<name>_cnn_e<epochs>[_s<steps>].keras`, so different
    training settings never share a file. It is written atomically (a temporary file renamed),
    so concurrent evaluations never read a half-written oracle.

    Args:
        data_config: the run's `config.data`; the oracle trains on its training split with its
            augmentations (dequantisation, shifts), batch size replaced by `batch_size`.
        cache_dir: where oracles are kept; None: `default_cache_dir()`.
        epochs: passes over the training split.
        steps_per_epoch: None for full passes; an int for a short run (tests).
        batch_size, learning_rate: Adam training settings.
        seed: seeds initialisation and data order.

    Returns:
        A `CNNOracle`.
    """
    name = data_config["name"]
    suffix = f"_s{steps_per_epoch}" if steps_per_epoch else ""
    directory = os.path.join(cache_dir or default_cache_dir(), "oracles")
    path = os.path.join(directory, f"{name}_cnn_e{epochs}{suffix}.keras")
    if os.path.exists(path):
        return CNNOracle(keras.saving.load_model(path), path)

    keras.utils.set_random_seed(seed)
    train_config = dict(data_config.to_dict() if hasattr(data_config, "to_dict") else data_config)
    train_config["batch_size"] = batch_size
    train_ds = data.load_dataset(train_config, "train", training=True)
    steps_per_epoch = steps_per_epoch or data.batches_per_pass(train_config)
    model = cnn_classifier(data.input_shape(train_config), data.num_classes(name))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    os.makedirs(directory, exist_ok=True)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return CNNOracle(model, path)


def make_oracle(data_config, cache_dir=None, epochs=2, steps_per_epoch=None):
    """The oracle of a run's data: the exact rule for spheres, the cached CNN for images."""
    if data_config["name"] == "spheres":
        return SpheresOracle(data_config.get("radii", (1.0, 10.0)))
    return cnn_oracle(data_config, cache_dir, epochs, steps_per_epoch)
