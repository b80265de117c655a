"""The paper's experiments, one function each (`python -m train.reproduce`).

* `spheres_experiment` (section 5.1, figure 3, Example 6): trains a cross-entropy (CE) and an
  independence cross-entropy (iCE, Definition 7) fiRevNet on adversarial spheres with
  `configs/spheres.py`, evaluates both (`analysis.evaluation`), draws figure 3 for each and
  measures Example 6.
* `images_experiment` (section 5.2, Table 2, figures 4 and 6): the same for Fashion-MNIST
  (`configs/fashion_mnist.py`) and MNIST (`configs/mnist.py`); a data set that is not
  available is skipped with the reason logged and written into the report.

Both write `workdir/report.md` (tables and figures) and `workdir/results.json` (every number).
Runs live in `workdir/<loss>` (spheres) or `workdir/<data set>/<loss>` (images); training goes
through `train_lib.train_and_evaluate`, so rerunning a command resumes unfinished runs and
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
from invertible_keras import data, metamers, train_lib
from invertible_keras.analysis import attack, evaluation, example6, figures, planes
from invertible_keras.analysis import network as network_lib

LOSSES = ("ce", "ce_mle", "ice")
LABELS = {"ce": "CE", "ce_mle": "CE + MLE", "ice": "iCE"}
IMAGE_CONFIGS = {"fashion_mnist": fashion_mnist_config, "mnist": mnist_config}

# Paper, Table 2 (MNIST, % error) and appendix B.1 (spheres: 100 % accuracy of both classifiers).
PAPER_TABLE_2 = {"test": {"ce_logit": 0.39, "ice_logit": 0.38, "ce_nuisance": 0.34, "ice_nuisance": 27.70},
                 "train": {"ce_logit": 0.00, "ice_logit": 0.37, "ce_nuisance": None, "ice_nuisance": 40.21}}

# Evaluation sizes of `--quick` (the training sizes are the configs' "quick" variants).
QUICK_EVAL = {"num_train": 1024, "num_test": 256, "nuisance_epochs": 3, "attack_pairs": 256,
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
    evaluations = _train_and_evaluate_both(config, workdir, eval_settings)
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
        evaluations = _train_and_evaluate_both(config, run_dir, eval_settings)
        results["datasets"][name] = {
            "runs": {loss: ev.results for loss, ev in evaluations.items()},
            "figures": _image_figures(evaluations, os.path.join(workdir, "figures", name), figure_settings),
        }
    _write_report(workdir, results, _images_report(results, workdir))
    return results


def _train_and_evaluate_both(base_config, workdir, eval_settings):
    """Trains (or resumes) the CE and the iCE run of a config and evaluates both."""
    evaluations = {}
    for loss in LOSSES:
        config = base_config.copy_and_resolve_references()
        config.train.loss = loss
        run_dir = os.path.join(workdir, loss)
        logging.info("Training %s (%s) in %s", config.data.name, loss, run_dir)
        train_lib.train_and_evaluate(config, run_dir)
        evaluations[loss] = evaluation.evaluate_run(run_dir, eval_settings)
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


def _image_figures(evaluations, directory, settings):
    """Figure 4 grids and figure 6 interpolations, CE and iCE side by side on the same pairs."""
    ce = evaluations["ce"]
    idx_a, idx_b = attack.sample_pairs(ce.y_test, settings.num_pairs, settings.seed)
    x_a, x_b = ce.x_test[idx_a], ce.x_test[idx_b]
    grid_panels, path_panels = [], []
    for loss, ev in evaluations.items():
        x_met = network_lib.metamers(ev.network, x_a, x_b)
        grid_panels.append((LABELS[loss], x_a, x_met, x_b))
        path_panels.append((LABELS[loss], np.asarray(metamers.interpolate(ev.network, x_a, x_b,
                                                                          settings.interpolation_steps)), x_b))
    return {
        "figure4": figures.plot_metamer_grid(grid_panels, os.path.join(directory, "figure4_metamers.png"),
                                             title="Metamers F^-1(z_s(a), z_n(b)) (paper figure 4)"),
        "figure6": figures.plot_interpolations(path_panels, os.path.join(directory, "figure6_interpolations.png"),
                                               title="z_s(a) fixed, z_n from a to b (paper figure 6)"),
    }


# ---------------------------------------------------------------------------------- reports

def _pct(fraction):
    return "n/a" if fraction is None else f"{100.0 * fraction:.2f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _comparison_rows(runs):
    """Rows metric | CE | iCE for the eval.json dicts of both runs."""
    def row(name, get):
        return [name] + [get(runs[loss]) for loss in LOSSES]

    def inverse_errors(statistic):
        return lambda r: " / ".join(f"{r['invertibility'][k][statistic]:.1e}" for k in ("test", "noise", "metamer"))

    return [
        row("logit error, test (%)", lambda r: _pct(r["logit_error"]["test"])),
        row("logit error, train (%)", lambda r: _pct(r["logit_error"]["train"])),
        row("nuisance-classifier error, test (%)", lambda r: _pct(r["nuisance_error"]["test"])),
        row("nuisance-classifier error, train (%)", lambda r: _pct(r["nuisance_error"]["train"])),
        row("metamer attack rate (%)", lambda r: _pct(r["metamer_attack"]["rate"])),
        row("  over pairs whose a D classifies correctly (%)",
            lambda r: _pct(r["metamer_attack"]["rate_given_a_correct"])),
        row("  oracle says b's class on metamers (%)", lambda r: _pct(r["metamer_attack"]["oracle_says_b"])),
        row("  metamers clipped to the valid range (%)",
            lambda r: _pct(r["metamer_attack"].get("clipped", {}).get("rate"))),
        row("oracle accuracy on the data (%)", lambda r: _pct(r["metamer_attack"]["oracle_accuracy"])),
        row("max abs(F^-1(F(x)) - x): test / noise / metamer", inverse_errors("max")),
        row("mean abs(F^-1(F(x)) - x): test / noise / metamer", inverse_errors("mean")),
    ]


def _settings_text(results, runs):
    run = runs["ce"]
    n = run["num_examples"]
    return (f"Config variant `{results['variant']}`, overrides `{results['overrides'] or {}}`; "
            f"{run['config']['train']['epochs']} epoch(s), steps per epoch "
            f"{run['config']['train']['steps_per_epoch'] or 'full pass'}. Evaluation on {n['train']} train and "
            f"{n['test']} test examples, nuisance classifier {run['settings']['nuisance_epochs']} epochs, "
            f"{run['metamer_attack']['num_pairs']} metamer pairs; oracle: {run['metamer_attack']['oracle']}.")


def _spheres_report(results, workdir):
    runs = results["runs"]
    ex = results["example6"]
    figure_links = "\n\n".join(f"**{LABELS[loss]}**\n\n![figure 3 {loss}]({os.path.relpath(path, workdir)})"
                               for loss, path in results["figures"]["figure3"].items())
    example_rows = [[name, _pct(acc["accuracy"]), _pct(acc["accuracy_shifted"])]
                    for name, acc in ex["classifiers"].items()]
    return "\n\n".join([
        "# Adversarial spheres: CE vs iCE fiRevNet",
        _settings_text(results, runs),
        "## Errors and metamer attack",
        _table(["metric", "CE", "iCE"], _comparison_rows(runs)),
        "Paper (appendix B.1, CE): 100 % train and validation accuracy of both the logit and the nuisance "
        "classifier, i.e. the nuisances z_n also carry the label.",
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
    parts = ["# Images: CE vs iCE fiRevNet (Table 2, figures 4 and 6)"]
    for name, reason in results["skipped"].items():
        parts.append(f"**{name} skipped**: {reason}")
    for name, entry in results["datasets"].items():
        runs = entry["runs"]
        table2 = [[split] + [_pct(runs[loss][kind + "_error"][split]) for kind in ("logit", "nuisance")
                             for loss in LOSSES] for split in ("test", "train")]
        paper = [[f"paper MNIST {split}"] + ["n/a" if v is None else f"{v:.2f}" for v in
                                             (PAPER_TABLE_2[split][k] for k in
                                              ("ce_logit", "ice_logit", "ce_nuisance", "ice_nuisance"))]
                 for split in ("test", "train")]
        parts += [
            f"## {name}",
            _settings_text(results, runs),
            "### Table 2 analogue (% error)",
            _table(["", "CE logit", "iCE logit", "CE nuisance", "iCE nuisance"], table2 + paper),
            "### All measures",
            _table(["metric", "CE", "iCE"], _comparison_rows(runs)),
            "### Figure 4: metamers (rows: logit source a, metamer, nuisance source b)",
            f"![figure 4]({os.path.relpath(entry['figures']['figure4'], workdir)})",
            "### Figure 6: interpolations (z_s(a) fixed; z_n from z_n(a) to z_n(b); last row b)",
            f"![figure 6]({os.path.relpath(entry['figures']['figure6'], workdir)})",
        ]
    return "\n\n".join(parts) + "\n"


def _write_report(workdir, results, report):
    os.makedirs(workdir, exist_ok=True)
    train_lib.write_json_atomic(os.path.join(workdir, "results.json"), results)
    with open(os.path.join(workdir, "report.md"), "w") as f:
        f.write(report)
    logging.info("Wrote %s", os.path.join(workdir, "report.md"))

