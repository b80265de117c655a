"""Analytic metamers of a fiRevNet against an optimisation-based pre-image search.

A metamer of images a and b has a's logits and otherwise looks like b. A fiRevNet builds it in
closed form (paper, section 3): x_met = decode(z_s(a), z_n(b)), two forward passes and one
inverse pass. A network without an inverse needs a search: starting from x = b, minimise

    L(x) = 1/2 * || f(x) - f(a) ||^2

over the input x with Adam (hand-written inside one `tf.while_loop`, so there is no Python
overhead per step) until max_k |f(x)_k - f(a)_k| < `--tolerance` (1e-3) or `--max_steps`. A
step is one forward and backward pass for the gradient plus one forward pass to check the
stopping rule on the updated x. The input is not clipped to [0, 1] (neither is the analytic
metamer).

Target networks of the search, both trained for `--train_steps` steps of CE on the same data:
- the fiRevNet itself (`f` = its logits z_s): the like-for-like comparison, same network, same
  logits to hit, only the method differs (inverse vs search). It is trained because an
  untrained fiRevNet is almost linear (its couplings are the identity at init), which would
  make the search unrealistically easy.
- a standard small Keras CNN (conv 32 - pool - conv 64 - pool - dense 128 - dense 10): the case
  the paper contrasts with, a classifier without an inverse, where search is the only way.

Per pair (batch size 1 for both methods) the table reports wall time per image, the steps
and final max-abs logit error of the search, and the analytic metamer's logit error
max|f(x_met) - f(a)|. The analytic time is the median of `--repeats` calls; each search runs
once (it is deterministic). All functions are traced / warmed up before timing.

Data: Fashion-MNIST (`--data=fashion_mnist`, read by `invertible_keras.data`; pairs a, b are
test images) or uniform noise (`--data=random`, random labels).

Usage:
    TF_CPP_MIN_LOG_LEVEL=3 python bench/metamer_speed.py
    TF_CPP_MIN_LOG_LEVEL=3 python bench/metamer_speed.py --pairs 8 --max_steps 5000 --data random
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Runnable from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from configs import fashion_mnist  # noqa: E402
from invertible_keras import data, metamers  # noqa: E402
from invertible_keras.models import build_model  # noqa: E402
from invertible_keras.training.optimizers import make_optimizer  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("fashion_mnist", "random"), default="fashion_mnist")
    parser.add_argument("--train_steps", type=int, default=200, help="CE steps (batch 64) for both networks")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs logit error to stop the search")
    parser.add_argument("--max_steps", type=int, default=2000, help="step cap of the search")
    parser.add_argument("--learning_rate", type=float, default=1e-2, help="Adam step size on the input")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of the analytic metamer per pair")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load_images(name, split, count, seed):
    if name == "random":
        images = tf.random.stateless_uniform((count, 28, 28, 1), seed=(seed, 0 if split == "train" else 1))
        labels = tf.random.stateless_uniform((count,), seed=(seed, 2), maxval=10, dtype=tf.int32)
        return images, labels
    return next(iter(data.load_split(name, split).batch(count)))


def cnn(num_classes=10):
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dense(num_classes),
    ], name="cnn")


def train(model, images, labels, steps, config):
    model.compile(optimizer=make_optimizer(config.train.optimizer, config.train.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().shuffle(4096)
    history = model.fit(dataset.batch(config.data.batch_size), steps_per_epoch=steps, epochs=1,
                        shuffle=False, verbose=0)  # shuffled by the dataset
    return history.history["accuracy"][-1]  # mean over the steps of the single epoch


def preimage_search(model, learning_rate, tolerance):
    """Returns a tf.function (x_a, x_b, max_steps) -> (x, steps, max abs logit error)."""
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7

    def logit_error(x, target):
        return tf.reduce_max(tf.abs(model(x, training=False) - target))

    @tf.function
    def search(x_a, x_b, max_steps):
        target = model(x_a, training=False)

        def not_done(step, x, m, v, error):
            return tf.logical_and(step < max_steps, error >= tolerance)

        def adam_step(step, x, m, v, error):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = 0.5 * tf.reduce_sum(tf.square(model(x, training=False) - target))
            grad = tape.gradient(loss, x)
            step += 1
            m = beta_1 * m + (1 - beta_1) * grad
            v = beta_2 * v + (1 - beta_2) * tf.square(grad)
            t = tf.cast(step, x.dtype)
            x = x - learning_rate * (m / (1 - beta_1**t)) / (tf.sqrt(v / (1 - beta_2**t)) + epsilon)
            return step, x, m, v, logit_error(x, target)

        zeros = tf.zeros_like(x_b)
        step, x, _, _, error = tf.while_loop(
            not_done, adam_step, (tf.constant(0), x_b, zeros, zeros, logit_error(x_b, target)))
        return x, step, error

    return search


def main():
    args = parse_args()
    tf.get_logger().setLevel("ERROR")
    logging.set_verbosity(logging.ERROR)  # TFDS probes its data dir before falling back to IDX files
    keras.utils.set_random_seed(args.seed)
    config = fashion_mnist.get_config()
    batch = config.data.batch_size
    train_x, train_y = load_images(args.data, "train", max(4096, batch), args.seed)
    test_x, _ = load_images(args.data, "test", 2 * args.pairs, args.seed)

    firevnet = build_model(config.model)
    firevnet.initialize(train_x[:batch])
    networks = {"fiRevNet": firevnet, "CNN": cnn()}
    accuracy = {name: train(net, train_x, train_y, args.train_steps, config) for name, net in networks.items()}

    analytic = tf.function(lambda x_a, x_b: metamers.metamer(firevnet, x_a, x_b))
    searches = {name: preimage_search(net, args.learning_rate, args.tolerance) for name, net in networks.items()}
    pairs = [(test_x[i:i + 1], test_x[args.pairs + i:args.pairs + i + 1]) for i in range(args.pairs)]
    analytic(*pairs[0]).numpy()  # trace
    for search in searches.values():
        search(*pairs[0], tf.constant(2))[0].numpy()  # trace

    rows = []
    for x_a, x_b in pairs:
        row = {}
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            x_met = analytic(x_a, x_b).numpy()
            times.append(time.perf_counter() - start)
        row["analytic"] = (statistics.median(times), None,
                           float(tf.reduce_max(tf.abs(firevnet(x_met) - firevnet(x_a)))))
        for name, search in searches.items():
            start = time.perf_counter()
            _, steps, error = search(x_a, x_b, tf.constant(args.max_steps))
            steps, error = int(steps), float(error)  # waits for the result
            row[name] = (time.perf_counter() - start, steps, error)
        rows.append(row)
        print(f"  pair {len(rows)} done", file=sys.stderr, flush=True)

    print(f"## Metamer speed ({args.data}, {args.train_steps} training steps, batch 1 per pair, "
          f"search: Adam lr {args.learning_rate}, stop at max abs logit error < {args.tolerance:g} "
          f"or {args.max_steps} steps; TensorFlow {tf.__version__}, nproc {len(os.sched_getaffinity(0))})\n")
    print("Mean training accuracy over the training steps: "
          + ", ".join(f"{name} {acc:.2f}" for name, acc in accuracy.items()) + "\n")
    print("| pair | analytic ms | analytic logit err | search fiRevNet ms | steps | logit err "
          "| search CNN ms | steps | logit err |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, row in enumerate(rows):
        cells = [f"{row['analytic'][0] * 1e3:.1f}", f"{row['analytic'][2]:.2e}"]
        for name in networks:
            seconds, steps, error = row[name]
            cells += [f"{seconds * 1e3:,.0f}", f"{steps}", f"{error:.2e}"]
        print(f"| {i + 1} | " + " | ".join(cells) + " |")

    analytic_ms = statistics.median(row["analytic"][0] for row in rows) * 1e3
    print("\n| method | per image ms (median over pairs) | steps (median) | ms per step "
          "| logit err (worst pair) | converged | time / analytic |\n|---|---:|---:|---:|---:|---:|---:|")
    print(f"| analytic metamer, fiRevNet | {analytic_ms:.1f} | - | - | "
          f"{max(row['analytic'][2] for row in rows):.2e} | {len(rows)}/{len(rows)} | 1 |")
    for name in networks:
        ms = statistics.median(row[name][0] for row in rows) * 1e3
        steps = statistics.median(row[name][1] for row in rows)
        ms_per_step = 1e3 * sum(row[name][0] for row in rows) / max(1, sum(row[name][1] for row in rows))
        converged = sum(row[name][2] < args.tolerance for row in rows)
        print(f"| Adam search, {name} logits | {ms:,.0f} | {steps:g} | {ms_per_step:.1f} "
              f"| {max(row[name][2] for row in rows):.2e} | {converged}/{len(rows)} | {ms / analytic_ms:,.0f} |")


if __name__ == "__main__":
    main()
