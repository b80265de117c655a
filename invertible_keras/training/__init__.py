"""Training of fiRevNets: CE, CE + MLE and iCE with `model.fit` (paper, section 4).

Import the modules themselves (`from invertible_keras.training import loop`); this package
imports nothing eagerly.

- `losses`: the per-example loss terms L_sCE, L_nCE, L_MLE and the adversary forms.
- `priors`: `LatentPrior`, the factorial Gaussian prior over z (tensorflow-probability).
- `objective`: `Objective` (CE, CE + MLE, iCE), which `FiRevNet.compile(loss=...)` attaches
  and whose step `FiRevNet.fit` runs; `AdversaryWarmup`.
- `optimizers`: `FusedAdam`, `FusedAdamax` (Keras's, one TensorFlow kernel per variable update)
  and `make_optimizer(name, ...)`.
- `loop`: `train_and_evaluate(config, workdir)`, everything `python -m train.train` does.
"""
