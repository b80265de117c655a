"""The fused optimizers make Keras's updates, keep its slots and config, and fall back where they must."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras.training import optimizers

PAIRS = {"adam": (keras.optimizers.Adam, optimizers.FusedAdam),
         "adamax": (keras.optimizers.Adamax, optimizers.FusedAdamax)}


def run(optimizer, steps=6, seed=0):
    """Variables of two shapes after `steps` updates with fixed, per-step different gradients."""
    rng = np.random.default_rng(seed)
    variables = [tf.Variable(rng.normal(size=shape).astype("float32")) for shape in ((3, 4), (5,))]
    for _ in range(steps):
        grads = [tf.constant(rng.normal(size=v.shape).astype("float32")) for v in variables]
        optimizer.apply_gradients(zip(grads, variables))
    return [v.numpy() for v in variables], [v.numpy() for v in optimizer.variables]


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("kwargs", [dict(learning_rate=1e-2),
                                    dict(learning_rate=keras.optimizers.schedules.CosineDecay(1e-2, 10),
                                         weight_decay=1e-2, clipnorm=1.0)],
                         ids=["constant", "schedule_decay_clip"])
def test_fused_update_equals_keras_update(name, kwargs):
    keras_class, fused_class = PAIRS[name]
    expected_vars, expected_slots = run(keras_class(**kwargs))
    got_vars, got_slots = run(fused_class(**kwargs))
    assert len(got_slots) == len(expected_slots)
    for got, expected in zip(got_vars + got_slots, expected_vars + expected_slots, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(got_vars[0], run(keras_class(**kwargs), steps=0)[0][0])  # the updates moved


def test_amsgrad_falls_back_to_keras():
    expected, _ = run(keras.optimizers.Adam(1e-2, amsgrad=True))
    got, _ = run(optimizers.FusedAdam(1e-2, amsgrad=True))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-6)


def test_sparse_gradients_fall_back_to_keras():
    for name, (keras_class, fused_class) in PAIRS.items():
        results = []
        for cls in (keras_class, fused_class):
            table = tf.Variable(np.arange(12, dtype="float32").reshape(4, 3))
            optimizer = cls(0.1)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(table, [0, 2]) ** 2)
            grad = tape.gradient(loss, table)
            assert isinstance(grad, tf.IndexedSlices)
            optimizer.apply_gradients([(grad, table)])
            results.append(table.numpy())
        np.testing.assert_allclose(results[1], results[0], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fused_optimizer_serializes_and_restores_a_keras_checkpoint(name, tmp_path):
    keras_class, fused_class = PAIRS[name]
    fused = fused_class(learning_rate=3e-3, beta_1=0.8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(fused))
    assert type(restored) is fused_class and restored.get_config() == fused.get_config()

    variable = tf.Variable(np.ones(3, "float32"))
    saved = keras_class(0.1)
    saved.apply_gradients([(tf.constant([1.0, -2.0, 3.0]), variable)])
    path = tf.train.Checkpoint(optimizer=saved, variable=variable).save(str(tmp_path / "ckpt"))
    fresh = fused_class(0.1)
    fresh.build([variable])
    tf.train.Checkpoint(optimizer=fresh, variable=variable).restore(path).assert_consumed()
    assert int(fresh.iterations.numpy()) == 1
    for got, expected in zip(fresh.variables, saved.variables, strict=True):
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_make_optimizer_by_name():
    assert type(optimizers.make_optimizer("adam", 1e-3)) is optimizers.FusedAdam
    assert type(optimizers.make_optimizer("adamax", 1e-3)) is optimizers.FusedAdamax
    assert isinstance(optimizers.make_optimizer("sgd", 1e-3), keras.optimizers.SGD)
    with pytest.raises(ValueError, match="'adam', 'adamax' or 'sgd'. Received: 'rmsprop'"):
        optimizers.make_optimizer("rmsprop", 1e-3)
