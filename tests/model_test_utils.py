"""Shared helpers of the model-level tests: inputs and a few training steps."""

import keras
import numpy as np
import tensorflow as tf


def make_inputs(model, batch_size=8, seed=0):
    """Images (or vectors) in [0, 1] of the model's input shape, and random labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (batch_size, *model.input_shape)).astype("float32")
    y = rng.integers(0, model.num_classes, batch_size)
    return x, y


def train_a_few_steps(model, x, y, steps=4, learning_rate=1e-2):
    """ActNorm init, then Adam on the cross-entropy of the logits, so weights are non-trivial."""
    model.initialize(x)
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
    assert np.isfinite(float(loss))
    return model
