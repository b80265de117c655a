"""Peak memory of one training step: InvertibleSequential versus ReversibleSequential.

A stack of `depth` conv steps ActNorm -> Invertible1x1Conv -> AdditiveCoupling is trained on
random images with the flow loss 0.5 * |y|^2 - log_det (one `tf.function` step: forward,
gradients, Adam update). Standard backpropagation stores every block's activations, so its
memory grows linearly with depth; the reversible chain keeps only its output and one block's
activations in the backward pass, so its memory should stay flat.

Every configuration is measured in fresh subprocesses, after building, tracing and one warm-up
step, in two ways:
- allocator: with `TF_CPU_ALLOCATOR_USE_BFC=true` the CPU allocator keeps statistics
  (`tf.config.experimental.get_memory_info('CPU:0')` otherwise raises "Allocator stats not
  available for device 'CPU:0'"). They are reset after the warm-up step; the peak of the
  measured steps minus the bytes in use before them is the step's working memory
  (activations, gradients, temporaries; not weights or optimizer slots).
- RSS: in a second process with TF's default allocator and glibc's `MALLOC_MMAP_THRESHOLD_`
  fixed at 64 KB (otherwise freed buffers stay resident in the heap and later steps reuse
  them, so RSS would not move), the peak resident set size is reset
  after the warm-up step (`echo 5 > /proc/self/clear_refs` resets VmHWM), and the peak of the
  measured steps (VmHWM) minus the resident size before them is reported. `ru_maxrss` cannot
  be reset, so it would count the one-time cost of the first run (graph optimisation, kernel
  creation), which grows with the size of the graph. The step time is measured here: the
  fastest of `--steps` steps (the machine may be shared).

TF runs one op at a time by default here (`--inter_op_threads 1`; every op still uses all
cores). With more inter-op threads two ops of one block can run at once, e.g. the filter
gradients of two convolutions of a subnet, each with an im2col temporary of 15-30 MB at the
default size; whether they overlap depends on timing, and the peak over more blocks is a
maximum over more chances, so the reversible peak then rises with depth by up to ~25%
(measured: 72 MB at 8 blocks, 91 MB at 64) although no activation is kept.

Usage:
    python bench/memory.py                      # depths 8 16 32 64
    python bench/memory.py --depths 8 16 --batch 16

Prints a markdown table; it never asserts.
"""

import argparse
import json
import os
import re
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(how, depth, reversible, image_size, channels, hidden, batch, steps, inter_op_threads,
            jit_compile=False):
    """Runs in a subprocess: builds the stack, trains, returns `{"mb": ..., "seconds": ...}`."""
    import time

    import keras
    import tensorflow as tf

    from invertible_keras.layers import ActNorm, AdditiveCoupling, Invertible1x1Conv, InvertibleSequential
    from invertible_keras.layers.reversible import ReversibleSequential

    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    blocks = []
    for i in range(depth):
        blocks += [ActNorm(), Invertible1x1Conv(seed=i), AdditiveCoupling(hidden_units=hidden)]
    chain = (ReversibleSequential if reversible else InvertibleSequential)(blocks)
    x = tf.random.stateless_normal((batch, image_size, image_size, channels), seed=(0, 0))
    chain.initialize(x)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(chain.trainable_variables)

    @tf.function(jit_compile=jit_compile)
    def train_step(x):
        with tf.GradientTape() as tape:
            y, log_det = chain.forward_and_log_det(x, training=True)
            loss = tf.reduce_mean(0.5 * tf.reduce_sum(tf.square(y), axis=[1, 2, 3]) - log_det)
        grads = tape.gradient(loss, chain.trainable_variables)
        optimizer.apply_gradients(zip(grads, chain.trainable_variables))
        return loss

    train_step(x).numpy()  # warm-up: tracing, graph optimisation, kernels, allocator pools
    if how == "allocator":
        tf.config.experimental.reset_memory_stats("CPU:0")
        in_use = tf.config.experimental.get_memory_info("CPU:0")["current"]
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        in_use = _status_kb("VmRSS") * 1024
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step(x).numpy()
        times.append(time.perf_counter() - start)
    if how == "allocator":
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    else:
        peak = _status_kb("VmHWM") * 1024
    return {"mb": (peak - in_use) / 2**20, "seconds": min(times)}


def _status_kb(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE).group(1))


def run_in_subprocess(args, how, depth, reversible):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    if how == "allocator":
        env["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    else:  # glibc: a fixed threshold maps every buffer >= 64 KB and unmaps it when freed
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    child = dict(how=how, depth=depth, reversible=reversible, image_size=args.image_size,
                 channels=args.channels, hidden=args.hidden, batch=args.batch,
                 steps=args.steps if how == "rss" else 1, inter_op_threads=args.inter_op_threads,
                 jit_compile=args.jit_compile)
    command = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(child)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{child} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32, 64],
                        help="numbers of ActNorm -> 1x1 conv -> additive coupling blocks")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32, help="filters of the coupling subnets")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--inter_op_threads", type=int, default=1, help="TF inter-op threads (0: TF's default)")
    parser.add_argument("--jit_compile", action="store_true", help="compile the step with XLA")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return

    print(f"input {args.batch}x{args.image_size}x{args.image_size}x{args.channels}, {args.hidden} hidden "
          f"filters, one Adam step{' (XLA)' if args.jit_compile else ''}, {args.inter_op_threads} inter-op "
          "thread(s); MB above the pre-step level\n")
    print("| depth | standard MB (allocator) | reversible MB (allocator) "
          "| standard MB (RSS) | reversible MB (RSS) | time reversible / standard |")
    print("|---:|---:|---:|---:|---:|---:|")
    reversible_mb = {}
    for depth in args.depths:
        row = {(how, rev): run_in_subprocess(args, how, depth, rev)
               for how in ("allocator", "rss") for rev in (False, True)}
        reversible_mb[depth] = row["allocator", True]["mb"], row["rss", True]["mb"]
        std_s, rev_s = row["rss", False]["seconds"], row["rss", True]["seconds"]
        print(f"| {depth} | {row['allocator', False]['mb']:.1f} | {row['allocator', True]['mb']:.1f} "
              f"| {row['rss', False]['mb']:.1f} | {row['rss', True]['mb']:.1f} "
              f"| {rev_s / std_s:.2f} ({std_s:.2f} s / {rev_s:.2f} s) |", flush=True)
    first, last = reversible_mb[args.depths[0]], reversible_mb[args.depths[-1]]
    print(f"\nreversible peak at depth {args.depths[-1]} / depth {args.depths[0]}: "
          f"allocator {last[0] / first[0]:.3f}, RSS {last[1] / first[1]:.3f}")


if __name__ == "__main__":
    main()
