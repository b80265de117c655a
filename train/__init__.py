"""The absl binaries (train, evaluate, metamers, reproduce), run from the repository root.

Importing the package (which `python -m train.<binary>` does first) imports TensorFlow quietly
unless the command line holds `--tf_logs`; see `train.logs`.
"""

from train import logs

logs.quiet_tensorflow()
