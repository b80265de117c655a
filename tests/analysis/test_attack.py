"""Metamer attack rate and post-hoc nuisance error on hand-built linear bijections.

Data in R^8 with the true (oracle) direction v = e0 and a spurious direction w = e1. The
networks are orthogonal maps (`LinearBijection`) whose classifier is D(x) = [<r, x> > 0]:
- r = v: z_s holds the semantic direction; on data whose class lies only along v, z_n is
  class-independent noise.
- r = w: z_s holds the spurious direction and z_n keeps v, i.e. the class (data whose class
  lies along both v and w, so D is still perfect on the data).
"""

import numpy as np
import pytest
import tensorflow as tf

from invertible_keras.analysis import attack, invertibility, oracles, posthoc
from tests.analysis.linear_bijection import DIM, LinearBijection

MARGIN = 5.0


def oracle(x):
    """The true label: the side of the hyperplane <v, x> = 0."""
    return (np.asarray(x)[:, 0] > 0).astype(np.int32)


def sample(num, directions, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, num)
    x = rng.normal(size=(num, DIM)) + MARGIN * (2 * y[:, None] - 1) * np.sum(np.eye(DIM)[directions], 0)
    return x.astype(np.float32), y.astype(np.int32)


def test_sample_pairs_have_different_labels_and_cover_every_class():
    y = np.array([0, 0, 1, 2, 2, 2])
    idx_a, idx_b = attack.sample_pairs(y, 500, seed=1)
    assert np.all(y[idx_a] != y[idx_b])
    assert set(y[idx_a]) == {0, 1, 2}
    with pytest.raises(ValueError, match="two classes"):
        attack.sample_pairs(np.zeros(5), 3)


def test_attack_rate_is_zero_when_z_n_holds_no_class_information():
    network = LinearBijection(readout=np.eye(DIM)[0])
    x, y = sample(600, [0], seed=0)  # the class lives only along v = e0, which z_s reads
    result = attack.metamer_attack(network, x, y, oracle, num_pairs=400, seed=0)
    assert result["network_accuracy"] == 1.0 and result["oracle_accuracy"] == 1.0
    assert result["network_keeps_a"] == 1.0
    assert result["rate"] == 0.0 and result["oracle_says_a"] == 1.0
    assert result["logit_change_max"] < 1e-4

    _, errors = posthoc.posthoc_nuisance_error(network, x[:400], y[:400], x[400:], y[400:],
                                                hidden_units=(32, 32, 32), max_epochs=20, batch_size=32,
                                                validation_size=80, seeds=(0, 1))
    assert errors["test"] > 0.3  # chance is 0.5: z_n is noise independent of y
    assert len(errors["test_per_seed"]) == 2 and errors["test_sd"] >= 0.0


def test_attack_rate_is_high_when_the_class_hides_in_z_n():
    network = LinearBijection(readout=np.eye(DIM)[1])
    x, y = sample(600, [0, 1], seed=0)  # class along v and w; z_s reads w, z_n keeps v
    result = attack.metamer_attack(network, x, y, oracle, num_pairs=400, seed=0)
    assert result["network_accuracy"] == 1.0 and result["oracle_accuracy"] == 1.0
    assert result["network_keeps_a"] == 1.0
    assert result["rate"] == 1.0 and result["oracle_says_b"] == 1.0
    assert result["num_scored"] == 400 and "clipped" not in result
    low, high = result["ci95"]
    assert 0.98 < low < 1.0 and high == 1.0

    _, errors = posthoc.posthoc_nuisance_error(network, x[:400], y[:400], x[400:], y[400:],
                                                hidden_units=(32, 32, 32), max_epochs=20, batch_size=32,
                                                validation_size=80, seeds=(0,))
    assert errors["test"] < 0.02 and errors["train"] < 0.02


class FlippingDecoder(LinearBijection):
    """The class-leaking bijection of the test above, except that `decode` swaps the two logits
    when z_n says class 1 (its first entry, x_0, is positive): on those metamers D no longer
    keeps a's class, while the oracle, which reads x_0, still says b's."""

    def decode(self, z_s, z_n):
        flip = z_n[:, :1] > 0
        return super().decode(tf.where(flip, z_s[:, ::-1], z_s), z_n)


def test_attack_rate_counts_only_metamers_that_keep_as_class():
    network = FlippingDecoder(readout=np.eye(DIM)[1])
    x, y = sample(600, [0, 1], seed=0)
    result = attack.metamer_attack(network, x, y, oracle, num_pairs=400, seed=0)
    _, idx_b = attack.sample_pairs(y, 400, seed=0)
    expected = np.mean(y[idx_b] == 0)  # the pairs whose metamer was not flipped
    assert 0.3 < expected < 0.7
    assert result["oracle_says_b"] == 1.0
    assert result["network_keeps_a"] == pytest.approx(expected)
    assert result["rate"] == pytest.approx(expected)


def test_attack_rate_is_restricted_to_pairs_the_network_classifies_correctly():
    network = LinearBijection(readout=np.eye(DIM)[1])
    x, y = sample(600, [0, 1], seed=0)
    y_wrong = y.copy()
    y_wrong[:300] = 1 - y_wrong[:300]  # labels the network now gets wrong: half the pairs drop out
    result = attack.metamer_attack(network, x, y_wrong, oracle, num_pairs=400, seed=0)
    idx_a, idx_b = attack.sample_pairs(y_wrong, 400, seed=0)
    correct = (idx_a >= 300) & (idx_b >= 300)
    assert result["num_scored"] == correct.sum() and result["network_accuracy"] == pytest.approx(correct.mean())


def test_wilson_interval_matches_the_closed_form():
    low, high = attack.wilson_interval(30, 100)
    assert low == pytest.approx(0.2189, abs=1e-4) and high == pytest.approx(0.3958, abs=1e-4)
    assert attack.wilson_interval(0, 0) is None


def test_clipping_metamers_is_judged_on_the_clipped_input():
    network = LinearBijection(readout=np.eye(DIM)[1])
    x, y = sample(200, [0, 1], seed=1)
    # Clipping every entry to [0, 0] maps every metamer to the origin, where D says 0 (ties
    # go to the first logit): D must be re-evaluated there, not assumed to keep a's class.
    result = attack.metamer_attack(network, x, y, oracle, num_pairs=200, value_range=(0.0, 0.0))
    assert result["network_keeps_a"] == 1.0  # unclipped: exactly a's logits
    clipped = result["clipped"]
    assert clipped["network_keeps_a"] == pytest.approx(np.mean(y[attack.sample_pairs(y, 200)[0]] == 0))
    assert clipped["oracle_says_a"] + clipped["oracle_says_b"] == 1.0


def test_invertibility_of_an_orthogonal_map_is_float_exact():
    network = LinearBijection(readout=np.eye(DIM)[0])
    x, _ = sample(64, [0], seed=2)
    errors = invertibility.invertibility_errors(network, x)
    assert set(errors) == {"test", "noise", "metamer"}
    for values in errors.values():
        assert 0.0 <= values["mean"] <= values["max"] < 1e-5


def test_spheres_oracle_is_the_norm_rule():
    oracle_fn = oracles.SpheresOracle((1.0, 10.0))
    x = np.zeros((3, 4), np.float32)
    x[:, 0] = [1.0, 5.4, 5.6]
    np.testing.assert_array_equal(oracle_fn(x), [0, 0, 1])
