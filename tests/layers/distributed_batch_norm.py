"""A coupling with batch norm on one device and under MirroredStrategy on 2 logical CPUs.

Run as a subprocess (logical devices must be configured before TensorFlow starts):
    python -m tests.layers.distributed_batch_norm  ->  prints {"replicas": 2, "max_abs_diff": ...}
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from invertible_keras import layers  # noqa: E402


def make_coupling(x):
    coupling = layers.AdditiveCoupling(hidden_units=8, batch_norm=True, zero_init=False)
    coupling.build(x.shape)
    for i, weight in enumerate(coupling.weights):
        if weight.trainable:
            weight.assign(np.random.default_rng(i).normal(0.0, 0.5, weight.shape))
    return coupling


def main():
    rng = np.random.default_rng(0)
    # The two halves of the batch differ in mean and scale, so local and global statistics differ.
    x = np.concatenate([rng.normal(0.0, 1.0, (4, 6, 6, 4)), rng.normal(3.0, 5.0, (4, 6, 6, 4))]).astype("float32")

    single = make_coupling(x)
    y_single = single(x, training=True).numpy()

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = make_coupling(x)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(8))
    per_replica = strategy.run(tf.function(lambda batch: mirrored(batch, training=True)), args=(next(iter(dataset)),))
    y_mirrored = np.concatenate([t.numpy() for t in strategy.experimental_local_results(per_replica)])

    moving = [(a.numpy(), b.numpy()) for a, b in zip(single.weights, mirrored.weights) if "moving" in a.path]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "max_abs_diff": float(np.max(np.abs(y_single - y_mirrored))),
                      "max_moving_diff": max(float(np.max(np.abs(a - b))) for a, b in moving),
                      "num_moving": len(moving)}))


if __name__ == "__main__":
    main()
