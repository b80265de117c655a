"""TensorFlow's CPU thread pools in the binaries: `--inter_op_threads`, `--intra_op_threads`.

TensorFlow's default gives every op all cores (intra-op) and runs as many ops at a time as
there are cores (inter-op), so on a small CPU two independent convolutions of a training step
each ask for every core and contend. `auto` (the default) runs two ops at a time on half of the
cores each when there is no GPU; with a GPU it keeps TensorFlow's defaults. `bench/threads.py`
measures the settings against each other. The pools can only be set before TensorFlow's
runtime starts, so `train/__init__.py` registers `configure` to run after absl has parsed the
flags and before a binary's `main`.
"""

import os

from absl import app, flags

INTER_OP_THREADS = flags.DEFINE_string("inter_op_threads", "auto",
                                       "TensorFlow ops run at a time: auto, or a count (0: TensorFlow's default).")
INTRA_OP_THREADS = flags.DEFINE_string("intra_op_threads", "auto",
                                       "Threads inside one TensorFlow op: auto, or a count (0: TensorFlow's default).")



def _valid(value):
    return value == "auto" or (value.isdigit() and int(value) >= 0)


for _flag in (INTER_OP_THREADS, INTRA_OP_THREADS):
    flags.register_validator(_flag.name, _valid, f"--{_flag.name} must be 'auto' or a non-negative integer.")


def auto_threads(cpu_count=None, has_gpu=False):
    """(inter, intra) for `auto`: two ops at a time on half of the cores each; (0, 0) with a GPU."""
    if has_gpu:
        return 0, 0
    cores = cpu_count or os.cpu_count() or 1
    return min(2, cores), max(1, cores // 2)


def _count(flag, auto):
    return auto if flag.value == "auto" else int(flag.value)


def set_threads(inter, intra):
    """Sets TensorFlow's inter- and intra-op pools (0: leave TensorFlow's default); before any op runs."""
    import tensorflow as tf

    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)


def configure():
    """Applies the two flags (called by absl after flag parsing, before `main`)."""
    import tensorflow as tf

    auto = auto_threads(has_gpu=bool(tf.config.list_physical_devices("GPU")))
    set_threads(_count(INTER_OP_THREADS, auto[0]), _count(INTRA_OP_THREADS, auto[1]))
