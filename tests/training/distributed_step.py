"""One training step on one device and under MirroredStrategy on 2 logical CPUs.

Run as a subprocess (logical devices must be configured before TensorFlow starts):
    python -m tests.training.distributed_step LOSS ADVERSARY  ->  prints {"max_abs_diff": ..., ...}
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from invertible_keras.models import FiRevNet  # noqa: E402
from invertible_keras.training.trainer import Trainer  # noqa: E402
from tests.layer_test_case import perturb_weights  # noqa: E402

GLOBAL_BATCH = 8


def make_trainer(loss, adversary, x, weights=None):
    network = FiRevNet.conv(input_shape=(8, 8, 1), num_classes=4, num_stages=2, blocks_per_stage=1,
                            filters=8, batch_norm=False, seed=0)
    network.initialize(x)
    trainer = Trainer(network, nuisance_hidden_units=(8, 8, 8))
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), nuisance_optimizer=keras.optimizers.SGD(0.1),
                    loss=loss, adversary=adversary, nuisance_steps=2)
    trainer.build_optimizers()
    if weights is None:
        perturb_weights(trainer, scale=0.05)
    else:
        trainer.set_weights(weights)
    return trainer


def main(loss, adversary):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (GLOBAL_BATCH, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, GLOBAL_BATCH).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)

    single = make_trainer(loss, adversary, x)
    start = single.get_weights()
    single.fit(dataset, epochs=1, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = make_trainer(loss, adversary, x, weights=start)
    mirrored.fit(dataset, epochs=1, verbose=0)

    def max_abs_diff(first, second):
        return max(float(np.max(np.abs(a.astype("float64") - b))) for a, b in zip(first, second))

    after = single.get_weights()
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "max_abs_diff": max_abs_diff(after, mirrored.get_weights()),
                      "max_change": max_abs_diff(after, start)}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
