"""`train_and_evaluate(config, workdir)`: everything `python -m train.train` does.

Writes into `workdir`:
    checkpoints/    tf.train.CheckpointManager checkpoints after every epoch (atomic: the
                    `checkpoint` index is replaced only after a checkpoint is complete);
                    a rerun of the same command resumes from the latest one
    tensorboard/    Keras TensorBoard scalars, and a metamer grid per epoch for images
    metrics.json    the final train and test metrics (written atomically)
    export/         the SavedModel of the fiRevNet (endpoints logits, encode, decode, metamer)

A NaN or Inf loss stops training (keras.callbacks.TerminateOnNaN) without writing a checkpoint
for that epoch and raises `TrainingDivergedError`: the last good checkpoint stays intact.
"""

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from invertible_keras import data, export, metamers
from invertible_keras.models import build_model
from invertible_keras.trainer import AdversaryWarmup, Trainer

DISTRIBUTE = ("auto", "none", "mirrored", "multi_worker")


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


def make_checkpoint(trainer, epoch):
    """The `tf.train.Checkpoint` of a run: every model variable, both optimizers, the epoch.

    Keras 3 models are not tf.train trackables: their backing tf.Variables (trainable and not:
    ActNorm's `initialized`, batch-norm statistics, fixed permutations) are listed in creation
    order, which the same config reproduces.
    """
    return tf.train.Checkpoint(weights=[w.value for w in trainer.weights], optimizer=trainer.optimizer,
                               nuisance_optimizer=trainer.nuisance_optimizer, epoch=epoch)


class CheckpointCallback(keras.callbacks.Callback):
    """Saves a checkpoint after every epoch whose loss is finite."""

    def __init__(self, manager, epoch_variable):
        super().__init__()
        self.manager, self.epoch_variable = manager, epoch_variable

    def on_epoch_end(self, epoch, logs=None):
        if not np.isfinite((logs or {}).get("loss", 0.0)):
            logging.error("Epoch %d: non-finite loss, no checkpoint written.", epoch + 1)
            return
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


def learning_rate_schedule(train_config):
    """lr * factor ** (epoch // decay_epochs): the paper's step schedule, exact on resume."""
    base, every, factor = train_config.learning_rate, train_config.lr_decay_epochs, train_config.lr_decay_factor
    return lambda epoch: float(base * factor ** (epoch // every)) if every else float(base)


def train_and_evaluate(config, workdir):
    """Trains (or resumes) the run of `config` in `workdir`; returns the metrics dict."""
    start = time.time()
    keras.utils.set_random_seed(config.seed)
    os.makedirs(workdir, exist_ok=True)
    strategy = make_strategy(config.train.distribute)

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
        checkpoint = make_checkpoint(trainer, epoch)
    manager = tf.train.CheckpointManager(checkpoint, _checkpoint_dir(workdir, strategy), max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("Resumed from %s (epoch %d).", manager.latest_checkpoint, int(epoch.numpy()))
    resumed_from = int(epoch.numpy())
    network = trainer.network
    network.initialize(init_x)  # ActNorm data init; a no-op for restored (initialised) layers

    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.LearningRateScheduler(learning_rate_schedule(config.train)),
        CheckpointCallback(manager, epoch),
        keras.callbacks.TensorBoard(os.path.join(workdir, "tensorboard")),
    ]
    if config.ice.warmup_steps:
        callbacks.append(AdversaryWarmup(*config.ice.warmup_steps))
    if len(init_x.shape) == 4 and config.train.metamer_images:
        n = min(config.train.metamer_images, int(init_x.shape[0]) // 2)
        x_test = next(iter(test_ds))[0]
        callbacks.append(MetamerImages(network, x_test[:n], x_test[n:2 * n],
                                       os.path.join(workdir, "tensorboard", "metamers")))

    history = trainer.fit(train_ds, epochs=config.train.epochs, initial_epoch=resumed_from,
                          steps_per_epoch=steps, validation_data=test_ds, callbacks=callbacks, shuffle=False,
                          verbose=2)
    losses = history.history.get("loss", [])
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
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
    }
    if _is_chief(strategy):
        write_json_atomic(os.path.join(workdir, "metrics.json"), metrics)
        if config.train.export:
            export.export_saved_model(network, os.path.join(workdir, "export"))
    return metrics


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def _checkpoint_dir(workdir, strategy):
    """Non-chief workers of a multi-worker run write their (identical) copies aside."""
    if _is_chief(strategy):
        return os.path.join(workdir, "checkpoints")
    resolver = strategy.cluster_resolver
    return os.path.join(workdir, "checkpoints", f"{resolver.task_type}_{resolver.task_id}")
