"""Batch norm in coupling subnets uses the global batch's statistics under tf.distribute."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_replicas_normalise_with_the_statistics_of_the_global_batch():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "tests.layers.distributed_batch_norm"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["num_moving"] == 4
    # Per-replica statistics (the halves differ in mean by 3 and in scale by 5) give O(1) differences.
    assert result["max_abs_diff"] < 1e-4, result
    assert result["max_moving_diff"] < 1e-5, result
