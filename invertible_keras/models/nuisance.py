"""The nuisance classifier D_phi: an MLP that reads class information from z_n.

Used adversarially during iCE training (paper, Definition 7) and, freshly trained on the
frozen network's z_n, as the post-hoc measure of how much class information hides in the
nuisances (paper, Table 2). Paper sizes: 3 ReLU layers of 1000 units (spheres), 512 (images).
"""

import keras


def nuisance_classifier(num_classes, hidden_units=(512, 512, 512), name="nuisance_classifier"):
    """Returns an (unbuilt) `keras.Sequential` MLP mapping z_n to class logits.

    Args:
        num_classes: number of output logits.
        hidden_units: widths of the ReLU layers.
    """
    hidden_units = tuple(hidden_units)
    if not hidden_units or any(not isinstance(u, int) or u < 1 for u in hidden_units):
        raise ValueError(f"`hidden_units` must be positive integers. Received: hidden_units={hidden_units!r}")
    layers = [keras.layers.Dense(u, activation="relu") for u in hidden_units]
    return keras.Sequential(layers + [keras.layers.Dense(num_classes)], name=name)
