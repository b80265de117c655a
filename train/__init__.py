"""The absl binaries (train, evaluate, metamers, reproduce), run from the repository root.

Importing the package (which `python -m train.<binary>` does first) imports TensorFlow quietly
unless the command line holds `--tf_logs` (see `train.logs`), and sets TensorFlow's CPU thread
pools from `--inter_op_threads` / `--intra_op_threads` once absl has parsed the flags (see
`train.threads`).
"""

from absl import app

from train import logs, threads

logs.quiet_tensorflow()
app.call_after_init(threads.configure)
