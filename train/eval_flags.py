"""Flags of the evaluation sizes, shared by `train.evaluate` and `train.reproduce`.

Importing this module defines the flags; `eval_settings()` turns their values into an
`analysis.evaluation.EvalSettings` (defaults are CPU-friendly).
"""

from absl import flags

from invertible_keras.analysis.evaluation import EvalSettings

_DEFAULTS = EvalSettings()
NUM_TRAIN = flags.DEFINE_integer("num_train", _DEFAULTS.num_train,
                                 "Training examples for the train errors and to fit the nuisance classifiers "
                                 "(default: the whole split).")
NUM_TEST = flags.DEFINE_integer("num_test", _DEFAULTS.num_test,
                                "Test examples for test errors, invertibility and metamer pairs (default: all).")
NUISANCE_MAX_EPOCHS = flags.DEFINE_integer("nuisance_max_epochs", _DEFAULTS.nuisance_max_epochs,
                                           "At most this many epochs of each post-hoc nuisance classifier "
                                           "(early-stopped on a held-out slice of the training split).")
NUISANCE_SEEDS = flags.DEFINE_integer("nuisance_seeds", _DEFAULTS.nuisance_seeds,
                                      "Post-hoc nuisance classifiers per run (mean and sd are reported).")
ATTACK_PAIRS = flags.DEFINE_integer("attack_pairs", _DEFAULTS.attack_pairs, "Pairs (a, b) of the metamer attack.")
ORACLE_EPOCHS = flags.DEFINE_integer("oracle_epochs", _DEFAULTS.oracle_epochs,
                                     "Epochs of the CNN oracle of image data (trained once, then cached).")
ORACLE_CACHE_DIR = flags.DEFINE_string("oracle_cache_dir", None,
                                       "Where the CNN oracle is cached (default $INVERTIBLE_KERAS_CACHE or "
                                       "~/.cache/invertible_keras).")
SOURCE = flags.DEFINE_enum("source", _DEFAULTS.source, ["auto", "export", "checkpoint"],
                           "Load the network from DIR/export, DIR/checkpoints, or auto (export if present).")


def eval_settings(**changes):
    """The `EvalSettings` of the flags, with `changes` (e.g. quick sizes) for flags left at their default."""
    values = {"num_train": NUM_TRAIN, "num_test": NUM_TEST, "nuisance_max_epochs": NUISANCE_MAX_EPOCHS,
              "nuisance_seeds": NUISANCE_SEEDS,
              "attack_pairs": ATTACK_PAIRS, "oracle_epochs": ORACLE_EPOCHS, "oracle_cache_dir": ORACLE_CACHE_DIR,
              "source": SOURCE}
    settings = {name: holder.value for name, holder in values.items()}
    for name, value in changes.items():
        if name not in values or not flags.FLAGS[values[name].name].present:
            settings[name] = value
    return EvalSettings(**settings)
