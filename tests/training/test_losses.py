"""The iCE terms against hand computations, and which optimizer changes what."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras.models import FiRevNet
from invertible_keras.priors import FactorialGaussianPrior
from invertible_keras.trainer import Trainer
from tests.layer_test_case import perturb_weights

RNG = np.random.default_rng(0)


def _log_softmax(logits):
    m = logits.max(axis=1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))


def _ce(labels, logits):
    return -_log_softmax(logits)[np.arange(len(labels)), labels]


def make_trainer(loss="ice", adversary="negative", beta=0.7, gamma=0.3, lr=1e-2, nuisance_lr=1e-2, dim=6):
    network = FiRevNet.dense(input_dim=dim, hidden_units=8)
    network.forward_and_log_det(np.zeros((1, dim), "float32"))
    perturb_weights(network, scale=0.3)
    trainer = Trainer(network, nuisance_hidden_units=(8, 8, 8))
    trainer.compile(optimizer=keras.optimizers.SGD(lr), nuisance_optimizer=keras.optimizers.SGD(nuisance_lr),
                    loss=loss, beta=beta, gamma=gamma, adversary=adversary)
    return trainer


def test_prior_log_prob_is_the_closed_form_gaussian():
    prior = FactorialGaussianPrior(5)
    prior.mean.assign(RNG.standard_normal(5).astype("float32"))
    prior.raw_scale.assign(RNG.standard_normal(5).astype("float32"))
    z = RNG.standard_normal((4, 5)).astype("float32")
    mu = prior.mean.numpy()
    sigma = np.log1p(np.exp(prior.raw_scale.numpy()))
    expected = np.sum(-0.5 * ((z - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"5 nuisance variables.*\(4, 3\)"):
        prior.log_prob(z[:, :3])


@pytest.mark.parametrize("adversary", ["negative", "shuffled"])
def test_ice_terms_match_hand_computation(adversary):
    trainer = make_trainer(adversary=adversary)
    x = RNG.standard_normal((5, 6)).astype("float32")
    y = np.array([0, 1, 1, 0, 1], "int32")
    terms, z_s, z_n, nuisance_logits = trainer._terms(x, y, training=False)

    z, log_det = trainer.network.forward_and_log_det(x)
    z, log_det = z.numpy(), log_det.numpy()
    np.testing.assert_allclose(z_s, z[:, :2])
    np.testing.assert_allclose(terms["semantic_ce"], _ce(y, z[:, :2]), rtol=1e-5)
    d_logits = trainer.nuisance_classifier(z[:, 2:]).numpy()
    np.testing.assert_allclose(terms["nuisance_ce"], _ce(y, d_logits), rtol=1e-5)
    mu, sigma = trainer.prior.mean.numpy(), np.log1p(np.exp(trainer.prior.raw_scale.numpy()))
    log_p = np.sum(-0.5 * ((z[:, 2:] - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), axis=1)
    mle = -(log_p + log_det) / 6
    np.testing.assert_allclose(terms["mle"], mle, rtol=1e-5)
    if adversary == "negative":
        expected = _ce(y, z[:, :2]) + 0.3 * mle - 0.7 * _ce(y, d_logits)
        np.testing.assert_allclose(terms["loss"], expected, rtol=1e-5)
    else:  # CE against a permutation of the labels: the multiset of labels is kept
        adv = (terms["loss"].numpy() - _ce(y, z[:, :2]) - 0.3 * mle) / 0.7
        candidates = np.stack([_ce(np.full(5, c), d_logits) for c in (0, 1)], axis=1)
        picked = np.argmin(np.abs(candidates - adv[:, None]), axis=1)
        np.testing.assert_allclose(adv, candidates[np.arange(5), picked], rtol=1e-4)
        assert sorted(picked) == sorted(y)


def test_ce_loss_is_semantic_ce_plus_prior_fit_only():
    trainer = make_trainer(loss="ce")
    x = RNG.standard_normal((5, 6)).astype("float32")
    y = np.array([0, 1, 1, 0, 1], "int32")
    terms, *_ = trainer._terms(x, y, training=False)
    np.testing.assert_allclose(terms["loss"], terms["semantic_ce"] + terms["mle"], rtol=1e-6)
    with tf.GradientTape() as tape:
        terms, *_ = trainer._terms(x, y, training=True)
        mle = tf.reduce_mean(terms["mle"])
    grads = tape.gradient(mle, trainer.network.trainable_variables)
    assert all(g is None or np.all(g.numpy() == 0) for g in grads), "CE's prior term reached the network"


def _snapshot(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


@pytest.mark.parametrize("loss", ["ce", "ice"])
def test_nuisance_optimizer_changes_only_the_nuisance_classifier(loss):
    x = RNG.standard_normal((8, 6)).astype("float32")
    y = (RNG.uniform(size=8) > 0.5).astype("int32")

    frozen_main = make_trainer(loss=loss, lr=0.0)
    main, nuisance = frozen_main.main_variables, frozen_main.nuisance_classifier.trainable_variables
    before_main, before_nuisance = _snapshot(main), _snapshot(nuisance)
    frozen_main.train_on_batch(x, y)
    assert not any(_changed(before_main, main))
    assert all(_changed(before_nuisance, nuisance))

    frozen_nuisance = make_trainer(loss=loss, nuisance_lr=0.0)
    main, nuisance = frozen_nuisance.main_variables, frozen_nuisance.nuisance_classifier.trainable_variables
    before_main, before_nuisance = _snapshot(main), _snapshot(nuisance)
    frozen_nuisance.train_on_batch(x, y)
    assert not any(_changed(before_nuisance, nuisance)), "the main optimizer changed the nuisance classifier"
    assert any(_changed(before_main, main))


def test_bad_compile_arguments_are_clear_errors():
    trainer = make_trainer()
    sgd = keras.optimizers.SGD
    with pytest.raises(ValueError, match="loss.*'mse'"):
        trainer.compile(optimizer=sgd(), nuisance_optimizer=sgd(), loss="mse")
    with pytest.raises(ValueError, match="adversary.*'max'"):
        trainer.compile(optimizer=sgd(), nuisance_optimizer=sgd(), adversary="max")
    with pytest.raises(ValueError, match="nuisance_steps.*0"):
        trainer.compile(optimizer=sgd(), nuisance_optimizer=sgd(), nuisance_steps=0)
