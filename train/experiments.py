"""The paper's experiments, one function each (`python -m train.reproduce`).

This orchestration reads the configs (`configs/`), so it lives with the binaries, not in the
library: it builds each run's config and hands it to the library
(`invertible_keras.training.loop`, `invertible_keras.analysis`).

* `spheres_experiment` (section 5.1, figure 3, Example 6): trains a cross-entropy (CE) and an
  independence cross-entropy (iCE, Definition 7) fiRevNet on adversarial spheres with
  `configs/spheres.py`, evaluates both (`analysis.evaluation`), draws figure 3 for each and
  measures Example 6.
* `images_experiment` (section 5.2, Table 2, figures 4 and 6): the same for Fashion-MNIST
  (`configs/fashion_mnist.py`) and MNIST (`configs/mnist.py`); a data set that is not
  available is skipped with the reason logged and written into the report.

Both write `workdir/report.md` (tables and figures) and `workdir/results.json` (every number).
Runs live in `workdir/<loss>` (spheres) or `workdir/<data set>/<loss>` (images); training goes
through `invertible_keras.training.loop.train_and_evaluate`, so rerunning a command resumes unfinished runs and
only re-evaluates finished ones.
"""

import ast
import dataclasses
import os

import numpy as np
from absl import logging

from configs import fashion_mnist as fashion_mnist_config
from configs import mnist as mnist_config
from configs import spheres as spheres_config
from invertible_keras import data, metamers
from invertible_keras.analysis import attack, evaluation, example6, figures, oracles, planes
from invertible_keras.analysis import network as network_lib
from invertible_keras.training import loop
from invertible_keras.run_dir import atomic_path, write_json_atomic

LOSSES = ("ce", "ce_mle", "ice")
LABELS = {"ce": "CE", "ce_mle": "CE + MLE", "ice": "iCE"}
IMAGE_CONFIGS = {"fashion_mnist": fashion_mnist_config, "mnist": mnist_config}

# Paper, Table 2 (MNIST, % error) and appendix B.1 (spheres: 100 % accuracy of both classifiers).
PAPER_TABLE_2 = {"test": {"ce_logit": 0.39, "ice_logit": 0.38, "ce_nuisance": 0.34, "ice_nuisance": 27.70},
                 "train": {"ce_logit": 0.00, "ice_logit": 0.37, "ce_nuisance": None, "ice_nuisance": 40.21}}

# Evaluation sizes of `--quick` (the training sizes are the configs' "quick" variants).
QUICK_EVAL = {"num_train": 1024, "num_test": 256, "nuisance_max_epochs": 3, "nuisance_seeds": 2, "attack_pairs": 256,
              "oracle_epochs": 1, "oracle_steps_per_epoch": 50}


@dataclasses.dataclass
class FigureSettings:
    """Sizes of the figures.

    Attributes:
        plane_resolution: grid points per side of the figure-3 planes.
        num_pairs: columns of the figure-4 grids and figure-6 interpolations.
        interpolation_steps: rows of the figure-6 paths (both ends included).
        seed: which examples are drawn.
    """

    plane_resolution: int = 121
    num_pairs: int = 8
    interpolation_steps: int = 7
    seed: int = 0


QUICK_FIGURES = FigureSettings(plane_resolution=41, num_pairs=4, interpolation_steps=4)


def parse_overrides(assignments):
    """Parses `["train.epochs=3", "model.hidden_units=64", ...]` into `{dotted key: value}`.

    Values are Python literals (`3`, `1e-4`, `(64, 64)`, `None`, `True`); anything else is a
    string (`train.loss=ce`).
    """
    overrides = {}
    for assignment in assignments or ():
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"A config override must look like `field.subfield=value`. Received: {assignment!r}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        overrides[key.strip()] = value
    return overrides


def apply_overrides(config, overrides):
    """Sets every `{dotted key: value}` on an `ml_collections.ConfigDict` (in place) and returns it."""
    for key, value in overrides.items():
        *path, field = key.split(".")
        node = config
        for part in path:
            if part not in node:
                raise ValueError(f"Unknown config field {key!r}: no {part!r} in {sorted(node.keys())}.")
            node = node[part]
        if isinstance(value, list):
            value = tuple(value)
        node[field] = value
    return config


def spheres_experiment(workdir, variant="cpu", overrides=None, eval_settings=None, figure_settings=None):
    """Trains, evaluates and reports CE vs iCE on adversarial spheres (figure 3, Example 6).

    Args:
        workdir: output directory (runs in `workdir/ce`, `workdir/ice`; figures in
            `workdir/figures`; `workdir/report.md`, `workdir/results.json`).
        variant: variant of `configs/spheres.py` ("cpu", "quick" or "paper").
        overrides: `{dotted config key: value}` applied to both runs (see `parse_overrides`).
        eval_settings: an `evaluation.EvalSettings`.
        figure_settings: a `FigureSettings`.

    Returns:
        The results dict written to results.json.
    """
    eval_settings, figure_settings = eval_settings or evaluation.EvalSettings(), figure_settings or FigureSettings()
    config = apply_overrides(spheres_config.get_config(variant), overrides or {})
    evaluations = _train_and_evaluate_all(config, workdir, eval_settings)
    radii = tuple(evaluations["ce"].config.data.get("radii", (1.0, 10.0)))
    figure_paths = {}
    for loss, ev in evaluations.items():
        spheres_planes = planes.spheres_planes(ev.network, ev.nuisance_classifier, ev.x_test, ev.y_test, radii,
                                               figure_settings.seed, figure_settings.plane_resolution)
        figure_paths[loss] = figures.plot_decision_planes(
            spheres_planes, os.path.join(workdir, "figures", f"figure3_{loss}.png"), radii,
            title=f"{LABELS[loss]} fiRevNet on spheres: decision regions (paper figure 3)")

    ce = evaluations["ce"]
    example = example6.example6(ce.x_test, ce.y_test, radii, classifiers={
        f"fiRevNet {LABELS[loss]}": (lambda x, net=ev.network: network_lib.predict(net, x))
        for loss, ev in evaluations.items()})
    results = {"experiment": "spheres", "variant": variant, "overrides": overrides or {},
               "runs": {loss: ev.results for loss, ev in evaluations.items()},
               "baselines": evaluation.posthoc_baselines(config, eval_settings),
               "metamer_radii": {loss: _metamer_radii(ev, radii, eval_settings.seed) for loss, ev in evaluations.items()},
               "example6": example, "figures": {"figure3": figure_paths}}
    _write_report(workdir, results, _spheres_report(results, workdir))
    return results


def images_experiment(workdir, datasets=("fashion_mnist", "mnist"), variant="cpu", overrides=None,
                      eval_settings=None, figure_settings=None):
    """Trains, evaluates and reports CE vs iCE on image data (Table 2, figures 4 and 6).

    Args:
        workdir: output directory (runs in `workdir/<data set>/<loss>`).
        datasets: names among `IMAGE_CONFIGS`; unavailable ones are skipped with a logged
            reason that also goes into the report.
        variant: config variant ("cpu", "quick" or "paper").
        overrides, eval_settings, figure_settings: see `spheres_experiment`.

    Returns:
        The results dict written to results.json.
    """
    eval_settings, figure_settings = eval_settings or evaluation.EvalSettings(), figure_settings or FigureSettings()
    results = {"experiment": "images", "variant": variant, "overrides": overrides or {}, "datasets": {},
               "skipped": {}}
    for name in datasets:
        if name not in IMAGE_CONFIGS:
            raise ValueError(f"Unknown image data set {name!r}; expected one of {sorted(IMAGE_CONFIGS)}.")
        config = apply_overrides(IMAGE_CONFIGS[name].get_config(variant), overrides or {})
        reason = _missing_data_reason(config.data)
        if reason:
            logging.warning("Skipping %s: %s", name, reason)
            results["skipped"][name] = reason
            continue
        run_dir = os.path.join(workdir, name)
        evaluations = _train_and_evaluate_all(config, run_dir, eval_settings, reuse=True)
        oracle = oracles.make_oracle(config.data, eval_settings.oracle_cache_dir, eval_settings.oracle_epochs,
                                     eval_settings.oracle_steps_per_epoch)
        figure_paths, keeps_a = _image_figures(evaluations, oracle, os.path.join(workdir, "figures", name),
                                               figure_settings)
        results["datasets"][name] = {
            "runs": {loss: ev.results for loss, ev in evaluations.items()},
            "baselines": evaluation.posthoc_baselines(config, eval_settings, os.path.join(run_dir, "baselines.json")),
            "interpolation_keeps_a": keeps_a,
            "figures": figure_paths,
        }
    _write_report(workdir, results, _images_report(results, workdir))
    return results


def _train_and_evaluate_all(base_config, workdir, eval_settings, reuse=False):
    """Trains (or resumes) the CE, CE + MLE and iCE runs of a config and evaluates them.

    With `reuse`, an evaluation written with the same settings after the run's training is
    read back instead of measured again (`evaluation.evaluate_run`).
    """
    evaluations = {}
    for loss in LOSSES:
        config = base_config.copy_and_resolve_references()
        config.train.loss = loss
        run_dir = os.path.join(workdir, loss)
        logging.info("Training %s (%s) in %s", config.data.name, loss, run_dir)
        loop.train_and_evaluate(config, run_dir)
        evaluations[loss] = evaluation.evaluate_run(run_dir, eval_settings, reuse=reuse)
        logging.info("\n%s", evaluation.summary_table(evaluations[loss].results))
    return evaluations


def _missing_data_reason(data_config):
    """None when the split can be read, else the `DataNotFoundError` message."""
    try:
        data.load_split(data_config.name, "test", source=data_config.get("source", "auto"),
                        idx_dir=data_config.get("idx_dir"), data_dir=data_config.get("data_dir"))
    except data.DataNotFoundError as error:
        return str(error)
    return None


def _image_figures(evaluations, oracle, directory, settings):
    """Figure 4 grids and figure 6 interpolations of every run side by side on the same pairs.

    Returns `(paths, keeps_a)`: keeps_a[run] is the fraction of interpolation steps (both ends
    included, clipped to [0, 1]) that the oracle assigns to a's class.
    """
    first = next(iter(evaluations.values()))
    idx_a, idx_b = attack.sample_pairs(first.y_test, settings.num_pairs, settings.seed)
    x_a, x_b, y_a = first.x_test[idx_a], first.x_test[idx_b], first.y_test[idx_a]
    grid_panels, path_panels, keeps_a = [], [], {}
    for loss, ev in evaluations.items():
        x_met = metamers.metamers_in_batches(ev.network, x_a, x_b)
        grid_panels.append((LABELS[loss], x_a, x_met, x_b))
        path = np.asarray(metamers.interpolate(ev.network, x_a, x_b, settings.interpolation_steps))
        path_panels.append((LABELS[loss], path, x_b))
        labels = np.asarray(oracle(np.clip(path.reshape(-1, *x_a.shape[1:]), 0.0, 1.0)))
        keeps_a[loss] = float(np.mean(labels.reshape(len(x_a), -1) == y_a[:, None]))  # (pair, step)
    paths = {
        "figure4": figures.plot_metamer_grid(grid_panels, os.path.join(directory, "figure4_metamers.png"),
                                             title="Metamers F^-1(z_s(a), z_n(b)) (paper figure 4)"),
        "figure6": figures.plot_interpolations(path_panels, os.path.join(directory, "figure6_interpolations.png"),
                                               title="z_s(a) fixed, z_n from a to b (paper figure 6)"),
    }
    return paths, keeps_a


def _metamer_radii(ev, radii, seed, num_pairs=1000, tolerance=0.05):
    """Norms of spheres metamers of test pairs, and the fraction off both spheres."""
    idx_a, idx_b = attack.sample_pairs(ev.y_test, num_pairs, seed)
    norms = np.linalg.norm(metamers.metamers_in_batches(ev.network, ev.x_test[idx_a], ev.x_test[idx_b]), axis=-1)
    off = np.all([np.abs(norms - r) > tolerance * r for r in radii], axis=0)
    return {"min": float(norms.min()), "mean": float(norms.mean()), "max": float(norms.max()),
            "off_both_spheres": float(np.mean(off))}


# ---------------------------------------------------------------------------------- reports

def _pct(fraction, sd=None):
    return evaluation.pct(fraction, sd, unit="")  # the tables name the unit in their headers


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _nuisance(errors, split="test"):
    return _pct(errors[split], errors.get(f"{split}_sd"))


def _comparison_rows(runs):
    """Rows metric | one column per run for the eval.json dicts of the runs."""
    def row(name, get):
        return [name] + [get(runs[loss]) for loss in runs]

    def inverse_errors(statistic):
        return lambda r: " / ".join(f"{r['invertibility'][k][statistic]:.1e}" for k in ("test", "noise", "metamer"))

    def attack(key, clipped):
        def get(r):
            judged = r["metamer_attack"].get("clipped") if clipped else r["metamer_attack"]
            return "n/a" if judged is None else evaluation.rate_with_interval(judged) if key == "rate" else _pct(judged[key])
        return get

    first = next(iter(runs.values()))
    clipped = "clipped" in first["metamer_attack"]
    rows = [
        row("logit error, test (%)", lambda r: _pct(r["logit_error"]["test"])),
        row("logit error, train (%)", lambda r: _pct(r["logit_error"]["train"])),
        row("post-hoc nuisance error, test (%, mean ± sd over seeds)", lambda r: _nuisance(r["nuisance_error"])),
        row("post-hoc nuisance error, train (%)", lambda r: _nuisance(r["nuisance_error"], "train")),
    ]
    for part in first["nuisance_error"].get("parts", {}):
        rows.append(row(f"  on z_n part {part}, test (%)", lambda r, p=part: _nuisance(r["nuisance_error"]["parts"][p])))
    rows += [
        row("metamer attack rate, clipped (valid images), 95 % CI (%)" if clipped else
            "metamer attack rate, 95 % CI (%)", attack("rate", clipped)),
        row("  D keeps a's class (%)", attack("network_keeps_a", clipped)),
        row("  oracle says b's class (%)", attack("oracle_says_b", clipped)),
    ]
    if clipped:
        rows.append(row("metamer attack rate, unclipped, 95 % CI (%)", attack("rate", False)))
    rows += [
        row("pairs scored (network correct on a and b)", lambda r: str(r["metamer_attack"]["num_scored"])),
        row("oracle accuracy on the data (%)", lambda r: _pct(r["metamer_attack"]["oracle_accuracy"])),
        row("max abs(F^-1(F(x)) - x): test / noise / metamer", inverse_errors("max")),
        row("mean abs(F^-1(F(x)) - x): test / noise / metamer", inverse_errors("mean")),
    ]
    if not clipped:
        rows.append(row("metamer norm \\|x_met\\|: min / mean / max",
                        lambda r: " / ".join(f"{v:.2f}" for v in r["metamer_attack"]["metamer_norm"])))
    return rows


def _baseline_rows(baselines):
    return [["raw inputs (baseline)", _nuisance(baselines["inputs"])],
            ["z_n of an untrained network (baseline)", _nuisance(baselines["untrained_z_n"])]]


def _settings_text(results, runs):
    run = next(iter(runs.values()))
    n, settings = run["num_examples"], run["settings"]
    times = ", ".join(f"{LABELS[loss]} {r.get('train_wall_time_s', float('nan')):.0f} s" for loss, r in runs.items())
    return (f"Config variant `{results['variant']}`, overrides `{results['overrides'] or {}}`; "
            f"{run['config']['train']['epochs']} epoch(s), steps per epoch "
            f"{run['config']['train']['steps_per_epoch'] or 'full pass'}; training wall time {times}. "
            f"Evaluation on {n['train']} train and {n['test']} test examples; post-hoc nuisance classifiers: "
            f"{settings['nuisance_seeds']} seeds, early stopping on a held-out slice of the training examples "
            f"(at most {settings['nuisance_validation']}; at most {settings['nuisance_max_epochs']} epochs); "
            f"{run['metamer_attack']['num_pairs']} metamer pairs drawn; oracle: {run['metamer_attack']['oracle']}.")


def _spheres_report(results, workdir):
    runs = results["runs"]
    ex = results["example6"]
    figure_links = "\n\n".join(f"**{LABELS[loss]}**\n\n![figure 3 {loss}]({os.path.relpath(path, workdir)})"
                                for loss, path in results["figures"]["figure3"].items())
    example_rows = [[name, _pct(acc["accuracy"]), _pct(acc["accuracy_shifted"])]
                    for name, acc in ex["classifiers"].items()]
    radii = results["metamer_radii"]
    radii_text = " ".join(
        f"{LABELS[loss]}: |x_met| from {r['min']:.2f} to {r['max']:.2f} (mean {r['mean']:.2f}); "
        f"{_pct(r['off_both_spheres'])} % of them lie off both spheres (more than 5 % from R1 and R2)."
        for loss, r in radii.items())
    return "\n\n".join([
        "# Adversarial spheres: CE, CE + MLE and iCE fiRevNets",
        _settings_text(results, runs),
        "## Errors and metamer attack",
        _table(["metric"] + [LABELS[loss] for loss in runs], _comparison_rows(runs)),
        _table(["post-hoc classifier on", "test error (%)"], _baseline_rows(results["baselines"])),
        "Paper (appendix B.1, CE): 100 % train and validation accuracy of both the logit and the nuisance "
        "classifier, i.e. the nuisances z_n also carry the label.",
        "## Metamers leave the data manifold",
        "A metamer of two data points (z_s of one, z_n of the other) is not a point of either sphere: "
        + radii_text,
        "## Figure 3: decision regions",
        "Rows: plane through two data points, plane through a point x and its metamer x_met. Columns: the "
        "logit classifier D and the post-hoc nuisance classifier. Solid circles |x| = R1, R2; dotted: the "
        "oracle's boundary.",
        figure_links,
        "## Example 6: classifier reading only x_1..x_(d-1) (equation 5)",
        f"{ex['num_examples']} test points; after the shift {_pct(ex['moved_fraction'])} % of them (all inner "
        "points) are moved onto the outer sphere by changing only the last coordinate.",
        _table(["classifier", "accuracy on the data (%)", "accuracy after moving x_d (%)"], example_rows),
        "Paper: equation 5 is perfect on the data and at chance after the shift.",
    ]) + "\n"


def _images_report(results, workdir):
    parts = ["# Images: CE, CE + MLE and iCE fiRevNets (Table 2, figures 4 and 6)"]
    for name, reason in results["skipped"].items():
        parts.append(f"**{name} skipped**: {reason}")
    for name, entry in results["datasets"].items():
        runs = entry["runs"]
        table2 = [[LABELS[loss]] + [_pct(runs[loss]["logit_error"][split]) for split in ("test", "train")]
                  + [_nuisance(runs[loss]["nuisance_error"], split) for split in ("test", "train")]
                  for loss in runs]
        table2 += [[row[0], "", "", row[1], ""] for row in _baseline_rows(entry["baselines"])]
        table2 += [[f"paper MNIST, {kind}", _pct_value(PAPER_TABLE_2["test"][f"{kind}_logit"]),
                    _pct_value(PAPER_TABLE_2["train"][f"{kind}_logit"]),
                    _pct_value(PAPER_TABLE_2["test"][f"{kind}_nuisance"]),
                    _pct_value(PAPER_TABLE_2["train"][f"{kind}_nuisance"])] for kind in ("ce", "ice")]
        keeps = entry["interpolation_keeps_a"]
        parts += [
            f"## {name}",
            _settings_text(results, runs),
            "### Table 2 analogue (% error)",
            _table(["run", "logit test", "logit train", "post-hoc nuisance test", "post-hoc nuisance train"], table2),
            "### All measures",
            _table(["metric"] + [LABELS[loss] for loss in runs], _comparison_rows(runs)),
            "### Figure 4: metamers (rows: logit source a, metamer, nuisance source b)",
            f"![figure 4]({os.path.relpath(entry['figures']['figure4'], workdir)})",
            "### Figure 6: interpolations (z_s(a) fixed; z_n from z_n(a) to z_n(b); last row b)",
            "Fraction of interpolation steps (clipped to [0, 1]) that the oracle assigns to a's class: "
            + ", ".join(f"{LABELS[loss]} {_pct(value)} %" for loss, value in keeps.items()) + ".",
            f"![figure 6]({os.path.relpath(entry['figures']['figure6'], workdir)})",
        ]
    return "\n\n".join(parts) + "\n"


def _pct_value(value):
    return "n/a" if value is None else f"{value:.2f}"


def _write_report(workdir, results, report):
    os.makedirs(workdir, exist_ok=True)
    write_json_atomic(os.path.join(workdir, "results.json"), results)
    with atomic_path(os.path.join(workdir, "report.md")) as tmp, open(tmp, "w") as f:
        f.write(report)
    logging.info("Wrote %s", os.path.join(workdir, "report.md"))

