"""Example 6 of the paper: a mis-aligned classifier on the adversarial spheres.

The classifier of equation (5) computes the norm from the first d - 1 coordinates only,

    D(x) = sign( |x_{1..d-1}| - (R1 + R2) / 2 )        (1: outer sphere, 0: inner),

so it is invariant to the last coordinate x_d. On spheres data x_d carries almost nothing of
the norm (|x_d| ~ R / sqrt(d)), so D is perfect on the data. It is also invariant to a
*semantic* perturbation (Definition 4): changing x_d alone moves every inner point onto the
outer sphere,

    x_d' = sign(x_d) sqrt(R2^2 - |x_{1..d-1}|^2)          (|x'| = R2, possible as R1 < R2),

which the oracle labels outer while D still says inner. On a balanced sample D's accuracy
drops from 100 % to 50 % (chance): excessive invariance, not a lack of data, causes the
errors.
"""

import numpy as np

from invertible_keras.data import spheres


def misaligned_classifier(x, radii=(1.0, 10.0)):
    """Equation (5): 1 (outer) iff |x_{1..d-1}| > (R1 + R2) / 2, ignoring the last coordinate."""
    x = np.asarray(x)
    return (np.linalg.norm(x[..., :-1], axis=-1) > 0.5 * (radii[0] + radii[1])).astype(np.int32)


def shift_last_coordinate(x, y, radii=(1.0, 10.0)):
    """Moves every inner-sphere point (y = 0) onto the outer sphere by changing x_d only.

    Args:
        x: spheres examples `(n, d)`.
        y: their labels (0 inner, 1 outer).
        radii: `(R1, R2)`.

    Returns:
        `(x_shifted, y_shifted)`: outer points unchanged, inner points with
        x_d' = sign(x_d) sqrt(R2^2 - |x_{1..d-1}|^2) (sign + for x_d = 0), all labelled 1 by
        the oracle.
    """
    x, y = np.array(x, np.float64), np.asarray(y)
    rest = np.sum(x[:, :-1] ** 2, axis=-1)
    if np.any(rest[y == 0] > radii[1] ** 2):
        raise ValueError(f"An inner point has |x_(1..d-1)| > R2 = {radii[1]}; expected inner points of "
                         f"radius R1 = {radii[0]} < R2.")
    moved = y == 0
    sign = np.where(x[:, -1] < 0, -1.0, 1.0)
    x[moved, -1] = sign[moved] * np.sqrt(radii[1] ** 2 - rest[moved])
    return x.astype(np.float32), spheres.oracle(x, radii)


def example6(x, y, radii=(1.0, 10.0), classifiers=None):
    """Accuracy of equation (5) (and any other classifiers) before and after the shift.

    Args:
        x, y: spheres examples and labels (balanced for the 50 % of the paper).
        radii: `(R1, R2)`.
        classifiers: optional dict name -> callable `x -> labels` to measure on the same
            points (e.g. a fiRevNet's logit classifier); equation (5) is always included as
            "equation_5".

    Returns:
        `{"classifiers": {name: {"accuracy": on the data, "accuracy_shifted": after moving
        x_d}}, "moved_fraction": share of points moved onto the outer sphere, "num_examples"}`.
    """
    x_shifted, y_shifted = shift_last_coordinate(x, y, radii)
    classifiers = {"equation_5": lambda v: misaligned_classifier(v, radii), **(classifiers or {})}
    accuracies = {name: {"accuracy": float(np.mean(classify(np.asarray(x, np.float32)) == y)),
                         "accuracy_shifted": float(np.mean(classify(x_shifted) == y_shifted))}
                  for name, classify in classifiers.items()}
    return {"classifiers": accuracies, "moved_fraction": float(np.mean(np.asarray(y) == 0)),
            "num_examples": int(len(y))}
