"""The run directory: names of checkpointed weights, restoring a network alone, config checks, JSON writes."""

import json
import os

import keras
import ml_collections
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import run_dir
from invertible_keras.models import builders
from invertible_keras.training.objective import Objective
from tests.layer_test_case import perturb_weights

X = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")


def _network(filters=4):
    network = builders.conv(input_shape=(8, 8, 1), num_classes=2, blocks_per_stage=1, filters=filters)
    network.initialize(X)
    return network


def _saved_training_checkpoint(tmp_path):
    keras.utils.set_random_seed(0)
    network = _network()
    perturb_weights(network, scale=0.3)
    network.compile(optimizer=keras.optimizers.Adam(), loss=Objective(nuisance_hidden_units=(4,)))
    epoch, step = tf.Variable(3, dtype=tf.int64), tf.Variable(5, dtype=tf.int64)
    path = run_dir.training_checkpoint(network, epoch, step).save(str(tmp_path / "ckpt"))
    return network, path


def _training_variables(model):
    return model.variables + model.objective.variables


def test_weight_names_do_not_depend_on_what_was_built_before():
    first = run_dir.variable_names(_network())
    for _ in range(2):
        keras.layers.Dense(3)  # bumps Keras' process-wide layer counters
        _network(filters=6)
    again = run_dir.variable_names(_network())
    assert list(first) == list(again)
    assert "stage/act_norm/log_scale" in first and "stage_1/act_norm/log_scale" in first
    assert len(first) == len(_network().weights)


def test_a_network_restores_from_a_training_checkpoint_without_its_objective(tmp_path):
    model, path = _saved_training_checkpoint(tmp_path)
    names = [name for name, _ in tf.train.list_variables(path)]
    assert any(name.startswith("network/stage.Sact_norm.Slog_scale") for name in names), names[:5]
    fresh = builders.conv(input_shape=(8, 8, 1), num_classes=2, blocks_per_stage=1, filters=4)
    assert not fresh.is_initialized
    run_dir.restore_network(fresh, path)
    assert fresh.is_initialized  # ActNorm's `initialized` flag is a restored weight
    for saved, restored in zip(_training_variables(model), fresh.weights):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy(), err_msg=saved.path)
    np.testing.assert_array_equal(fresh.encode(X)[1], model.encode(X)[1])


def test_a_network_of_another_size_is_refused(tmp_path):
    _, path = _saved_training_checkpoint(tmp_path)
    other = builders.conv(input_shape=(8, 8, 1), num_classes=2, blocks_per_stage=1, filters=8)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        run_dir.restore_network(other, path)


def test_the_training_checkpoint_restores_every_training_variable(tmp_path):
    model, path = _saved_training_checkpoint(tmp_path)
    saved = [w.numpy() for w in _training_variables(model)]
    for w in _training_variables(model):
        w.assign(tf.zeros_like(w))
    epoch, step = tf.Variable(0, dtype=tf.int64), tf.Variable(0, dtype=tf.int64)
    checkpoint = run_dir.training_checkpoint(model, epoch, step)
    assert run_dir.restore_newest_readable(checkpoint, [path], tmp_path) == path
    assert (int(epoch.numpy()), int(step.numpy())) == (3, 5)
    for w, value in zip(_training_variables(model), saved):
        np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)


def _truncate_data(path):
    data_file = tf.io.gfile.glob(path + ".data-*")[0]
    size = tf.io.gfile.stat(data_file).length
    with open(data_file, "r+b") as f:
        f.truncate(size // 2)


def test_an_unreadable_checkpoint_is_skipped_for_the_one_before_it(tmp_path, caplog):
    model, older = _saved_training_checkpoint(tmp_path)
    saved = [w.numpy() for w in _training_variables(model)]
    epoch, step = tf.Variable(4, dtype=tf.int64), tf.Variable(0, dtype=tf.int64)
    checkpoint = run_dir.training_checkpoint(model, epoch, step)
    for w in _training_variables(model):
        w.assign(w + 1.0)
    newer = checkpoint.save(str(tmp_path / "newer"))
    _truncate_data(newer)
    with caplog.at_level("WARNING"):
        assert run_dir.restore_newest_readable(checkpoint, [older, newer], tmp_path) == older
    assert f"{newer} is unreadable" in caplog.text
    assert int(epoch.numpy()) == 3
    for w, value in zip(_training_variables(model), saved):
        np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)
    _truncate_data(older)
    with pytest.raises(run_dir.NoReadableCheckpointError, match="No checkpoint in .* is readable"):
        run_dir.restore_newest_readable(checkpoint, [older, newer], tmp_path)


def test_evaluation_takes_the_newest_readable_checkpoint_of_a_run(tmp_path, caplog):
    run = run_dir.RunDir(tmp_path)
    network = _network()
    manager = tf.train.CheckpointManager(run_dir.network_checkpoint(network), run.checkpoint_dir(), max_to_keep=3)
    older, newer = manager.save(checkpoint_number=1), manager.save(checkpoint_number=2)
    assert run.newest_readable_checkpoint() == newer
    _truncate_data(newer)
    with caplog.at_level("WARNING"):
        assert run.newest_readable_checkpoint() == older
    assert f"{newer} is unreadable" in caplog.text
    _truncate_data(older)
    assert run.newest_readable_checkpoint() is None


def test_the_workdir_lock_refuses_a_second_holder_and_is_released(tmp_path):
    run = run_dir.RunDir(tmp_path)
    with run.lock():
        holder = json.loads((tmp_path / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(run_dir.WorkdirLockedError, match=f"in use by host .* pid {os.getpid()}"):
            with run_dir.RunDir(tmp_path).lock():  # another open file description: flock refuses it
                pass
    assert (tmp_path / ".lock").read_text() == ""  # released cleanly
    with run.lock():
        pass


def test_config_mismatch_names_the_field_and_json_writes_leave_no_temporary(tmp_path):
    run = run_dir.RunDir(tmp_path)
    config = ml_collections.ConfigDict({"model": {"filters": 16}, "train": {"epochs": 2}})
    run.write_json(run_dir.CONFIG_FILE, config.to_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert json.loads(open(run.config_path).read()) == config.to_dict()
    config.train.epochs = 5  # how long it trains may change on resume
    run.check_config(config)
    config.model.filters = 32
    with pytest.raises(run_dir.WorkdirConfigMismatchError, match=r"model.filters=16 there, 32 now"):
        run.check_config(config)


def test_checkpoints_that_list_weights_by_position_are_refused_with_the_reason(tmp_path):
    model, _ = _saved_training_checkpoint(tmp_path)
    path = tf.train.Checkpoint(weights=[w.value for w in model.weights]).save(str(tmp_path / "legacy"))
    with pytest.raises(ValueError, match="by position"):
        run_dir.restore_network(_network(), path)


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    run_dir.write_json_atomic(path, {"epochs": 1})
    with pytest.raises(RuntimeError):
        with run_dir.atomic_path(path) as tmp:
            open(tmp, "w").write('{"epo')  # killed mid-write
            raise RuntimeError
    assert json.loads(path.read_text()) == {"epochs": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
