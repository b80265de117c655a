"""Evaluation of a trained run: everything `python -m train.evaluate --workdir=DIR` reports.

For a run directory written by `training.loop.train_and_evaluate` this measures, on the frozen
network,

* logit error: the error of D(x) = argmax z_s(x) on training and test examples;
* nuisance error: fresh post-hoc nuisance classifiers trained on z_n of the training split
  (early-stopped on a held-out slice of it), their error on the test split, mean and sd over
  seeds (paper, Table 2; `analysis.posthoc`), also per part of z_n when there are several;
* invertibility: max and mean |F^-1(F(x)) - x| on test data, uniform noise and metamers
  (`analysis.invertibility`);
* metamer attack rate: the share of metamers F^-1(z_s(a), z_n(b)) that the oracle assigns to
  b's class while D keeps a's, over pairs D classifies correctly, with a 95 % interval
  (`analysis.attack`, `analysis.oracles`),

and writes them to `DIR/eval.json`. Training examples are read without augmentation, in the
split's order.

The network is loaded from `DIR/export` (the SavedModel of a finished run; needs no model
code) or built from the run's config and given the weights of the latest checkpoint by name
(`run_dir.restore_network`: no training wrapper, prior or optimizer), see `load_run`.
"""

import dataclasses
import json
import os
import time

import ml_collections
import numpy as np
from absl import logging

import keras

from invertible_keras import data, run_dir
from invertible_keras.analysis import attack, invertibility, network as network_lib, oracles, posthoc
from invertible_keras.models import build_model

SOURCES = ("auto", "export", "checkpoint")
EVAL_FILE = run_dir.EVAL_FILE


@dataclasses.dataclass
class EvalSettings:
    """Sizes and settings of an evaluation (CPU-friendly defaults).

    Attributes:
        num_train: training examples for the train errors and to fit the nuisance classifiers
            (at most; None: the whole split).
        num_test: test examples for the test errors, invertibility and metamer pairs (at most;
            None: the whole split).
        nuisance_max_epochs: at most this many epochs of each post-hoc nuisance classifier.
        nuisance_patience: early-stopping patience (epochs) on the held-out slice.
        nuisance_validation: training examples held out for early stopping.
        nuisance_seeds: number of post-hoc classifiers (seeds 0, 1, ...; mean and sd).
        nuisance_batch_size: their batch size.
        attack_pairs: number of (a, b) pairs of the metamer attack.
        oracle_epochs: epochs of the CNN oracle of image data (trained once, then cached).
        oracle_steps_per_epoch: None for full epochs; an int for a short oracle (tests).
        oracle_cache_dir: where the CNN oracle is kept; None: `oracles.default_cache_dir()`.
        source: "auto" (export if present, else checkpoint), "export" or "checkpoint".
        batch_size: examples per call of the network.
        seed: seed of the nuisance classifier, the pairs and the noise.
    """

    num_train: int | None = None
    num_test: int | None = None
    nuisance_max_epochs: int = 30
    nuisance_patience: int = 3
    nuisance_validation: int = 5_000
    nuisance_seeds: int = 3
    nuisance_batch_size: int = 256
    attack_pairs: int = 1_000
    oracle_epochs: int = 2
    oracle_steps_per_epoch: int | None = None
    oracle_cache_dir: str | None = None
    source: str = "auto"
    batch_size: int = 256
    seed: int = 0


@dataclasses.dataclass
class Evaluation:
    """What `evaluate_run` measured, and the objects the figures need.

    Attributes:
        results: the dict written to eval.json.
        config: the run's config.
        network: the loaded `analysis.network.Network`.
        nuisance_classifier: the post-hoc nuisance classifier of the first seed (Keras model
            on raw z_n).
        x_test, y_test: the test examples used.
    """

    results: dict
    config: ml_collections.ConfigDict
    network: network_lib.Network
    nuisance_classifier: object
    x_test: np.ndarray
    y_test: np.ndarray


def load_config(workdir):
    """The config of a finished run (see `run_dir.RunDir.load_config`)."""
    return run_dir.RunDir(workdir).load_config()


def load_run(workdir, source="auto"):
    """Loads a trained run: `(config, network)`.

    Args:
        workdir: the run directory.
        source: "export" loads `workdir/export` (TensorFlow only); "checkpoint" rebuilds the
            network from the config and restores the weights of the latest checkpoint; "auto" takes the export when it exists (the
            final state of a finished run), else the checkpoint.

    Returns:
        `(config, network)`, `network` an `analysis.network.Network`.
    """
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}. Received: source={source!r}")
    run = run_dir.RunDir(workdir)
    config = run.load_config()
    if source == "export" or (source == "auto" and run.has_export()):
        return config, network_lib.Network.from_saved_model(run.export_dir)
    return config, _network_from_checkpoint(config, run)


def _network_from_checkpoint(config, run):
    latest = run.newest_readable_checkpoint()
    if latest is None:
        raise FileNotFoundError(f"No readable checkpoint in {run.checkpoint_dir()!r} and no export beside it; train "
                                "the run first.")
    network = run_dir.restore_network(build_model(config.model), latest)
    return network_lib.Network.from_model(network, source=f"checkpoint:{latest}")


def evaluate_run(workdir, settings=None, write=True, reuse=False):
    """Evaluates the run in `workdir` and writes `workdir/eval.json` (see the module docstring).

    Args:
        workdir: a run directory of `training.loop.train_and_evaluate`.
        settings: an `EvalSettings`; None for the defaults.
        write: whether to write eval.json.
        reuse: return the measures of an existing eval.json instead when it was written with
            the same settings after the run's last checkpoint; the `Evaluation` then has no
            `nuisance_classifier` (None).

    Returns:
        An `Evaluation`.
    """
    settings = settings or EvalSettings()
    if reuse:
        cached = _cached_evaluation(workdir, settings)
        if cached is not None:
            return cached
    start, run = time.time(), run_dir.RunDir(workdir)
    config, network = load_run(workdir, settings.source)
    (x_train, y_train), (x_test, y_test) = load_examples(config, settings)
    is_images = len(network.input_shape) == 3

    logit_error = {split: float(np.mean(network_lib.predict(network, x, settings.batch_size) != y))
                   for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test))}
    classifier, nuisance_error = posthoc.posthoc_nuisance_error(
        network, x_train, y_train, x_test, y_test, parts=network.nuisance_parts,
        **posthoc_arguments(config, settings))
    inverse_errors = invertibility.invertibility_errors(network, x_test, settings.seed, settings.batch_size)
    oracle = oracles.make_oracle(config.data, settings.oracle_cache_dir, settings.oracle_epochs,
                                 settings.oracle_steps_per_epoch)
    attack_results = attack.metamer_attack(network, x_test, y_test, oracle, settings.attack_pairs, settings.seed,
                                           value_range=(0.0, 1.0) if is_images else None,
                                           batch_size=settings.batch_size)
    attack_results["oracle"] = oracle.description

    results = {
        "workdir": os.path.abspath(workdir),
        "network_source": network.source,
        "loss": config.train.loss,
        "data": config.data.name,
        "num_examples": {"train": len(y_train), "test": len(y_test)},
        "logit_error": logit_error,
        "nuisance_error": nuisance_error,
        "invertibility": inverse_errors,
        "metamer_attack": attack_results,
        "settings": dataclasses.asdict(settings),
        "config": config.to_dict(),
        "train_wall_time_s": run.read_metrics().get("wall_time_s"),
        "wall_time_s": time.time() - start,
    }
    if write:
        run.write_json(EVAL_FILE, results)
    return Evaluation(results, config, network, classifier, x_test, y_test)


def _cached_evaluation(workdir, settings):
    run = run_dir.RunDir(workdir)
    path, latest = run.eval_path, run.latest_checkpoint()
    if not (os.path.isfile(path) and latest and os.path.getmtime(path) > os.path.getmtime(latest + ".index")):
        return None
    with open(path) as f:
        results = json.load(f)
    if results.get("settings") != _as_json(dataclasses.asdict(settings)):
        return None
    logging.info("Reusing %s (same settings, written after the last checkpoint).", path)
    config, network = load_run(workdir, settings.source)
    _, (x_test, y_test) = load_examples(config, dataclasses.replace(settings, num_train=1))
    return Evaluation(results, config, network, None, x_test, y_test)


def _as_json(obj):
    """`obj` as it reads back from JSON (tuples become lists), to compare with stored files."""
    return json.loads(json.dumps(obj))


def load_examples(config, settings):
    """`((x_train, y_train), (x_test, y_test))` of a run's data, unaugmented, as numpy."""
    examples = []
    for split, requested in (("train", settings.num_train), ("test", settings.num_test)):
        x, y = network_lib.take_examples(data.load_dataset(config.data, split, training=False), requested)
        if requested is not None and len(y) < requested:
            logging.warning("The %s split holds %d examples, fewer than the %d requested; using all.",
                            split, len(y), requested)
        examples.append((x, y))
    return examples


def posthoc_arguments(config, settings):
    """Keyword arguments of `posthoc.posthoc_nuisance_error` / `posthoc_error`."""
    return {"seeds": tuple(range(settings.nuisance_seeds)), "hidden_units": tuple(config.ice.nuisance_hidden_units),
            "max_epochs": settings.nuisance_max_epochs, "patience": settings.nuisance_patience,
            "validation_size": settings.nuisance_validation, "batch_size": settings.nuisance_batch_size}


def posthoc_baselines(config, settings=None, path=None):
    """Post-hoc classifier errors of the Table 2 baselines: raw inputs, z_n of an untrained net.

    The untrained network is the run's architecture, built from `config.model` with ActNorm's
    data initialisation on a training batch; both go through the same protocol as the runs.
    With a `path`, the result is written there (JSON) and reused when it holds the same
    settings and model config.
    """
    settings = settings or EvalSettings()
    key = _as_json({"settings": dataclasses.asdict(settings), "model": config.model.to_dict(),
                    "data": config.data.name})
    if path and os.path.isfile(path):
        with open(path) as f:
            stored = json.load(f)
        if key == stored.get("key"):
            return stored["baselines"]
    (x_train, y_train), (x_test, y_test) = load_examples(config, settings)
    keras.utils.set_random_seed(config.seed)
    untrained = build_model(config.model)
    untrained.initialize(x_train[: config.data.batch_size])
    num_classes = untrained.num_classes
    flat = lambda x: x.reshape(len(x), -1)
    arguments = posthoc_arguments(config, settings)
    _, pixels = posthoc.posthoc_error(flat(x_train), y_train, flat(x_test), y_test, num_classes, **arguments)
    _, untrained_errors = posthoc.posthoc_nuisance_error(
        network_lib.Network.from_model(untrained, "untrained"), x_train, y_train, x_test, y_test, **arguments)
    baselines = {"inputs": pixels, "untrained_z_n": untrained_errors}
    if path:
        run_dir.write_json_atomic(path, {"key": key, "baselines": baselines})
    return baselines


def summary_table(results):
    """A readable text table of an eval.json dict."""
    n = results["num_examples"]
    inv = results["invertibility"]
    att = results["metamer_attack"]
    nuisance_error = results["nuisance_error"]
    rows = [
        (f"logit error, train ({n['train']} ex.)", pct(results["logit_error"]["train"])),
        (f"logit error, test ({n['test']} ex.)", pct(results["logit_error"]["test"])),
        ("nuisance-classifier error, train", pct(nuisance_error["train"], nuisance_error.get("train_sd"))),
        ("nuisance-classifier error, test", pct(nuisance_error["test"], nuisance_error.get("test_sd"))),
    ]
    rows += [(f"  on z_n part {name}, test", pct(part["test"], part["test_sd"]))
             for name, part in nuisance_error.get("parts", {}).items()]
    rows += [
        ("max |F^-1(F(x)) - x|, test / noise / metamer",
         " / ".join(f"{inv[k]['max']:.2e}" for k in ("test", "noise", "metamer"))),
        ("mean |F^-1(F(x)) - x|, test / noise / metamer",
         " / ".join(f"{inv[k]['mean']:.2e}" for k in ("test", "noise", "metamer"))),
        ("network accuracy on the pairs / oracle accuracy on the a's",
         f"{pct(att['network_accuracy'])} / {pct(att['oracle_accuracy'])}"),
    ]
    for name, judged in (("as constructed", att), ("clipped to the valid range", att.get("clipped"))):
        if judged is None:
            continue
        rows += [(f"metamer attack rate, {name} ({judged['num_scored']} pairs)", rate_with_interval(judged)),
                 ("  D keeps a's class / oracle says b / oracle says a",
                  " / ".join(pct(judged[k]) for k in ("network_keeps_a", "oracle_says_b", "oracle_says_a")))]
    width = max(len(name) for name, _ in rows)
    title = f"{results['data']} / {results['loss']}: {results['workdir']}"
    return "\n".join([title, "-" * len(title)] + [f"{name:<{width}}  {value}" for name, value in rows])


def pct(fraction, sd=None, unit=" %"):
    """`12.34 %`, or `12.34 ± 0.56 %` with a standard deviation; "n/a" for None."""
    if fraction is None:
        return "n/a"
    return f"{100.0 * fraction:.2f}{unit}" if sd is None else f"{100.0 * fraction:.2f} ± {100.0 * sd:.2f}{unit}"


def rate_with_interval(judged):
    """`12.3 % [10.1, 14.8]`: an attack rate with its 95 % interval."""
    if judged["rate"] is None:
        return "n/a"
    low, high = judged["ci95"]
    return f"{100.0 * judged['rate']:.1f} % [{100.0 * low:.1f}, {100.0 * high:.1f}]"
