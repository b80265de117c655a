"""Throughput of the small conv fiRevNet (configs/fashion_mnist.py, ":cpu") on one machine.

What is measured (all on a fixed batch of synthetic 28x28x1 images in [0, 1] with random
labels; speed does not depend on the values):
- training images/s of `train_on_batch` of a fiRevNet compiled with the `Objective` "ce" and "ice" (the config's
  optimizers; "ce" also steps the nuisance classifier and fits the prior on stopped
  gradients, exactly as in real training), with and without `reversible_gradients`, and with
  `jit_compile` (XLA) on and off in `compile`;
- the fiRevNet trained alone as a plain Keras classifier (`FiRevNet.compile` +
  `train_on_batch`, sparse CE on the logits, same optimizer) against a plain Keras ResNet-style
  CNN (pre-activation residual blocks with batch norm, 3 stages x `blocks_per_stage` blocks,
  widths w, 2w, 4w, global average pooling, Dense) whose width w is chosen to match the
  fiRevNet's trainable parameter count;
- inference images/s of `model(x)`, encode+decode images/s of `decode(*encode(x))` and
  metamers/s of `metamers.metamer(model, x_a, x_b)` (two encodes and one decode per metamer),
  each inside a `tf.function`.

How: every case is built, called once (tracing / XLA compilation; the "first call" column)
and `--warmup` more times. Then the cases are timed round-robin, `--repeats` rounds; in a
round each case runs whole calls until `--min_seconds` have passed. The throughput table
reports the median over rounds (and the min-max range). A ratio is paired: it is computed
within every round, from two cases timed a few seconds apart, and the table gives the median
of these per-round ratios and their range, so a slow-down of a shared machine that lasts
longer than a round hits both sides of a ratio alike. A case that fails (e.g. under XLA)
shows its error in the table instead of stopping the run. Nothing here asserts on time.

Usage:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/speed.py
    TF_CPP_MIN_LOG_LEVEL=3 python bench/speed.py --repeats 7 --min_seconds 2 --no_xla
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from configs import fashion_mnist  # noqa: E402
from invertible_keras import metamers  # noqa: E402
from invertible_keras.models import build_model  # noqa: E402
from invertible_keras.models.nuisance_mlp import nuisance_classifier  # noqa: E402
from invertible_keras.training.loop import build_network  # noqa: E402
from invertible_keras.training.optimizers import make_optimizer  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--blocks_per_stage", type=int, default=None, help="default: the config's (2)")
    parser.add_argument("--filters", type=int, default=None, help="default: the config's (32)")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds over all cases")
    parser.add_argument("--min_seconds", type=float, default=0.6, help="minimum time of one case in a round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after the first one")
    parser.add_argument("--resnet_width", type=int, default=0, help="0: match the fiRevNet's parameters")
    parser.add_argument("--no_xla", action="store_true", help="skip the jit_compile=True cases")
    parser.add_argument("--tf_threads", default="auto",
                        help="TensorFlow inter-op,intra-op threads, e.g. 2,1 (0: TensorFlow's default); auto: "
                             "the binaries' default (train/threads.py)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def make_config(args, loss="ce", reversible=False, jit=False):
    config = fashion_mnist.get_config()
    config.data.batch_size = args.batch
    if args.blocks_per_stage:
        config.model.blocks_per_stage = args.blocks_per_stage
    if args.filters:
        config.model.filters = args.filters
    config.model.reversible_gradients = reversible
    config.train.loss = loss
    config.train.jit_compile = jit
    return config


def count_params(model):
    return sum(int(tf.size(w)) for w in model.trainable_weights)


def resnet(width, blocks_per_stage, input_shape=(28, 28, 1), num_classes=10):
    """A pre-activation ResNet: stem conv, 3 stages (widths w, 2w, 4w; stride 2 into stages 2-3)."""
    layers = keras.layers
    inputs = keras.Input(input_shape)
    h = layers.Conv2D(width, 3, padding="same")(inputs)
    for stage in range(3):
        filters = width * 2**stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            r = layers.ReLU()(layers.BatchNormalization()(h))
            shortcut = h if stride == 1 and h.shape[-1] == filters else layers.Conv2D(filters, 1, strides=stride)(r)
            r = layers.Conv2D(filters, 3, strides=stride, padding="same")(r)
            r = layers.ReLU()(layers.BatchNormalization()(r))
            r = layers.Conv2D(filters, 3, padding="same")(r)
            h = layers.Add()([shortcut, r])
    h = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.BatchNormalization()(h)))
    return keras.Model(inputs, layers.Dense(num_classes)(h), name=f"resnet_w{width}")


def matched_resnet_width(target, blocks_per_stage):
    """The width whose ResNet has the trainable parameter count closest to `target`."""
    counts = {}
    for width in range(2, 257):  # the count grows with the width: stop once past the target
        counts[width] = count_params(resnet(width, blocks_per_stage))
        if counts[width] >= target:
            break
    return min(counts, key=lambda w: abs(counts[w] - target))


# Every builder returns a zero-argument callable that runs one batch and waits for its result.

def objective_case(args, x, y, loss, reversible, jit):
    def build():
        network = build_network(make_config(args, loss, reversible, jit), x)
        network.initialize(x)
        if network.jit_compile != jit:
            raise RuntimeError(f"Keras set jit_compile={network.jit_compile} (asked {jit})")
        return lambda: network.train_on_batch(x, y)
    return build


def classifier_case(args, x, y, model_fn, jit):
    def build():
        model = model_fn()
        config = make_config(args)
        model.compile(optimizer=make_optimizer(config.train.optimizer, config.train.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
        return lambda: model.train_on_batch(x, y)
    return build


def network_case(args, x, fn):
    def build():
        network = build_model(make_config(args).model)
        network.initialize(x)
        step = tf.function(lambda x: fn(network, x))
        return lambda: step(x).numpy()
    return build


def initialized_firevnet(args, x):
    network = build_model(make_config(args).model)
    network.initialize(x)
    return network


def short_error(error):
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = (lines[0] if lines else "")[:100].replace("|", "/")
    return f"{type(error).__name__}: {text}"


def run_cases(cases, args):
    """Returns {name: (first_call_seconds, [calls per second, one per repeat]) or error string}."""
    steps, results = {}, {}
    for name, build in cases.items():
        try:
            start = time.perf_counter()
            step = build()
            step()
            first = time.perf_counter() - start
            for _ in range(args.warmup):
                step()
            steps[name], results[name] = step, (first, [])
        except Exception as error:  # noqa: BLE001 - reported in the table
            results[name] = short_error(error)
        print(f"  built {name}", file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for name, step in list(steps.items()):
            try:
                calls, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < args.min_seconds or calls == 0:
                    step()
                    calls += 1
                results[name][1].append(calls / elapsed)
            except Exception as error:  # noqa: BLE001
                results[name] = short_error(error)
                del steps[name]
    return results


def paired_ratios(results, slow, fast):
    """Per-round ratios rate(fast) / rate(slow) of two cases of `run_cases` (> 1: `slow` is slower)."""
    return [f / s for s, f in zip(results[slow][1], results[fast][1])]


def main():
    args = parse_args()
    from bench.peer_freia import parse_threads
    from train.threads import set_threads

    set_threads(*parse_threads(args.tf_threads))  # before any op runs
    tf.get_logger().setLevel("ERROR")  # every case traces its own step: retracing warnings are expected
    keras.utils.set_random_seed(args.seed)
    x = tf.random.stateless_uniform((args.batch, 28, 28, 1), seed=(args.seed, 0))
    y = tf.random.stateless_uniform((args.batch,), seed=(args.seed, 1), maxval=10, dtype=tf.int32)
    config = make_config(args)
    probe = initialized_firevnet(args, x)
    firevnet_params = count_params(probe)
    d_phi = nuisance_classifier(probe.num_classes, config.ice.nuisance_hidden_units)
    d_phi.build((None, probe.num_nuisances))
    nuisance_params = count_params(d_phi)
    width = args.resnet_width or matched_resnet_width(firevnet_params, config.model.blocks_per_stage)
    resnet_params = count_params(resnet(width, config.model.blocks_per_stage))

    xlas = [False] if args.no_xla else [False, True]
    cases = {}
    for jit in xlas:
        tag = ", XLA" if jit else ""
        cases[f"train CE{tag}"] = objective_case(args, x, y, "ce", False, jit)
        cases[f"train iCE{tag}"] = objective_case(args, x, y, "ice", False, jit)
        cases[f"train CE reversible{tag}"] = objective_case(args, x, y, "ce", True, jit)
        cases[f"fiRevNet alone, CE{tag}"] = classifier_case(args, x, y, lambda: initialized_firevnet(args, x), jit)
        cases[f"ResNet w={width}, CE{tag}"] = classifier_case(
            args, x, y, lambda: resnet(width, config.model.blocks_per_stage), jit)
    cases["inference model(x)"] = network_case(args, x, lambda net, x: net(x, training=False))
    cases["encode + decode"] = network_case(args, x, lambda net, x: net.decode(*net.encode(x)))
    x_b = tf.reverse(x, axis=[0])
    cases["metamers (a, b pairs)"] = network_case(args, x, lambda net, x: metamers.metamer(net, x, x_b))

    print(f"timing {len(cases)} cases ...", file=sys.stderr, flush=True)
    results = run_cases(cases, args)

    def rate(name):  # median images/s, or None
        result = results.get(name)
        return None if result is None or isinstance(result, str) else args.batch * statistics.median(result[1])

    print(f"## Machine\n\n{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f} at the end; "
          f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}\n")
    print(f"fiRevNet conv {config.model.blocks_per_stage} blocks/stage x {config.model.filters} filters, "
          f"batch_norm={config.model.batch_norm}, batch {args.batch}: {firevnet_params:,} trainable parameters "
          f"(+ {nuisance_params:,} in the nuisance classifier D_phi of the objective); "
          f"ResNet w={width}: {resnet_params:,} trainable parameters. "
          f"Median of {args.repeats} repeats of >= {args.min_seconds} s each.\n")

    print("## Throughput\n\n| case | images/s (median) | min - max | first call s |\n|---|---:|---:|---:|")
    for name in cases:
        result = results[name]
        if isinstance(result, str):
            print(f"| {name} | failed: {result} | | |")
        else:
            first, per_second = result
            print(f"| {name} | {rate(name):,.0f} | {args.batch * min(per_second):,.0f} - "
                  f"{args.batch * max(per_second):,.0f} | {first:.1f} |")

    print("\n## Ratios (time per image, paired within each round; > 1 means the first is slower)\n\n"
          "| ratio | median over rounds | min - max | note |\n|---|---:|---:|---|")

    def ratio(label, slow, fast, note=""):
        for name in (slow, fast):
            if isinstance(results[name], str):
                print(f"| {label} | n/a | | {name} failed: {results[name]} |")
                return
        per_round = paired_ratios(results, slow, fast)
        median = statistics.median(per_round)
        print(f"| {label} | {median:.2f} | {min(per_round):.2f} - {max(per_round):.2f} | "
              f"{note(median) if callable(note) else note} |")

    resnet_name = f"ResNet w={width}, CE"
    ratio("iCE / CE training", "train iCE", "train CE")
    ratio("reversible / standard training (CE)", "train CE reversible", "train CE")
    ratio("fiRevNet alone / ResNet training (CE)", "fiRevNet alone, CE", resnet_name,
          f"{firevnet_params:,} vs {resnet_params:,} parameters")
    ratio("objective CE / ResNet training", "train CE", resnet_name, "the objective also steps D_phi and the prior")
    ratio("objective CE / fiRevNet alone training", "train CE", "fiRevNet alone, CE", "cost of D_phi and the prior")
    ratio("training (CE) / inference", "train CE", "inference model(x)")
    ratio("encode+decode / inference", "encode + decode", "inference model(x)")
    ratio("metamer / inference", "metamers (a, b pairs)", "inference model(x)", "2 encodes + 1 decode")
    if not args.no_xla:
        for name in ("train CE", "train iCE", "train CE reversible", "fiRevNet alone, CE", resnet_name):
            ratio(f"XLA / no XLA: {name}", f"{name}, XLA", name,
                  lambda r: f"{'XLA' if r < 1 else 'no XLA'} is faster")


if __name__ == "__main__":
    main()
