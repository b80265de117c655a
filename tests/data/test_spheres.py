"""Tests of the adversarial spheres data and its oracle."""

import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import data
from invertible_keras.data import oracle, spheres_dataset


def _as_numpy(dataset):
    x, y = next(iter(dataset.batch(1_000_000)))
    return x.numpy(), y.numpy()


@pytest.mark.parametrize("dim, radii", [(100, (1.0, 10.0)), (3, (0.5, 2.0)), (500, (2.0, 3.0))])
def test_points_lie_exactly_on_their_sphere(dim, radii):
    x, y = _as_numpy(spheres_dataset(3000, dim=dim, radii=radii, seed=1))
    assert x.shape == (3000, dim) and x.dtype == np.float32
    assert y.dtype == np.int32 and set(np.unique(y)) == {0, 1}
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, np.asarray(radii)[y], rtol=0, atol=1e-5 * radii[1])


def test_labels_are_balanced():
    _, y = _as_numpy(spheres_dataset(5001, seed=2))
    assert abs(int(np.sum(y == 1)) - int(np.sum(y == 0))) <= 1
    # Balanced on every prefix too, so any batch is balanced up to one example.
    assert abs(y[:64].sum() - 32) == 0


def test_cardinality_is_known():
    assert int(spheres_dataset(2500).cardinality()) == 2500


def test_same_seed_same_data_and_different_seeds_differ():
    x1, y1 = _as_numpy(spheres_dataset(2000, seed=7))
    x2, y2 = _as_numpy(spheres_dataset(2000, seed=7))
    x3, _ = _as_numpy(spheres_dataset(2000, seed=8))
    x4, _ = _as_numpy(spheres_dataset(2000, seed=(7, 1)))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    # Independent draws: no point is shared.
    assert np.min(np.abs(x1 - x3).max(axis=1)) > 1e-3
    assert np.min(np.abs(x1 - x4).max(axis=1)) > 1e-3


def test_directions_are_uniform_on_the_sphere():
    x, y = _as_numpy(spheres_dataset(20_000, dim=10, seed=3))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    # Each coordinate has mean 0 and variance 1/d; the standard error of a mean is ~0.002.
    assert np.abs(u.mean(axis=0)).max() < 0.01
    np.testing.assert_allclose((u**2).mean(axis=0), 1.0 / 10, rtol=0.05)
    # Inner and outer spheres use the same distribution of directions.
    assert np.abs(u[y == 0].mean(axis=0) - u[y == 1].mean(axis=0)).max() < 0.02


def test_oracle_is_perfect_on_the_data_for_numpy_and_tensors():
    x, y = _as_numpy(spheres_dataset(4000, seed=4))
    np.testing.assert_array_equal(oracle(x), y)
    labels = oracle(tf.constant(x))
    assert tf.is_tensor(labels) and labels.dtype == tf.int32
    np.testing.assert_array_equal(labels.numpy(), y)


def test_oracle_threshold_is_the_mean_radius():
    direction = np.eye(5)[0]
    points = np.stack([4.4 * direction, 5.6 * direction, 1.0 * direction, 10.0 * direction])
    np.testing.assert_array_equal(oracle(points, radii=(1.0, 10.0)), [0, 1, 0, 1])
    # Unbatched input gives a scalar label.
    assert oracle(5.6 * direction) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_samples=0), "num_samples=0"),
    (dict(num_samples=10, dim=0), "dim=0"),
    (dict(num_samples=10, dim=2.5), "dim=2.5"),
    (dict(num_samples=10, radii=(10.0, 1.0)), "radii=(10.0, 1.0)"),
    (dict(num_samples=10, radii=(0.0, 1.0)), "radii=(0.0, 1.0)"),
    (dict(num_samples=10, radii=(1.0,)), "radii=(1.0,)"),
    (dict(num_samples=10, seed="a"), "seed='a'"),
])
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spheres_dataset(**kwargs)


def test_load_dataset_spheres_batches_and_separates_train_from_test():
    config = dict(name="spheres", batch_size=32, dim=20, radii=(1.0, 10.0), num_train=100,
                  num_test=50, seed=5)
    train = data.load_dataset(config, "train", training=True)
    test = data.load_dataset(config, "test", training=False)
    assert data.batches_per_pass(config) == 3
    train_batches = list(train.take(3))
    test_batches = list(test)
    # Training drops the remainder, evaluation keeps it.
    assert [b[0].shape[0] for b in train_batches] == [32, 32, 32]
    assert [b[0].shape[0] for b in test_batches] == [32, 18]
    assert train.element_spec[0].shape.as_list() == [32, 20]
    x_train = np.concatenate([b[0] for b in train_batches])
    x_test = np.concatenate([b[0] for b in test_batches])
    distances = np.linalg.norm(x_train[:, None] - x_test[None], axis=-1)
    assert distances.min() > 1e-3
    for x, y in train_batches + test_batches:
        np.testing.assert_array_equal(oracle(x.numpy()), y.numpy())
    assert data.input_shape(config) == (20,)
    assert data.num_classes("spheres") == 2
