"""Invertibility error |F^-1(F(x)) - x|, in and out of distribution.

A fiRevNet is a bijection by construction (paper, section 3), so decode(encode(x)) = x up to
floating point error for every x, not only for the data. Metameric sampling relies on that
twice: F^-1 must be exact at latent codes the network never saw during training, and the
metamer must map back to the latent code it was built from. This module measures

    max |F^-1(F(x)) - x|   and   mean |F^-1(F(x)) - x|    (over examples and entries)

on three sets: held-out data, out-of-distribution uniform noise (every entry uniform between
the data's smallest and largest value, e.g. [0, 1] for images, [-R2, R2] for spheres) and
metamers decode(z_s(a), z_n(b)) of data pairs.
"""

import numpy as np

from invertible_keras.analysis import network as network_lib
from invertible_keras.metamers import metamers_in_batches


def reconstruction_error(network, x, batch_size=256):
    """Returns `{"max": ..., "mean": ...}` of |decode(encode(x)) - x| over all entries."""
    z_s, z_n = network_lib.encode(network, x, batch_size)
    error = np.abs(network_lib.decode(network, z_s, z_n, batch_size) - x)
    return {"max": float(np.max(error)), "mean": float(np.mean(error))}


def invertibility_errors(network, x, seed=0, batch_size=256):
    """Reconstruction errors on data, uniform noise and metamers.

    Args:
        network: anything with `encode` and `decode` (see `analysis.network`).
        x: held-out examples (numpy), at least 2.
        seed: seed of the noise and of the metamer pairing.
        batch_size: examples per call of the network.

    Returns:
        `{"test": {"max", "mean"}, "noise": {...}, "metamer": {...}}` ("test": the given
        held-out examples).
    """
    x = np.asarray(x, np.float32)
    if len(x) < 2:
        raise ValueError(f"Need at least 2 examples to pair metamers. Received: {len(x)} examples")
    rng = np.random.default_rng(seed)
    noise = rng.uniform(float(x.min()), float(x.max()), x.shape).astype(np.float32)
    partner = x[rng.permutation(len(x))]
    x_met = metamers_in_batches(network, x, partner, batch_size)
    return {
        "test": reconstruction_error(network, x, batch_size),
        "noise": reconstruction_error(network, noise, batch_size),
        "metamer": reconstruction_error(network, x_met, batch_size),
    }
