"""Models: the fully invertible classifier (FiRevNet), its architectures and config builder, the nuisance classifier."""

from invertible_keras.models.builders import build_model
from invertible_keras.models.firevnet import FiRevNet
from invertible_keras.models.nuisance_mlp import nuisance_classifier

__all__ = ["FiRevNet", "build_model", "nuisance_classifier"]
