"""Fault injection through the training binary: two writers, a stale lock, a torn checkpoint,
resumes at an epoch boundary and after SIGTERM mid-epoch (both must reach the weights of the
uninterrupted run), and a checkpoint write that fails for lack of disk space."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from configs import smoke
from invertible_keras.training import loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The smoke config with every source of randomness of a step switched on: the seeded label
# shuffle of the authors' adversary, dropout in D_phi, the adversary warm-up; 64 steps per
# epoch, a checkpoint every 8 steps.
CONFIG = ["--config=configs/smoke.py", "--config.data.num_train=2048", "--config.ice.adversary=shuffled",
          "--config.ice.nuisance_dropout=0.1", "--config.train.checkpoint_every_steps=8",
          "--config.train.export=False", "--config.train.plane_resolution=0"]
STEPS_PER_EPOCH = 64


def _start(workdir, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "train.train", *CONFIG, f"--workdir={workdir}", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _train(workdir, *args, returncode=0):
    proc = _start(workdir, *args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == returncode, out[-3000:]
    return out


def _checkpoint(workdir):
    return tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))


def _position(path):
    reader = tf.train.load_checkpoint(path)
    return tuple(int(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
                 for name in ("epoch", "step_in_epoch", "optimizer/_iterations"))


def _assert_same_state(path, reference):
    """Every checkpointed tensor (weights, prior, D_phi, optimizer slots, position) matches; not the
    number of checkpoints written (`save_counter`), which the interruption raises."""
    ours, theirs = tf.train.load_checkpoint(path), tf.train.load_checkpoint(reference)
    names = sorted(ours.get_variable_to_shape_map())
    assert names == sorted(theirs.get_variable_to_shape_map())
    assert sum(name.startswith("network/") for name in names) > 10
    for name in names:
        if name not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE"):
            np.testing.assert_allclose(ours.get_tensor(name), theirs.get_tensor(name), rtol=1e-5, atol=1e-6,
                                       err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final checkpoint of a 2-epoch run that nothing interrupted."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    _train(workdir)
    path = _checkpoint(workdir)
    assert _position(path) == (2, 0, 2 * STEPS_PER_EPOCH)
    return path


def test_a_resume_at_an_epoch_boundary_reaches_the_uninterrupted_weights(tmp_path, uninterrupted):
    _train(tmp_path, "--config.train.epochs=1")
    assert _position(_checkpoint(tmp_path)) == (1, 0, STEPS_PER_EPOCH)
    assert "Resuming at epoch 2" in _train(tmp_path)
    _assert_same_state(_checkpoint(tmp_path), uninterrupted)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["loss"]) == 2


def test_sigterm_mid_epoch_checkpoints_and_the_resume_reaches_the_uninterrupted_weights(tmp_path, uninterrupted):
    proc = _start(tmp_path)
    deadline = time.time() + 240
    while not (_checkpoint(tmp_path) and _position(_checkpoint(tmp_path))[2] >= STEPS_PER_EPOCH + 8):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no mid-epoch checkpoint of epoch 2 appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "Stopped by SIGTERM at step" in out
    epoch, step_in_epoch, step = _position(_checkpoint(tmp_path))
    assert epoch == 1 and 0 < step_in_epoch < STEPS_PER_EPOCH, "the SIGTERM checkpoint is not mid-epoch"
    assert step == STEPS_PER_EPOCH + step_in_epoch
    assert f"Resuming at epoch 2, step {step_in_epoch + 1}" in _train(tmp_path)
    _assert_same_state(_checkpoint(tmp_path), uninterrupted)


def test_a_second_process_on_a_workdir_is_refused_naming_the_holder(tmp_path):
    first = _start(tmp_path, "--config.train.epochs=40")
    deadline = time.time() + 120
    while not ((tmp_path / ".lock").exists() and (tmp_path / ".lock").read_text()):
        assert first.poll() is None and time.time() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    try:
        out = _train(tmp_path, "--config.train.epochs=40", returncode=1)
        assert f"is in use by host {socket.gethostname()} pid {first.pid}" in out
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    out = _train(tmp_path, "--config.train.epochs=1")
    assert f"Taking over the lock of {tmp_path}, left by host {socket.gethostname()} pid {dead.pid}" in out
    assert (tmp_path / "metrics.json").exists()


def test_a_truncated_newest_checkpoint_is_skipped_for_the_one_before_it(tmp_path):
    _train(tmp_path, "--config.train.checkpoint_every_steps=0")
    newest = _checkpoint(tmp_path)
    assert newest.endswith(f"ckpt-{2 * STEPS_PER_EPOCH}")
    for data_file in tf.io.gfile.glob(newest + ".data-*"):
        os.truncate(data_file, os.path.getsize(data_file) // 3)  # a torn copy
    out = _train(tmp_path, "--config.train.checkpoint_every_steps=0", "--config.train.epochs=3")
    assert f"Checkpoint {newest} is unreadable" in out
    assert "Resuming at epoch 2" in out  # from ckpt-64: only epoch 2 is trained again
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs"] == 3
    for path in tf.train.get_checkpoint_state(str(tmp_path / "checkpoints")).all_model_checkpoint_paths:
        for data_file in tf.io.gfile.glob(path + ".data-*"):
            os.truncate(data_file, 10)
    out = _train(tmp_path, "--config.train.epochs=4", returncode=1)
    assert "Error: No checkpoint in" in out and "is readable" in out


def test_a_full_disk_stops_the_run_saying_so_and_the_previous_checkpoint_still_resumes(tmp_path, monkeypatch):
    config = smoke.get_config()
    config.train.export = False
    config.train.plane_resolution = 0
    config.train.epochs = 3
    save = tf.train.CheckpointManager.save
    calls = []

    def full_disk(self, checkpoint_number=None, **kwargs):
        calls.append(checkpoint_number)
        if len(calls) == 2:  # the second checkpoint: part of its data written, then ENOSPC
            with open(os.path.join(self.directory, f"ckpt-{checkpoint_number}.data-00000-of-00001"), "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(self, checkpoint_number=checkpoint_number, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(loop.CheckpointWriteError, match=r"step 32 .*No space left on device.*ckpt-16"):
        loop.train_and_evaluate(config, str(tmp_path))
    assert _position(_checkpoint(tmp_path)) == (1, 0, 16)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    metrics = loop.train_and_evaluate(config, str(tmp_path))  # the lock was released, the checkpoint reads
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs"] == 3
