"""Example 6: equation (5) is perfect on spheres data and at chance after moving x_d."""

import numpy as np
import pytest

from invertible_keras import data
from invertible_keras.analysis import example6
from invertible_keras.analysis.network import take_examples

RADII = (1.0, 10.0)


@pytest.fixture(scope="module")
def spheres_sample():
    config = {"name": "spheres", "batch_size": 500, "dim": 100, "num_test": 2000, "radii": RADII}
    return take_examples(data.load_dataset(config, "test", training=False), 2000)


def test_equation_5_is_perfect_on_the_data_and_at_chance_after_the_shift(spheres_sample):
    x, y = spheres_sample
    result = example6.example6(x, y, RADII)
    accuracy = result["classifiers"]["equation_5"]
    assert accuracy["accuracy"] == 1.0
    assert accuracy["accuracy_shifted"] == pytest.approx(0.5)  # the sample is balanced
    assert result["moved_fraction"] == pytest.approx(0.5)
    assert result["num_examples"] == 2000


def test_the_shift_changes_only_the_last_coordinate_and_lands_on_the_outer_sphere(spheres_sample):
    x, y = spheres_sample
    x_shifted, y_shifted = example6.shift_last_coordinate(x, y, RADII)
    np.testing.assert_array_equal(x_shifted[:, :-1], x[:, :-1])
    np.testing.assert_array_equal(x_shifted[y == 1], x[y == 1])
    np.testing.assert_allclose(np.linalg.norm(x_shifted, axis=-1), RADII[1], rtol=1e-5)
    np.testing.assert_array_equal(y_shifted, 1)
    # Equation 5 cannot see the move: its labels are unchanged.
    np.testing.assert_array_equal(example6.misaligned_classifier(x_shifted, RADII),
                                  example6.misaligned_classifier(x, RADII))


def test_a_classifier_that_reads_the_whole_norm_is_not_fooled(spheres_sample):
    """A norm rule written here (not the library's oracle) stays perfect: the moved points
    really lie on the outer sphere and their labels say so."""
    x, y = spheres_sample
    norm_rule = lambda v: (np.sqrt(np.sum(np.square(v, dtype=np.float64), axis=-1)) > 5.5).astype(np.int32)
    result = example6.example6(x, y, RADII, classifiers={"norm": norm_rule})
    assert result["classifiers"]["norm"] == {"accuracy": 1.0, "accuracy_shifted": 1.0}
