"""Metameric sampling: a metamer has a's logits and b's nuisances; interpolation paths."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras.metamers import interpolate, metamer
from invertible_keras.models import builders
from tests.model_test_utils import make_inputs, train_a_few_steps

TOL = 1e-4  # float32, on logits and nuisances

VARIANTS = {
    "dense": lambda: builders.dense(hidden_units=32),
    "conv": lambda: builders.conv(blocks_per_stage=1, filters=16, batch_norm=True, seed=0),
    "imagenet64": lambda: builders.imagenet(input_shape=(64, 64, 3), blocks_per_stage=1, filters=8),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def trained(request):
    """A variant after ActNorm init and a few Adam steps on the cross-entropy of the logits."""
    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before
    model = VARIANTS[request.param]()
    x, y = make_inputs(model)
    train_a_few_steps(model, x, y)
    return model, x[:4], x[4:]


def test_metamer_has_logits_of_a_and_nuisances_of_b(trained):
    model, x_a, x_b = trained
    x_met = metamer(model, x_a, x_b)
    assert x_met.shape == x_a.shape
    z_s_met, z_n_met = model.encode(x_met)
    z_s_a, _ = model.encode(x_a)
    _, z_n_b = model.encode(x_b)
    # float32 rounding grows with the size of the values (fiRevNet48's logits reach ~60).
    scale = lambda v: TOL * max(1.0, float(np.max(np.abs(v))))
    assert float(np.max(np.abs(model(x_met) - model(x_a)))) <= scale(z_s_a)
    assert float(np.max(np.abs(z_s_met - z_s_a))) <= scale(z_s_a)
    assert float(np.max(np.abs(z_n_met - z_n_b))) <= scale(z_n_b)
    # The logits of a and b differ, so the metamer is not trivially equal to either input.
    assert float(np.max(np.abs(model(x_a) - model(x_b)))) > 100 * TOL
    assert float(np.max(np.abs(x_met - x_b))) > 100 * TOL


def test_metamer_of_an_input_with_itself_is_the_input(trained):
    model, x_a, _ = trained
    np.testing.assert_allclose(metamer(model, x_a, x_a), x_a, atol=TOL)


def test_interpolate_keeps_logits_and_moves_nuisances_linearly(trained):
    model, x_a, x_b = trained
    steps = 3
    path = interpolate(model, x_a, x_b, steps)
    assert path.shape == (x_a.shape[0], steps, *x_a.shape[1:])
    np.testing.assert_allclose(path[:, 0], x_a, atol=TOL)
    np.testing.assert_allclose(path[:, -1], metamer(model, x_a, x_b), atol=TOL)
    flat = tf.reshape(path, [-1, *x_a.shape[1:]])
    np.testing.assert_allclose(model(flat), np.repeat(model(x_a), steps, axis=0), rtol=TOL, atol=TOL)
    _, z_n_a = model.encode(x_a)
    _, z_n_b = model.encode(x_b)
    _, z_n_mid = model.encode(path[:, 1])
    np.testing.assert_allclose(z_n_mid, 0.5 * (z_n_a + z_n_b), rtol=TOL, atol=TOL)


@pytest.fixture(scope="module")
def dense_model():
    return builders.dense(hidden_units=8)


def test_batch_mismatch_is_a_value_error_naming_both_shapes(dense_model):
    x_a, x_b = np.zeros((3, 100), "float32"), np.zeros((2, 100), "float32")
    for fn in (lambda: metamer(dense_model, x_a, x_b), lambda: interpolate(dense_model, x_a, x_b, 3)):
        with pytest.raises(ValueError, match=r"x_a shape \(3, 100\) and x_b shape \(2, 100\)"):
            fn()


def test_interpolate_needs_two_steps(dense_model):
    x = np.zeros((2, 100), "float32")
    with pytest.raises(ValueError, match=r"steps=1"):
        interpolate(dense_model, x, x, 1)
