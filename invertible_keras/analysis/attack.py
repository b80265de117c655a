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


def metamer_attack(network, x, y, oracle, num_pairs=1000, seed=0, value_range=None, batch_size=256):
    """Measures the metamer attack rate on pairs drawn from `(x, y)`.

    Args:
        network: anything with `encode` and `decode` (see `analysis.network`).
        x, y: examples (numpy) and their labels.
        oracle: callable `x -> labels` (see `analysis.oracles`).
        num_pairs: number of (a, b) pairs.
        seed: seed of the pairs.
        value_range: None, or `(low, high)` of valid inputs (images: `(0, 1)`). Metamers as
            constructed may leave it; they are judged as they are (the paper's metamers) and,
            under "clipped", once more after clipping to the range, with D re-evaluated.
        batch_size: examples per call of the network.

    Returns:
        A dict with, as fractions over the pairs: `rate` (the attack rate), `network_keeps_a`
        (D(x_met) = y_a), `oracle_says_b`, `oracle_says_a`, `logit_change_max`
        (max |z_s(x_met) - z_s(a)|, float error only), `rate_given_a_correct` (the rate over
        the pairs whose a the network classifies correctly; None if there are none);
        `num_pairs`, `network_accuracy` and `oracle_accuracy` (on the a's); and, with a
        `value_range`, `clipped`: the first five measures on the clipped metamers.
    """
    x, y = np.asarray(x), np.asarray(y)
    idx_a, idx_b = sample_pairs(y, num_pairs, seed)
    x_a, y_a, y_b = x[idx_a], y[idx_a], y[idx_b]
    z_s_a, _ = network_lib.encode(network, x_a, batch_size)
    _, z_n_b = network_lib.encode(network, x[idx_b], batch_size)
    x_met = network_lib.decode(network, z_s_a, z_n_b, batch_size)
    a_correct = np.argmax(z_s_a, axis=-1) == y_a

    def judge(x_met):
        z_s_met, _ = network_lib.encode(network, x_met, batch_size)
        keeps_a = np.argmax(z_s_met, axis=-1) == y_a
        oracle_met = np.asarray(oracle(x_met))
        success = keeps_a & (oracle_met == y_b)
        return {"rate": float(np.mean(success)), "network_keeps_a": float(np.mean(keeps_a)),
                "oracle_says_b": float(np.mean(oracle_met == y_b)), "oracle_says_a": float(np.mean(oracle_met == y_a)),
                "logit_change_max": float(np.max(np.abs(z_s_met - z_s_a))),
                "rate_given_a_correct": float(np.mean(success[a_correct])) if a_correct.any() else None}

    results = judge(x_met)
    results.update(num_pairs=int(num_pairs), network_accuracy=float(np.mean(a_correct)),
                   oracle_accuracy=float(np.mean(np.asarray(oracle(x_a)) == y_a)))
    if value_range is not None:
        results["clipped"] = judge(np.clip(x_met, *value_range))
    return results
