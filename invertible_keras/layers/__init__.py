"""Invertible Keras layers: each has call / inverse / forward_and_log_det / inverse_and_log_det."""

from invertible_keras.layers.actnorm import ActNorm
from invertible_keras.layers.base import InvertibleLayer
from invertible_keras.layers.conv1x1 import Invertible1x1Conv
from invertible_keras.layers.coupling import AdditiveCoupling, AffineCoupling, Coupling
from invertible_keras.layers.dct import DCTPooling
from invertible_keras.layers.factor_out import FactorOut
from invertible_keras.layers.semantic_coupling import SemanticCoupling
from invertible_keras.layers.sequential import InvertibleSequential
from invertible_keras.layers.squeeze import Squeeze

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Coupling",
    "DCTPooling",
    "FactorOut",
    "Invertible1x1Conv",
    "InvertibleLayer",
    "InvertibleSequential",
    "SemanticCoupling",
    "Squeeze",
]
