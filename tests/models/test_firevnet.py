"""FiRevNet: bijectivity after training, z layout, log-det, serialization, config, errors."""

import math
import re

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import layers
from invertible_keras.layers import InvertibleSequential
from invertible_keras.models import FiRevNet, build_model, builders
from invertible_keras.training.objective import Objective
from tests.layer_test_case import perturb_weights
from tests.model_test_utils import make_inputs, train_a_few_steps

RECONSTRUCTION_TOL = 1e-4  # max abs error of decode(encode(x)) for x in [0, 1], float32
LOG_DET_TOL = 1e-8  # float64

# Small versions of the three variants; the ImageNet model at reduced input size 64x64 keeps the
# channel counts of 224x224 (16x16x48 -> ... -> 2x2x3072).
VARIANTS = {
    "dense": lambda: builders.dense(hidden_units=32),
    "conv": lambda: builders.conv(blocks_per_stage=2, filters=16, batch_norm=True, seed=0),
    "conv+global_context": lambda: builders.conv(blocks_per_stage=1, filters=16, batch_norm=False,
                                                 global_context=True, seed=0),
    "conv+semantic_head": lambda: builders.conv(blocks_per_stage=1, filters=8, batch_norm=False,
                                                semantic_head_units=16, seed=0),
    "conv+affine_semantic_head": lambda: builders.conv(blocks_per_stage=1, filters=8, batch_norm=False,
                                                       semantic_head_units=16, semantic_head_clamp=2.0, seed=0),
    "conv+semantic_head_blocks": lambda: builders.conv(blocks_per_stage=1, filters=8, batch_norm=False,
                                                       semantic_head_units=16, semantic_head_blocks=1, seed=0),
    "conv+affine": lambda: builders.conv(blocks_per_stage=1, filters=8, batch_norm=False, global_context=True,
                                         affine_clamp=2.0, seed=0),
    "imagenet64": lambda: builders.imagenet(input_shape=(64, 64, 3), blocks_per_stage=1, filters=8),
}


def couplings(model):
    return [l for stage in model.stages for l in stage.layers if isinstance(l, layers.Coupling)]


def zero_initialised_layers(model):
    """The last layer of every coupling subnet, the head's included: zero until trained."""
    last = [c.subnet.layers[-1] for c in couplings(model)]
    if model.head is not None:
        last += [model.head.nuisance_subnet.layers[-1], model.head.semantic_subnet.layers[-1]]
        last += [subnet.layers[-1] for pair in model.head.conditional_subnets for subnet in pair]
    return last


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def trained(request):
    model = VARIANTS[request.param]()
    x, y = make_inputs(model)
    train_a_few_steps(model, x, y)
    if model.head is not None:  # CE moves h only; g and the blocks (in z_n) train under the likelihood
        perturb_weights(model.head.nuisance_subnet)
        for pair in model.head.conditional_subnets:
            for subnet in pair:
                perturb_weights(subnet)
    return request.param, model, x


def test_round_trip_after_training(trained):
    name, model, x = trained
    # Training moved every zero-initialised last subnet layer: the model is not the identity.
    for layer in zero_initialised_layers(model):
        assert np.abs(keras.ops.convert_to_numpy(layer.kernel)).max() > 1e-3

    z, log_det = model.forward_and_log_det(x, training=False)
    assert z.shape == (x.shape[0], math.prod(x.shape[1:])) == (x.shape[0], model.latent_dim)
    z_s, z_n = model.encode(x)
    np.testing.assert_array_equal(tf.concat([z_s, z_n], axis=-1), z)
    np.testing.assert_array_equal(model(x), z_s)

    error = float(np.max(np.abs(model.decode(z_s, z_n) - x)))
    assert error <= RECONSTRUCTION_TOL, f"{name}: decode(encode(x)) max abs error {error}"
    x_back, inverse_log_det = model.inverse_and_log_det(z)
    np.testing.assert_allclose(x_back, x, atol=RECONSTRUCTION_TOL)
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-5, atol=1e-3)


def test_z_order_logits_first_then_factored_parts_in_stage_order():
    model = builders.conv(num_classes=4, blocks_per_stage=2, filters=16, batch_norm=True, factor_out=True, seed=0)
    x, _ = make_inputs(model, batch_size=2)
    model.initialize(x)
    perturb_weights(model, scale=0.05)
    z = model.forward_and_log_det(x, training=False)[0]
    # Stage outputs 14x14x4 -> 7x7x8 -> 7x7x4: z = [DCT(stage 3) (196), n_1 (14*14*2), n_2 (7*7*4)].
    assert model.stage_output_shapes == [(None, 14, 14, 4), (None, 7, 7, 8), (None, 7, 7, 4)]
    assert model.nuisance_parts == {"last_stage": (0, 192), "stage_1": (192, 584), "stage_2": (584, 780)}
    y1 = model.stages[0].forward_and_log_det(x, training=False)[0]
    y2 = model.stages[1].forward_and_log_det(y1[..., 2:], training=False)[0]
    y3 = model.stages[2].forward_and_log_det(y2[..., 4:], training=False)[0]
    np.testing.assert_allclose(z[:, :196], layers.DCTPooling()(y3), atol=1e-5)
    np.testing.assert_array_equal(z[:, 196:588], tf.reshape(y1[..., :2], [2, -1]))
    np.testing.assert_allclose(z[:, 588:], tf.reshape(y2[..., :4], [2, -1]), atol=1e-6)
    # The logits start with the DC components: sqrt(H*W) * channel means of the last stage.
    np.testing.assert_allclose(z[:, :4], 7.0 * tf.reduce_mean(y3, axis=[1, 2]), rtol=1e-4, atol=1e-4)


def test_the_factored_half_is_the_one_the_last_coupling_changed():
    """A coupling returns [x2 + f(x1), x1]: the kept half is its untouched input x1 (Glow)."""
    model = builders.conv(num_classes=4, blocks_per_stage=1, filters=8, batch_norm=False, factor_out=True, seed=0)
    x, _ = make_inputs(model, batch_size=2)
    model.initialize(x)
    perturb_weights(model, scale=0.05)
    stage = model.stages[0]
    h = InvertibleSequential(stage.layers[:-1])(x)  # the input of the stage's last coupling
    z = model.forward_and_log_det(x, training=False)[0]
    factored = tf.reshape(z[:, 196:588], [2, 14, 14, 2])
    assert isinstance(stage.layers[-1], layers.AdditiveCoupling)
    y1 = stage.layers[-1](h)  # [x2 + f(x1), x1]: the changed half first
    np.testing.assert_array_equal(factored, y1[..., :2])  # the changed half leaves into z
    assert float(tf.reduce_max(tf.abs(factored - h[..., 2:]))) > 1e-3  # and the coupling did change it
    np.testing.assert_array_equal(stage(x)[..., 2:], h[..., :2])  # the untouched half stays in the network


def test_the_default_28x28_layout_reads_every_logit_from_a_dc_component():
    model = builders.conv(blocks_per_stage=1, filters=8)
    assert model.stage_output_shapes[-1] == (None, 7, 7, 16)
    x, _ = make_inputs(model, batch_size=2)
    model.initialize(x)
    y3 = model.stages[2](model.stages[1](model.stages[0](x)))
    np.testing.assert_allclose(model(x), 7.0 * tf.reduce_mean(y3, axis=[1, 2])[:, :10], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="only 4 of the 10 logits would be DC components"):
        builders.conv(blocks_per_stage=1, filters=8, factor_out=True)


def jacobian_log_det_error(model, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z, log_det = model.forward_and_log_det(x, training=False)
    jacobian = tape.batch_jacobian(z, x)
    jacobian = tf.reshape(jacobian, [x.shape[0], model.latent_dim, model.latent_dim])
    _, expected = np.linalg.slogdet(jacobian.numpy())
    return np.max(np.abs(log_det.numpy() - expected)), jacobian.numpy(), log_det.numpy()


def test_dense_log_det_equals_slogdet_of_jacobian():
    model = builders.dense(hidden_units=16, dtype="float64")
    perturb_weights(model, scale=0.3)
    x = np.random.default_rng(1).normal(size=(3, 100)) * 3.0
    error, jacobian, log_det = jacobian_log_det_error(model, x)
    assert np.abs(jacobian - np.eye(100)).max() > 0.1, "weights still give the identity"
    assert error < LOG_DET_TOL, f"log-det differs from slogdet(J) by {error}"
    np.testing.assert_allclose(log_det, 0.0)  # additive couplings only: volume preserving


@pytest.mark.parametrize("head_units, head_clamp, head_blocks, affine_clamp",
                         [(0, 0.0, 0, 0.0), (8, 0.0, 0, 0.0), (8, 1.5, 0, 0.0), (8, 1.5, 1, 0.0), (0, 0.0, 0, 1.5)])
def test_conv_log_det_equals_slogdet_of_jacobian(head_units, head_clamp, head_blocks, affine_clamp):
    # 8x8x1 -> 4x4x4 -> 2x2x8 -> 1x1x16: small enough for a 64x64 Jacobian, with ActNorm and
    # 1x1 convolutions contributing a non-zero log-det.
    model = builders.conv(input_shape=(8, 8, 1), num_classes=4, blocks_per_stage=1, filters=8, seed=0,
                          semantic_head_units=head_units, semantic_head_clamp=head_clamp,
                          semantic_head_blocks=head_blocks, affine_clamp=affine_clamp,
                          dtype="float64")
    x = np.random.default_rng(2).uniform(0, 1, (3, 8, 8, 1))
    model.initialize(x)
    perturb_weights(model, scale=0.1)
    error, _, log_det = jacobian_log_det_error(model, x)
    assert np.abs(log_det).min() > 1.0
    assert error < LOG_DET_TOL, f"log-det differs from slogdet(J) by {error}"


def trainable_count(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def coupling_subnet_params(half, filters, out, k=3):
    """3x3 conv (half -> filters), 1x1 conv, 3x3 conv (filters -> out), with biases."""
    return (k * k * half * filters + filters) + (filters * filters + filters) + (k * k * filters * out + out)


def test_imagenet_224_shapes_and_parameter_count():
    model = builders.imagenet(blocks_per_stage=4, filters=8)
    assert model.input_shape == (224, 224, 3) and model.latent_dim == 224 * 224 * 3
    assert model.stage_output_shapes == [(None, 56, 56, 48), (None, 28, 28, 192), (None, 14, 14, 768),
                                         (None, 7, 7, 3072)]
    assert [type(l).__name__ for l in model.stages[0].layers[:3]] == ["Squeeze", "Squeeze", "ActNorm"]
    assert all(isinstance(c, layers.AffineCoupling) == (c in model.stages[3].layers) for c in couplings(model))
    expected = 0
    for stage, channels in enumerate((48, 192, 768, 3072)):
        out = channels if stage == 3 else channels // 2  # affine: log-scale and shift
        expected += 4 * (2 * channels + coupling_subnet_params(channels // 2, 8, out))
    assert trainable_count(model) == expected
    # Parameters do not depend on the input size: the 64x64 test model has the same ones.
    small = builders.imagenet(input_shape=(64, 64, 3), blocks_per_stage=4, filters=8)
    assert trainable_count(small) == expected

    x = np.random.default_rng(0).uniform(0, 1, (1, 224, 224, 3)).astype("float32")
    model.initialize(x)
    z_s, z_n = model.encode(x)
    assert z_s.shape == (1, 1000) and z_n.shape == (1, 224 * 224 * 3 - 1000)
    assert float(np.max(np.abs(model.decode(z_s, z_n) - x))) <= RECONSTRUCTION_TOL


def test_keras_save_load_gives_identical_logits(tmp_path):
    model = builders.conv(blocks_per_stage=1, filters=16, batch_norm=True, global_context=True,
                          semantic_head_units=8, seed=0)
    x, y = make_inputs(model, batch_size=8)
    train_a_few_steps(model, x, y, steps=2)  # also moves the batch-norm moving statistics
    model.compile(optimizer="adam", loss=Objective("ice", nuisance_hidden_units=(8,)))
    model.train_on_batch(x, y)  # the .keras file holds the network, not its objective
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, FiRevNet) and restored.get_config()["input_shape"] == [28, 28, 1]
    assert restored.objective is None and len(restored.variables) == len(model.variables)
    np.testing.assert_array_equal(restored(x), model(x))
    np.testing.assert_array_equal(restored.decode(*restored.encode(x)), model.decode(*model.encode(x)))
    # A restored model is never re-initialised from data.
    assert restored.is_initialized
    restored.initialize(x[::-1] * 0.5)
    np.testing.assert_array_equal(restored(x), model(x))


def test_fit_trains_the_logits_and_keeps_the_model_invertible():
    model = builders.dense(hidden_units=32)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 64)
    x = (rng.normal(size=(64, 100)) * (1.0 + 9.0 * y[:, None]) / 10.0).astype("float32")  # two shells
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0).history["loss"]
    assert model.objective is None and history[-1] < history[0]
    assert float(np.max(np.abs(model.decode(*model.encode(x)) - x))) <= RECONSTRUCTION_TOL


def test_build_model_from_config():
    config = ml_collections.ConfigDict(
        {"kind": "conv", "input_shape": (28, 28, 1), "blocks_per_stage": 1, "filters": 8, "batch_norm": False}
    )
    model = build_model(config)
    assert isinstance(model, FiRevNet) and model.num_classes == 10
    assert [c.hidden_units for c in couplings(model)] == [8, 8, 8]
    assert not any(c.batch_norm for c in couplings(model))
    dense = build_model({"kind": "dense", "hidden_units": 8})
    assert dense.input_shape == (100,) and dense.num_classes == 2 and len(couplings(dense)) == 4
    with pytest.raises(ValueError, match=r"kind='resnet'"):
        build_model({"kind": "resnet"})
    with pytest.raises(ValueError, match=r"\['filter'\]"):
        build_model({"kind": "conv", "filter": 8})


def test_reversible_gradients_flag_builds_reversible_stages():
    from invertible_keras.layers.reversible import ReversibleSequential

    plain = builders.dense(hidden_units=8)
    reversible = builders.dense(hidden_units=8, reversible_gradients=True)
    assert all(isinstance(stage, ReversibleSequential) for stage in reversible.stages)
    assert reversible.get_config()["reversible_gradients"] is True
    perturb_weights(plain, scale=0.1)
    reversible.set_weights(plain.get_weights())
    x = np.random.default_rng(0).normal(size=(4, 100)).astype("float32")
    np.testing.assert_allclose(reversible(x), plain(x), rtol=1e-6, atol=1e-6)
    grads = []
    for model in (plain, reversible):
        with tf.GradientTape() as tape:
            z, log_det = model.forward_and_log_det(x, training=True)
            loss = tf.reduce_sum(z[:, :2] ** 2) + tf.reduce_sum(log_det)
        grads.append(tape.gradient(loss, model.trainable_weights))
    for g_plain, g_reversible in zip(*grads):
        np.testing.assert_allclose(g_reversible, g_plain, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reversible.decode(*reversible.encode(x)), x, atol=RECONSTRUCTION_TOL)


@pytest.fixture(scope="module")
def mnist_model():
    return builders.conv(blocks_per_stage=1, filters=8, batch_norm=False)


@pytest.mark.parametrize("shape", [(2, 32, 32, 1), (2, 28, 28, 3), (2, 784)])
def test_wrong_input_shape_is_a_value_error_naming_the_shape(mnist_model, shape):
    x = np.zeros(shape, "float32")
    expected = re.escape(str(shape))
    for fn in (mnist_model, mnist_model.encode, mnist_model.forward_and_log_det, mnist_model.initialize):
        with pytest.raises(ValueError, match=expected) as info:
            fn(x)
        assert "(batch, 28, 28, 1)" in str(info.value)


def test_decode_wrong_widths_is_a_value_error_naming_the_shape(mnist_model):
    z_s, z_n = np.zeros((2, 10), "float32"), np.zeros((2, 774), "float32")
    with pytest.raises(ValueError, match=r"z_s of shape \(batch, 10\).*\(2, 12\)"):
        mnist_model.decode(np.zeros((2, 12), "float32"), z_n)
    with pytest.raises(ValueError, match=r"z_n of shape \(batch, 774\).*\(2, 770\)"):
        mnist_model.decode(z_s, np.zeros((2, 770), "float32"))
    with pytest.raises(ValueError, match=r"\(2, 10\).*\(3, 774\)"):
        mnist_model.decode(z_s, np.zeros((3, 774), "float32"))
    with pytest.raises(ValueError, match=r"\(batch, 784\).*\(2, 783\)"):
        mnist_model.inverse(np.zeros((2, 783), "float32"))


def test_dense_wrong_width_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(batch, 100\).*\(2, 99\)"):
        builders.dense(hidden_units=8)(np.zeros((2, 99), "float32"))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"16 of the 785 logits"):
        builders.conv(num_classes=785, blocks_per_stage=1, filters=8)
    with pytest.raises(ValueError, match=r"only 1 of the 10 logits.*even sizes.*\(27, 28, 1\)"):  # no squeeze
        builders.conv(input_shape=(27, 28, 1), blocks_per_stage=1, filters=8)
    with pytest.raises(ValueError, match=r"filters=\[8, 8\]"):
        builders.imagenet(input_shape=(64, 64, 3), filters=(8, 8))
