"""FactorOut: two outputs, so the contract of `tests/layer_test_case.py` is checked here one by one.

Round trip, inverse log-det = -forward log-det = 0, log-det against slogdet of the Jacobian of
the flattened map (float64), the order of the parts, serialization, and errors.
"""

import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import layers

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("input_shape", [(3, 2, 4), (6,)])
def test_round_trip_and_zero_log_det(input_shape):
    x = RNG.uniform(-1, 1, (3, *input_shape)).astype("float32")
    layer = layers.FactorOut()
    (h, z_part), log_det = layer.forward_and_log_det(x)
    kept = input_shape[-1] // 2
    assert h.shape == (3, *input_shape[:-1], kept)
    assert z_part.shape == (3, int(np.prod(input_shape[:-1])) * (input_shape[-1] - kept))
    # The first channels leave (the half the stage's last coupling changed), the last stay.
    np.testing.assert_array_equal(h, x[..., -kept:])
    np.testing.assert_array_equal(z_part, x[..., :-kept].reshape(3, -1))
    x_back, inverse_log_det = layer.inverse_and_log_det((h, z_part))
    np.testing.assert_array_equal(x_back, x)  # a rearrangement: exact
    np.testing.assert_array_equal(log_det, np.zeros(3))
    np.testing.assert_array_equal(inverse_log_det, -log_det)
    for a, b in zip(layer(x), (h, z_part)):
        np.testing.assert_array_equal(a, b)


def test_log_det_equals_slogdet_of_the_flattened_jacobian():
    x = tf.constant(RNG.uniform(-1, 1, (2, 2, 2, 4)), tf.float64)
    layer = layers.FactorOut(dtype="float64")
    with tf.GradientTape() as tape:
        tape.watch(x)
        (h, z_part), log_det = layer.forward_and_log_det(x)
        y = tf.concat([tf.reshape(h, [2, -1]), z_part], axis=-1)
    jac = tf.reshape(tape.batch_jacobian(y, x), [2, 16, 16]).numpy()
    sign, expected = np.linalg.slogdet(jac)
    assert np.all(sign != 0)
    np.testing.assert_allclose(log_det, expected, atol=1e-12)


def test_serialization_and_errors():
    layer = layers.FactorOut(name="factor_out_1")
    x = RNG.uniform(-1, 1, (2, 2, 2, 4)).astype("float32")
    parts = layer(x)
    restored = layers.FactorOut.from_config(layer.get_config())
    for a, b in zip(restored(x), parts):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"even channel count.*\(None, 2, 2, 3\)"):
        layers.FactorOut().build((None, 2, 2, 3))
    with pytest.raises(ValueError, match=r"z part of shape \(batch, 8\)"):
        layer.inverse((parts[0], parts[1][:, :4]))
