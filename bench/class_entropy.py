"""How much the classes of an image data set differ in entropy (Gaussian estimate, per class).

A bijection with a constant log-determinant (additive couplings, actnorm, 1x1 convolutions at
test time) keeps every class's differential entropy: h(F(x) | y=k) = h(x | y=k) + log|det J|.
If z_n is independent of y, h(z_n | z_s, y=k) cannot depend on k, so the whole difference
between the classes' entropies must sit in the few entries of z_s. This script prints the
differences, estimated by the entropy of a Gaussian with each class's covariance
(0.5 * log det(2 pi e Sigma_k), an upper bound of the class's entropy), on the dequantised
training images of the data set (pixels k/255 plus U[0, 1/256) noise, whose variance is added to
the diagonal).

Usage:
    python bench/class_entropy.py [--name fashion_mnist] [--idx_dir DIR]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from invertible_keras.data.images import DEFAULT_IDX_DIRS, GREY_LEVEL_NOISE, load_idx_split  # noqa: E402


def gaussian_entropy(x):
    """0.5 log det(2 pi e Sigma) in nats for the rows of `x`, with dequantisation variance added."""
    sigma = np.cov(x, rowvar=False) + np.eye(x.shape[1]) * GREY_LEVEL_NOISE ** 2 / 12
    sign, logdet = np.linalg.slogdet(2 * np.pi * np.e * sigma)
    assert sign > 0, "covariance is not positive definite"
    return 0.5 * logdet


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="fashion_mnist")
    parser.add_argument("--idx_dir", default=None)
    args = parser.parse_args()
    images, labels = load_idx_split(args.idx_dir or DEFAULT_IDX_DIRS[args.name], "train")
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    dims = x.shape[1]
    entropies = {k: gaussian_entropy(x[labels == k]) for k in np.unique(labels)}
    top = max(entropies.values())
    print(f"{args.name}, train split, {dims} dimensions; Gaussian entropy per class\n")
    print("| class | examples | entropy (nats) | minus the largest (nats) | (bits/dim) |")
    print("|---:|---:|---:|---:|---:|")
    for k, h in entropies.items():
        diff = h - top
        print(f"| {k} | {np.sum(labels == k):,} | {h:,.0f} | {diff:,.0f} | {diff / dims / np.log(2):.2f} |")
    spread = top - min(entropies.values())
    print(f"\nlargest difference: {spread:,.0f} nats ({spread / dims / np.log(2):.2f} bits/dim); "
          f"all of it in z_s under a volume-preserving F with z_n independent of y: "
          f"{spread / 10:,.0f} nats per logit entry for 10 logits")


if __name__ == "__main__":
    main()
