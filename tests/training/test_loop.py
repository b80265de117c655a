"""End to end through the binary: artifacts, resume after a kill, NaN handling, ActNorm init,
history across resumes, workdir/config mismatch, progress output, the spheres plane image."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from configs import smoke
from invertible_keras import data
from invertible_keras.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = [sys.executable, "-m", "train.train", "--config=configs/smoke.py"]


def _run(args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(TRAIN + args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def test_smoke_run_through_the_binary_writes_every_artifact(tmp_path):
    proc = _run([f"--workdir={tmp_path}", "--config.train.loss=ice", "--config.ice.nuisance_steps=2"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["resumed_from_epoch"] == 0
    assert metrics["config"]["ice"]["nuisance_steps"] == 2  # the override reached the config
    for key in ("loss", "semantic_ce", "nuisance_ce", "mle", "accuracy", "nuisance_accuracy"):
        assert np.isfinite(metrics["test"][key]), key
    assert len(metrics["history"]["loss"]) == 2
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-32")  # by step: 2 x 16
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    x = next(iter(data.load_dataset(smoke.get_config().data, "test", training=False)))[0][:4]
    z_s, z_n = loaded.encode(x)
    assert z_s.shape == (4, 2) and z_n.shape == (4, 8)
    np.testing.assert_allclose(loaded.decode(z_s, z_n), x, atol=1e-4)


def test_killed_run_resumes_from_the_last_checkpoint_and_finishes(tmp_path):
    args = [f"--workdir={tmp_path}", "--config.train.epochs=8", "--config.data.num_train=4096"]
    proc = _run(args)
    deadline = time.time() + 240
    while not tf.train.latest_checkpoint(str(tmp_path / "checkpoints")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "metrics.json").exists(), "the run finished before it was killed"
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
    killed_at = int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 1 <= killed_at < 8

    proc = _run(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] >= killed_at
    assert metrics["epochs"] == 8
    assert len(metrics["history"]["loss"]) == 8  # the killed run's epochs are kept


def _tiny_conv_config(epochs):
    config = smoke.get_config()
    config.data.name = "fashion_mnist"
    config.data.batch_size = 16
    config.data.shuffle_buffer = 64
    config.model = config.model.__class__({"kind": "conv", "blocks_per_stage": 1, "filters": 8,
                                           "batch_norm": False})
    config.train.epochs = epochs
    config.train.steps_per_epoch = 3
    config.train.eval_steps = 2
    config.train.metamer_images = 2
    config.train.export = False
    return config


def _actnorm_weights(network):
    """ActNorm weights in creation order (names carry per-process counters)."""
    return [(w.name, w.numpy().copy()) for w in network.weights if "act_norm" in w.path]


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="needs dataset-fashion-mnist")
def test_actnorm_is_initialised_once_and_not_again_on_resume(tmp_path, monkeypatch):
    seen = {}
    build_network = loop.build_network

    def spy(config, example_batch):
        seen["network"] = build_network(config, example_batch)
        return seen["network"]

    monkeypatch.setattr(loop, "build_network", spy)
    loop.train_and_evaluate(_tiny_conv_config(epochs=1), str(tmp_path))
    after_first = _actnorm_weights(seen["network"])
    image_tags = {v.tag for event in (tmp_path / "tensorboard" / "metamers").glob("events.*")
                  for record in tf.compat.v1.train.summary_iterator(str(event)) for v in record.summary.value}
    assert "metamers/logits_metamer_nuisance" in image_tags
    assert after_first and all(np.any(v != 0) for name, v in after_first if name == "bias")

    # Same workdir, nothing left to train: the restored ActNorm must not be re-initialised
    # from the (different) first batch of this run.
    config = _tiny_conv_config(epochs=1)
    config.seed = 1
    metrics = loop.train_and_evaluate(config, str(tmp_path))
    assert metrics["resumed_from_epoch"] == 1
    after_resume = _actnorm_weights(seen["network"])
    assert [name for name, _ in after_resume] == [name for name, _ in after_first]
    for (name, value), (_, first) in zip(after_resume, after_first):
        np.testing.assert_array_equal(value, first, err_msg=name)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    config = smoke.get_config()
    config.train.epochs = 3
    config.train.export = False
    loop.train_and_evaluate(config, str(tmp_path))  # 3 good epochs
    good = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    good_values = {k: good.get_tensor(k) for k in good.get_variable_to_shape_map()
                   if k.split("/")[0] in ("network", "prior", "nuisance_classifier")}  # weights by name (run_dir)
    assert len(good_values) > 10

    load = data.load_dataset

    def poisoned(data_config, split, training, **kwargs):
        ds = load(data_config, split, training, **kwargs)
        return ds.map(lambda x, y: (x * np.nan, y)) if training else ds

    monkeypatch.setattr(data, "load_dataset", poisoned)
    config.train.epochs = 5
    with pytest.raises(loop.TrainingDivergedError, match=r"NaN or Inf in epoch 4.*epoch 3"):
        loop.train_and_evaluate(config, str(tmp_path))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-48")  # step 3 x 16
    kept = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    for key, value in good_values.items():
        np.testing.assert_array_equal(kept.get_tensor(key), value)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_fit_verbosity_is_a_progress_bar_on_a_terminal_and_a_line_per_epoch_otherwise():
    assert loop.fit_verbosity(_Terminal()) == 1
    assert loop.fit_verbosity(io.StringIO()) == 2


def _image_tags(directory):
    return {v.tag for event in directory.glob("events.*")
            for record in tf.compat.v1.train.summary_iterator(str(event)) for v in record.summary.value}


def test_history_is_kept_across_resumes_with_progress_and_a_plane_per_epoch(tmp_path, monkeypatch, capsys):
    config = smoke.get_config()
    config.train.epochs = 1
    config.train.export = False
    config.train.plane_resolution = 11
    terminal = _Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    first = loop.train_and_evaluate(config, str(tmp_path))
    monkeypatch.undo()
    out = terminal.getvalue()
    assert f"Training: spheres dense fiRevNet, loss=ice (independence cross-entropy (iCE)), epochs=1. " \
           f"Results in {tmp_path}" in out
    assert "\r" in out  # Keras' live progress bar

    config.train.epochs = 3
    resumed = loop.train_and_evaluate(config, str(tmp_path))
    out = capsys.readouterr().out
    assert out.startswith("Resuming at epoch 2: spheres dense fiRevNet") and "\r" not in out
    assert len(re.findall(r"^\d+/\d+ - ", out, flags=re.M)) == 2  # one line per epoch
    assert resumed["history"]["loss"][:1] == first["history"]["loss"]
    assert len(resumed["history"]["loss"]) == len(resumed["history"]["val_loss"]) == 3

    finished = loop.train_and_evaluate(config, str(tmp_path))  # nothing left to train
    assert finished["history"] == resumed["history"]
    assert json.loads((tmp_path / "metrics.json").read_text())["history"] == resumed["history"]
    assert "planes/figure3" in _image_tags(tmp_path / "tensorboard" / "planes")


def test_a_workdir_of_another_config_is_refused_naming_the_fields(tmp_path):
    config = smoke.get_config()
    config.train.epochs = 1
    config.train.export = False
    loop.train_and_evaluate(config, str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(config.to_dict()))
    config.model.hidden_units = 32
    config.train.loss = "ce"
    config.train.epochs = 2  # may change on resume: not named
    with pytest.raises(loop.WorkdirConfigMismatchError,
                       match=r"holds a run of a different config \(model\.hidden_units=16 there, 32 now; "
                             r"train\.loss='ice' there, 'ce' now\)") as error:
        loop.train_and_evaluate(config, str(tmp_path))
    assert "\n" not in str(error.value)


def test_cosine_learning_rate_falls_from_the_base_to_zero_over_the_run_and_resumes_on_its_curve(tmp_path):
    config = smoke.get_config()
    config.train.lr_schedule = "cosine"
    config.train.epochs, config.train.steps_per_epoch, config.train.learning_rate = 2, 5, 1e-2
    network = loop.build_network(config, next(iter(data.load_dataset(config.data, "train", training=True)))[0])
    # A schedule: its value follows the optimizer's iterations, which a checkpoint restores.
    for step, expected in ((0, 1e-2), (5, 5e-3), (10, 0.0)):
        network.optimizer.iterations.assign(step)
        np.testing.assert_allclose(float(network.optimizer.learning_rate), expected, atol=1e-9)
    config.train.lr_decay_epochs = 3
    with pytest.raises(ValueError, match="replaces the step decay"):
        loop.network_learning_rate(config)
    config.train.lr_schedule = "linear"
    with pytest.raises(ValueError, match="'step' .* or 'cosine'. Received: 'linear'"):
        loop.network_learning_rate(config)


def test_every_ice_field_of_the_config_reaches_the_objective():
    config = smoke.get_config()
    config.train.loss = "ce_mle"
    ice = config.ice
    ice.beta, ice.gamma, ice.adversary, ice.nuisance_steps = 0.7, 0.2, "negative", 3
    ice.semantic_prior, ice.nuisance_hidden_units, ice.nuisance_dropout = "standard", (16, 8), 0.25
    ice.nuisance_learning_rate = 3e-4
    objective = loop.build_network(config, next(iter(data.load_dataset(config.data, "train", training=True)))[0]).objective
    assert (objective.kind, objective.beta, objective.gamma, objective.adversary, objective.nuisance_steps) == (
        "ce_mle", 0.7, 0.2, "negative", 3)
    assert objective.prior.semantic == "standard" and objective.nuisance_hidden_units == (16, 8)
    assert objective.nuisance_dropout == 0.25
    np.testing.assert_allclose(float(objective.nuisance_optimizer.learning_rate), 3e-4)
    widths = [layer.units for layer in objective.nuisance_classifier.layers if hasattr(layer, "units")]
    assert widths[:2] == [16, 8]
