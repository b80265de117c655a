"""MirroredStrategy on 2 logical CPU devices makes the same update as one device."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("loss, adversary, optimizer", [("ce", "uniform", "sgd"), ("ice", "uniform", "sgd"),
                                                        ("ice", "uniform", "adamax")])
def test_two_replicas_give_the_same_weights_as_one_device(loss, adversary, optimizer):
    """Also for the default adversary (D_phi's steps first, its synchronized input standardisation)
    and for a fused optimizer (one kernel per variable, on each replica's copy)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "tests.training.distributed_step", loss, adversary, optimizer],
                         cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["max_change"] > 1e-3  # the step did something
    assert result["max_abs_diff"] < 1e-5, result


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_localhost_train_smoke_to_the_same_weights(tmp_path):
    import numpy as np
    import tensorflow as tf

    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "train.train", "--config=configs/smoke.py", f"--workdir={tmp_path / str(index)}",
             "--config.train.distribute=multi_worker", "--config.train.export=False",
             "--config.data.num_train=256", "--config.data.num_test=64"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    chief = tf.train.load_checkpoint(str(tmp_path / "0" / "checkpoints"))
    other = tf.train.load_checkpoint(str(tmp_path / "1" / "checkpoints" / "worker_1"))
    keys = [k for k in chief.get_variable_to_shape_map()
            if k.split("/")[0] in ("network", "prior", "nuisance_classifier")]  # weights by name (run_dir)
    assert len(keys) > 10
    assert json.loads((tmp_path / "0" / "metrics.json").read_text())["epochs"] == 2
    for key in keys:
        np.testing.assert_array_equal(chief.get_tensor(key), other.get_tensor(key), err_msg=key)
