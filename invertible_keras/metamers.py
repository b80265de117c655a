"""Metameric sampling (Jacobsen et al., ICLR 2019, section 3).

For a fully invertible classifier z = F(x) = [z_s, z_n], a metamer of a and b is

    x_met = F^-1(z_s(a), z_n(b)):

it has exactly a's logits (F(x_met)[:C] = z_s(a), so the classifier cannot tell it from a) and
every other latent variable of b. No optimisation is needed. An interpolation keeps z_s(a) and
moves the nuisances along the straight line

    z_n(t) = (1 - t) z_n(a) + t z_n(b),   t = 0, 1/(steps-1), ..., 1,

so every image of the path has a's logits (paper figure 6).

This module is the one place a metamer is computed: the SavedModel's `metamer` endpoint, the
TensorBoard grids and every measurement (`metamers_in_batches`) call it.
"""

import numpy as np
import tensorflow as tf


def metamer(model, x_a, x_b):
    """Returns `decode(z_s(x_a), z_n(x_b))` for a batch of pairs, in inference mode.

    Args:
        model: a `FiRevNet` (anything with `encode(x) -> (z_s, z_n)` and `decode(z_s, z_n)`).
        x_a: inputs whose logits the metamers keep, shape `(batch, *input_shape)`.
        x_b: inputs whose nuisances the metamers take, same shape as `x_a`.

    Returns:
        Metamers of shape `(batch, *input_shape)`.
    """
    x_a, x_b = _check_pair(x_a, x_b)
    z_s, _ = model.encode(x_a)
    _, z_n = model.encode(x_b)
    return model.decode(z_s, z_n)


def metamers_in_batches(model, x_a, x_b, batch_size=256):
    """`metamer` over numpy arrays of pairs, `batch_size` pairs per call; returns a numpy array.

    Args:
        model: a `FiRevNet`, or anything with `encode` and `decode` (e.g. an
            `analysis.network.Network` of a SavedModel).
        x_a, x_b: numpy arrays of the same shape `(n, *input_shape)`.
        batch_size: pairs per call of the model.
    """
    if len(x_a) != len(x_b):
        raise ValueError(f"x_a and x_b must hold the same number of examples. Received: {len(x_a)} and {len(x_b)}")
    return np.concatenate([np.asarray(metamer(model, tf.constant(x_a[i:i + batch_size]),
                                              tf.constant(x_b[i:i + batch_size])))
                           for i in range(0, len(x_a), batch_size)])


def interpolate(model, x_a, x_b, steps):
    """Decodes z_s(x_a) with nuisances moving linearly from z_n(x_a) to z_n(x_b).

    Args:
        model: a `FiRevNet`.
        x_a: inputs whose logits are kept, shape `(batch, *input_shape)`.
        x_b: inputs whose nuisances are the end of the path, same shape as `x_a`.
        steps: number of points on the path (>= 2), ends included: step 0 reconstructs x_a and
            step `steps - 1` is `metamer(model, x_a, x_b)`.

    Returns:
        Images of shape `(batch, steps, *input_shape)`.
    """
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"`steps` must be an integer >= 2 (both ends included). Received: steps={steps!r}")
    x_a, x_b = _check_pair(x_a, x_b)
    z_s, z_n_a = model.encode(x_a)
    _, z_n_b = model.encode(x_b)
    t = tf.reshape(tf.linspace(tf.constant(0.0, z_n_a.dtype), 1.0, steps), [1, steps, 1])
    z_n = (1.0 - t) * z_n_a[:, None, :] + t * z_n_b[:, None, :]  # (batch, steps, d - C)
    z_s = tf.repeat(z_s[:, None, :], steps, axis=1)
    x = model.decode(tf.reshape(z_s, [-1, z_s.shape[-1]]), tf.reshape(z_n, [-1, z_n.shape[-1]]))
    return tf.reshape(x, tf.concat([[-1, steps], tf.shape(x)[1:]], axis=0))


def _check_pair(x_a, x_b):
    """Checks that x_a and x_b have the same shape (batch included)."""
    x_a, x_b = tf.convert_to_tensor(x_a), tf.convert_to_tensor(x_b)
    if x_a.shape.rank != x_b.shape.rank or not x_a.shape.is_compatible_with(x_b.shape):
        raise ValueError(
            "x_a and x_b must have the same shape (one pair per example). "
            f"Received x_a shape {tuple(x_a.shape)} and x_b shape {tuple(x_b.shape)}."
        )
    if x_a.shape[0] is None or x_b.shape[0] is None:
        # Traced with an unknown batch size (e.g. a SavedModel endpoint): check at run time.
        tf.debugging.assert_equal(
            tf.shape(x_a)[0], tf.shape(x_b)[0],
            message="metamers: x_a and x_b must have the same batch size",
        )
    return x_a, x_b
