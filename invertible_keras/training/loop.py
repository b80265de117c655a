"""`train_and_evaluate(config, workdir)`: everything `python -m train.train` does.

Trains (or resumes) the run of a config in a run directory (`run_dir`: config.json,
checkpoints/ after every epoch, history.json, tensorboard/, metrics.json, export/); a rerun of
the same command resumes from the latest checkpoint, and a workdir that holds a run of another
config is refused (`WorkdirConfigMismatchError`).

Progress goes to stdout: which run trains and where its results go, then a Keras progress
bar on a terminal, or one line per epoch when stdout is a file or pipe. TensorBoard gets
scalars and a picture per epoch: a metamer grid for images, the figure-3 decision planes of a
fixed pair for spheres.

A NaN or Inf loss stops training (keras.callbacks.TerminateOnNaN) without writing a checkpoint
for that epoch and raises `TrainingDivergedError`: the last good checkpoint stays intact.
"""

import json
import os
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
from invertible_keras.run_dir import RunDir, WorkdirConfigMismatchError  # noqa: F401 (API)
from invertible_keras.training.trainer import AdversaryWarmup, Trainer

DISTRIBUTE = ("auto", "none", "mirrored", "multi_worker")
LOSS_NAMES = {"ce": "cross-entropy (CE)", "ce_mle": "CE + MLE", "ice": "independence cross-entropy (iCE)"}


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or Inf."""


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


def make_optimizer(name, learning_rate, weight_decay=0.0, momentum=0.9, clipnorm=None):
    """A Keras optimizer by name; weight decay is decoupled (AdamW-style) when > 0."""
    kwargs = {"learning_rate": learning_rate, "clipnorm": clipnorm}
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamax":
        return keras.optimizers.Adamax(**kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum, **kwargs)
    raise ValueError(f"`train.optimizer` must be 'adam', 'adamax' or 'sgd'. Received: {name!r}")


def build_trainer(config, example_batch):
    """Builds and compiles the Trainer of `config` (call under the strategy's scope)."""
    network = build_model(config.model)
    network.forward_and_log_det(example_batch[:1])  # build
    ice = config.ice
    trainer = Trainer(network, nuisance_hidden_units=tuple(ice.nuisance_hidden_units),
                      semantic_prior=ice.semantic_prior, nuisance_dropout=ice.nuisance_dropout)
    t = config.train
    trainer.compile(
        optimizer=make_optimizer(t.optimizer, t.learning_rate, t.weight_decay, t.momentum, t.clipnorm),
        nuisance_optimizer=make_optimizer(ice.nuisance_optimizer, ice.nuisance_learning_rate),
        loss=t.loss, beta=config.ice.beta, gamma=config.ice.gamma, adversary=config.ice.adversary,
        nuisance_steps=config.ice.nuisance_steps,
        num_levels=None if config.data.name == "spheres" else 256,
        jit_compile=t.jit_compile,
    )
    trainer.build_optimizers()
    return trainer


class CheckpointCallback(keras.callbacks.Callback):
    """Saves the history and a checkpoint after every epoch whose loss is finite.

    `history` (`{log name: [value per epoch]}`, the epochs before this run included) is written
    to `history_path` (None: not at all) before the checkpoint, so it never lags behind the
    checkpoint; a resume cuts it back to the checkpoint's epoch (`RunDir.load_history`).
    """

    def __init__(self, manager, epoch_variable, history=None, history_path=None):
        super().__init__()
        self.manager, self.epoch_variable = manager, epoch_variable
        self.history, self.history_path = history if history is not None else {}, history_path

    def on_epoch_end(self, epoch, logs=None):
        if not np.isfinite((logs or {}).get("loss", 0.0)):
            logging.error("Epoch %d: non-finite loss, no checkpoint written.", epoch + 1)
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.history_path:
            run_dir.write_json_atomic(self.history_path, self.history)
        self.epoch_variable.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


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


def train_and_evaluate(config, workdir):
    """Trains (or resumes) the run of `config` in `workdir`; returns the metrics dict."""
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    run = RunDir(workdir)
    os.makedirs(workdir, exist_ok=True)
    strategy = make_strategy(config.train.distribute)
    chief = run_dir.is_chief(strategy)
    resuming = bool(run.latest_checkpoint(strategy))
    if resuming:
        run.check_config(config)
    if chief and not (resuming and os.path.exists(run.config_path)):
        run.write_json(run_dir.CONFIG_FILE, config.to_dict())

    train_ds = data.load_dataset(config.data, "train", training=True)
    test_ds = data.load_dataset(config.data, "test", training=False)
    # The same first batch on every worker (seeded shuffle before any sharding): ActNorm's
    # data init must give identical weights on all replicas.
    init_x = next(iter(train_ds))[0]
    steps = config.train.steps_per_epoch
    if steps:
        train_ds = train_ds.repeat()
    if config.train.eval_steps:
        test_ds = test_ds.take(config.train.eval_steps)

    with strategy.scope():
        trainer = build_trainer(config, init_x)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        checkpoint = run_dir.training_checkpoint(trainer, epoch)
    manager = tf.train.CheckpointManager(checkpoint, run.checkpoint_dir(strategy), max_to_keep=3)
    if manager.latest_checkpoint:
        try:
            run_dir.restore_training(checkpoint, trainer, epoch, manager.latest_checkpoint)
        except (ValueError, tf.errors.InvalidArgumentError) as error:
            raise WorkdirConfigMismatchError(
                f"{workdir} holds a checkpoint that does not fit the model of this config "
                f"({str(error).splitlines()[0]}); use another --workdir or the config that made it.") from error
        logging.info("Resumed from %s (epoch %d).", manager.latest_checkpoint, int(epoch.numpy()))
    resumed_from = int(epoch.numpy())
    network = trainer.network
    network.initialize(init_x)  # ActNorm data init; a no-op for restored (initialised) layers
    history = run.load_history(resumed_from)

    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.LearningRateScheduler(learning_rate_schedule(config.train)),
        CheckpointCallback(manager, epoch, history, run.history_path if chief else None),
        keras.callbacks.TensorBoard(run.tensorboard_dir),
    ]
    if config.ice.warmup_steps:
        callbacks.append(AdversaryWarmup(*config.ice.warmup_steps))
    if len(init_x.shape) == 4 and config.train.metamer_images:
        n = min(config.train.metamer_images, int(init_x.shape[0]) // 2)
        x_test = next(iter(test_ds))[0]
        callbacks.append(MetamerImages(network, x_test[:n], x_test[n:2 * n],
                                       os.path.join(run.tensorboard_dir, "metamers")))
    if config.data.name == "spheres" and config.train.get("plane_resolution"):
        x_test, y_test = network_lib.take_examples(test_ds, 256)
        callbacks.append(DecisionPlaneImages(network, trainer.nuisance_classifier, x_test, y_test,
                                             tuple(config.data.get("radii", (1.0, 10.0))),
                                             config.train.plane_resolution,
                                             os.path.join(run.tensorboard_dir, "planes")))

    print(_start_message(config, workdir, resumed_from), flush=True)
    fit_history = trainer.fit(train_ds, epochs=config.train.epochs, initial_epoch=resumed_from,
                              steps_per_epoch=steps, validation_data=test_ds, callbacks=callbacks, shuffle=False,
                              verbose=fit_verbosity())
    losses = fit_history.history.get("loss", [])
    if not np.all(np.isfinite(losses)) or (trainer.stop_training and losses):
        raise TrainingDivergedError(
            f"Training stopped: the loss became NaN or Inf in epoch {resumed_from + len(losses)} "
            f"(losses per epoch: {losses}). The last good checkpoint is kept in "
            f"{manager.directory} (epoch {int(epoch.numpy())}); lower train.learning_rate, "
            "set train.clipnorm, or check the data for NaN, then rerun the same command to resume.")

    train_eval = trainer.evaluate(train_ds.take(config.train.eval_steps or steps or 50), verbose=0,
                                  return_dict=True)
    test_eval = trainer.evaluate(test_ds, verbose=0, return_dict=True)
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


def _start_message(config, workdir, resumed_from):
    loss = config.train.loss
    action = f"Resuming at epoch {resumed_from + 1}" if resumed_from else "Training"
    return (f"{action}: {config.data.name} {config.model.kind} fiRevNet, loss={loss} "
            f"({LOSS_NAMES.get(loss, loss)}), epochs={config.train.epochs}. "
            f"Results in {os.path.abspath(workdir)} (metrics.json, checkpoints/, tensorboard/"
            f"{', export/' if config.train.export else ''}).")
