"""InvertibleSequential: a chain of invertible layers.

    F = f_n o ... o f_1,   log|det J_F(x)| = sum_i log|det J_{f_i}(x_{i-1})|,
    F^{-1} = f_1^{-1} o ... o f_n^{-1}.
"""

import keras

from invertible_keras.layers.base import InvertibleLayer, to_tensor, zeros_log_det


@keras.saving.register_keras_serializable(package="invertible_keras")
class InvertibleSequential(InvertibleLayer):
    """Chains invertible layers; the inverse runs them in reverse order.

    Args:
        layers: list of `InvertibleLayer`s.

    Input shape: that of the first layer. Output shape: that of the last.
    """

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        layers = list(layers)
        bad = [layer for layer in layers if not isinstance(layer, InvertibleLayer)]
        if not layers or bad:
            raise ValueError(
                "`layers` must be a non-empty list of InvertibleLayer instances. "
                f"Received: layers={layers!r}"
            )
        self.layers = layers

    def build(self, input_shape):
        super().build(input_shape)
        shape = tuple(input_shape)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def initialize(self, x):
        """Runs data-dependent initialisation (ActNorm) of every layer in order, once."""
        x = to_tensor(self, x)
        if not self.built:
            self.build(x.shape)
        for layer in self.layers:
            if hasattr(layer, "initialize"):
                layer.initialize(x)
            x = layer.forward_and_log_det(x, training=False)[0]

    def _forward(self, x, training):
        log_det = zeros_log_det(x)
        for layer in self.layers:
            x, layer_log_det = layer.forward_and_log_det(x, training=training)
            log_det += layer_log_det
        return x, log_det

    def _inverse(self, y):
        log_det = zeros_log_det(y)
        for layer in reversed(self.layers):
            y, layer_log_det = layer.inverse_and_log_det(y)
            log_det += layer_log_det
        return y, log_det

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def get_config(self):
        return {**super().get_config(), "layers": [keras.saving.serialize_keras_object(l) for l in self.layers]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layers"] = [keras.saving.deserialize_keras_object(l) for l in config["layers"]]
        return cls(**config)
