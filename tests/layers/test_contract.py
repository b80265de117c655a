"""Every layer and a chain of them through the shared contract test."""

import keras
import pytest

from invertible_keras import layers
from tests.layer_test_case import run_layer_test

IMAGE = (4, 4, 4)
VECTOR = (6,)

CASES = [
    ("Squeeze", layers.Squeeze, {}, IMAGE),
    ("AdditiveCoupling/dense", layers.AdditiveCoupling, {"hidden_units": 8}, VECTOR),
    ("AdditiveCoupling/conv", layers.AdditiveCoupling, {"hidden_units": 8}, IMAGE),
    ("AdditiveCoupling/conv+batchnorm", layers.AdditiveCoupling, {"hidden_units": 8, "batch_norm": True}, IMAGE),
    ("AdditiveCoupling/conv+global_context", layers.AdditiveCoupling, {"hidden_units": 8, "global_context": True},
     IMAGE),
    ("AffineCoupling/dense", layers.AffineCoupling, {"hidden_units": 8}, VECTOR),
    ("AffineCoupling/conv", layers.AffineCoupling, {"hidden_units": 8, "clamp": 1.5}, IMAGE),
    ("ActNorm/dense", layers.ActNorm, {}, VECTOR),
    ("ActNorm/conv", layers.ActNorm, {}, IMAGE),
    ("Invertible1x1Conv/dense", layers.Invertible1x1Conv, {"seed": 1}, VECTOR),
    ("Invertible1x1Conv/conv", layers.Invertible1x1Conv, {"seed": 1}, IMAGE),
    ("DCTPooling", layers.DCTPooling, {}, IMAGE),
    ("SemanticCoupling", layers.SemanticCoupling, {"split": 2, "hidden_units": 8}, VECTOR),
    ("SemanticCoupling/write_only", layers.SemanticCoupling,
     {"split": 2, "hidden_units": 8, "read_nuisances": False}, VECTOR),
    ("SemanticCoupling/affine", layers.SemanticCoupling, {"split": 2, "hidden_units": 8, "clamp": 1.5}, VECTOR),
    ("SemanticCoupling/conditional_blocks", layers.SemanticCoupling,
     {"split": 2, "hidden_units": 8, "clamp": 1.5, "nuisance_blocks": 2}, VECTOR),
]


@pytest.mark.parametrize("name, cls, kwargs, shape", CASES, ids=[c[0] for c in CASES])
def test_layer_contract(name, cls, kwargs, shape):
    run_layer_test(cls, kwargs, shape, name=name)


def _chain(dtype):
    return [
        layers.ActNorm(dtype=dtype),
        layers.Invertible1x1Conv(seed=0, dtype=dtype),
        layers.AffineCoupling(hidden_units=8, dtype=dtype),
        layers.Squeeze(dtype=dtype),
        layers.ActNorm(dtype=dtype),
        layers.AdditiveCoupling(hidden_units=8, dtype=dtype),
        layers.DCTPooling(dtype=dtype),
    ]


@keras.saving.register_keras_serializable(package="tests")
class _Chain(layers.InvertibleSequential):
    """A fixed chain, so the shared helper can build it from keyword arguments alone."""

    def __init__(self, layers=None, dtype=None, **kwargs):
        super().__init__(layers or _chain(dtype), dtype=dtype, **kwargs)


def test_sequential_chain_contract():
    run_layer_test(_Chain, {}, (4, 4, 2), name="InvertibleSequential/chain")
