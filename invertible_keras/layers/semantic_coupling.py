"""The semantic coupling: a fiRevNet's last layer, between the logits and the nuisances of flat z.

    z = [s, n],  s = z[:, :C] (the logits z_s),  n = z[:, C:] (the nuisances z_n)

    s' = s + h(n)        the logits read all of z_n, not only the DC components they hold
    n' = n + g(s')       z_n gains (or, trained, loses) any function of the logits
    inverse:  n = n' - g(s'),  s = s' - h(n)                        log|det J| = 0

or, with `clamp`, an affine g that also rescales z_n by a function of the logits:

    n' = n * exp(a(s')) + g(s'),  |a| < clamp (`coupling.soft_clamp`)   log|det J| = sum a(s')

and, with `nuisance_blocks=k`, k pairs of additive couplings of the two halves of n, each
conditioned on the logits (a class-conditional flow on z_n):

    n = [n1, n2]:  n2 <- n2 + a_i([s', n1]),  n1 <- n1 + b_i([s', n2])      i = 1..k
    inverse:  n1 <- n1 - b_i([s', n2]),  n2 <- n2 - a_i([s', n1])           i = k..1

Additive couplings with the uneven split C | d - C; h, g, a_i, b_i are dense ReLU bottlenecks
(`Coupling`'s dense subnet), zero-initialised, so a new layer is the identity.

Why: iCE asks that z_n carry no class information while z_s carries all of it. A multi-scale
chain of local couplings can only meet that by computing, in every entry of z_n, what depends
on the class; here g can subtract from z_n what the logits predict of it, and h lets the logits
use the whole representation. The paper's fiRevNets read the logits straight from the DC
components of the last stage; with this layer they are still z[:, :C] of a bijection with an
exact inverse, but no longer pure DC components (see docs/design.md).

Why a scale: with volume-preserving layers only, log|det J| is the same for every input, so
the differential entropy of z given the class equals that of x given the class, plus a constant.
If z_n is independent of the class, its entropy is the same for every class, and the whole
difference between the classes' entropies must sit in the C entries of z_s. On Fashion-MNIST the
differences are large (RESULTS.md), too large for z_s to hold. An a(s') that depends on the class
lets the Jacobian carry them instead.
"""

import keras
import tensorflow as tf

from invertible_keras.layers.base import zeros_log_det
from invertible_keras.layers.coupling import Coupling, soft_clamp


@keras.saving.register_keras_serializable(package="invertible_keras")
class SemanticCoupling(Coupling):
    """Couples the first `split` entries of a flat vector with the rest, both ways (see module).

    Args:
        split: C, the number of leading entries (the logits); 1 <= C < d.
        hidden_units: width of the two hidden layers of h and of g.
        read_nuisances: also s' = s + h(n); False keeps only n' = n + g(s).
        clamp: None: additive g (volume-preserving); a positive number: affine g, with the
            log scale a(s') of z_n bounded by it.
        nuisance_blocks: pairs of additive couplings of z_n's halves conditioned on the logits,
            after g.
        **kwargs: `Coupling` arguments (`batch_norm`, `zero_init`) and `keras.layers.Layer` ones.

    Input shape: `(batch, d)`.
    Output shape: same as the input.
    """

    ranks = (2,)

    def __init__(self, split, hidden_units=256, read_nuisances=True, clamp=None, nuisance_blocks=0, **kwargs):
        super().__init__(hidden_units=hidden_units, **kwargs)
        if not isinstance(split, int) or split < 1:
            raise ValueError(f"`split` must be a positive integer. Received: split={split!r}")
        if clamp is not None and not clamp > 0:
            raise ValueError(f"`clamp` must be None (additive) or positive (affine). Received: clamp={clamp!r}")
        if not isinstance(nuisance_blocks, int) or nuisance_blocks < 0:
            raise ValueError("`nuisance_blocks` must be a non-negative integer. "
                             f"Received: nuisance_blocks={nuisance_blocks!r}")
        self.split, self.nuisance_blocks = split, nuisance_blocks
        self.read_nuisances = bool(read_nuisances)
        self.clamp = None if clamp is None else float(clamp)

    def build(self, input_shape):
        self._check_rank(tuple(input_shape), "input")
        width = input_shape[-1]
        if width is None or not self.split < width:
            raise ValueError(f"SemanticCoupling '{self.name}' splits the first {self.split} entries from the rest "
                             f"and needs more than {self.split} features. Received input shape {tuple(input_shape)}.")
        super(Coupling, self).build(input_shape)
        rest = width - self.split
        self.nuisance_subnet = self._make_subnet(2, rest if self.clamp is None else 2 * rest)  # g (and a)
        self.nuisance_subnet.build((None, self.split))
        if self.read_nuisances:
            self.semantic_subnet = self._make_subnet(2, self.split)  # h
            self.semantic_subnet.build((None, rest))
        self.halves = (rest // 2, rest - rest // 2)
        self.conditional_subnets = []  # (a_i, b_i): a_i updates n2 from [s', n1], b_i n1 from [s', n2]
        for _ in range(self.nuisance_blocks):
            pair = (self._make_subnet(2, self.halves[1]), self._make_subnet(2, self.halves[0]))
            pair[0].build((None, self.split + self.halves[0]))
            pair[1].build((None, self.split + self.halves[1]))
            self.conditional_subnets.append(pair)

    def _forward(self, x, training):
        s, n = tf.split(x, [self.split, -1], axis=-1)
        if self.read_nuisances:
            s = s + self.semantic_subnet(n, training=training)
        log_scale, shift = self._scale_and_shift(s, training)
        if log_scale is None:
            n, log_det = n + shift, zeros_log_det(x)
        else:
            n, log_det = n * tf.exp(log_scale) + shift, tf.reduce_sum(log_scale, axis=-1)
        if self.conditional_subnets:
            n1, n2 = tf.split(n, self.halves, axis=-1)
            for a, b in self.conditional_subnets:
                n2 = n2 + a(tf.concat([s, n1], axis=-1), training=training)
                n1 = n1 + b(tf.concat([s, n2], axis=-1), training=training)
            n = tf.concat([n1, n2], axis=-1)
        return tf.concat([s, n], axis=-1), log_det

    def _inverse(self, y):
        s, n = tf.split(y, [self.split, -1], axis=-1)
        if self.conditional_subnets:
            n1, n2 = tf.split(n, self.halves, axis=-1)
            for a, b in reversed(self.conditional_subnets):
                n1 = n1 - b(tf.concat([s, n2], axis=-1), training=False)
                n2 = n2 - a(tf.concat([s, n1], axis=-1), training=False)
            n = tf.concat([n1, n2], axis=-1)
        log_scale, shift = self._scale_and_shift(s, False)
        if log_scale is None:
            n, log_det = n - shift, zeros_log_det(y)
        else:
            n, log_det = (n - shift) * tf.exp(-log_scale), -tf.reduce_sum(log_scale, axis=-1)
        if self.read_nuisances:
            s = s - self.semantic_subnet(n, training=False)
        return tf.concat([s, n], axis=-1), log_det

    def _scale_and_shift(self, s, training):
        h = self.nuisance_subnet(s, training=training)
        if self.clamp is None:
            return None, h
        raw, shift = tf.split(h, 2, axis=-1)
        return soft_clamp(raw, self.clamp), shift

    def get_config(self):
        config = {**super().get_config(), "split": self.split, "read_nuisances": self.read_nuisances,
                  "clamp": self.clamp, "nuisance_blocks": self.nuisance_blocks}
        for unused in ("kernel_size", "global_context"):  # dense subnets only
            config.pop(unused)
        return config
