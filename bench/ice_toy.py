"""iCE ablations on the known-answer case of `tests/training/test_ice_known_answer.py`.

Redundant features in R^8 (x_2 = x_1 + small noise, class in x_1): a bijection can put x_1 in
z_s and x_2 - x_1 in z_n, so a successful iCE network leaves a post-hoc classifier on z_n at
chance (50 %) at the logit error of cross-entropy. Every row trains the same dense fiRevNet
(4 blocks x 64 units, Adam 1e-3 with a cosine decay, batch 128, same seed) with `FiRevNet.fit` under an `Objective` and changes one
setting; the table reports the logit test error and the post-hoc nuisance test error (2 x 128
MLP, early-stopped on 2,000 held-out training examples), in %.

Usage:
    python bench/ice_toy.py [--steps 1500] [--seeds 0 1]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from invertible_keras.analysis import posthoc  # noqa: E402
from invertible_keras.models import builders  # noqa: E402
from invertible_keras.training.objective import AdversaryWarmup, Objective  # noqa: E402
from tests.training.test_ice_known_answer import redundant_features  # noqa: E402

DEFAULT = dict(loss="ice", semantic_prior="class_conditional", adversary="uniform", beta=1.0, gamma=1.0,
               nuisance_steps=5, mixing=True, warmup=(200, 600), cosine=True)
ROWS = [
    ("CE", dict(loss="ce")),
    ("CE + MLE, prior on z_n only (as before)", dict(loss="ce_mle", semantic_prior="none")),
    ("CE + MLE, standard normal on z_s", dict(loss="ce_mle", semantic_prior="standard")),
    ("CE + MLE, class-conditional on z_s", dict(loss="ce_mle")),
    ("iCE default (uniform, beta 1, class-conditional)", dict()),
    ("iCE, prior on z_n only", dict(semantic_prior="none")),
    ("iCE, shuffled adversary", dict(adversary="shuffled")),
    ("iCE, negative adversary, beta 0.1", dict(adversary="negative", beta=0.1)),
    ("iCE, 1 nuisance step", dict(nuisance_steps=1)),
    ("iCE, no warm-up", dict(warmup=None)),
    ("iCE, no mixing (the spheres model)", dict(mixing=False)),
    ("iCE, constant learning rate", dict(cosine=False)),
]


def run(settings, data, steps, seed):
    s = {**DEFAULT, **settings}
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    network = builders.dense(input_dim=8, num_classes=2, num_blocks=4, hidden_units=64, mixing=s["mixing"], seed=seed)
    rate = keras.optimizers.schedules.CosineDecay(1e-3, steps) if s["cosine"] else 1e-3
    network.compile(optimizer=keras.optimizers.Adam(rate),
                    loss=Objective(s["loss"], nuisance_optimizer=keras.optimizers.Adam(1e-3), beta=s["beta"],
                                   gamma=s["gamma"], adversary=s["adversary"], nuisance_steps=s["nuisance_steps"],
                                   semantic_prior=s["semantic_prior"], nuisance_hidden_units=(128, 128, 128)))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed).repeat().batch(128)
    callbacks = [AdversaryWarmup(*s["warmup"])] if s["warmup"] else []
    network.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks)
    z, z_test = (network.forward_and_log_det(v)[0].numpy() for v in (x, x_test))
    _, errors = posthoc.posthoc_error(z[:, 2:], y, z_test[:, 2:], y_test, 2, seeds=(0,), hidden_units=(128, 128),
                                        max_epochs=30, validation_size=2000)
    return 100 * float(np.mean(z_test[:, :2].argmax(-1) != y_test)), 100 * errors["test"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = redundant_features(12_000, rng), redundant_features(4_000, rng)
    print(f"{args.steps} steps of 128, seeds {args.seeds}; errors in % (mean over seeds, then per seed)\n")
    print("| run | logit error | post-hoc nuisance error | per seed (logit / nuisance) | s |")
    print("|---|---|---|---|---|")
    for name, settings in ROWS:
        start = time.time()
        results = [run(settings, data, args.steps, seed) for seed in args.seeds]
        logit, nuis = np.mean(results, axis=0)
        per_seed = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in results)
        print(f"| {name} | {logit:.2f} | {nuis:.1f} | {per_seed} | {time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
