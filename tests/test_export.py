"""SavedModel export: endpoints equal the eager model, load with TensorFlow alone, atomic writes."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras.export import ENDPOINTS, export_saved_model
from invertible_keras.metamers import metamer
from invertible_keras.models import builders
from invertible_keras.training.objective import Objective
from tests.model_test_utils import make_inputs, train_a_few_steps

TOL = 1e-5


def trained_conv_model():
    # Two stages of one block keep the export's tracing short; batch norm checks inference mode.
    model = builders.conv(num_stages=2, blocks_per_stage=1, filters=8, batch_norm=True, seed=0)
    x, y = make_inputs(model)
    train_a_few_steps(model, x, y, steps=3)
    # One iCE step too: the objective's prior and D_phi must stay out of the export.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=Objective("ice", nuisance_hidden_units=(8,)))
    model.train_on_batch(x, y)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = trained_conv_model()
    directory = export_saved_model(model, tmp_path_factory.mktemp("workdir") / "export")
    return model, directory, tf.saved_model.load(directory)


@pytest.mark.parametrize("batch_size", [2, 5])
def test_endpoints_equal_eager_model(exported, batch_size):
    model, _, loaded = exported
    rng = np.random.default_rng(batch_size)
    x_a = rng.uniform(0, 1, (batch_size, 28, 28, 1)).astype("float32")
    x_b = rng.uniform(0, 1, (batch_size, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(loaded.logits(x_a), model(x_a), atol=TOL)
    z_s, z_n = loaded.encode(x_a)
    expected_z_s, expected_z_n = model.encode(x_a)
    np.testing.assert_allclose(z_s, expected_z_s, atol=TOL)
    np.testing.assert_allclose(z_n, expected_z_n, atol=TOL)
    np.testing.assert_allclose(loaded.decode(z_s, z_n), model.decode(expected_z_s, expected_z_n), atol=TOL)
    np.testing.assert_allclose(loaded.decode(z_s, z_n), x_a, atol=1e-4)
    np.testing.assert_allclose(loaded.metamer(x_a, x_b), metamer(model, x_a, x_b), atol=TOL)


def test_endpoints_have_a_none_batch_axis(exported):
    model, _, loaded = exported
    assert set(ENDPOINTS) <= set(loaded.signatures)
    for name in ENDPOINTS:
        specs = loaded.signatures[name].structured_input_signature[1]
        assert specs and all(spec.shape[0] is None for spec in specs.values()), (name, specs)
    assert loaded.signatures["decode"].structured_input_signature[1]["z_n"].shape == (None, model.num_nuisances)


def test_the_export_holds_the_network_and_its_parts_but_not_the_objective(exported):
    model, _, loaded = exported
    objective = model.objective
    assert objective is not None and objective.prior.variables
    assert not {id(v) for v in objective.variables} & {id(v) for v in model.variables}
    assert sorted(tuple(v.shape) for v in loaded.variables) == sorted(tuple(v.shape) for v in model.variables)
    d_kernel = tuple(objective.nuisance_classifier.trainable_variables[0].shape)
    assert d_kernel == (model.num_nuisances, 8) and d_kernel not in {tuple(v.shape) for v in loaded.variables}
    parts = {name: tuple(int(b) for b in bounds) for name, bounds in loaded.nuisance_parts().items()}
    assert parts == model.nuisance_parts and parts


def test_metamer_endpoint_rejects_batch_mismatch(exported):
    _, _, loaded = exported
    x = np.zeros((3, 28, 28, 1), "float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        loaded.metamer(x, x[:2])


def test_loads_with_tensorflow_alone(exported, tmp_path):
    model, directory, _ = exported
    x = np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load({directory!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        z_s, z_n = loaded.encode(x)
        x_back = loaded.decode(z_s, z_n).numpy().reshape(3, -1)
        np.save({str(tmp_path / "out.npy")!r}, np.concatenate([loaded.logits(x), x_back], axis=1))
        assert not any(m.startswith("invertible_keras") for m in sys.modules), "project was imported"
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out[:, :10], model(x), atol=TOL)
    np.testing.assert_allclose(out[:, 10:], x.reshape(3, -1), atol=1e-4)


def test_export_replaces_an_existing_export_and_leaves_no_temporary_files(tmp_path):
    model = builders.dense(input_dim=8, num_blocks=2, hidden_units=4)  # tiny: export twice
    x = np.random.default_rng(0).normal(size=(2, 8)).astype("float32")
    target = tmp_path / "export"
    export_saved_model(model, target)
    # Keep the loaded object alive while calling it: it owns the variables.
    loaded = tf.saved_model.load(str(target))
    before = loaded.logits(x).numpy()
    for w in model.trainable_weights:
        w.assign(w + 0.1)
    export_saved_model(model, target)
    loaded = tf.saved_model.load(str(target))
    after = loaded.logits(x).numpy()
    assert os.listdir(tmp_path) == ["export"]
    np.testing.assert_allclose(after, model(x), atol=TOL)
    assert np.abs(after - before).max() > 1e-3
