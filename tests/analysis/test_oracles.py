"""The CNN oracle of image data is trained once, cached as .keras and reused."""

import os

import numpy as np
import pytest

from invertible_keras.analysis import oracles

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="needs dataset-fashion-mnist")
def test_cnn_oracle_is_cached_and_reloaded(tmp_path):
    data_config = {"name": "fashion_mnist", "batch_size": 64, "shuffle_buffer": 256}
    first = oracles.make_oracle(data_config, str(tmp_path), epochs=1, steps_per_epoch=3)
    path = tmp_path / "oracles" / "fashion_mnist_cnn_e1_s3.keras"
    assert first.path == str(path) and path.stat().st_size > 0
    mtime = path.stat().st_mtime_ns

    second = oracles.make_oracle(data_config, str(tmp_path), epochs=1, steps_per_epoch=3)
    assert path.stat().st_mtime_ns == mtime  # loaded, not retrained
    x = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
    np.testing.assert_array_equal(first(x), second(x))
    assert second(x).shape == (8,) and second(x).dtype == np.int32
