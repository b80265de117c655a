"""`train_and_evaluate(config, workdir)`: everything `python -m train.train` does.

Trains (or resumes) the run of a config in a run directory (`run_dir`: config.json,
checkpoints/, history.json, tensorboard/, metrics.json, export/); a rerun of the same command
resumes from the newest readable checkpoint, and a workdir that holds a run of another config is
refused (`WorkdirConfigMismatchError`).

What a run guarantees under faults:
- One writer per run: the workdir is locked (`RunDir.lock`) while a process trains in it; a
  second process on it stops at once with `WorkdirLockedError` naming the holder, and a lock
  left by a dead process is taken over with a warning.
- Checkpoints after every epoch and every `train.checkpoint_every_steps` steps, and one when
  the process receives SIGTERM (then `TrainingPreemptedError`). They hold every variable, the
  optimizers and the position in the run; the training data is a stream addressed by the step
  count (`data.load_dataset(start_batch=...)`) and every random draw of a step is seeded by
  the step count or restored state, so a resumed run, mid-epoch included, reaches the weights
  of the uninterrupted one.
- An unreadable checkpoint (torn, truncated) is skipped with a warning for the newest readable
  one; a checkpoint that cannot be written (a full disk) stops the run with
  `CheckpointWriteError` and leaves the previous checkpoint in place.

Progress goes to stdout: which run trains and where its results go, then a Keras progress
bar on a terminal, or one line per epoch when stdout is a file or pipe. TensorBoard gets
scalars and a picture per epoch: a metamer grid for images, the figure-3 decision planes of a
fixed pair for spheres.

A NaN or Inf loss stops training (keras.callbacks.TerminateOnNaN) without writing a checkpoint
for that epoch and raises `TrainingDivergedError`: the last good checkpoint stays intact.
"""

import contextlib
import json
import os
import signal
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from invertible_keras import data, export, metamers, run_dir
from invertible_keras.analysis import figures, planes
from invertible_keras.analysis import network as network_lib
from invertible_keras.models import build_model
from invertible_keras.run_dir import (  # noqa: F401 (API)
    NoReadableCheckpointError,
    RunDir,
    WorkdirConfigMismatchError,
    WorkdirLockedError,
)
from invertible_keras.training.objective import AdversaryWarmup, Objective
from invertible_keras.training.optimizers import make_optimizer

DISTRIBUTE = ("auto", "none", "mirrored", "multi_worker")
LOSS_NAMES = {"ce": "cross-entropy (CE)", "ce_mle": "CE + MLE", "ice": "independence cross-entropy (iCE)"}


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf."""


class TrainingPreemptedError(RuntimeError):
    """The process received SIGTERM; a checkpoint of the step it was at was written."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""


def make_strategy(kind):
    """Returns the tf.distribute strategy for `config.train.distribute`.

    "auto": MultiWorkerMirroredStrategy when TF_CONFIG names a cluster, MirroredStrategy when
    there is more than one GPU, else the default (single device) strategy.
    """
    if kind not in DISTRIBUTE:
        raise ValueError(f"`train.distribute` must be one of {DISTRIBUTE}. Received: {kind!r}")
    if kind == "auto":
        if json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster"):
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "none"
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def build_network(config, example_batch):
    """Builds the fiRevNet of `config` compiled with its objective (call under the strategy's scope)."""
    network = build_model(config.model)
    network.forward_and_log_det(example_batch[:1])  # build
    ice, t = config.ice, config.train
    objective = Objective(
        t.loss, nuisance_optimizer=make_optimizer(ice.nuisance_optimizer, ice.nuisance_learning_rate),
        beta=ice.beta, gamma=ice.gamma, adversary=ice.adversary, nuisance_steps=ice.nuisance_steps,
        nuisance_first=ice.nuisance_first,
        semantic_prior=ice.semantic_prior, nuisance_hidden_units=tuple(ice.nuisance_hidden_units),
        nuisance_dropout=ice.nuisance_dropout, num_levels=None if config.data.name == "spheres" else 256)
    network.compile(optimizer=make_optimizer(t.optimizer, network_learning_rate(config), t.weight_decay, t.momentum,
                                             t.clipnorm),
                    loss=objective, jit_compile=t.jit_compile)
    return network


class CheckpointCallback(keras.callbacks.Callback):
    """Saves checkpoints named by step: after every epoch whose loss is finite, every
    `every_steps` steps, and on SIGTERM (`preempt`), after which it raises `TrainingPreemptedError`.

    `history` (`{log name: [value per epoch]}`, the epochs before this run included) is written
    to `history_path` (None: not at all) before an epoch's checkpoint, so it never lags behind
    the checkpoint; a resume cuts it back to the checkpoint's epoch (`RunDir.load_history`).

    Args:
        manager: the run's `tf.train.CheckpointManager`.
        epoch, step_in_epoch: the checkpointed position variables (`run_dir.training_checkpoint`).
        every_steps: steps between checkpoints within an epoch (0 or None: epoch ends only).
        first_step_in_epoch: the step within the first epoch at which `fit` starts (a mid-epoch
            resume trains the rest of that epoch with `steps_per_epoch` cut accordingly).
    """

    def __init__(self, manager, epoch, step_in_epoch, history=None, history_path=None, every_steps=None,
                 first_step_in_epoch=0):
        super().__init__()
        self.manager, self.epoch, self.step_in_epoch = manager, epoch, step_in_epoch
        self.history, self.history_path = history if history is not None else {}, history_path
        self.every_steps, self.offset = every_steps or 0, first_step_in_epoch
        self.preempted = False

    def preempt(self, *unused_signal_args):
        """The SIGTERM handler: the checkpoint is written after the step under way."""
        self.preempted = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)
        self._start_step = int(self.model.optimizer.iterations.numpy())  # one read per epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self._start_step + batch + 1
        last_of_epoch = batch + 1 == self.params.get("steps")  # on_epoch_end saves it
        if not (self.preempted or (self.every_steps and step % self.every_steps == 0 and not last_of_epoch)):
            return
        if not np.isfinite((logs or {}).get("loss", 0.0)):
            return  # TerminateOnNaN stops the run; the last good checkpoint stays the newest
        self.step_in_epoch.assign(self.offset + batch + 1)
        path = self._save(step)
        if self.preempted:
            raise TrainingPreemptedError(
                f"Stopped by SIGTERM at step {step} (epoch {int(self.epoch.numpy()) + 1}, step "
                f"{self.offset + batch + 1} of it); wrote {path}. Rerun the same command to resume there.")

    def on_epoch_end(self, epoch, logs=None):
        self.offset = 0
        if not np.isfinite((logs or {}).get("loss", 0.0)):
            logging.error("Epoch %d: non-finite loss, no checkpoint written.", epoch + 1)
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.epoch.assign(epoch + 1)
        self.step_in_epoch.assign(0)
        self._save(int(self.model.optimizer.iterations.numpy()), write_history=bool(self.history_path))

    def _save(self, step, write_history=False):
        try:
            if write_history:
                run_dir.write_json_atomic(self.history_path, self.history)
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            previous = self.manager.latest_checkpoint or "none yet"
            raise CheckpointWriteError(
                f"Could not write the checkpoint of step {step} to {self.manager.directory} "
                f"({str(error).splitlines()[0] if str(error) else type(error).__name__}); the newest complete "
                f"checkpoint is {previous}. Free space (or fix the directory) and rerun the same command to "
                "resume from it.") from error


class MetamerImages(keras.callbacks.Callback):
    """Writes a grid (logit source | metamer | nuisance source) to TensorBoard each epoch."""

    def __init__(self, network, x_a, x_b, logdir):
        super().__init__()
        self.network, self.x_a, self.x_b = network, x_a, x_b
        self.writer = tf.summary.create_file_writer(logdir)

    def on_epoch_end(self, epoch, logs=None):
        x_m = metamers.metamer(self.network, self.x_a, self.x_b)
        rows = tf.concat([self.x_a, tf.clip_by_value(x_m, 0.0, 1.0), self.x_b], axis=2)  # side by side
        with self.writer.as_default():
            tf.summary.image("metamers/logits_metamer_nuisance", rows, step=epoch + 1,
                             max_outputs=int(self.x_a.shape[0]))
        self.writer.flush()


class DecisionPlaneImages(keras.callbacks.Callback):
    """Writes the figure-3 decision planes of a fixed pair of spheres examples each epoch.

    The planes (`analysis.planes.spheres_planes`) are labelled by the logit classifier and by
    the nuisance classifier being trained with the network (the post-hoc one is `evaluate`'s),
    drawn by `analysis.figures.plot_decision_planes` and logged as one TensorBoard image.
    """

    def __init__(self, network, nuisance_classifier, x, y, radii, resolution, logdir):
        super().__init__()
        self.network, self.nuisance_classifier = network, nuisance_classifier
        self.x, self.y, self.radii, self.resolution = x, y, radii, resolution
        self.writer = tf.summary.create_file_writer(logdir)

    def on_epoch_end(self, epoch, logs=None):
        if not np.isfinite((logs or {}).get("loss", 0.0)):
            return  # a diverged network has no planes to draw (and TerminateOnNaN stops the run)
        spheres_planes = planes.spheres_planes(self.network, self.nuisance_classifier, self.x, self.y, self.radii,
                                               seed=0, resolution=self.resolution)
        with tempfile.TemporaryDirectory() as tmp:
            path = figures.plot_decision_planes(spheres_planes, os.path.join(tmp, "planes.png"), self.radii,
                                                title=f"decision regions, epoch {epoch + 1} (paper figure 3)")
            image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        with self.writer.as_default():
            tf.summary.image("planes/figure3", image[None], step=epoch + 1)
        self.writer.flush()


def fit_verbosity(stream=None):
    """Keras `verbose` for `stream` (default stdout): a progress bar on a terminal, else one line per epoch."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 1 if isatty is not None and isatty() else 2


def learning_rate_schedule(train_config):
    """lr * factor ** (epoch // decay_epochs): the paper's step schedule, exact on resume."""
    base, every, factor = train_config.learning_rate, train_config.lr_decay_epochs, train_config.lr_decay_factor
    return lambda epoch: float(base * factor ** (epoch // every)) if every else float(base)


def network_learning_rate(config):
    """The network optimizer's learning rate: a number, or for `train.lr_schedule="cosine"` a
    `keras.optimizers.schedules.CosineDecay` from `train.learning_rate` to 0 over the run's
    `train.epochs` (per step, keyed by the optimizer's restored iteration count: exact on resume).
    """
    t = config.train
    if t.lr_schedule == "step":
        return t.learning_rate
    if t.lr_schedule != "cosine":
        raise ValueError("`train.lr_schedule` must be 'step' (constant when lr_decay_epochs is 0) or 'cosine'. "
                         f"Received: {t.lr_schedule!r}")
    if t.lr_decay_epochs:
        raise ValueError("`train.lr_schedule='cosine'` replaces the step decay: set train.lr_decay_epochs=0. "
                         f"Received: lr_decay_epochs={t.lr_decay_epochs!r}")
    steps = t.epochs * (t.steps_per_epoch or data.batches_per_pass(config.data))
    return keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=steps)


def train_and_evaluate(config, workdir):
    """Trains (or resumes) the run of `config` in `workdir`; returns the metrics dict.

    Raises:
        WorkdirLockedError: another live process trains in `workdir`.
        WorkdirConfigMismatchError: `workdir` holds a run of another config.
        NoReadableCheckpointError: `workdir` has checkpoints and none of them reads.
        TrainingDivergedError, TrainingPreemptedError, CheckpointWriteError: see above.
    """
    strategy = make_strategy(config.train.distribute)
    run = RunDir(workdir)
    with run.lock() if run_dir.is_chief(strategy) else contextlib.nullcontext():
        return _train_and_evaluate(config, run, strategy)


def _train_and_evaluate(config, run, strategy):
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    chief = run_dir.is_chief(strategy)
    resuming = bool(run.latest_checkpoint(strategy))
    if resuming:
        run.check_config(config)
    if chief and not (resuming and os.path.exists(run.config_path)):
        run.write_json(run_dir.CONFIG_FILE, config.to_dict())

    # The same first batch on every worker (the stream is a pure function of the seed): ActNorm's
    # data init must give identical weights on all replicas.
    init_x = next(iter(data.load_dataset(config.data, "train", training=True)))[0]
    test_ds = data.load_dataset(config.data, "test", training=False)
    steps = config.train.steps_per_epoch or data.batches_per_pass(config.data)
    if config.train.eval_steps:
        test_ds = test_ds.take(config.train.eval_steps)

    with strategy.scope():
        network = build_network(config, init_x)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        checkpoint = run_dir.training_checkpoint(network, epoch, step_in_epoch)
    manager = tf.train.CheckpointManager(checkpoint, run.checkpoint_dir(strategy), max_to_keep=3)
    restored = run_dir.restore_newest_readable(checkpoint, manager.checkpoints, manager.directory)
    if restored:
        logging.info("Resumed from %s (epoch %d, step %d of it).", restored, int(epoch.numpy()),
                     int(step_in_epoch.numpy()))
    resumed_from, offset = int(epoch.numpy()), int(step_in_epoch.numpy())
    network.initialize(init_x)  # ActNorm data init; a no-op for restored (initialised) layers
    history = run.load_history(resumed_from)

    saver = CheckpointCallback(manager, epoch, step_in_epoch, history, run.history_path if chief else None,
                               every_steps=config.train.get("checkpoint_every_steps"), first_step_in_epoch=offset)
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        saver,
        keras.callbacks.TensorBoard(run.tensorboard_dir),
    ]
    if config.train.lr_schedule != "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(learning_rate_schedule(config.train)))
    if config.ice.warmup_steps:
        callbacks.append(AdversaryWarmup(*config.ice.warmup_steps))
    if len(init_x.shape) == 4 and config.train.metamer_images:
        n = min(config.train.metamer_images, int(init_x.shape[0]) // 2)
        x_test = next(iter(test_ds))[0]
        callbacks.append(MetamerImages(network, x_test[:n], x_test[n:2 * n],
                                       os.path.join(run.tensorboard_dir, "metamers")))
    if config.data.name == "spheres" and config.train.get("plane_resolution"):
        x_test, y_test = network_lib.take_examples(test_ds, 256)
        callbacks.append(DecisionPlaneImages(network, network.objective.nuisance_classifier, x_test, y_test,
                                             tuple(config.data.get("radii", (1.0, 10.0))),
                                             config.train.plane_resolution,
                                             os.path.join(run.tensorboard_dir, "planes")))

    print(_start_message(config, run.workdir, resumed_from, offset), flush=True)
    losses = []
    # A mid-epoch resume first trains the rest of that epoch, then whole epochs; each segment
    # reads the data stream from the step count it starts at.
    segments = [(resumed_from, resumed_from + 1, steps - offset)] if offset else []
    segments.append((resumed_from + bool(offset), config.train.epochs, steps))
    with _on_sigterm(saver.preempt):
        for first, last, steps_per_epoch in segments:
            if first >= last or network.stop_training:
                continue
            train_ds = data.load_dataset(config.data, "train", training=True,
                                         start_batch=int(network.optimizer.iterations.numpy()))
            fit_history = network.fit(train_ds, epochs=last, initial_epoch=first, steps_per_epoch=steps_per_epoch,
                                      validation_data=test_ds, callbacks=callbacks, shuffle=False,
                                      verbose=fit_verbosity())
            losses += fit_history.history.get("loss", [])
    if not np.all(np.isfinite(losses)) or (network.stop_training and losses):
        raise TrainingDivergedError(
            f"Training stopped: the loss became NaN or Inf in epoch {resumed_from + len(losses)} "
            f"(losses per epoch: {losses}). The last good checkpoint is kept in "
            f"{manager.directory} (epoch {int(epoch.numpy())}); lower train.learning_rate, "
            "set train.clipnorm, or check the data for NaN, then rerun the same command to resume.")

    train_ds = data.load_dataset(config.data, "train", training=True)
    train_eval = network.evaluate(train_ds.take(config.train.eval_steps or config.train.steps_per_epoch or 50),
                                  verbose=0, return_dict=True)
    test_eval = network.evaluate(test_ds, verbose=0, return_dict=True)
    metrics = {
        "config": config.to_dict(),
        "epochs": int(epoch.numpy()),
        "resumed_from_epoch": resumed_from,
        "wall_time_s": time.time() - start,
        "train": {k: float(v) for k, v in train_eval.items()},
        "test": {k: float(v) for k, v in test_eval.items()},
        "history": history,
    }
    if chief:
        run.write_json(run_dir.METRICS_FILE, metrics)
        if config.train.export:
            export.export_saved_model(network, run.export_dir)
    return metrics


@contextlib.contextmanager
def _on_sigterm(handler):
    """Runs `handler` on SIGTERM while the block runs (main thread only; elsewhere a no-op)."""
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_message(config, workdir, resumed_from, offset=0):
    loss = config.train.loss
    action = (f"Resuming at epoch {resumed_from + 1}" + (f", step {offset + 1}" if offset else "")
              if resumed_from or offset else "Training")
    return (f"{action}: {config.data.name} {config.model.kind} fiRevNet, loss={loss} "
            f"({LOSS_NAMES.get(loss, loss)}), epochs={config.train.epochs}. "
            f"Results in {os.path.abspath(workdir)} (metrics.json, checkpoints/, tensorboard/"
            f"{', export/' if config.train.export else ''}).")
