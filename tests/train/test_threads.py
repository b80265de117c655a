"""`--inter_op_threads` / `--intra_op_threads`: what `auto` picks, and that the binaries apply them."""

import subprocess
import sys

import pytest

from tests.test_binaries import ROOT
from train import threads

# What every binary does: import the `train` package, then absl's app.run.
PROBE = ("import sys; from absl import app; import train; import tensorflow as tf; "
         "app.run(lambda argv: print(tf.config.threading.get_inter_op_parallelism_threads(), "
         "tf.config.threading.get_intra_op_parallelism_threads()), argv=sys.argv)")


def _probe(*flags):
    return subprocess.run([sys.executable, "-c", PROBE, *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("cores, expected", [(1, (1, 1)), (2, (2, 1)), (16, (2, 8))])
def test_auto_runs_two_ops_at_a_time_on_half_of_the_cores_each(cores, expected):
    assert threads.auto_threads(cpu_count=cores) == expected


def test_auto_keeps_tensorflow_defaults_with_a_gpu():
    assert threads.auto_threads(cpu_count=8, has_gpu=True) == (0, 0)


def test_binaries_set_the_pools_from_the_flags_before_main():
    out = _probe("--inter_op_threads=1", "--intra_op_threads=3")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "3"]
    out = _probe()
    assert out.stdout.split() == [str(n) for n in threads.auto_threads()]


def test_a_bad_thread_count_is_a_flag_error():
    out = _probe("--intra_op_threads=many")
    assert out.returncode == 1
    assert "--intra_op_threads must be 'auto' or a non-negative integer" in out.stderr
