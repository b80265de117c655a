"""A trained fiRevNet as the analysis sees it: `encode`, `decode`, in batches, as numpy.

Every analysis in this package needs only the bijection z = F(x) = [z_s, z_n] (paper,
section 3) through two functions

    encode(x)        -> (z_s, z_n)       z_s: (batch, C) logits, z_n: (batch, d - C)
    decode(z_s, z_n) -> x = F^-1([z_s, z_n])

which a `FiRevNet`, a SavedModel written by `invertible_keras.export` (loaded with
`tf.saved_model.load`) and `Network` below all provide. The classifier D is argmax softmax of
z_s, so its label is `argmax z_s`.

`Network` wraps either source into `tf.function`s with a `None` batch axis (one trace for all
batch sizes) and knows its shapes; the helpers apply any such network in batches and return
numpy arrays.
"""

import math

import numpy as np
import tensorflow as tf


class Network:
    """`encode` / `decode` of a fiRevNet with its shapes, from a model or a SavedModel.

    Args:
        encode: function `x -> (z_s, z_n)`.
        decode: function `(z_s, z_n) -> x`.
        input_shape: shape of one input, without the batch axis.
        num_classes: C, the width of z_s.
        source: a short description of where the network came from (for reports).
        nuisance_parts: `{name: (start, stop)}` column ranges of z_n by part of z
            (`FiRevNet.nuisance_parts`), or None when unknown.
    """

    def __init__(self, encode, decode, input_shape, num_classes, source, nuisance_parts=None):
        self.encode, self.decode = encode, decode
        self.nuisance_parts = nuisance_parts
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.latent_dim = math.prod(self.input_shape)
        self.num_nuisances = self.latent_dim - self.num_classes
        self.source = source

    @classmethod
    def from_model(cls, model, source="model"):
        """Wraps a built `FiRevNet` (inference mode) into traced functions."""
        x_spec = tf.TensorSpec((None, *model.input_shape), model.compute_dtype)
        z_s_spec = tf.TensorSpec((None, model.num_classes), model.compute_dtype)
        z_n_spec = tf.TensorSpec((None, model.num_nuisances), model.compute_dtype)
        return cls(tf.function(model.encode, input_signature=[x_spec]),
                   tf.function(model.decode, input_signature=[z_s_spec, z_n_spec]),
                   model.input_shape, model.num_classes, source, model.nuisance_parts)

    @classmethod
    def from_saved_model(cls, directory):
        """Loads a SavedModel written by `invertible_keras.export.export_saved_model`.

        Needs only TensorFlow: the shapes are read from the endpoints' input signatures.
        """
        loaded = tf.saved_model.load(str(directory))
        missing = [name for name in ("encode", "decode") if not hasattr(loaded, name)]
        if missing:
            raise ValueError(f"The SavedModel in {directory} has no endpoint(s) {missing}; expected the "
                             "endpoints logits, encode, decode, metamer of invertible_keras.export.")
        input_shape = loaded.encode.input_signature[0].shape[1:]
        num_classes = loaded.decode.input_signature[0].shape[-1]
        parts = ({name: tuple(int(v) for v in bounds) for name, bounds in loaded.nuisance_parts().items()}
                 if hasattr(loaded, "nuisance_parts") else None)  # exports before it had the endpoint
        network = cls(loaded.encode, loaded.decode, input_shape, num_classes, f"export:{directory}", parts)
        network.loaded = loaded  # keeps the restored variables alive
        return network


def encode(network, x, batch_size=256):
    """Returns `(z_s, z_n)` of `x` as numpy arrays, computed `batch_size` examples at a time."""
    parts = [network.encode(tf.constant(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return (np.concatenate([np.asarray(p[0]) for p in parts]),
            np.concatenate([np.asarray(p[1]) for p in parts]))


def decode(network, z_s, z_n, batch_size=256):
    """Returns `decode(z_s, z_n)` as a numpy array, computed `batch_size` examples at a time."""
    if len(z_s) != len(z_n):
        raise ValueError(f"z_s and z_n must hold the same number of examples. "
                         f"Received: {len(z_s)} and {len(z_n)}")
    return np.concatenate([np.asarray(network.decode(tf.constant(z_s[i:i + batch_size]),
                                                     tf.constant(z_n[i:i + batch_size])))
                           for i in range(0, len(z_s), batch_size)])


def predict(network, x, batch_size=256):
    """Labels of the logit classifier D(x) = argmax z_s(x) (there is no final linear layer)."""
    return np.argmax(encode(network, x, batch_size)[0], axis=-1)


def take_examples(dataset, num_examples):
    """Reads the first `num_examples` `(x, y)` of a batched dataset (all: None or fewer held).

    Returns:
        Numpy arrays `(x, y)`; `len(y)` is the number actually read.
    """
    xs, ys, count = [], [], 0
    for x, y in dataset:
        xs.append(np.asarray(x))
        ys.append(np.asarray(y))
        count += len(ys[-1])
        if num_examples is not None and count >= num_examples:
            break
    if not ys:
        raise ValueError("The dataset is empty; expected examples to evaluate.")
    return np.concatenate(xs)[:num_examples], np.concatenate(ys)[:num_examples]
