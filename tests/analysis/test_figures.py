"""Decision planes (figure 3), metamer grids (figure 4) and interpolations (figure 6)."""

import keras
import matplotlib.image
import numpy as np
import pytest

from invertible_keras import data, metamers
from invertible_keras.analysis import figures, planes
from invertible_keras.analysis.network import encode, take_examples
from invertible_keras.models import builders
from tests.analysis.linear_bijection import DIM, LinearBijection

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_size=(100, 100)):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE, path
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height >= min_size[0] and width >= min_size[1], (height, width)


def test_plane_basis_is_orthonormal_and_spans_both_points():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=10), rng.normal(size=10)
    basis = planes.plane_basis(u, v)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)
    for point in (u, v):
        np.testing.assert_allclose((basis @ point) @ basis, point, atol=1e-12)
    with pytest.raises(ValueError, match="parallel"):
        planes.plane_basis(u, 3.0 * u)


def test_decision_plane_labels_every_grid_point_where_it_lies():
    network = LinearBijection(readout=np.eye(DIM)[0])  # D(x) = [x_0 > 0]
    nuisance = keras.Sequential([keras.Input((DIM - 2,)), keras.layers.Dense(2)])
    eye = np.eye(DIM)
    # e1 = (e0 + e3) / sqrt(2), e2 = (e3 - e0) / sqrt(2): x_0 = (alpha - beta) / sqrt(2).
    plane = planes.decision_plane(network, nuisance, eye[0] + eye[3], eye[3], "test", extent=2.0, resolution=9)
    c = plane.coordinates
    assert plane.logit_labels.shape == (9, 9)
    off_diagonal = ~np.eye(9, dtype=bool)  # alpha = beta is the boundary x_0 = 0 itself
    np.testing.assert_array_equal(plane.logit_labels[off_diagonal], (c[None, :] > c[:, None])[off_diagonal])
    alpha, beta = np.meshgrid(c, c)
    points = alpha.reshape(-1, 1) * plane.basis[0] + beta.reshape(-1, 1) * plane.basis[1]
    expected = np.argmax(nuisance.predict(encode(network, points.astype("float32"))[1], verbose=0), -1)
    np.testing.assert_array_equal(plane.nuisance_labels.ravel(), expected)
    np.testing.assert_allclose(plane.landmarks["u"], [np.sqrt(2.0), 0.0], atol=1e-6)


@pytest.fixture(scope="module")
def spheres_setup():
    config = {"name": "spheres", "batch_size": 64, "dim": 10, "num_test": 64}
    x, y = take_examples(data.load_dataset(config, "test", training=False), 64)
    network = builders.dense(input_dim=10, hidden_units=8)
    nuisance = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    return network, nuisance, x, y


def test_spheres_planes_go_through_data_points_and_a_metamer(spheres_setup, tmp_path):
    network, nuisance, x, y = spheres_setup
    data_plane, metamer_plane = planes.spheres_planes(network, nuisance, x, y, resolution=21)
    assert set(data_plane.landmarks) == {"x1", "x2"} and set(metamer_plane.landmarks) == {"x", "x_met"}
    # x1 lies on the inner sphere (|x1| = R1) along the first axis of its plane.
    np.testing.assert_allclose(data_plane.landmarks["x1"], [1.0, 0.0], atol=1e-5)
    assert np.linalg.norm(data_plane.landmarks["x2"]) == pytest.approx(10.0, rel=1e-5)
    assert data_plane.coordinates[-1] >= 13.0  # the grid covers the outer sphere
    for plane in (data_plane, metamer_plane):
        assert plane.logit_labels.shape == plane.nuisance_labels.shape == (21, 21)

    path = figures.plot_decision_planes([data_plane, metamer_plane], tmp_path / "figure3.png", radii=(1.0, 10.0),
                                        title="test")
    assert_png(path, (400, 400))


def test_metamer_grid_and_interpolations_are_written_for_images_and_vectors(spheres_setup, tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.uniform(size=(3, 28, 28, 1)).astype("float32") for _ in range(3)]
    grid = figures.plot_metamer_grid([("CE", *images), ("iCE", *images)], tmp_path / "grid.png", title="t")
    assert_png(grid, (200, 400))
    paths = rng.uniform(size=(3, 4, 28, 28, 1))
    interp = figures.plot_interpolations([("CE", paths, images[2]), ("iCE", paths, images[2])],
                                         tmp_path / "interp.png")
    assert_png(interp, (300, 400))

    network, _, x, _ = spheres_setup
    vector_paths = np.asarray(metamers.interpolate(network, x[:2], x[2:4], 3))
    assert_png(figures.plot_interpolations([("dense", vector_paths, x[2:4])], tmp_path / "vectors.png"), (100, 100))
    with pytest.raises(ValueError, match=r"Received shape \(2, 2\)"):
        figures.plot_metamer_grid([("bad", np.zeros((1, 2, 2)),) * 1 + (np.zeros((1, 2, 2)),) * 2],
                                  tmp_path / "bad.png")
