"""One training step on one device and under MirroredStrategy on 2 logical CPUs.

Run as a subprocess (logical devices must be configured before TensorFlow starts):
    python -m tests.training.distributed_step LOSS ADVERSARY [OPTIMIZER]  ->  prints {"max_abs_diff": ..., ...}

OPTIMIZER is "sgd" (default) or a name of `optimizers.make_optimizer` (the fused kernels).
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from invertible_keras.models import builders  # noqa: E402
from invertible_keras.training.objective import Objective  # noqa: E402
from invertible_keras.training.optimizers import make_optimizer  # noqa: E402
from tests.layer_test_case import perturb_weights  # noqa: E402

GLOBAL_BATCH = 8


def make_model(loss, adversary, optimizer, x, weights=None):
    network = builders.conv(input_shape=(8, 8, 1), num_classes=4, num_stages=2, blocks_per_stage=1,
                            filters=8, batch_norm=False, seed=0)
    network.initialize(x)
    rate = 0.1 if optimizer == "sgd" else 0.01  # Adam-like steps move every weight by about the rate
    network.compile(optimizer=make_optimizer(optimizer, rate, momentum=0.0),
                    loss=Objective(loss, nuisance_optimizer=make_optimizer(optimizer, rate, momentum=0.0),
                                   adversary=adversary,
                                   nuisance_steps=2, nuisance_hidden_units=(8, 8, 8)))
    if weights is None:
        perturb_weights(network, scale=0.05)
        perturb_weights(network.objective.prior, scale=0.05)
        perturb_weights(network.objective.nuisance_classifier, scale=0.05)
    else:
        set_state(network, weights)
    return network


def state(model):
    """The values of every variable of a training network: its own and its objective's."""
    return [v.numpy() for v in model.variables + model.objective.variables]


def set_state(model, values):
    for variable, value in zip(model.variables + model.objective.variables, values, strict=True):
        variable.assign(value)


def main(loss, adversary, optimizer="sgd"):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (GLOBAL_BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, GLOBAL_BATCH).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)

    single = make_model(loss, adversary, optimizer, x)
    start = state(single)
    single.fit(dataset, epochs=1, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = make_model(loss, adversary, optimizer, x, weights=start)
    mirrored.fit(dataset, epochs=1, verbose=0)

    def max_abs_diff(first, second):
        return max(float(np.max(np.abs(a.astype("float64") - b))) for a, b in zip(first, second))

    after = state(single)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_abs_diff": max_abs_diff(after, state(mirrored)),
                      "max_change": max_abs_diff(after, start)}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
