"""Trains a fiRevNet with CE or iCE.

    python -m train.train --config=configs/spheres.py --workdir=/tmp/spheres \
        [--config.train.loss=ce ...] [--tf_logs]

Rerunning the same command resumes from the newest readable checkpoint in workdir; a workdir
that holds a run of another config, or that another process is training in, is refused with
one line saying why. On SIGTERM the run writes a checkpoint of the step it is at and exits
with status 143 (128 + SIGTERM); rerun the same command to resume there.
"""

import signal
import sys

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
    except loop.TrainingPreemptedError as error:
        print(error, file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    except (loop.WorkdirConfigMismatchError, loop.WorkdirLockedError, loop.NoReadableCheckpointError,
            loop.CheckpointWriteError) as error:
        raise SystemExit(f"Error: {error}") from None  # one line, exit status 1


if __name__ == "__main__":
    app.run(main)
