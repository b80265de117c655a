"""Metamer attack rate: how often metameric sampling is an invariance-based adversarial example.

For a pair (a, b) with different labels y_a != y_b, the metamer (paper, section 3)

    x_met = F^-1(z_s(a), z_n(b))

has exactly a's logits, so the classifier D = argmax z_s says a's class. It is an
invariance-based adversarial example (paper, Definition 3 and section 2.1) when the oracle o
(Definition 2; `analysis.oracles`) says it belongs to b's class:

    success(a, b) = [D(x_met) = y_a] and [o(x_met) = y_b],
    attack rate   = mean of success over pairs.

D is evaluated on x_met itself, not assumed from the construction, so numerical error in the
inverse is accounted for. Metamers of images may leave the valid range [0, 1]; they are judged
as constructed (the paper's metamers) and once more clipped to the range, where D's decision
can change. A cross-entropy network, whose
z_n still encodes the class, lets b's class show through (high rate); an iCE network, whose z_n
holds little class information, keeps a's class in x_met (low rate).
"""

import numpy as np

from invertible_keras.analysis import network as network_lib
from invertible_keras.metamers import metamers_in_batches


def sample_pairs(y, num_pairs, seed=0):
    """Draws `num_pairs` index pairs (a, b) with `y[a] != y[b]`, a uniform, b uniform given a.

    Raises:
        ValueError: if `y` has fewer than two classes.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"Metamer pairs need examples of two classes at least. Received labels {classes}.")
    rng = np.random.default_rng(seed)
    idx_a = rng.integers(0, len(y), num_pairs)
    idx_b = np.empty_like(idx_a)
    for label in classes:
        mask = y[idx_a] == label
        others = np.flatnonzero(y != label)
        idx_b[mask] = others[rng.integers(0, len(others), int(mask.sum()))]
    return idx_a, idx_b


def wilson_interval(successes, trials, z=1.959964):
    """95 % Wilson score interval `(low, high)` of a binomial proportion (None without trials)."""
    if trials == 0:
        return None
    p, n = successes / trials, float(trials)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def metamer_attack(network, x, y, oracle, num_pairs=1000, seed=0, value_range=None, batch_size=256):
    """Measures the metamer attack rate on pairs drawn from `(x, y)`.

    The rate is taken over the pairs whose a and b the network classifies correctly (on the
    others a "success" says nothing about invariance), with a 95 % Wilson interval.

    Args:
        network: anything with `encode` and `decode` (see `analysis.network`).
        x, y: examples (numpy) and their labels.
        oracle: callable `x -> labels` (see `analysis.oracles`).
        num_pairs: number of (a, b) pairs drawn (before the restriction).
        seed: seed of the pairs.
        value_range: None, or `(low, high)` of valid inputs (images: `(0, 1)`). Metamers as
            constructed may leave it; they are judged as they are (the paper's metamers) and,
            under "clipped" (the headline for images: valid images), once more after clipping
            to the range, with D re-evaluated.
        batch_size: examples per call of the network.

    Returns:
        A dict with `rate` and `ci95` (over the correctly classified pairs), `num_scored` (how
        many), and, as fractions over those pairs, `network_keeps_a` (D(x_met) = y_a),
        `oracle_says_b`, `oracle_says_a`; `logit_change_max` (max |z_s(x_met) - z_s(a)|, float
        error only); `metamer_norm` (min, mean, max of |x_met|, for the spheres);
        `num_pairs`, `network_accuracy` (both of a pair correct) and `oracle_accuracy` (on
        the a's); and, with a `value_range`, `clipped`: the same measures on the clipped
        metamers.
    """
    x, y = np.asarray(x), np.asarray(y)
    idx_a, idx_b = sample_pairs(y, num_pairs, seed)
    x_a, y_a, y_b = x[idx_a], y[idx_a], y[idx_b]
    x_met = metamers_in_batches(network, x_a, x[idx_b], batch_size)
    z_s_a, _ = network_lib.encode(network, x_a, batch_size)
    z_s_b, _ = network_lib.encode(network, x[idx_b], batch_size)
    scored = (np.argmax(z_s_a, axis=-1) == y_a) & (np.argmax(z_s_b, axis=-1) == y_b)

    def judge(x_met):
        z_s_met, _ = network_lib.encode(network, x_met, batch_size)
        keeps_a = (np.argmax(z_s_met, axis=-1) == y_a)[scored]
        oracle_met = np.asarray(oracle(x_met))[scored]
        success = keeps_a & (oracle_met == y_b[scored])
        norms = np.linalg.norm(x_met.reshape(len(x_met), -1), axis=-1)
        mean = (lambda v: float(np.mean(v)) if len(v) else None)
        return {"rate": mean(success), "ci95": wilson_interval(int(success.sum()), len(success)),
                "num_scored": int(scored.sum()), "network_keeps_a": mean(keeps_a),
                "oracle_says_b": mean(oracle_met == y_b[scored]), "oracle_says_a": mean(oracle_met == y_a[scored]),
                "logit_change_max": float(np.max(np.abs(z_s_met - z_s_a))),
                "metamer_norm": [float(norms.min()), float(norms.mean()), float(norms.max())]}

    results = judge(x_met)
    results.update(num_pairs=int(num_pairs), network_accuracy=float(np.mean(scored)),
                   oracle_accuracy=float(np.mean(np.asarray(oracle(x_a)) == y_a)))
    if value_range is not None:
        results["clipped"] = judge(np.clip(x_met, *value_range))
    return results
