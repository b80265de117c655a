"""TensorFlow's CPU thread pools: the training step of the default fiRevNet under several settings.

TensorFlow's default (0, 0 below) lets every op use all cores and runs as many ops at a time as
there are cores; `train/threads.py`'s `auto` (the binaries' default) runs two ops at a time on
half of the cores each. Timed: `train_on_batch` of the Fashion-MNIST `:cpu` fiRevNet
(`--variant paper`: appendix B's 16 x 128) compiled with the CE and the iCE `Objective`, and
one step of the post-hoc nuisance classifier (3 x 512 on z_n, batch 256), on a fixed batch of
synthetic images. Thread pools are per process, so every (setting, case) runs in a process of
its own (`bench/peer_freia.py`'s `RemoteCase`); the cases alternate round-robin with
`bench/speed.py`'s `run_cases`, and each ratio is paired per round against TensorFlow's default
for the same case (> 1: faster). Nothing asserts on time.

Usage:
    python -m bench.threads
    python -m bench.threads --settings 0,0 2,1 1,2 1,1 --cases ce,ice --repeats 9
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bench.peer_freia import RemoteCase, parse_threads  # noqa: E402

CASES = ("ce", "ice", "posthoc")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["0,0", "auto", "1,2", "1,1"],
                        help="INTER,INTRA pairs (0: TensorFlow's default) or auto; the first is the baseline")
    parser.add_argument("--cases", default="ce,ice,posthoc", help=f"comma-separated of {CASES}")
    parser.add_argument("--variant", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min_seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def case_step(case, variant, batch, seed, threads):
    """Runs in the worker: (trainable parameters, info, step) of one case under `threads`."""
    from train.threads import set_threads

    set_threads(*threads)
    import keras

    from configs import fashion_mnist
    from invertible_keras.models.nuisance_mlp import nuisance_classifier
    from invertible_keras.training.loop import build_network

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    config = fashion_mnist.get_config(variant)
    config.model.batch_norm = False  # equal steps for every setting; batch norm only adds its ops
    if case == "posthoc":
        model = nuisance_classifier(10, tuple(config.ice.nuisance_hidden_units), standardize=True)
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x = rng.normal(size=(256, 774)).astype(np.float32)
        y = rng.integers(0, 10, 256).astype(np.int32)
    else:
        config.train.loss = case
        x = rng.uniform(size=(batch, 28, 28, 1)).astype(np.float32)
        y = rng.integers(0, 10, batch).astype(np.int32)
        model = build_network(config, x)
        model.initialize(x)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return params, f"threads {threads}", lambda: float(np.asarray(model.train_on_batch(x, y)).ravel()[0])


def main():
    args = parse_args()
    from bench.speed import paired_ratios, run_cases  # imports TensorFlow: not in the workers

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; expected names from {CASES}")
    settings = [(s, parse_threads(s)) for s in args.settings]
    remotes = {(case, label): RemoteCase(case_step, case, args.variant, args.batch, args.seed, threads)
               for case in cases for label, threads in settings}
    results = run_cases({key: (lambda r=remote: r.step) for key, remote in remotes.items()}, args)
    for remote in remotes.values():
        remote.close()

    base = settings[0][0]
    print(f"## Thread settings, training step of the Fashion-MNIST `:{args.variant}` fiRevNet\n\n"
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end; batch {args.batch} "
          f"(post-hoc 256); median of {args.repeats} rounds of >= {args.min_seconds} s per case, alternating; "
          f"ratios paired per round against ({base}). auto = {parse_threads('auto')}.\n")
    print("| case | inter, intra | steps/s | speed-up vs " + base + " (paired) | range | first loss |\n"
          "|---|---|---:|---:|---:|---|")
    for case in cases:
        for label, threads in settings:
            key = (case, label)
            if isinstance(results[key], str):
                print(f"| {case} | {label} {threads} | failed: {results[key]} | | | |")
                continue
            rate = statistics.median(results[key][1])
            if isinstance(results[(case, base)], str):  # no baseline to pair with
                print(f"| {case} | {label} {threads} | {rate:.2f} | baseline failed | | {remotes[key].first_result:.6f} |")
                continue
            ratios = paired_ratios(results, (case, base), key)
            print(f"| {case} | {label} {threads} | {rate:.2f} | {statistics.median(ratios):.2f}x | "
                  f"{min(ratios):.2f} - {max(ratios):.2f} | {remotes[key].first_result:.6f} |")


if __name__ == "__main__":
    main()
