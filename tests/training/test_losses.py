"""The iCE terms against hand computations, the order of the step, and what each optimizer moves.

Each test here is written to fail under a specific fault of the model: a stop_gradient on
the adversary or the likelihood term, an identity "shuffle", the prior left out of the trained
variables, `nuisance_steps` ignored or D_phi trained on a stale batch.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras.models import builders
from invertible_keras.training import losses
from invertible_keras.training.objective import AdversaryWarmup, Objective
from invertible_keras.training.priors import LatentPrior
from tests.layer_test_case import perturb_weights

RNG = np.random.default_rng(0)
DIM = 6


def _log_softmax(logits):
    m = logits.max(axis=1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))


def _ce(labels, logits):
    return -_log_softmax(logits)[np.arange(len(labels)), labels]


def _gauss(z, mu, sigma):
    return np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), axis=1)


def _softplus(x):
    return np.log1p(np.exp(x))


def make_model(loss="ice", adversary="negative", beta=0.7, gamma=0.3, lr=1e-2, nuisance_lr=1e-2, nuisance_steps=1,
               semantic_prior="class_conditional", nuisance_first=True, seed=0):
    keras.utils.set_random_seed(seed)
    network = builders.dense(input_dim=DIM, hidden_units=8)
    network.forward_and_log_det(np.zeros((1, DIM), "float32"))
    perturb_weights(network, scale=0.3)
    objective = Objective(loss, nuisance_optimizer=keras.optimizers.SGD(nuisance_lr), beta=beta, gamma=gamma,
                          adversary=adversary, nuisance_steps=nuisance_steps, nuisance_first=nuisance_first,
                          semantic_prior=semantic_prior, nuisance_hidden_units=(8, 8, 8))
    network.compile(optimizer=keras.optimizers.SGD(lr), loss=objective)
    for variable in objective.prior.trainable_variables:  # away from the symmetric start
        variable.assign(variable + 0.3 * RNG.standard_normal(variable.shape).astype("float32"))
    return network


def _state(model):
    return model.variables + model.objective.variables


def get_state(model):
    """Every variable of a training network: its own and its objective's."""
    return [v.numpy() for v in _state(model)]


def set_state(model, values):
    for variable, value in zip(_state(model), values, strict=True):
        variable.assign(value)


def batch(n=16, seed=1):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2).astype("int32")
    x = rng.standard_normal((n, DIM)).astype("float32") + 1.5 * (2 * y[:, None] - 1)
    return x, y


def _snapshot(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


# ------------------------------------------------------------------------------- the terms

@pytest.mark.parametrize("semantic", ["none", "standard", "class_conditional"])
def test_prior_log_prob_is_the_closed_form_gaussian(semantic):
    prior = LatentPrior(2, 5, semantic=semantic)
    for variable in prior.trainable_variables:
        variable.assign(RNG.standard_normal(variable.shape).astype("float32"))
    z = RNG.standard_normal((4, 5)).astype("float32")
    y = np.array([0, 1, 1, 0])
    expected = _gauss(z[:, 2:], prior.nuisance_mean.numpy(), _softplus(prior.nuisance_raw_scale.numpy()))
    if semantic == "standard":
        expected += _gauss(z[:, :2], 0.0, 1.0)
    if semantic == "class_conditional":
        expected += _gauss(z[:, :2], prior.class_means.numpy()[y], _softplus(prior.semantic_raw_scale.numpy()))
    np.testing.assert_allclose(prior.log_prob(z, y), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"width 5.*\(4, 3\)"):
        prior.log_prob(z[:, :3], y)
    with pytest.raises(ValueError, match="semantic.*'flat'"):
        LatentPrior(2, 5, semantic="flat")


@pytest.mark.parametrize("adversary", ["negative", "shuffled", "uniform"])
def test_ice_terms_match_hand_computation(adversary):
    model = make_model(adversary=adversary)
    x, y = batch(6)
    z, log_det = model.forward_and_log_det(x)
    terms, d_logits = model.objective.terms(z, log_det, y, training=False)
    z, log_det, d_logits = z.numpy(), log_det.numpy(), d_logits.numpy()
    np.testing.assert_allclose(terms["semantic_ce"], _ce(y, z[:, :2]), rtol=1e-5)
    np.testing.assert_allclose(terms["nuisance_ce"], _ce(y, d_logits), rtol=1e-5)
    prior = model.objective.prior
    log_p = (_gauss(z[:, 2:], prior.nuisance_mean.numpy(), _softplus(prior.nuisance_raw_scale.numpy()))
             + _gauss(z[:, :2], prior.class_means.numpy()[y], _softplus(prior.semantic_raw_scale.numpy())))
    mle = -(log_p + log_det) / DIM
    np.testing.assert_allclose(terms["mle"], mle, rtol=1e-5)
    adv = (terms["loss"].numpy() - _ce(y, z[:, :2]) - 0.3 * mle) / 0.7
    if adversary == "negative":
        np.testing.assert_allclose(adv, -_ce(y, d_logits), rtol=1e-4, atol=1e-5)
    elif adversary == "uniform":
        np.testing.assert_allclose(adv, -_log_softmax(d_logits).mean(axis=1), rtol=1e-4)
    else:  # CE against a permutation of the labels: the multiset of labels is kept
        candidates = np.stack([_ce(np.full(len(y), c), d_logits) for c in (0, 1)], axis=1)
        picked = np.argmin(np.abs(candidates - adv[:, None]), axis=1)
        np.testing.assert_allclose(adv, candidates[np.arange(len(y)), picked], rtol=1e-4)
        assert sorted(picked) == sorted(y)


@pytest.mark.parametrize("seed", [None, (0, 7)], ids=["stateful", "seeded (the Objective's path)"])
def test_shuffled_labels_are_a_real_permutation(seed):
    labels = tf.constant(np.arange(64) % 4, tf.int32)
    confident = 30.0 * tf.one_hot(labels, 4)  # CE against the true labels is ~0
    seed = None if seed is None else tf.constant(seed, tf.int64)
    adversary = losses.adversary(labels, confident, "shuffled", seed=seed).numpy()
    moved = adversary > 1.0
    assert 0.5 < moved.mean() < 1.0, "the shuffle kept (almost) every label in place"


def test_ce_loss_is_semantic_ce_plus_prior_fit_only():
    model = make_model(loss="ce")
    x, y = batch(6)
    with tf.GradientTape() as tape:
        z, log_det = model.forward_and_log_det(x, training=True)
        terms, _ = model.objective.terms(z, log_det, y, training=True)
        mle = tf.reduce_mean(terms["mle"])
    np.testing.assert_allclose(terms["loss"], terms["semantic_ce"] + terms["mle"], rtol=1e-6)
    grads = tape.gradient(mle, model.trainable_variables)
    assert all(g is None or np.all(g.numpy() == 0) for g in grads), "CE's prior term reached the network"


@pytest.mark.parametrize("loss", ["ce_mle", "ice"])
def test_likelihood_term_reaches_the_network(loss):
    model = make_model(loss=loss)
    x, y = batch(6)
    with tf.GradientTape() as tape:
        z, log_det = model.forward_and_log_det(x, training=True)
        terms, _ = model.objective.terms(z, log_det, y, training=True)
        mle = tf.reduce_mean(terms["mle"])
    grads = tape.gradient(mle, model.trainable_variables)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads if g is not None) > 1e-4


# ------------------------------------------------------------------------------- the step

@pytest.mark.parametrize("adversary", ["uniform", "shuffled", "negative"])
def test_adversarial_step_raises_the_frozen_nuisance_classifiers_loss(adversary):
    """From one start with D frozen, a network step with beta > 0 raises D's loss; beta = 0 does not."""
    x, y = batch(64)
    start = make_model(adversary=adversary, lr=0.0, nuisance_lr=0.1, nuisance_steps=5)
    start.train_on_batch(x, y)  # D learns to read the label from z_n
    weights = get_state(start)

    def d_loss_after_step(beta):
        model = make_model(adversary=adversary, beta=beta, gamma=0.0, lr=0.2, nuisance_lr=0.0)
        set_state(model, weights)
        model.objective.adversary_weight.assign(beta)
        def d_loss():  # batch statistics in D's input standardisation, as in the step
            z_n = model.forward_and_log_det(x)[0][:, 2:]
            return float(tf.reduce_mean(losses.cross_entropy(y, model.objective.nuisance_classifier(z_n, training=True))))

        before = d_loss()
        model.train_on_batch(x, y)
        return before, d_loss()

    before, plain = d_loss_after_step(0.0)
    _, adversarial = d_loss_after_step(5.0)
    assert before < 0.6, "the start is not an informed nuisance classifier"
    assert adversarial > plain + 0.02 and adversarial > before + 0.02
    assert plain < before + 0.01


@pytest.mark.parametrize("nuisance_first", [True, False])
def test_nuisance_steps_update_d_on_the_current_batch(nuisance_first):
    """k steps of D_phi on stop_gradient(z_n) of this batch (network weights before the step);
    the network's adversary term sees D_phi after them (first) or before them (not first)."""
    x, y = batch(16)
    model = make_model(adversary="uniform", nuisance_steps=3, lr=0.1, nuisance_lr=0.1, nuisance_first=nuisance_first)
    reference = make_model(adversary="uniform", nuisance_steps=3, lr=0.1, nuisance_lr=0.1)
    set_state(reference, get_state(model))

    z_n = reference.forward_and_log_det(x, training=True)[0][:, 2:]
    d, sgd = reference.objective.nuisance_classifier, keras.optimizers.SGD(0.1)
    adversary_before = float(tf.reduce_mean(losses.adversary(y, d(z_n, training=True), "uniform")))
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.cross_entropy(y, d(z_n, training=True)))
        sgd.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))
    adversary_after = float(tf.reduce_mean(losses.adversary(y, d(z_n, training=True), "uniform")))
    assert abs(adversary_after - adversary_before) > 1e-3, "the case cannot tell the two orders apart"

    logs = model.train_on_batch(x, y, return_dict=True)
    assert int(model.objective.nuisance_optimizer.iterations.numpy()) == 3
    assert int(model.optimizer.iterations.numpy()) == 1
    for got, want in zip(model.objective.nuisance_classifier.trainable_variables, d.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
    expected = adversary_after if nuisance_first else adversary_before
    np.testing.assert_allclose(logs["adversary"], expected, rtol=1e-4)


@pytest.mark.parametrize("loss", ["ce", "ce_mle", "ice"])
def test_every_loss_fits_every_prior_parameter(loss):
    model = make_model(loss=loss)
    x, y = batch(16)
    before = _snapshot(model.objective.prior.trainable_variables)
    model.train_on_batch(x, y)
    assert len(before) == 4 and all(_changed(before, model.objective.prior.trainable_variables))


@pytest.mark.parametrize("loss", ["ce", "ce_mle", "ice"])
def test_nuisance_optimizer_changes_only_the_nuisance_classifier(loss):
    x, y = batch(8)
    frozen_main = make_model(loss=loss, lr=0.0)
    main, nuisance = frozen_main.objective.trainable_variables, frozen_main.objective.nuisance_classifier.trainable_variables
    before_main, before_nuisance = _snapshot(main), _snapshot(nuisance)
    frozen_main.train_on_batch(x, y)
    assert not any(_changed(before_main, main))
    assert all(_changed(before_nuisance, nuisance))

    frozen_nuisance = make_model(loss=loss, nuisance_lr=0.0)
    main, nuisance = frozen_nuisance.objective.trainable_variables, frozen_nuisance.objective.nuisance_classifier.trainable_variables
    before_main, before_nuisance = _snapshot(main), _snapshot(nuisance)
    frozen_nuisance.train_on_batch(x, y)
    assert not any(_changed(before_nuisance, nuisance)), "the main optimizer changed the nuisance classifier"
    assert any(_changed(before_main, main))


def test_warmup_ramps_the_adversary_weight_from_the_step_count():
    x, y = batch(8)
    model = make_model(beta=2.0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(6)
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(
        float(model.objective.adversary_weight.numpy())))
    model.fit(dataset, epochs=1, verbose=0, callbacks=[AdversaryWarmup(2, 4), record])
    np.testing.assert_allclose(seen, [0.0, 0.0, 0.0, 1.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="start < end"):
        AdversaryWarmup(5, 5)


def test_bad_objective_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="objective must be one of .*'mse'"):
        Objective("mse")
    with pytest.raises(ValueError, match="adversary.*'max'"):
        Objective(adversary="max")
    with pytest.raises(ValueError, match="nuisance_steps.*0"):
        Objective(nuisance_steps=0)
    with pytest.raises(ValueError, match="beta.*-1"):
        Objective(beta=-1.0)
