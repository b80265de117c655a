"""The shared test of the invertible layer contract, called by every layer test.

`run_layer_test` checks, for one layer class and constructor arguments:
  1. round trip: inverse(call(x)) == x in float32 (rtol = atol = 1e-5), with weights perturbed
     away from their (often identity) initialisation so the test is not trivial;
  2. inverse_and_log_det == -forward_and_log_det, and call(x) == forward_and_log_det(x)[0];
  3. log-det == slogdet of the autodiff Jacobian (tf.GradientTape.batch_jacobian) in float64;
  4. serialization: get_config/from_config and a `.keras` save/load give identical outputs
     and inverses;
  5. one `model.fit` step runs and changes the trainable weights.
The worst errors of 1 and 3 are recorded in MEASURED and printed at the end of the run.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

MEASURED = {}  # case name -> (round-trip max abs error, log-det max abs error or None)

ROUND_TRIP_TOL = 1e-5
LOG_DET_TOL = 1e-8  # float64


def perturb_weights(layer, scale=0.1, seed=0):
    """Adds noise to every trainable weight so zero-initialised subnets are no longer zero."""
    rng = np.random.default_rng(seed)
    for w in layer.trainable_weights:
        value = keras.ops.convert_to_numpy(w)
        w.assign(value + scale * rng.standard_normal(value.shape).astype(value.dtype))


def initialize(layer, x):
    if hasattr(layer, "initialize"):
        layer.initialize(x)
    elif not layer.built:
        layer.forward_and_log_det(x)


def prepared_layer(cls, init_kwargs, x, dtype="float32", weights=None):
    """A built, initialised layer with perturbed weights, or with `weights` when given."""
    layer = cls(**init_kwargs, dtype=dtype)
    initialize(layer, x)
    if weights is None:
        perturb_weights(layer)
    else:
        layer.set_weights([w.astype(dtype) if w.dtype.kind == "f" else w for w in weights])
    return layer


def run_layer_test(cls, init_kwargs, input_shape, name=None, batch_size=3, run_fit=True, seed=0):
    """Runs the contract checks above; `input_shape` (no batch axis) must be small (Jacobian)."""
    name = name or cls.__name__
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (batch_size, *input_shape)).astype("float32")
    layer = prepared_layer(cls, init_kwargs, x)

    # 1-2: round trip and log-det consistency in float32.
    y, log_det = layer.forward_and_log_det(x)
    np.testing.assert_allclose(layer(x), y, rtol=1e-6, atol=1e-6)
    x_back, inverse_log_det = layer.inverse_and_log_det(y)
    np.testing.assert_allclose(x_back, x, rtol=ROUND_TRIP_TOL, atol=ROUND_TRIP_TOL)
    np.testing.assert_allclose(layer.inverse(y), x_back)
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-5, atol=1e-4)
    assert log_det.shape == (batch_size,), f"log-det shape {log_det.shape}, expected ({batch_size},)"
    round_trip_error = float(np.max(np.abs(x_back - x)))

    # 3: log-det against slogdet of the Jacobian, float64, same weights.
    x64 = rng.uniform(-1.0, 1.0, (2, *input_shape))
    layer64 = prepared_layer(cls, init_kwargs, x64, dtype="float64", weights=layer.get_weights())
    log_det_error = jacobian_log_det_error(layer64, x64)
    MEASURED[name] = (round_trip_error, log_det_error)
    assert log_det_error < LOG_DET_TOL, f"{name}: log-det differs from slogdet(J) by {log_det_error}"

    # 4: serialization.
    restored = cls.from_config(layer.get_config())
    initialize(restored, x)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(restored(x), y, rtol=1e-6, atol=1e-6)
    check_keras_file_round_trip(layer, x)

    # 5: a fit step changes the weights.
    if run_fit:
        check_fit_step(cls, init_kwargs, x)
    return layer


def jacobian_log_det_error(layer, x):
    """Max over the batch of |log-det - slogdet(dy/dx)|; x must be float64 and small."""
    x = tf.constant(x, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, log_det = layer.forward_and_log_det(x)
    jac = tape.batch_jacobian(y, x)
    n = int(np.prod(x.shape[1:]))
    jac = tf.reshape(jac, [x.shape[0], -1, n])
    assert jac.shape[1] == n, f"the layer changes the dimension: {jac.shape[1]} outputs for {n} inputs"
    sign, expected = np.linalg.slogdet(jac.numpy())
    assert np.all(sign != 0), "singular Jacobian"
    return float(np.max(np.abs(expected - log_det.numpy())))


def check_keras_file_round_trip(layer, x):
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    y = model.predict(x, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.layers[-1].inverse(y), layer.inverse(y), rtol=1e-6, atol=1e-6)


def check_fit_step(cls, init_kwargs, x):
    layer = cls(**init_kwargs)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    initialize(layer, x)
    if not layer.trainable_weights:
        return
    before = [keras.ops.convert_to_numpy(w).copy() for w in layer.trainable_weights]
    target = np.random.default_rng(1).standard_normal(model.output_shape[1:]).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.fit(x, np.broadcast_to(target, (len(x), *target.shape)), epochs=1, batch_size=len(x), verbose=0)
    after = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(before, after)), f"{cls.__name__}: fit changed no weight"
