"""The binaries as a user runs them: quiet by default, `--tf_logs`, exit statuses."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A line of TensorFlow's C++ log ("I0000 00:00:...", "E0000 ...") or its pre-init notice.
CPP_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl::InitializeLog)", re.M)


def _run(module, *args):
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_train_is_quiet_and_says_which_run_trains_where(tmp_path):
    out = _run("train.train", "--config=configs/smoke.py:cpu", f"--workdir={tmp_path}", "--config.train.epochs=1",
               "--config.train.plane_resolution=0")  # export on: it used to log long signature renamings
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "export" / "saved_model.pb").exists()
    text = out.stdout + out.stderr
    assert not CPP_LOG.findall(text), text[:3000]
    assert "cuInit" not in text and "signature_serialization" not in text and "renamed" not in text
    assert max(len(line) for line in text.splitlines()) < 500
    assert out.stdout.startswith("Config: configs/smoke.py:cpu\nTraining: spheres dense fiRevNet, loss=ice")
    assert f"Results in {tmp_path}" in out.stdout
    assert len(re.findall(r"^\d+/\d+ - ", out.stdout, flags=re.M)) == 1  # one line per epoch (not a terminal)


def test_tf_logs_brings_tensorflow_logs_back():
    # Without --workdir the binary stops in flag validation, after TensorFlow was imported.
    quiet, loud = _run("train.train"), _run("train.train", "--tf_logs")
    assert quiet.returncode == loud.returncode == 1
    assert "--workdir" in quiet.stderr and "--workdir" in loud.stderr
    assert not CPP_LOG.findall(quiet.stderr)
    assert CPP_LOG.findall(loud.stderr)



def test_reproduce_exits_nonzero_when_every_data_set_was_skipped(tmp_path):
    out = _run("train.reproduce", "--experiment=images", f"--workdir={tmp_path}", "--datasets=mnist", "--quick",
               "--override=data.source=idx", f"--override=data.idx_dir={tmp_path}")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "every data set was skipped (mnist): nothing was run" in out.stderr
    assert "skipped" in (tmp_path / "report.md").read_text()
