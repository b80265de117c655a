"""The semantic coupling: a fiRevNet's last layer, between the logits and the nuisances of flat z.

    z = [s, n],  s = z[:, :C] (the logits z_s),  n = z[:, C:] (the nuisances z_n)

    s' = s + h(n)        the logits read all of z_n, not only the DC components they hold
    n' = n + g(s')       z_n gains (or, trained, loses) any function of the logits
    inverse:  n = n' - g(s'),  s = s' - h(n)                        log|det J| = 0

Two additive couplings with the uneven split C | d - C; h and g are dense ReLU bottlenecks
(`Coupling`'s dense subnet), zero-initialised, so a new layer is the identity.

Why: iCE asks that z_n carry no class information while z_s carries all of it. A multi-scale
chain of local couplings can only meet that by computing, in every entry of z_n, what depends
on the class; here g can subtract from z_n what the logits predict of it, and h lets the logits
use the whole representation. The paper's fiRevNets read the logits straight from the DC
components of the last stage; with this layer they are still z[:, :C] of a bijection with an
exact inverse, but no longer pure DC components (see docs/design.md).
"""

import keras
import tensorflow as tf

from invertible_keras.layers.base import zeros_log_det
from invertible_keras.layers.coupling import Coupling


@keras.saving.register_keras_serializable(package="invertible_keras")
class SemanticCoupling(Coupling):
    """Couples the first `split` entries of a flat vector with the rest, both ways (see module).

    Args:
        split: C, the number of leading entries (the logits); 1 <= C < d.
        hidden_units: width of the two hidden layers of h and of g.
        read_nuisances: also s' = s + h(n); False keeps only n' = n + g(s).
        **kwargs: `Coupling` arguments (`batch_norm`, `zero_init`) and `keras.layers.Layer` ones.

    Input shape: `(batch, d)`.
    Output shape: same as the input.
    """

    ranks = (2,)

    def __init__(self, split, hidden_units=256, read_nuisances=True, **kwargs):
        super().__init__(hidden_units=hidden_units, **kwargs)
        if not isinstance(split, int) or split < 1:
            raise ValueError(f"`split` must be a positive integer. Received: split={split!r}")
        self.split = split
        self.read_nuisances = bool(read_nuisances)

    def build(self, input_shape):
        self._check_rank(tuple(input_shape), "input")
        width = input_shape[-1]
        if width is None or not self.split < width:
            raise ValueError(f"SemanticCoupling '{self.name}' splits the first {self.split} entries from the rest "
                             f"and needs more than {self.split} features. Received input shape {tuple(input_shape)}.")
        super(Coupling, self).build(input_shape)
        rest = width - self.split
        self.nuisance_subnet = self._make_subnet(2, rest)  # g
        self.nuisance_subnet.build((None, self.split))
        if self.read_nuisances:
            self.semantic_subnet = self._make_subnet(2, self.split)  # h
            self.semantic_subnet.build((None, rest))

    def _forward(self, x, training):
        s, n = tf.split(x, [self.split, -1], axis=-1)
        if self.read_nuisances:
            s = s + self.semantic_subnet(n, training=training)
        n = n + self.nuisance_subnet(s, training=training)
        return tf.concat([s, n], axis=-1), zeros_log_det(x)

    def _inverse(self, y):
        s, n = tf.split(y, [self.split, -1], axis=-1)
        n = n - self.nuisance_subnet(s, training=False)
        if self.read_nuisances:
            s = s - self.semantic_subnet(n, training=False)
        return tf.concat([s, n], axis=-1), zeros_log_det(y)

    def get_config(self):
        config = {**super().get_config(), "split": self.split, "read_nuisances": self.read_nuisances}
        for unused in ("kernel_size", "global_context"):  # dense subnets only
            config.pop(unused)
        return config
