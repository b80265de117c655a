"""Adversarial spheres (Gilmer et al. 2018; paper section 4.1, example 6).

Two concentric spheres in R^d with radii R1 < R2. An example is

    x = r * u,    u = g / |g|,  g ~ N(0, I_d),    r = R1 if y = 0 else R2,

so u is uniform on the unit sphere (the normalised standard Gaussian is rotation invariant) and
|x| = r exactly. The label says which sphere: 0 inner, 1 outer. The paper uses d = 100,
R1 = 1, R2 = 10 and 500k training samples.

Sampling is stateless: example i of a data set with seed s is drawn from the Philox key
`fold_in((s0, s1), i // chunk)`, so the same arguments always give the same data, in any
tf.data parallelism, and different seeds give independent data (use different seeds for train
and test). Labels alternate 0, 1, 0, 1, ... by index, so every data set is balanced (exactly for
an even size); shuffle it for training.

The Bayes-optimal classifier (`oracle`) is the exact rule on the norm: outer iff
|x| > (R1 + R2) / 2.
"""

import numpy as np
import tensorflow as tf

from invertible_keras.data.checks import is_int

# Examples are generated in chunks of this many rows, one Philox key per chunk: one vectorised
# op per chunk instead of one per example. Changing it changes the data drawn for a seed.
_CHUNK_SIZE = 1024


def spheres_dataset(num_samples, dim=100, radii=(1.0, 10.0), seed=0):
    """Returns the adversarial spheres data set as an unbatched `tf.data.Dataset`.

    Args:
        num_samples: positive int, number of examples.
        dim: positive int, the dimension d of the ambient space R^d.
        radii: pair `(R1, R2)` of finite floats with `0 < R1 < R2`.
        seed: int, or a pair of ints (a stateless seed). The same seed gives the same data;
            use different seeds for train and test.

    Returns:
        A dataset of `(x, y)`: `x` float32 of shape `(dim,)` with `|x|` equal to `R1` (y = 0)
        or `R2` (y = 1), `y` int32 scalar. Labels alternate by index, so the classes are
        balanced.

    Raises:
        ValueError: if an argument is out of range.
    """
    num_samples = _check_positive_int("num_samples", num_samples)
    dim = _check_positive_int("dim", dim)
    inner, outer = _check_radii(radii)
    key = _check_seed(seed)
    radius_of_label = tf.constant([inner, outer], tf.float32)

    def make_chunk(chunk_index):
        start = chunk_index * _CHUNK_SIZE
        indices = tf.range(start, tf.minimum(start + _CHUNK_SIZE, num_samples))
        chunk_key = tf.random.experimental.stateless_fold_in(key, chunk_index)
        g = tf.random.stateless_normal([tf.size(indices), dim], seed=chunk_key, dtype=tf.float32)
        u = tf.math.l2_normalize(g, axis=-1)
        y = tf.cast(indices % 2, tf.int32)
        x = u * tf.gather(radius_of_label, y)[:, tf.newaxis]
        return tf.data.Dataset.from_tensor_slices((x, y))

    num_chunks = -(-num_samples // _CHUNK_SIZE)
    dataset = tf.data.Dataset.range(num_chunks).flat_map(make_chunk)
    return dataset.apply(tf.data.experimental.assert_cardinality(num_samples))


def oracle(x, radii=(1.0, 10.0)):
    """Labels points with the exact rule of the spheres: outer iff |x| > (R1 + R2) / 2.

    Args:
        x: numpy array or tensor of shape `(..., d)`; the norm is taken over the last axis.
        radii: pair `(R1, R2)` with `0 < R1 < R2`.

    Returns:
        int32 labels of shape `x.shape[:-1]` (1 outer, 0 inner): a tensor for a tensor input,
        a numpy array otherwise.

    Raises:
        ValueError: if `radii` is not a valid pair.
    """
    inner, outer = _check_radii(radii)
    threshold = 0.5 * (inner + outer)
    if tf.is_tensor(x):
        return tf.cast(tf.norm(x, axis=-1) > threshold, tf.int32)
    return (np.linalg.norm(np.asarray(x), axis=-1) > threshold).astype(np.int32)


def _check_positive_int(name, value):
    if not is_int(value) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_radii(radii):
    try:
        inner, outer = (float(r) for r in radii)
    except (TypeError, ValueError):
        raise ValueError(
            f"`radii` must be a pair of floats (R1, R2). Received: radii={radii!r}"
        ) from None
    if not (np.isfinite(inner) and np.isfinite(outer) and 0.0 < inner < outer):
        raise ValueError(f"`radii` must satisfy 0 < R1 < R2 < inf. Received: radii={radii!r}")
    return inner, outer


def _check_seed(seed):
    """Turns an int or a pair of ints into a stateless seed of shape (2,)."""
    pair = (seed, 0) if is_int(seed) else seed
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(map(is_int, pair))):
        raise ValueError(f"`seed` must be an int or a pair of ints. Received: seed={seed!r}")
    return tf.constant([int(s) for s in pair], tf.int64)
