"""Evaluates a trained run: logit and nuisance errors, invertibility, metamer attack rate.

    python -m train.evaluate --workdir=DIR [--num_train=N --num_test=N --nuisance_seeds=3 ...]

Reads DIR/metrics.json's config and the network (DIR/export, else DIR/checkpoints), writes
DIR/eval.json and prints a summary table. See `invertible_keras.analysis.evaluation`.
"""

from absl import app, flags

from invertible_keras.analysis import evaluation
from train import eval_flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by `python -m train.train`.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = evaluation.evaluate_run(_WORKDIR.value, eval_flags.eval_settings())
    print(evaluation.summary_table(result.results))


if __name__ == "__main__":
    app.run(main)
