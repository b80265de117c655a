"""Draws metamers (paper figure 4) and interpolations (figure 6) from a SavedModel alone.

    python -m train.metamers --export_dir=DIR/export --out=grid.png [--dataset=fashion_mnist]

Loads the export with `tf.saved_model.load` (no model code) and uses its `metamer`, `encode`
and `decode` endpoints on pairs of test examples with different labels. Writes `--out` (rows:
logit source a, metamer F^-1(z_s(a), z_n(b)), nuisance source b) and `<out>_interp.png`
(z_s(a) fixed while z_n moves from z_n(a) to z_n(b)). The test data comes from the data
pipeline: `--dataset`, or the config in DIR/metrics.json beside the export.
"""

import os

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from invertible_keras import data, metamers
from invertible_keras.analysis import attack, figures
from invertible_keras.analysis import network as network_lib
from invertible_keras.run_dir import RunDir

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "SavedModel written by training (DIR/export).")
_OUT = flags.DEFINE_string("out", None, "PNG of the metamer grid; the interpolations go to <out>_interp.png.")
_DATASET = flags.DEFINE_enum("dataset", None, list(data.NAMES),
                             "Data set of the test pairs (default: the config in <export_dir>/../metrics.json).")
_IDX_DIR = flags.DEFINE_string("idx_dir", None, "Directory with the IDX files (images; optional).")
_NUM_PAIRS = flags.DEFINE_integer("num_pairs", 8, "Pairs (columns) to draw.")
_STEPS = flags.DEFINE_integer("steps", 7, "Interpolation steps, both ends included.")
_SEED = flags.DEFINE_integer("seed", 0, "Which test pairs are drawn.")
flags.mark_flags_as_required(["export_dir", "out"])


def data_config(export_dir, input_shape):
    """The data config: the run's (metrics.json beside the export) with the flags applied."""
    config = {}
    run = RunDir(os.path.dirname(os.path.abspath(export_dir)))
    if os.path.isfile(run.metrics_path):
        config = run.read_metrics()["config"]["data"]
    if _DATASET.value:
        if config.get("name") not in (None, _DATASET.value):
            config = {}  # another data set: the run's data fields do not apply
        config["name"] = _DATASET.value
    if "name" not in config:
        raise app.UsageError(f"No metrics.json beside export_dir={export_dir!r}: pass --dataset (one of {data.NAMES}).")
    if _IDX_DIR.value:
        config["idx_dir"] = _IDX_DIR.value
    if config["name"] == "spheres":
        config.setdefault("dim", input_shape[0])
    config["batch_size"] = 256
    return config


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    loaded = tf.saved_model.load(_EXPORT_DIR.value)
    input_shape = tuple(loaded.encode.input_signature[0].shape[1:])
    config = data_config(_EXPORT_DIR.value, input_shape)
    x, y = network_lib.take_examples(data.load_dataset(config, "test", training=False), 256)
    if x.shape[1:] != input_shape:
        raise ValueError(f"The export takes inputs of shape {input_shape}, but {config['name']!r} gives "
                         f"{x.shape[1:]}; pass the --dataset the model was trained on.")
    idx_a, idx_b = attack.sample_pairs(y, _NUM_PAIRS.value, _SEED.value)
    x_a, x_b = tf.constant(x[idx_a]), tf.constant(x[idx_b])
    x_met = loaded.metamer(x_a, x_b)
    paths = metamers.interpolate(loaded, x_a, x_b, _STEPS.value)
    name = os.path.basename(os.path.dirname(os.path.abspath(_EXPORT_DIR.value)))
    grid = figures.plot_metamer_grid([(name, x_a.numpy(), x_met.numpy(), x_b.numpy())], _OUT.value,
                                     title="Metamers F^-1(z_s(a), z_n(b)) (paper figure 4)")
    root, ext = os.path.splitext(_OUT.value)
    interp = figures.plot_interpolations([(name, np.asarray(paths), x_b.numpy())], f"{root}_interp{ext or '.png'}",
                                         title="z_s(a) fixed, z_n from a to b (paper figure 6)")
    logging.info("Wrote %s and %s", grid, interp)
    print(grid)
    print(interp)


if __name__ == "__main__":
    app.run(main)
