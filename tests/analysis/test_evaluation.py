"""`python -m train.evaluate` and `python -m train.metamers` on a smoke run trained here."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import smoke
from invertible_keras.analysis import evaluation
from invertible_keras.analysis.network import encode
from invertible_keras.training import loop
from invertible_keras.training import objective as objective_lib
from tests.analysis.test_figures import assert_png

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def run_module(module, *args):
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    config = smoke.get_config()
    config.train.epochs = 1
    metrics = loop.train_and_evaluate(config, str(workdir))
    return workdir, metrics


def test_evaluate_binary_writes_every_field_of_eval_json(smoke_run):
    workdir, metrics = smoke_run
    # More examples than the smoke splits hold (512 train, 256 test): each split is used whole.
    out = run_module("train.evaluate", f"--workdir={workdir}", "--num_train=100000", "--num_test=256",
                     "--nuisance_max_epochs=2", "--nuisance_seeds=2", "--attack_pairs=100")
    results = json.loads((workdir / "eval.json").read_text())
    assert "metamer attack rate" in out and "nuisance-classifier error, test" in out

    assert results["network_source"].startswith("export:")
    assert results["num_examples"] == {"train": 512, "test": 256}
    assert set(results["logit_error"]) == {"train", "test"}
    assert set(results["nuisance_error"]) == {"train", "test", "train_sd", "test_sd", "test_per_seed"}
    assert len(results["nuisance_error"]["test_per_seed"]) == 2
    assert results["nuisance_error"]["test"] == pytest.approx(np.mean(results["nuisance_error"]["test_per_seed"]))
    assert all(0.0 <= results[g][s] <= 1.0 for g in ("logit_error", "nuisance_error") for s in ("train", "test"))
    # The whole smoke test split (256 examples) is evaluated: same error as training reported.
    assert results["logit_error"]["test"] == pytest.approx(1.0 - metrics["test"]["accuracy"], abs=1e-6)
    assert set(results["invertibility"]) == {"test", "noise", "metamer"}
    for errors in results["invertibility"].values():
        assert 0.0 <= errors["mean"] <= errors["max"] < 1e-4
    attack = results["metamer_attack"]
    assert {"rate", "ci95", "num_scored", "network_keeps_a", "oracle_says_b", "oracle_says_a", "num_pairs",
            "network_accuracy", "oracle_accuracy", "logit_change_max", "metamer_norm", "oracle"} <= set(attack)
    assert "clipped" not in attack  # spheres have no valid range to clip to
    assert attack["num_pairs"] == 100 and attack["num_scored"] == round(100 * attack["network_accuracy"])
    if attack["num_scored"]:
        assert 0.0 <= attack["rate"] <= attack["oracle_says_b"] and attack["ci95"][0] <= attack["rate"]
    assert attack["oracle_says_a"] + attack["oracle_says_b"] == pytest.approx(1.0)  # two classes
    assert attack["oracle_accuracy"] == 1.0  # the spheres' rule is exact
    assert attack["logit_change_max"] < 1e-4
    assert results["config"] == json.loads(json.dumps(metrics["config"]))  # tuples become lists in JSON
    assert results["settings"]["nuisance_max_epochs"] == 2 and results["settings"]["nuisance_seeds"] == 2


def test_evaluation_is_reused_only_with_the_same_settings_after_the_last_checkpoint(smoke_run):
    workdir, _ = smoke_run
    settings = evaluation.EvalSettings(num_train=256, num_test=128, nuisance_max_epochs=1, nuisance_seeds=1,
                                       attack_pairs=32)
    first = evaluation.evaluate_run(str(workdir), settings)
    path = workdir / evaluation.EVAL_FILE
    stamp = os.path.getmtime(path)
    again = evaluation.evaluate_run(str(workdir), settings, reuse=True)
    assert os.path.getmtime(path) == stamp and again.nuisance_classifier is None
    assert again.results == json.loads(json.dumps(first.results)) and len(again.y_test) == 128
    other = evaluation.evaluate_run(str(workdir), dataclasses.replace(settings, attack_pairs=16), reuse=True)
    assert other.results["metamer_attack"]["num_pairs"] == 16 and other.nuisance_classifier is not None


def test_export_and_checkpoint_give_the_same_network(smoke_run, monkeypatch):
    workdir, _ = smoke_run
    config, from_export = evaluation.load_run(str(workdir), "export")

    def no_objective(*args, **kwargs):
        raise AssertionError("restoring a network must not build its training objective")

    monkeypatch.setattr(objective_lib.Objective, "attach", no_objective)
    _, from_checkpoint = evaluation.load_run(str(workdir), "checkpoint")
    assert from_checkpoint.source.startswith("checkpoint:")
    assert (from_export.input_shape, from_export.num_classes) == ((10,), 2)
    x = np.random.default_rng(0).normal(size=(16, 10)).astype("float32")
    for a, b in zip(encode(from_export, x), encode(from_checkpoint, x)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_run_without_metrics_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No metrics.json in workdir"):
        evaluation.load_run(str(tmp_path))


def test_metamers_binary_draws_from_the_export_alone(smoke_run, tmp_path):
    workdir, _ = smoke_run
    out = tmp_path / "grid.png"
    run_module("train.metamers", f"--export_dir={workdir / 'export'}", f"--out={out}", "--num_pairs=3",
               "--steps=3")
    assert_png(out)
    assert_png(tmp_path / "grid_interp.png")
