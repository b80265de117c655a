"""Measurements on trained fiRevNets (the experiments that combine them: `train/experiments.py`).

Every analysis needs only `encode(x) -> (z_s, z_n)` and `decode(z_s, z_n)` (see `network`), so
it runs on a `FiRevNet`, on a SavedModel export or on any hand-built bijection.

Import the modules themselves (`from invertible_keras.analysis import figures`): this package
imports nothing eagerly, so that e.g. drawing figures from a SavedModel does not load the
training code.

- `network`: `Network` (a FiRevNet or SavedModel as traced functions), batched helpers.
- `posthoc`: the post-hoc nuisance classifier on z_n (paper, Table 2).
- `oracles`: the oracle o(x) judging metamers (exact rule for spheres, a cached CNN for images).
- `attack`: the metamer attack rate (paper, sections 2 and 3).
- `invertibility`: |F^-1(F(x)) - x| on data, noise and metamers.
- `planes`, `figures`: figure 3 (decision planes), figure 4 (metamer grids), figure 6
  (interpolations).
- `example6`: the mis-aligned classifier of Example 6.
- `evaluation`: `evaluate_run(workdir)` -> `workdir/eval.json` (`python -m train.evaluate`).
"""
