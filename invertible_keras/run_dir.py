"""The run directory: the one module that knows where a run keeps what.

    workdir/
      config.json     the run's config; a resume with a config that differs in a field other
                      than `RESUME_MAY_CHANGE` raises `WorkdirConfigMismatchError`
      .lock           the host and pid of the process training in it (`RunDir.lock`)
      checkpoints/    tf.train checkpoints `ckpt-<step>`, after every epoch and every
                      `train.checkpoint_every_steps` steps (the `checkpoint` index file is
                      replaced only after a checkpoint is complete; a resume skips unreadable
                      ones, `restore_newest_readable`); non-chief workers of a multi-worker run
                      write their identical copies to checkpoints/<task>/
      history.json    the per-epoch Keras logs of every epoch so far, kept across resumes
      tensorboard/    scalars and a picture per epoch
      metrics.json    the final train and test metrics and the whole history
      eval.json       what `python -m train.evaluate` measured
      export/         the SavedModel of the fiRevNet

Every file is written atomically (`write_json_atomic`, figures and reports through
`atomic_path`: a temporary file renamed; the export as a renamed directory), so a reader, or a
run killed mid-write or stopped by a full disk, never sees half a file.

Checkpoints name every variable by where it sits: the network's weights under `network/`,
keyed by their layer path (`network/stage/additive_coupling/subnet/conv2d/kernel`, see
`variable_names`), beside `prior/`, `nuisance_classifier/`, the optimizers and the epoch. So
`restore_network` puts a checkpoint's network weights into a freshly built fiRevNet without
the training wrapper, its prior, nuisance classifier or optimizers.
"""

import collections
import contextlib
import fcntl
import json
import os
import re
import socket

import ml_collections
import tensorflow as tf
from absl import logging

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
EVAL_FILE = "eval.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EXPORT = "export"
LOCK_FILE = ".lock"

# Config fields a resumed run may change: how long and on what it trains, not what it trains. (Not
# `train.steps_per_epoch`: it maps steps to epochs, and so the learning-rate schedule.)
RESUME_MAY_CHANGE = frozenset({
    "seed", "data.seed", "data.source", "data.idx_dir", "data.data_dir", "data.manual_dir", "data.shuffle_buffer",
    "train.epochs", "train.eval_steps", "train.distribute", "train.jit_compile", "train.checkpoint_every_steps",
    "train.export", "train.metamer_images", "train.plane_resolution",
})


class WorkdirConfigMismatchError(ValueError):
    """The workdir holds a run of a different config."""


class WorkdirLockedError(RuntimeError):
    """Another live process is training in the workdir."""


class NoReadableCheckpointError(RuntimeError):
    """Every checkpoint of a run is unreadable."""


class RunDir:
    """Paths and files of one run directory.

    Args:
        workdir: the directory (created on the first write).
    """

    def __init__(self, workdir):
        self.workdir = os.fspath(workdir)

    def path(self, name):
        return os.path.join(self.workdir, name)

    @property
    def config_path(self):
        return self.path(CONFIG_FILE)

    @property
    def history_path(self):
        return self.path(HISTORY_FILE)

    @property
    def metrics_path(self):
        return self.path(METRICS_FILE)

    @property
    def eval_path(self):
        return self.path(EVAL_FILE)

    @property
    def export_dir(self):
        return self.path(EXPORT)

    @property
    def tensorboard_dir(self):
        return self.path(TENSORBOARD)

    def checkpoint_dir(self, strategy=None):
        """`checkpoints/`; non-chief workers of a multi-worker run write their copies aside."""
        if strategy is None or is_chief(strategy):
            return self.path(CHECKPOINTS)
        resolver = strategy.cluster_resolver
        return os.path.join(self.path(CHECKPOINTS), f"{resolver.task_type}_{resolver.task_id}")

    def latest_checkpoint(self, strategy=None):
        """The path prefix of the newest complete checkpoint, or None."""
        return tf.train.latest_checkpoint(self.checkpoint_dir(strategy))

    def newest_readable_checkpoint(self):
        """The newest checkpoint whose every tensor reads (unreadable ones skipped with a warning), or None."""
        state = tf.train.get_checkpoint_state(self.checkpoint_dir())
        return _newest_readable(state.all_model_checkpoint_paths if state else [], [])

    @contextlib.contextmanager
    def lock(self):
        """Holds the workdir for this process while the block runs: one writer per run.

        The lock is an exclusive `flock` on `workdir/.lock`, which holds the holder's host and
        pid. The kernel releases it when the holder exits, however it exits (kill -9
        included), so a second process finds it held only while the first is alive and raises
        `WorkdirLockedError` naming the holder; a lock file left by a dead process is taken
        over with a warning. (`flock` is per host: on a file system shared between machines,
        start a run on one of them only.)
        """
        os.makedirs(self.workdir, exist_ok=True)
        path = self.path(LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkdirLockedError(
                    f"{self.workdir} is in use by {_holder(fd) or 'another process'} (lock {path}); wait for it "
                    "to finish or stop it, or use another --workdir.") from None
            previous = _holder(fd)
            if previous:
                logging.warning("Taking over the lock of %s, left by %s, which is no longer running.",
                                self.workdir, previous)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode(), 0)
            os.fsync(fd)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)  # released cleanly: nothing for the next holder to warn about
        finally:
            os.close(fd)  # releases the flock

    def has_export(self):
        return os.path.isfile(os.path.join(self.export_dir, "saved_model.pb"))

    # ------------------------------------------------------------------ JSON files
    def write_json(self, name, obj):
        os.makedirs(self.workdir, exist_ok=True)
        write_json_atomic(self.path(name), obj)

    def read_metrics(self):
        """`metrics.json` of a finished run; FileNotFoundError saying how to finish it."""
        if not os.path.isfile(self.metrics_path):
            raise FileNotFoundError(
                f"No {METRICS_FILE} in workdir={self.workdir!r}: it is written when training finishes. Finish the "
                "run first (rerunning `python -m train.train` with the same --config and --workdir resumes it).")
        with open(self.metrics_path) as f:
            return json.load(f)

    def stored_config(self):
        """The run's config as a dict: `config.json`, else (older runs) the one in `metrics.json`; None if neither."""
        for path, key in ((self.config_path, None), (self.metrics_path, "config")):
            if os.path.exists(path):
                with open(path) as f:
                    stored = json.load(f)
                return stored.get(key) if key else stored
        return None

    def load_config(self):
        """The config of a finished run (the last resume's, from `metrics.json`), a `ConfigDict`."""
        return ml_collections.ConfigDict(self.read_metrics()["config"])

    def check_config(self, config):
        """Raises `WorkdirConfigMismatchError` when the workdir holds a run of another config.

        Fields in `RESUME_MAY_CHANGE` may differ. Without a stored config nothing is checked.
        """
        stored = self.stored_config()
        if stored is None:
            return
        before, now = _flatten(stored), _flatten(json.loads(json.dumps(config.to_dict(), default=str)))
        differing = [key for key in sorted(set(before) | set(now))
                     if key not in RESUME_MAY_CHANGE and before.get(key, "<unset>") != now.get(key, "<unset>")]
        if differing:
            changes = "; ".join(f"{key}={before.get(key, '<unset>')!r} there, {now.get(key, '<unset>')!r} now"
                                for key in differing)
            raise WorkdirConfigMismatchError(
                f"{self.workdir} holds a run of a different config ({changes}); use another --workdir, or the "
                f"config in {self.config_path} to resume it.")

    def load_history(self, epochs):
        """The per-epoch history, cut to its first `epochs` epochs ({} if none)."""
        if not epochs or not os.path.exists(self.history_path):
            return {}
        with open(self.history_path) as f:
            return {key: [float(v) for v in values[:epochs]] for key, values in json.load(f).items()}


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (same extension) and renames it over `path` after the block.

    The project's one atomic writer: a reader never sees a half-written file, and a block
    that fails leaves `path` as it was and no temporary behind.
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    root, ext = os.path.splitext(name)
    tmp = os.path.join(directory, f".{root}.tmp-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _holder(fd):
    """`host <name> pid <n>` from a lock file's content, or None when it is empty or unreadable."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        return f"host {holder['host']} pid {holder['pid']}" if holder else None
    except (ValueError, KeyError, TypeError):
        return None


def write_json_atomic(path, obj):
    """Writes `obj` as JSON to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_chief(strategy):
    """Whether this process writes the run's files (always, except on non-chief workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


# ---------------------------------------------------------------------------- checkpoints

def variable_names(layer):
    """`{name: backing tf.Variable}` of every variable of a Keras layer or model, named by layer path.

    Every variable: the weights and the state of random number generators (a dropout layer's
    seed), so a resumed run draws the numbers the uninterrupted one would have.

    Keras numbers the layers it names itself by a process-wide counter (`act_norm_7`), so a
    weight's `path` depends on what was built before it. Here every path component loses that
    number and is renumbered among its siblings in the order they appear (`act_norm`,
    `act_norm_1`, ...): the same architecture gives the same names in every process.
    """
    children = collections.defaultdict(dict)  # parent path -> {Keras name: canonical name}
    names = {}
    for weight in layer.variables:
        canonical = []
        for part in weight.path.split("/")[:-1]:
            siblings = children["/".join(canonical)]
            if part not in siblings:
                base = re.sub(r"_\d+$", "", part)
                taken = sum(1 for name in siblings.values() if re.sub(r"_\d+$", "", name) == base)
                siblings[part] = base if not taken else f"{base}_{taken}"
            canonical.append(siblings[part])
        name = "/".join(canonical + [weight.name])
        if name in names:
            raise ValueError(f"Two weights of {layer.name!r} would share the checkpoint name {name!r}.")
        names[name] = weight.value
    return names


def network_checkpoint(network):
    """A `tf.train.Checkpoint` holding only the network's weights, by name (see the module docstring)."""
    return tf.train.Checkpoint(network=variable_names(network))


def restore_network(network, checkpoint_path):
    """Restores the weights of a built fiRevNet from a run's checkpoint (the training state is ignored).

    Raises ValueError naming the first weight that the checkpoint lacks or holds with another
    shape, e.g. when the network was built from another config.
    """
    if any(name.startswith("weights/") for name, _ in tf.train.list_variables(checkpoint_path)):
        raise ValueError(f"{checkpoint_path} lists its weights by position (a run written before checkpoints named "
                         "them): evaluate its export, or rerun its training command once to rewrite it.")
    status = network_checkpoint(network).restore(checkpoint_path)
    status.expect_partial()  # the prior, nuisance classifier, optimizers and epoch stay unread
    status.assert_existing_objects_matched()
    return network


def training_checkpoint(network, epoch, step_in_epoch):
    """The `tf.train.Checkpoint` of a training run: every variable by name, both optimizers, the position.

    The position in the run is the optimizer's step count (also the position in the training
    data stream, `data.load_dataset(start_batch=...)`), `epoch`, the number of finished
    epochs, and `step_in_epoch`, the steps done in the epoch under way (0 at an epoch's end).

    Args:
        network: a `FiRevNet` compiled with a `training.objective.Objective`.
        epoch, step_in_epoch: int64 `tf.Variable`s.
    """
    objective = network.objective
    return tf.train.Checkpoint(network=variable_names(network), prior=variable_names(objective.prior),
                               nuisance_classifier=variable_names(objective.nuisance_classifier),
                               adversary_weight=objective.adversary_weight.value, optimizer=network.optimizer,
                               nuisance_optimizer=objective.nuisance_optimizer, epoch=epoch,
                               step_in_epoch=step_in_epoch)


def restore_newest_readable(checkpoint, paths, directory):
    """Restores the newest readable checkpoint of `paths` (oldest first) into `checkpoint`.

    A checkpoint that cannot be read in full (a torn copy, a write cut short by a full disk) is
    skipped with a warning naming it, and the next older one is tried: only the steps after
    the checkpoint restored are lost. A readable checkpoint that does not fit the model raises
    `WorkdirConfigMismatchError`.

    Returns:
        The path restored, or None when `paths` is empty.

    Raises:
        NoReadableCheckpointError: when no checkpoint of `paths` can be read.
    """
    unreadable = []
    path = _newest_readable(paths, unreadable)
    if path is None:
        if unreadable:
            raise NoReadableCheckpointError(
                f"No checkpoint in {directory} is readable ({'; '.join(unreadable)}): move the directory aside to "
                "start the run over.")
        return None
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
    except (ValueError, AssertionError, tf.errors.InvalidArgumentError) as error:
        raise WorkdirConfigMismatchError(
            f"{path} does not fit the model of this config ({str(error).splitlines()[0]}); use another "
            "--workdir or the config that made it.") from error
    if unreadable:
        logging.warning("Resumed from %s: the newer checkpoints were unreadable, their steps are trained again.", path)
    return path


def _newest_readable(paths, unreadable):
    """The newest of `paths` (oldest first) whose every tensor reads, or None; each unreadable newer
    one is warned about and appended to the list `unreadable` as "name: problem"."""
    for path in reversed(list(paths)):
        problem = _unreadable(path)
        if not problem:
            return path
        logging.warning("Checkpoint %s is unreadable (%s); trying the one before it.", path, problem)
        unreadable.append(f"{os.path.basename(path)}: {problem}")
    return None


def _unreadable(path):
    """Why the checkpoint at `path` cannot be read in full, or None when every tensor reads."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError, OSError, RuntimeError) as error:
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
    return None
