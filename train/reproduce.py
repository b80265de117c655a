"""The paper's experiments, one command each.

    python -m train.reproduce --experiment=spheres --workdir=DIR   # figure 3, Example 6
    python -m train.reproduce --experiment=images --workdir=DIR    # Table 2, figures 4 and 6

Trains CE and iCE fiRevNets (resuming unfinished runs), evaluates both and writes
DIR/report.md and DIR/results.json. `--quick` uses the configs' "quick" variants and small
evaluation sizes (seconds; for tests); `--variant=paper` the paper's settings. Config fields
are overridden with `--epochs`, `--steps_per_epoch` or `--override=field.subfield=value`
(repeatable). See `train.experiments`. Exits with status 1 when every
data set of the images experiment was skipped (no data available): nothing was run.
"""

from absl import app, flags

from train import eval_flags, experiments

_EXPERIMENT = flags.DEFINE_enum("experiment", None, ["spheres", "images"], "Which experiment to run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (runs, figures, report.md).")
_VARIANT = flags.DEFINE_string("variant", "cpu", "Config variant: cpu, quick or paper.")
_QUICK = flags.DEFINE_bool("quick", False, "Tiny run: variant 'quick' and small evaluation sizes.")
_EPOCHS = flags.DEFINE_integer("epochs", None, "Overrides config.train.epochs.")
_STEPS = flags.DEFINE_integer("steps_per_epoch", None, "Overrides config.train.steps_per_epoch.")
_OVERRIDE = flags.DEFINE_multi_string("override", [], "Config override field.subfield=value (repeatable).")
_DATASETS = flags.DEFINE_list("datasets", ["fashion_mnist", "mnist"], "Image data sets (images experiment).")
_PLANE_RESOLUTION = flags.DEFINE_integer("plane_resolution", experiments.FigureSettings.plane_resolution,
                                         "Grid points per side of the figure-3 planes.")
flags.mark_flags_as_required(["experiment", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    overrides = experiments.parse_overrides(_OVERRIDE.value)
    if _EPOCHS.value is not None:
        overrides["train.epochs"] = _EPOCHS.value
    if _STEPS.value is not None:
        overrides["train.steps_per_epoch"] = _STEPS.value
    variant = "quick" if _QUICK.value else _VARIANT.value
    settings = eval_flags.eval_settings(**(experiments.QUICK_EVAL if _QUICK.value else {}))
    figure_settings = (experiments.QUICK_FIGURES if _QUICK.value
                       else experiments.FigureSettings(plane_resolution=_PLANE_RESOLUTION.value))
    if _EXPERIMENT.value == "spheres":
        experiments.spheres_experiment(_WORKDIR.value, variant, overrides, settings, figure_settings)
    else:
        results = experiments.images_experiment(_WORKDIR.value, tuple(_DATASETS.value), variant, overrides,
                                                settings, figure_settings)
        if not results["datasets"]:
            raise SystemExit(f"Error: every data set was skipped ({', '.join(results['skipped'])}): nothing was "
                             f"run; the reasons are in the log above and in {_WORKDIR.value}/report.md.")
    print(f"Report: {_WORKDIR.value}/report.md")


if __name__ == "__main__":
    app.run(main)
