"""The nuisance classifier D_phi: an MLP that reads class information from z_n.

Used adversarially during iCE training (paper, Definition 7) and, freshly trained on the
frozen network's z_n, as the post-hoc measure of how much class information hides in the
nuisances (paper, Table 2). Paper sizes: 3 ReLU layers of 1000 units (spheres), 512 (images).
"""

import keras


def nuisance_classifier(num_classes, hidden_units=(512, 512, 512), standardize=False, dropout=0.0,
                        name="nuisance_classifier"):
    """Returns an (unbuilt) `keras.Sequential` MLP mapping z_n to class logits.

    Args:
        num_classes: number of output logits.
        hidden_units: widths of the ReLU layers.
        standardize: start with a batch normalisation without scale and offset, so the MLP
            sees z_n standardised per variable with the batch's statistics (the scales of
            z_n vary by orders of magnitude and move while the network trains); synchronized
            across the replicas of a `tf.distribute` strategy.
        dropout: dropout rate after every hidden layer (the authors' code: 0.1).
    """
    hidden_units = tuple(hidden_units)
    if not hidden_units or any(not isinstance(u, int) or u < 1 for u in hidden_units):
        raise ValueError(f"`hidden_units` must be positive integers. Received: hidden_units={hidden_units!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    layers = [keras.layers.BatchNormalization(center=False, scale=False, synchronized=True)] if standardize else []
    for units in hidden_units:
        layers.append(keras.layers.Dense(units, activation="relu"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout))
    return keras.Sequential(layers + [keras.layers.Dense(num_classes)], name=name)
