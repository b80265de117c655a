"""Decision regions on 2D planes of the input space (paper, figure 3; Gilmer et al., 2018).

A plane is the linear span of two inputs u and v (it passes through the origin, so on the
adversarial spheres it cuts both spheres in circles of radius R1 and R2). With the orthonormal
basis from Gram-Schmidt,

    e1 = u / |u|,   e2 = (v - <v, e1> e1) / |v - <v, e1> e1|,

every grid point x = alpha e1 + beta e2 is labelled twice:

* by the logit classifier D(x) = argmax z_s(x) of the fiRevNet, and
* by the post-hoc nuisance classifier D_nc(z_n(x)) (`analysis.posthoc`).

Figure 3 shows two planes: (left) through two data points, (right) through a data point x and
a metamer x_met = F^-1(z_s(x), z_n(x')) with x' from the other sphere. On the right plane D
keeps x's class along a path that leaves x's sphere and reaches the other one, while the
nuisance classifier, which sees the part of the input D is invariant to, follows the spheres.
"""

import dataclasses

import numpy as np

from invertible_keras.analysis import network as network_lib
from invertible_keras.metamers import metamers_in_batches


@dataclasses.dataclass
class Plane:
    """Labels of both classifiers on a square grid of a 2D plane.

    Attributes:
        title: what the plane goes through.
        basis: `(2, d)` orthonormal rows e1, e2.
        coordinates: `(resolution,)` grid values of alpha and of beta (the same for both).
        logit_labels: `(resolution, resolution)` labels of D; `[i, j]` is at
            (alpha, beta) = (coordinates[j], coordinates[i]), as `matplotlib.pcolormesh` reads it.
        nuisance_labels: same, of the nuisance classifier.
        landmarks: name -> `(alpha, beta)` of the points that define the plane.
    """

    title: str
    basis: np.ndarray
    coordinates: np.ndarray
    logit_labels: np.ndarray
    nuisance_labels: np.ndarray
    landmarks: dict


def plane_basis(u, v):
    """Orthonormal basis `(2, d)` of span{u, v} by Gram-Schmidt.

    Raises:
        ValueError: if u is zero or v is (numerically) parallel to u.
    """
    u, v = np.asarray(u, np.float64).ravel(), np.asarray(v, np.float64).ravel()
    if not np.linalg.norm(u) > 0.0:
        raise ValueError(f"Cannot span a plane: u has norm {np.linalg.norm(u)}; expected a non-zero vector.")
    e1 = u / np.linalg.norm(u)
    w = v - np.dot(v, e1) * e1
    if not np.linalg.norm(w) > 1e-6 * np.linalg.norm(v):
        raise ValueError(f"Cannot span a plane: v is parallel to u (the part of v orthogonal to u has norm "
                         f"{np.linalg.norm(w):.3g}, |v| = {np.linalg.norm(v):.3g}); expected independent vectors.")
    return np.stack([e1, w / np.linalg.norm(w)])


def decision_plane(network, nuisance_classifier, u, v, title, extent=None, resolution=101, batch_size=1024):
    """Labels both classifiers on the plane span{u, v} (u, v of the network's input shape).

    Args:
        network: anything with `encode` (see `analysis.network`), taking flat vectors.
        nuisance_classifier: a Keras model from z_n to logits.
        u, v: the two points that define the plane; they are its landmarks.
        title: the plane's title.
        extent: half width of the square grid in input units; None: 1.3 times the largest
            landmark coordinate.
        resolution: grid points per side.
        batch_size: points per call of the network.

    Returns:
        A `Plane`.
    """
    basis = plane_basis(u, v)
    landmarks = {"u": basis @ np.ravel(u), "v": basis @ np.ravel(v)}
    if extent is None:
        extent = 1.3 * max(float(np.max(np.abs(c))) for c in landmarks.values())
    coordinates = np.linspace(-extent, extent, resolution)
    alpha, beta = np.meshgrid(coordinates, coordinates)
    points = (alpha.reshape(-1, 1) * basis[0] + beta.reshape(-1, 1) * basis[1]).astype(np.float32)
    z_s, z_n = network_lib.encode(network, points, batch_size)
    nuisance_logits = nuisance_classifier.predict(z_n, batch_size=batch_size, verbose=0)
    shape = (resolution, resolution)
    return Plane(title, basis, coordinates, np.argmax(z_s, -1).reshape(shape),
                 np.argmax(nuisance_logits, -1).reshape(shape), landmarks)


def spheres_planes(network, nuisance_classifier, x, y, radii=(1.0, 10.0), seed=0, resolution=101):
    """The two planes of figure 3 on adversarial spheres data.

    Args:
        network: the spheres fiRevNet (see `analysis.network`).
        nuisance_classifier: the post-hoc nuisance classifier of that network.
        x, y: spheres examples (numpy) with both labels (0 inner, 1 outer).
        radii: `(R1, R2)`, to size the grid (at least 1.3 R2 wide on each side).
        seed: which examples are drawn.
        resolution: grid points per side.

    Returns:
        `[plane through an inner and an outer data point, plane through an inner point x and
        its metamer x_met = F^-1(z_s(x), z_n(x_outer))]`; landmarks renamed accordingly.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y)
    rng = np.random.default_rng(seed)
    inner = x[rng.choice(np.flatnonzero(y == 0), 2, replace=False)]
    outer = x[rng.choice(np.flatnonzero(y == 1), 1)]
    x_met = metamers_in_batches(network, inner[1:], outer)[0]
    min_extent = 1.3 * float(radii[1])
    planes = []
    for u, v, names, title in ((inner[0], outer[0], ("x1", "x2"), "plane through data points x1 (inner), x2 (outer)"),
                               (inner[1], x_met, ("x", "x_met"), "plane through x (inner) and its metamer x_met")):
        extent = max(min_extent, 1.3 * float(max(np.linalg.norm(u), np.linalg.norm(v))))
        plane = decision_plane(network, nuisance_classifier, u, v, title, extent, resolution)
        plane.landmarks = dict(zip(names, plane.landmarks.values()))
        planes.append(plane)
    return planes

