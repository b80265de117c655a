"""Prints the parameter counts of the three FiRevNet variants at paper size (build only).

    python bench/model_sizes.py

Trainable parameters are the learned weights; "all" adds the non-trainable state (batch-norm
moving statistics, ActNorm init flags, the fixed permutation and signs of 1x1 convolutions).
"""

import math
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from invertible_keras.models import builders  # noqa: E402

VARIANTS = [
    ("dense spheres (d=100, 4 blocks, 256 units)", lambda: builders.dense()),
    ("conv MNIST 28x28x1 (3 stages x 16 blocks, 128 filters, BN)",
     lambda: builders.conv(blocks_per_stage=16, filters=128, batch_norm=True)),
    ("conv MNIST padded 32x32x1 (authors' layout)",
     lambda: builders.conv(input_shape=(32, 32, 1), blocks_per_stage=16, filters=128, batch_norm=True)),
    ("fiRevNet48 ImageNet 224x224x3 (4 stages x 4 blocks)", lambda: builders.imagenet()),
]


def count(weights):
    return sum(math.prod(w.shape) for w in weights)


def main():
    print(f"{'variant':<62} {'trainable':>13} {'all':>13} {'d':>8}  last stage")
    for name, build in VARIANTS:
        model = build()
        print(f"{name:<62} {count(model.trainable_weights):>13,} {count(model.weights):>13,} "
              f"{model.latent_dim:>8}  {model.stage_output_shapes[-1][1:]}")
        del model


if __name__ == "__main__":
    main()
