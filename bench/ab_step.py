"""Before/after timing of a library change: the CE training step of two versions, alternating.

`--before` (and `--after`, default: this checkout) name git revisions; the package
`invertible_keras` of each is exported (`git archive`) to a temporary directory and imported
from there in a worker process of its own (`bench/peer_freia.py`'s `RemoteCase`). Each worker
builds the conv fiRevNet of `bench/peer_freia.py` (same seed, data and Adam step; sizes "small"
and "paper"), or for the size "images_ice" the network of `configs/fashion_mnist.py` compiled
with its iCE objective by `training.loop.build_network` (the step the images experiment
trains), and reports its first step's loss, so the table shows whether the change kept the
results; then the
steps alternate round-robin with `bench/speed.py`'s `run_cases`, and the ratio
time(before) / time(after) is paired per round (> 1: the change is faster). Nothing asserts on
time.

Usage:
    python -m bench.ab_step --before HEAD~1
    python -m bench.ab_step --before 4f5febf --after HEAD --sizes small,paper,images_ice --repeats 11
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.peer_freia import INPUT_SHAPE, NUM_CLASSES, SIZES, RemoteCase, ours_step, parse_threads  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the baseline")
    parser.add_argument("--after", default=None, help="git revision (default: the working tree)")
    parser.add_argument("--sizes", default="small", help=f"comma-separated of {sorted(SIZES)} or images_ice")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--min_seconds", type=float, default=0.6)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def images_ice_step(x, y, seed, threads):
    """The iCE objective's step of the default images config (a `RemoteCase` step)."""
    import keras
    import tensorflow as tf

    from configs import fashion_mnist
    from invertible_keras.training import loop
    from train.threads import set_threads

    set_threads(*threads)
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(seed)
    config = fashion_mnist.get_config("cpu")
    config.train.loss, config.train.lr_schedule = "ice", "step"  # the rate schedule needs no data set
    network = loop.build_network(config, x)
    network.initialize(x)
    params = sum(int(np.prod(w.shape)) for w in network.trainable_weights)
    return params, "images iCE", lambda: float(network.train_on_batch(x, y, return_dict=True)["loss"])


def export(revision, directory):
    """Writes `invertible_keras/` of `revision` under `directory`; returns the revision's short hash."""
    archive = subprocess.run(["git", "-C", REPO, "archive", revision, "invertible_keras"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", directory], input=archive, check=True)
    return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", revision], check=True,
                          capture_output=True, text=True).stdout.strip()


def main():
    args = parse_args()
    from bench.speed import paired_ratios, run_cases  # imports TensorFlow: not in the workers

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(size=(args.batch, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=args.batch).astype(np.int32)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        roots, labels = {}, {}
        for side, revision in (("before", args.before), ("after", args.after)):
            if revision is None:
                roots[side], labels[side] = REPO, "working tree"
            else:
                roots[side] = os.path.join(tmp, side)
                os.makedirs(roots[side])
                labels[side] = export(revision, roots[side])
        remotes = {}
        for size in sizes:
            for side in ("before", "after"):
                if size == "images_ice":
                    remotes[f"{side} {size}"] = RemoteCase(images_ice_step, x, y, args.seed, parse_threads("auto"),
                                                           root=roots[side])
                else:
                    remotes[f"{side} {size}"] = RemoteCase(ours_step, *SIZES[size], x, y, args.seed,
                                                           parse_threads("auto"), root=roots[side])
        results = run_cases({name: (lambda r=remote: r.step) for name, remote in remotes.items()}, args)
        for remote in remotes.values():
            remote.close()

    print(f"## Training step, before ({labels['before']}) vs after ({labels['after']})\n\nbatch {args.batch}, "
          f"median of {args.repeats} rounds of >= {args.min_seconds} s, load average {os.getloadavg()[0]:.2f} "
          f"at the end. First-step loss shows whether the results are unchanged.\n")
    print("| size | before img/s | after img/s | speed-up (paired) | range | CPU ms/step before / after | "
          "CPU speed-up | first loss before / after |\n|---|---:|---:|---:|---:|---:|---:|---|")
    for size in sizes:
        before, after = f"before {size}", f"after {size}"
        label = "images config, iCE objective" if size == "images_ice" else "{1} filters, {0} couplings/stage".format(
            *SIZES[size])
        if any(isinstance(results[n], str) for n in (before, after)):
            print(f"| {size} | failed: {results[before]} / {results[after]} | | | | |")
            continue
        rate = {n: args.batch * statistics.median(results[n][1]) for n in (before, after)}
        per_round = paired_ratios(results, before, after)
        cpu = {n: 1e3 * statistics.median(remotes[n].cpu_seconds) for n in (before, after)}
        print(f"| {label} | {rate[before]:,.0f} | {rate[after]:,.0f} | "
              f"{statistics.median(per_round):.3f}x | {min(per_round):.2f} - {max(per_round):.2f} | "
              f"{cpu[before]:.1f} / {cpu[after]:.1f} | {cpu[before] / cpu[after]:.3f}x | "
              f"{remotes[before].first_result!r} / {remotes[after].first_result!r} |")


if __name__ == "__main__":
    main()
