"""`python -m train.reproduce`: config overrides, skipped data sets, and (slow) whole experiments."""

import json
import os
import subprocess
import sys

import pytest

from configs import spheres
from invertible_keras.analysis import evaluation
from train import experiments
from tests.analysis.test_figures import assert_png

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def test_overrides_are_parsed_as_literals_and_applied():
    overrides = experiments.parse_overrides(["train.epochs=3", "train.loss=ce", "model.hidden_units=64",
                                             "ice.nuisance_hidden_units=(8, 8, 8)", "train.steps_per_epoch=None"])
    assert overrides == {"train.epochs": 3, "train.loss": "ce", "model.hidden_units": 64,
                         "ice.nuisance_hidden_units": (8, 8, 8), "train.steps_per_epoch": None}
    config = experiments.apply_overrides(spheres.get_config(), overrides)
    assert (config.train.epochs, config.train.loss, config.model.hidden_units) == (3, "ce", 64)
    with pytest.raises(ValueError, match="field.subfield=value"):
        experiments.parse_overrides(["train.epochs"])
    with pytest.raises(ValueError, match="Unknown config field 'trian.epochs'"):
        experiments.apply_overrides(spheres.get_config(), {"trian.epochs": 1})


def test_a_missing_image_data_set_is_skipped_with_its_reason(tmp_path):
    empty = tmp_path / "no_idx_files"
    empty.mkdir()
    results = experiments.images_experiment(
        str(tmp_path / "out"), datasets=("mnist",), variant="quick",
        overrides={"data.source": "idx", "data.idx_dir": str(empty)})
    assert results["datasets"] == {} and "mnist" in results["skipped"]
    assert "IDX" in results["skipped"]["mnist"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**mnist skipped**" in report


def _reproduce(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "train.reproduce", "--quick", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.mark.slow
def test_spheres_experiment_quick(tmp_path):
    _reproduce("--experiment=spheres", f"--workdir={tmp_path}")
    results = json.loads((tmp_path / "results.json").read_text())
    for loss in ("ce", "ice"):
        assert (tmp_path / loss / evaluation.EVAL_FILE).exists()
        assert_png(tmp_path / "figures" / f"figure3_{loss}.png", (400, 400))
        assert results["runs"][loss]["invertibility"]["test"]["max"] < 1e-3
    eq5 = results["example6"]["classifiers"]["equation_5"]
    assert eq5["accuracy"] == 1.0 and eq5["accuracy_shifted"] == pytest.approx(0.5, abs=0.05)
    report = (tmp_path / "report.md").read_text()
    assert "metamer attack rate" in report and "figures/figure3_ice.png" in report


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="needs dataset-fashion-mnist")
def test_images_experiment_quick(tmp_path):
    _reproduce("--experiment=images", f"--workdir={tmp_path}", "--datasets=fashion_mnist",
               f"--oracle_cache_dir={tmp_path / 'cache'}")
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["datasets"]["fashion_mnist"]["runs"]
    assert set(runs) == {"ce", "ce_mle", "ice"}
    assert runs["ce"]["metamer_attack"]["oracle"].endswith(".keras")
    assert 0.0 <= runs["ice"]["metamer_attack"]["clipped"]["rate"] <= 1.0
    for name in ("figure4_metamers.png", "figure6_interpolations.png"):
        assert_png(tmp_path / "figures" / "fashion_mnist" / name, (300, 300))
    assert "Table 2 analogue" in (tmp_path / "report.md").read_text()
