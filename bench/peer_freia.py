"""CE training throughput of our conv fiRevNet against the same network in FrEIA (PyTorch).

Both sides build the network of `builders.conv(blocks_per_stage=n, filters=f,
batch_norm=False)` on 28x28x1 inputs (the library's default layout, no factor-out, so every
logit is a DC component):

    stage 1: squeeze 28x28x1 -> 14x14x4, n steps
    stage 2: squeeze 14x14x4 -> 7x7x16, n steps
    stage 3: 7x7x16 (odd size: no squeeze), n steps; readout = orthonormal 2D DCT, logits =
             10 of its 16 DC components
    step   = ActNorm -> invertible 1x1 conv (LU: P L (U + diag s)) -> additive coupling
             y = [x2 + f(x1), x1],  f = conv3x3(f) - ReLU - conv1x1(f) - ReLU - conv3x3,
             last conv zero-initialised

The FrEIA network is `bench/freia_firevnet.py` (a `Ff.GraphINN`; same number of couplings and
trainable parameters, printed). `--freia_coupling nice` uses FrEIA's stock `NICECouplingBlock`
(two couplings per block) instead: the same couplings, half the ActNorms and 1x1 convolutions.

Timed: one CE training step on a fixed batch (`--batch`, default 64) of synthetic images with
random labels, Adam 1e-3 on both sides: ours `FiRevNet.compile(make_optimizer("adam"), sparse CE from logits)` +
`train_on_batch`; FrEIA `zero_grad`, forward (`jac=False`: CE needs no log-det), cross entropy,
`loss.backward()`, `step()`. All cases alternate round-robin with `bench/speed.py`'s timing
helper (`run_cases`), each side in its own process; the table gives median images/s over rounds and the paired per-round ratio
ours / FrEIA (> 1: ours is faster). Nothing asserts on time.

Needs the optional extra: `pip install -e .[bench]` (torch==2.13.0 CPU wheel, FrEIA).

Usage:
    python -m bench.peer_freia
    python -m bench.peer_freia --sizes small --repeats 9 --freia_coupling nice
"""

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

# (couplings per stage, subnet filters) of the two sizes of issue 11.
SIZES = {"small": (4, 32), "paper": (16, 128)}
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,paper", help=f"comma-separated of {sorted(SIZES)}")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds over all cases")
    parser.add_argument("--min_seconds", type=float, default=1.0, help="minimum time of one case in a round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls after the first one")
    parser.add_argument("--freia_coupling", choices=("one_sided", "nice"), default="one_sided")
    parser.add_argument("--torch_threads", default="1,2",
                        help="comma-separated torch thread counts, one FrEIA case each; ratios against the fastest")
    parser.add_argument("--tf_threads", default="auto",
                        help="TensorFlow inter-op,intra-op threads, e.g. 2,1 (0: TensorFlow's default); auto: "
                             "the binaries' default (train/threads.py)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


# ----------------------------------------------------------------------------- cases
# Each side runs in its own process, built there and stepped on request over a pipe: TensorFlow's
# and torch's thread pools in one process compete for the same cores (measured: FrEIA 20x slower
# next to an idle TensorFlow runtime), while a process waiting on its pipe leaves the cores free.

def parse_threads(text):
    """"INTER,INTRA" or "auto" (the binaries' default) -> (inter, intra), 0 meaning TensorFlow's default."""
    if text == "auto":
        from train.threads import auto_threads

        return auto_threads()
    try:
        inter, intra = (int(t) for t in text.split(","))
    except ValueError:
        raise SystemExit(f"Expected threads as INTER,INTRA (two integers, 0: TensorFlow's default). "
                         f"Received: {text!r}") from None
    return inter, intra


def build_ours(couplings, filters, x, y, seed, threads=(0, 0)):
    """Our fiRevNet, ActNorm-initialised on `x` and compiled as a plain Keras classifier (the library's Adam)."""
    import keras
    import tensorflow as tf

    from invertible_keras.models import builders
    from train.threads import set_threads

    set_threads(*threads)
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(seed)
    model = builders.conv(INPUT_SHAPE, NUM_CLASSES, blocks_per_stage=couplings, filters=filters,
                          batch_norm=False, seed=seed)
    model.initialize(x)
    try:
        from invertible_keras.training.optimizers import make_optimizer
    except ImportError:  # revisions before the fused optimizers (bench/ab_step.py)
        from invertible_keras.training.loop import make_optimizer
    model.compile(optimizer=make_optimizer("adam", 1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def ours_step(couplings, filters, x, y, seed, threads):
    import keras
    import tensorflow as tf

    model = build_ours(couplings, filters, x, y, seed, threads)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    info = f"TensorFlow {tf.__version__} (inter-op, intra-op threads {threads}; 0: default), Keras {keras.__version__}"
    return params, info, lambda: model.train_on_batch(x, y)


def freia_step(couplings, filters, x, y, seed, coupling, threads):
    import FrEIA
    import torch

    from bench.freia_firevnet import FreiaFiRevNet

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = FreiaFiRevNet(couplings, filters, INPUT_SHAPE, NUM_CLASSES, coupling, seed)
    x_t = torch.from_numpy(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    y_t = torch.from_numpy(y.astype(np.int64))
    with torch.no_grad():
        model(x_t)  # FrEIA's ActNorm initialises itself on the first batch
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x_t), y_t)
        loss.backward()
        optimizer.step()

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = f"torch {torch.__version__}, FrEIA {getattr(FrEIA, '__version__', '0.2')}"
    return params, info, step


def _worker(conn, make_step, args, root):
    """Runs `make_step(*args)` -> (params, info, step), reports (params, info, first step's result),
    then steps per message until None.

    `root`: a directory put first on sys.path, so that `invertible_keras` is imported from it
    (`bench/ab_step.py` runs two versions of the library this way).
    """
    if root:
        sys.path.insert(0, root)
    params, info, step = make_step(*args)
    conn.send((params, info, step()))
    while conn.recv() is not None:
        start = time.process_time()
        step()
        conn.send(time.process_time() - start)  # CPU seconds of all threads: less noisy than wall time


class RemoteCase:
    """A case of `run_cases` whose steps run in a spawned process (see above)."""

    def __init__(self, make_step, *args, root=None):
        """`make_step`: a module-level function, `make_step(*args)` -> (params, info, step)."""
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, make_step, args, root), daemon=True)
        self.process.start()
        self.params, self.info, self.first_result = self.conn.recv()
        self.cpu_seconds = []  # per step

    def step(self):
        self.conn.send(True)
        self.cpu_seconds.append(self.conn.recv())

    def close(self):
        self.conn.send(None)
        self.process.join(timeout=30)


def main():
    args = parse_args()
    from bench.speed import paired_ratios, run_cases  # imports TensorFlow: not in the workers

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(size=(args.batch, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=args.batch).astype(np.int32)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; expected names from {sorted(SIZES)}")

    torch_threads = [int(t) for t in args.torch_threads.split(",") if t.strip()]
    remotes = {}
    for size in sizes:
        couplings, filters = SIZES[size]
        remotes[f"ours {size}"] = RemoteCase(ours_step, couplings, filters, x, y, args.seed,
                                             parse_threads(args.tf_threads))
        for t in torch_threads:
            remotes[f"FrEIA {size} {t}t"] = RemoteCase(freia_step, couplings, filters, x, y, args.seed,
                                                       args.freia_coupling, t)
        for name in [f"ours {size}"] + [f"FrEIA {size} {t}t" for t in torch_threads]:
            print(f"  {name}: {remotes[name].params:,} trainable parameters", file=sys.stderr, flush=True)
    results = run_cases({name: (lambda r=remote: r.step) for name, remote in remotes.items()}, args)
    for remote in remotes.values():
        remote.close()

    def rate(name):
        return None if isinstance(results[name], str) else args.batch * statistics.median(results[name][1])

    first = next(iter(sizes))
    print(f"## fiRevNet vs FrEIA, CE training step\n\n{os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f} at the end; "
          f"{remotes[f'ours {first}'].info}; {remotes[f'FrEIA {first} {torch_threads[0]}t'].info}; each case "
          f"in its own process. FrEIA coupling `{args.freia_coupling}`. Batch {args.batch}, Adam 1e-3, median "
          f"of {args.repeats} rounds of >= {args.min_seconds} s per case, cases alternating. The ratio is "
          f"paired per round against the FrEIA case (torch threads) with the higher median.\n")
    freia_columns = " | ".join(f"FrEIA {t} thr img/s" for t in torch_threads)
    print(f"| size | params ours / FrEIA | ours img/s | {freia_columns} | ratio ours/FrEIA | range |\n"
          f"|---|---:|---:|{'---:|' * len(torch_threads)}---:|---:|")
    for size in sizes:
        couplings, filters = SIZES[size]
        label = f"{filters} filters, {couplings} couplings/stage"
        ours, freias = f"ours {size}", [f"FrEIA {size} {t}t" for t in torch_threads]
        params = f"{remotes[ours].params:,} / {remotes[freias[0]].params:,}"
        cells = " | ".join("failed" if rate(n) is None else f"{rate(n):,.0f}" for n in [ours] + freias)
        ok = [n for n in freias if rate(n) is not None]
        if rate(ours) is None or not ok:
            errors = "; ".join(f"{n}: {results[n]}" for n in [ours] + freias if rate(n) is None)
            print(f"| {label} | {params} | {cells} | {errors} | |")
            continue
        best = max(ok, key=rate)
        per_round = paired_ratios(results, best, ours)
        print(f"| {label} | {params} | {cells} | {statistics.median(per_round):.2f}x "
              f"(vs {best.split()[-1][:-1]} thr) | {min(per_round):.2f} - {max(per_round):.2f} |")


if __name__ == "__main__":
    main()
