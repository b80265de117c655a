"""Layer-specific properties beyond the shared contract, and bad input."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import layers
from tests.layer_test_case import perturb_weights

RNG = np.random.default_rng(0)


def images(*shape):
    return RNG.uniform(0, 1, shape).astype("float32")


# ------------------------------------------------------------------------- Squeeze
def test_squeeze_equals_space_to_depth():
    x = images(2, 6, 4, 3)
    np.testing.assert_array_equal(layers.Squeeze(2)(x), tf.nn.space_to_depth(x, 2))
    np.testing.assert_array_equal(layers.Squeeze(3).forward_and_log_det(images(1, 6, 3, 2))[0].shape, (1, 2, 1, 18))


def test_squeeze_odd_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"divisible by factor=2.*\(2, 5, 4, 1\)"):
        layers.Squeeze().forward_and_log_det(images(2, 5, 4, 1))
    with pytest.raises(ValueError, match="factor"):
        layers.Squeeze(factor=1)


# ---------------------------------------------------------------------- DCTPooling
def test_dct_matches_tf_signal_dct_and_dc_is_scaled_mean():
    h, w, c = 4, 6, 3
    x = images(2, h, w, c)
    z = layers.DCTPooling()(x).numpy()
    # Reference: tf.signal.dct type II ortho over W then H, per channel.
    ref = tf.signal.dct(tf.transpose(x, [0, 3, 1, 2]), type=2, norm="ortho")
    ref = tf.signal.dct(tf.transpose(ref, [0, 1, 3, 2]), type=2, norm="ortho")  # (B, C, W, H)
    ref = tf.transpose(ref, [0, 3, 2, 1]).numpy()  # (B, H, W, C)
    order = layers.dct.frequency_order(h, w)
    for k, flat in enumerate(order):
        u, v = divmod(int(flat), w)
        np.testing.assert_allclose(z[:, k * c:(k + 1) * c], ref[:, u, v, :], atol=1e-5)
    np.testing.assert_allclose(z[:, :c], math.sqrt(h * w) * x.mean(axis=(1, 2)), rtol=1e-5)


def test_dct_frequency_order_is_diagonal():
    order = [divmod(int(i), 3) for i in layers.dct.frequency_order(3, 3)]
    assert order[:6] == [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (2, 0)]
    assert sorted(order) == [(u, v) for u in range(3) for v in range(3)]


# ------------------------------------------------------------------------- ActNorm
def test_actnorm_init_gives_zero_mean_unit_std_and_survives_loading(tmp_path):
    x = images(16, 5, 5, 3) * np.array([1.0, 5.0, 0.5], "float32") + 2.0
    layer = layers.ActNorm()
    layer.initialize(x)
    y = layer(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), 1.0, atol=1e-4)

    model = keras.Sequential([keras.Input((5, 5, 3)), layer])
    model.save(tmp_path / "actnorm.keras")
    loaded = keras.models.load_model(tmp_path / "actnorm.keras").layers[-1]
    assert loaded.is_initialized
    loaded.initialize(images(16, 5, 5, 3) * 100.0)  # must be a no-op
    for before, after in zip(layer.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_actnorm_constant_channel_gives_no_nan():
    x = images(8, 4, 4, 2)
    x[..., 1] = 3.0
    layer = layers.ActNorm()
    layer.initialize(x)
    y, log_det = layer.forward_and_log_det(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(log_det))
    np.testing.assert_allclose(layer.inverse(y), x, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------ Couplings
@pytest.mark.parametrize("cls", [layers.AdditiveCoupling, layers.AffineCoupling])
@pytest.mark.parametrize("shape", [(4, 6), (2, 4, 4, 4)])
def test_new_coupling_is_identity(cls, shape):
    x = images(*shape)
    y, log_det = cls(hidden_units=8).forward_and_log_det(x)
    half = shape[-1] // 2
    np.testing.assert_array_equal(y, np.concatenate([x[..., half:], x[..., :half]], axis=-1))  # only the swap
    np.testing.assert_array_equal(log_det, 0.0)


def test_semantic_coupling_is_identity_when_new_and_moves_the_logits_only_through_h():
    x = images(4, 6)
    layer = layers.SemanticCoupling(split=2, hidden_units=8)
    y, log_det = layer.forward_and_log_det(x)
    np.testing.assert_array_equal(y, x)  # no swap: the logits stay first
    np.testing.assert_array_equal(log_det, 0.0)
    perturb_weights(layer.nuisance_subnet)  # g only: s' = s, n' = n + g(s)
    y = layer(x).numpy()
    np.testing.assert_array_equal(y[:, :2], x[:, :2])
    np.testing.assert_allclose(y[:, 2:], x[:, 2:] + layer.nuisance_subnet(x[:, :2]).numpy(), rtol=1e-6)


def test_affine_semantic_coupling_scales_the_nuisances_by_a_function_of_the_logits():
    keras.utils.set_random_seed(0)  # the hidden layer's initial weights
    x = images(4, 6)
    layer = layers.SemanticCoupling(split=2, hidden_units=8, read_nuisances=False, clamp=1.5)
    y, log_det = layer.forward_and_log_det(x)
    np.testing.assert_array_equal(y, x)  # zero-initialised: the identity
    np.testing.assert_array_equal(log_det, 0.0)
    perturb_weights(layer.nuisance_subnet, scale=1.0)
    y, log_det = (t.numpy() for t in layer.forward_and_log_det(x))
    raw, shift = np.split(layer.nuisance_subnet(x[:, :2]).numpy(), 2, axis=-1)
    log_scale = 1.5 * (2 / math.pi) * np.arctan(raw / 1.5)
    np.testing.assert_array_equal(y[:, :2], x[:, :2])
    np.testing.assert_allclose(y[:, 2:], x[:, 2:] * np.exp(log_scale) + shift, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(log_det, log_scale.sum(-1), rtol=1e-5, atol=1e-6)  # varies with the logits
    assert np.ptp(log_det) > 1e-2 and np.max(np.abs(log_scale)) < 1.5
    with pytest.raises(ValueError, match="`clamp` must be None"):
        layers.SemanticCoupling(split=2, clamp=0.0)


def test_conditional_blocks_couple_the_nuisance_halves_given_the_logits():
    x = images(4, 7)  # n has 5 entries: halves of 2 and 3
    layer = layers.SemanticCoupling(split=2, hidden_units=8, nuisance_blocks=1)
    np.testing.assert_array_equal(layer(x), x)  # zero-initialised: the identity
    a, b = layer.conditional_subnets[0]
    perturb_weights(a)
    perturb_weights(b)  # h and g stay zero: s' = s, and n changes through a and b only
    y, log_det = (t.numpy() for t in layer.forward_and_log_det(x))
    s, n1, n2 = x[:, :2], x[:, 2:4], x[:, 4:]
    n2 = n2 + a(np.concatenate([s, n1], -1)).numpy()
    n1 = n1 + b(np.concatenate([s, n2], -1)).numpy()
    np.testing.assert_allclose(y, np.concatenate([s, n1, n2], -1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(log_det, 0.0)
    assert np.abs(y - x).max() > 1e-2  # the blocks moved z_n
    x_again = layer.inverse(y).numpy()
    np.testing.assert_allclose(x_again, x, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="`nuisance_blocks` must be a non-negative integer"):
        layers.SemanticCoupling(split=2, nuisance_blocks=-1)


def test_semantic_coupling_needs_a_flat_input_wider_than_its_split():
    with pytest.raises(ValueError, match="needs more than 6 features"):
        layers.SemanticCoupling(split=6).forward_and_log_det(images(2, 6))
    with pytest.raises(ValueError, match="expects input of rank 2"):
        layers.SemanticCoupling(split=2).forward_and_log_det(images(2, 4, 4, 4))
    with pytest.raises(ValueError, match="`split` must be a positive integer"):
        layers.SemanticCoupling(split=0)


def test_affine_scale_stays_within_bound_for_extreme_inputs():
    layer = layers.AffineCoupling(hidden_units=8, clamp=1.5)
    x = images(4, 8)
    layer.forward_and_log_det(x)
    perturb_weights(layer, scale=10.0)
    for extreme in (1e4, -1e4, 1e8):
        h = layer.subnet(np.full((4, 4), extreme, "float32"))
        log_s, _ = layer.log_scale_and_shift(h)
        assert np.max(np.abs(log_s)) <= 1.5
        assert np.max(np.abs(log_s)) > 1.0  # the bound is approached, not avoided
        _, log_det = layer.forward_and_log_det(np.full((4, 8), extreme, "float32"))
        assert np.all(np.abs(log_det) <= 1.5 * 4)


# ------------------------------------------------------------------------ Bad input
def _built(layer, shape):
    layer.forward_and_log_det(images(*shape))
    return layer


@pytest.mark.parametrize("layer, bad_shape, expected", [
    (layers.ActNorm(), (2, 4, 4), r"rank 2 or 4.*\(2, 4, 4\)"),
    (layers.Squeeze(), (2, 8), r"rank 4.*\(2, 8\)"),
    (layers.DCTPooling(), (2, 4, 4), r"rank 4.*\(2, 4, 4\)"),
    (layers.AdditiveCoupling(), (2, 4, 4, 3), r"even.*\(2, 4, 4, 3\)"),
    (layers.AffineCoupling(), (2, 5), r"even.*\(2, 5\)"),
])
def test_bad_rank_or_odd_channels_is_a_clear_error(layer, bad_shape, expected):
    with pytest.raises(ValueError, match=expected):
        layer.forward_and_log_det(images(*bad_shape))


@pytest.mark.parametrize("make", [layers.ActNorm, layers.Invertible1x1Conv, layers.AdditiveCoupling,
                                  lambda: layers.InvertibleSequential([layers.ActNorm()])])
def test_wrong_channel_count_against_built_layer_is_a_clear_error(make):
    layer = _built(make(), (2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"built for input shape \(None, 4, 4, 4\).*\(2, 4, 4, 6\)"):
        layer.forward_and_log_det(images(2, 4, 4, 6))
    with pytest.raises(ValueError, match=r"\(2, 4, 4, 6\)"):
        layer(images(2, 4, 4, 6))
    with pytest.raises(ValueError, match=r"inverse input shape \(None, 4, 4, 4\).*\(2, 4, 4, 6\)"):
        layer.inverse(images(2, 4, 4, 6))


def test_dct_inverse_of_wrong_width_is_a_clear_error():
    layer = _built(layers.DCTPooling(), (2, 4, 4, 2))
    with pytest.raises(ValueError, match=r"\(None, 32\).*\(2, 30\)"):
        layer.inverse(images(2, 30))


def test_inverse_before_build_is_a_clear_error():
    with pytest.raises(ValueError, match="not built"):
        layers.ActNorm().inverse(images(2, 4))


def test_integer_input_is_a_clear_error():
    with pytest.raises(ValueError, match="floating point.*int32"):
        layers.ActNorm().forward_and_log_det(np.ones((2, 4), "int32"))


@pytest.mark.parametrize("cls", [layers.ActNorm, layers.AffineCoupling, layers.Invertible1x1Conv, layers.DCTPooling])
def test_nan_and_inf_propagate_without_raising(cls):
    x = images(2, 4, 4, 2)
    layer = cls()
    layer.forward_and_log_det(x)
    x[0, 0, 0, 0], x[1, 1, 1, 1] = np.nan, np.inf
    y, _ = layer.forward_and_log_det(x)  # no exception deep inside TF
    assert not np.all(np.isfinite(y.numpy()))
