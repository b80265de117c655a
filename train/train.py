"""Trains a fiRevNet with CE or iCE.

    python -m train.train --config=configs/spheres.py --workdir=/tmp/spheres \
        [--config.train.loss=ce ...] [--tf_logs]

Rerunning the same command resumes from the last checkpoint in workdir; a workdir that holds
a run of another config is refused with the fields that differ.
"""

from absl import app, flags
from ml_collections import config_flags

from invertible_keras.training import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs, metrics and export.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(f"Config: {config_flags.get_config_filename(flags.FLAGS['config'])}", flush=True)
    try:
        loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except loop.WorkdirConfigMismatchError as error:
        raise SystemExit(f"Error: {error}") from None  # one line, exit status 1


if __name__ == "__main__":
    app.run(main)
