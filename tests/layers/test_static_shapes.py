"""The static-shape fast paths of the layers agree with their dynamic-shape fallbacks.

`Invertible1x1Conv` mixes channels with reshape-MatMul-reshape when H and W are static and
with `tf.tensordot` otherwise; `spatial_size` (the H*W of the ActNorm and 1x1-conv log-dets)
is a Python number for static shapes and a tensor otherwise. A `tf.function` whose input
signature leaves H and W unknown runs the fallbacks; the fast paths must give the same
outputs, inverses and log-dets.
"""

import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import layers
from invertible_keras.layers.base import spatial_size
from tests.layer_test_case import perturb_weights


# Only layers without Keras-random initialisers: drawing from Keras's global seed generator here
# would change the weights of unseeded models in later tests (the imagenet64 metamer test's
# logit tolerance of 1e-4 is within rounding of some draws).
@pytest.mark.parametrize("cls, kwargs", [(layers.Invertible1x1Conv, {"seed": 3}), (layers.ActNorm, {})])
def test_static_and_dynamic_spatial_shapes_agree(cls, kwargs):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 5, 6, 4)).astype("float32")
    layer = cls(**kwargs)
    layer.build((None, None, None, 4))
    if hasattr(layer, "initialize"):
        layer.initialize(x)
    perturb_weights(layer)
    dynamic = tf.TensorSpec((None, None, None, 4), tf.float32)
    forward = tf.function(layer.forward_and_log_det, input_signature=[dynamic])
    inverse = tf.function(layer.inverse_and_log_det, input_signature=[dynamic])

    y, log_det = layer.forward_and_log_det(x)  # eager: static shapes
    y_dynamic, log_det_dynamic = forward(x)
    np.testing.assert_allclose(y_dynamic, y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_det_dynamic, log_det, rtol=1e-6, atol=1e-6)
    x_back, inverse_log_det = layer.inverse_and_log_det(y)
    x_back_dynamic, inverse_log_det_dynamic = inverse(y)
    np.testing.assert_allclose(x_back_dynamic, x_back, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inverse_log_det_dynamic, inverse_log_det, rtol=1e-6, atol=1e-6)


def test_spatial_size_is_a_number_for_static_shapes_and_a_tensor_otherwise():
    assert spatial_size(tf.zeros((2, 5, 6, 3))) == 30.0
    assert spatial_size(tf.zeros((2, 7))) == 1.0
    dynamic = tf.function(spatial_size, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    assert float(dynamic(tf.zeros((2, 5, 6, 3)))) == 30.0
