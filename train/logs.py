"""Quiet TensorFlow by default in the binaries; `--tf_logs` brings its own logs back.

TensorFlow's C++ runtime writes a banner (oneDNN, CUDA drivers, CPU instructions) while
`import tensorflow` runs, before its log level is read, so the banner is silenced by pointing
file descriptor 2 at /dev/null during that import; later C++ messages (e.g. a CUDA init error
on a machine without GPU) by `TF_CPP_MIN_LOG_LEVEL=3`; Python-side notes below WARNING
(SavedModel signature renaming, checkpoint sharding), which TensorFlow's modules write through
`absl.logging` or the `tensorflow` logger, by a filter on those loggers. The project's own
absl logs are kept. All of this has to happen
before any module imports TensorFlow, which is why `train/__init__.py` calls `quiet_tensorflow`
and why it reads `--tf_logs` from the raw argv (absl parses flags only later, in `app.run`).
"""

import contextlib
import logging
import os
import sys

from absl import flags

TF_LOGS = flags.DEFINE_bool("tf_logs", False,
                            "Show TensorFlow's own logs (C++ banner, device setup, SavedModel notes); "
                            "hidden by default.")


def tf_logs_requested(argv):
    """Whether `argv` turns `--tf_logs` on (the last of `--tf_logs[=bool]` / `--notf_logs` wins)."""
    requested = False
    for arg in argv[1:]:
        if arg == "--":
            break
        name, sep, value = arg.lstrip("-").partition("=")
        if name == "tf_logs":
            requested = not sep or value.lower() in ("1", "true", "t", "yes", "y")
        elif name == "notf_logs":
            requested = False
    return requested


def quiet_tensorflow(argv=None):
    """Imports TensorFlow quietly unless `argv` (default `sys.argv`) holds `--tf_logs`."""
    if tf_logs_requested(sys.argv if argv is None else argv):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_to_devnull():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.WARNING)
    logging.getLogger("absl").addFilter(_BelowWarningFrom(os.path.dirname(tf.__file__)))


class _BelowWarningFrom(logging.Filter):
    """Drops records below WARNING written by modules under `directory`."""

    def __init__(self, directory):
        super().__init__()
        self.directory = os.path.join(os.path.realpath(directory), "")

    def filter(self, record):
        return record.levelno >= logging.WARNING or not os.path.realpath(record.pathname).startswith(self.directory)


@contextlib.contextmanager
def _stderr_to_devnull():
    """Points file descriptor 2 (also C++'s stderr) at /dev/null, restoring it afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
