"""FiRevNet: a fully invertible RevNet classifier (Jacobsen et al., ICLR 2019, section 3).

The network is a bijection F: x -> z with z flat and exactly as many entries as x. It is a
multi-scale chain of K stages S_1 .. S_K (each an `InvertibleSequential` of squeezes, actnorms,
1x1 convolutions and couplings). With factoring out (Dinh et al., 2017), half of the channels
leave the network after every stage but the last:

    h_0 = x
    y_k = S_k(h_{k-1})
    n_k = y_k[..., :c_k / 2],   h_k = y_k[..., c_k / 2:]          (k < K)
    z   = H([R(y_K), flat(n_1), ..., flat(n_{K-1})])

n_k, the half that leaves, is the half the stage's last coupling changed (a coupling returns
[x2 + f(x1), x1]), as in Glow and the authors' code: the untouched half x1 stays in the network.
R is the readout of the last stage: `DCTPooling` for images (an orthonormal 2D DCT whose first
entries are the DC components, i.e. an invertible global average pooling) and the identity for
vectors. H is the optional `head`, an invertible layer on flat z (`layers.SemanticCoupling`,
which couples the logits with the nuisances), the identity by default. Splitting, flattening,
concatenation and the DCT are orthonormal, so

    log|det dz/dx| = sum_k log|det J_{S_k}(h_{k-1})| + log|det J_H|.

There is no final linear layer: the logits are the first C entries of z (the semantic variables
z_s) and the classifier is argmax softmax(z_s); z_n = z[:, C:] are the nuisances the classifier
never sees. `decode(z_s, z_n)` is the exact inverse (in inference mode), which is what makes
metameric sampling F^-1(z_s(a), z_n(b)) possible without optimisation.

The factor-out is the layer `layers.FactorOut`. The architectures of the paper (dense,
conv, fiRevNet48) and `build_model(config)` are in `models/builders.py`.

Training: `compile(loss=training.objective.Objective(...))` (CE, CE + MLE or iCE) attaches the
objective, with its prior and nuisance classifier, and `fit` runs its step; with any Keras loss
instead, the network trains as an ordinary classifier of its logits.
"""

import itertools
import math

import keras
import tensorflow as tf

from invertible_keras.layers import ActNorm, DCTPooling, FactorOut, InvertibleSequential
from invertible_keras.layers.base import to_tensor


@keras.saving.register_keras_serializable(package="invertible_keras")
class FiRevNet(keras.Model):
    """A fully invertible classifier z = F(x) whose logits are z[:, :num_classes].

    Args:
        stages: list of K non-empty lists of `InvertibleLayer`s; stage k is the chain S_k.
            Squeezes belong to the start of a stage.
        input_shape: shape of one example, without the batch axis, e.g. `(28, 28, 1)` or
            `(100,)`. The model is built for exactly this shape.
        num_classes: C, the number of logits; they must fit in the readout of the last stage.
        factor_out: whether half of the channels leave the network after every stage but the
            last (the multi-scale structure). The half that leaves is the first one, which the
            stage's last coupling changed.
        head: an `InvertibleLayer` on flat z of shape `(batch, latent_dim)`, applied last
            (e.g. `layers.SemanticCoupling(split=num_classes)`); None: the identity.
        reversible_gradients: build every stage as a
            `invertible_keras.layers.reversible.ReversibleSequential`, which rebuilds its
            inputs from its outputs in the backward pass instead of storing activations.
            It rejects batch norm in training mode (the inverse uses inference statistics),
            so pair it with `batch_norm=False`.
        **kwargs: `keras.Model` arguments (`name`, `dtype`, ...).

    Input shape: `(batch, *input_shape)`.
    Output shape: `(batch, num_classes)` from `call`; `(batch, latent_dim)` from
        `forward_and_log_det`, with `latent_dim` = prod(input_shape).
    """

    def __init__(self, stages, input_shape, num_classes, factor_out=True, head=None, reversible_gradients=False,
                 **kwargs):
        super().__init__(**kwargs)
        stages = [list(stage) for stage in stages]
        if not stages or any(not stage for stage in stages):
            raise ValueError(f"`stages` must be a non-empty list of non-empty layer lists. Received: stages={stages!r}")
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) not in (1, 3):
            raise ValueError(
                "`input_shape` must be (features,) or (height, width, channels), without the batch axis. "
                f"Received: input_shape={input_shape}"
            )
        self.input_shape = input_shape
        self.latent_dim = math.prod(input_shape)
        if not isinstance(num_classes, int) or not 1 <= num_classes <= self.latent_dim:
            raise ValueError(
                f"`num_classes` must be an integer in [1, {self.latent_dim}]. Received: num_classes={num_classes!r}"
            )
        self.num_classes = num_classes
        self.factor_out = bool(factor_out)
        self.reversible_gradients = bool(reversible_gradients)

        if self.reversible_gradients:
            # Imported lazily: the reversible wrapper is only needed (and only loaded) on request.
            from invertible_keras.layers.reversible import ReversibleSequential as stage_cls
        else:
            stage_cls = InvertibleSequential
        self.stages = [stage_cls(layers, name=f"stage_{k + 1}", dtype=self.dtype_policy)
                       for k, layers in enumerate(stages)]
        self.head = head
        self._build_stages()

    # ------------------------------------------------------------------ structure
    def _build_stages(self):
        """Builds every stage for its input shape; the shapes are static from here on."""
        shape = (None, *self.input_shape)
        factor_outs = []
        for k, stage in enumerate(self.stages):
            stage.build(shape)
            shape = tuple(stage.compute_output_shape(shape))
            if k < len(self.stages) - 1 and self.factor_out:
                channels = shape[-1]
                if channels % 2:
                    raise ValueError(
                        f"FiRevNet factors out half of the channels after stage {k + 1}, whose output "
                        f"shape {shape} has an odd channel count."
                    )
                factor_out = FactorOut(name=f"factor_out_{k + 1}", dtype=self.dtype_policy)
                factor_out.build(shape)
                factor_outs.append(factor_out)
                shape = tuple(factor_out.compute_output_shape(shape)[0])
        self.factor_outs = factor_outs
        if len(shape) == 4:
            self.readout = DCTPooling(name="readout", dtype=self.dtype_policy)
            self.readout.build(shape)
        else:
            self.readout = None
        self._part_sizes = [math.prod(shape[1:])] + [f.factored_size for f in factor_outs]
        if self.num_classes > self._part_sizes[0]:
            raise ValueError(
                f"`num_classes`={self.num_classes} logits do not fit in the readout of the last stage "
                f"(output shape {shape}, {self._part_sizes[0]} entries)."
            )
        if self.head is not None:
            if not self.head.built:  # a deserialised head comes built
                self.head.build((None, self.latent_dim))
            self.head.check_input_shape((None, self.latent_dim))
        self.built = True

    @property
    def num_nuisances(self):
        """d - C, the width of z_n."""
        return self.latent_dim - self.num_classes

    @property
    def nuisance_parts(self):
        """`{name: (start, stop)}`: the column ranges of z_n that come from each part of z.

        "last_stage" is the readout of the last stage without the logits; "stage_k" the half
        factored out after stage k.
        """
        names = ["last_stage"] + [f"stage_{k + 1}" for k in range(len(self.factor_outs))]
        sizes = [self._part_sizes[0] - self.num_classes] + self._part_sizes[1:]
        bounds = [0] + list(itertools.accumulate(sizes))
        return {name: (start, stop) for name, start, stop in zip(names, bounds, bounds[1:]) if stop > start}

    @property
    def stage_output_shapes(self):
        """Output shape of every stage before factoring out (batch axis None)."""
        shape, shapes = (None, *self.input_shape), []
        for k, stage in enumerate(self.stages):
            shape = tuple(stage.compute_output_shape(shape))
            shapes.append(shape)
            if k < len(self.factor_outs):
                shape = tuple(self.factor_outs[k].compute_output_shape(shape)[0])
        return shapes

    # ------------------------------------------------------------------ forward
    def forward_and_log_det(self, x, training=None):
        """Returns `(z, log|det dz/dx|)`: z of shape `(batch, latent_dim)`, log-det `(batch,)`.

        `training` only switches batch-norm statistics inside coupling subnets.
        """
        h = self._check_input(x)
        log_det = tf.zeros(tf.shape(h)[:1], h.dtype)
        factored = []
        for k, stage in enumerate(self.stages):
            h, stage_log_det = stage.forward_and_log_det(h, training=training)
            log_det += stage_log_det
            if k < len(self.factor_outs):  # log-det 0
                h, z_part = self.factor_outs[k].forward_and_log_det(h)[0]
                factored.append(z_part)
        # The readout is orthonormal (log-det 0) or the identity.
        readout = self.readout.forward_and_log_det(h)[0] if self.readout is not None else h
        z = tf.concat([readout] + factored, axis=-1)
        if self.head is not None:
            z, head_log_det = self.head.forward_and_log_det(z, training=training)
            log_det += head_log_det
        return z, log_det

    def call(self, x, training=None):
        """Logits z_s = z[:, :num_classes]; there is no final linear layer."""
        return self.forward_and_log_det(x, training=training)[0][:, : self.num_classes]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # ------------------------------------------------------------------ training
    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Configures training; `loss` is an objective of `training.objective` or a Keras loss.

        Args:
            optimizer: updates the network (and, under an objective, its prior).
            loss: an `Objective` (CE, CE + MLE or iCE): it is attached to this network (its
                prior and nuisance classifier are made for it) and `fit` runs its step; or any
                Keras loss of `(y, logits)`, for an ordinary classifier.
            **kwargs: `keras.Model.compile` arguments (`metrics`, `jit_compile`, ...).
        """
        objective = loss if callable(getattr(loss, "attach", None)) else None
        super().compile(optimizer=optimizer, loss=None if objective else loss, **kwargs)
        # Not a tracked attribute: the prior and D_phi stay out of the network's weights,
        # its .keras file and its export (`run_dir.training_checkpoint` saves them).
        object.__setattr__(self, "_objective", objective)
        if objective is not None:
            objective.attach(self)

    @property
    def objective(self):
        """The `Objective` this network was compiled with, or None."""
        return getattr(self, "_objective", None)

    @property
    def metrics(self):
        return self.objective.metrics if self.objective is not None else super().metrics

    def train_step(self, data):
        return self.objective.train_step(data) if self.objective is not None else super().train_step(data)

    def test_step(self, data):
        return self.objective.test_step(data) if self.objective is not None else super().test_step(data)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 runs a symbolic build at the start of `fit` under a strategy, reducing a
        # sample batch with a collective MEAN that fails under MultiWorkerMirroredStrategy. An
        # objective builds every variable and optimizer state in `compile`, so skip it then.
        if self.objective is None:
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def encode(self, x):
        """Returns `(z_s, z_n)` = `(z[:, :C], z[:, C:])` in inference mode."""
        z = self.forward_and_log_det(x, training=False)[0]
        return z[:, : self.num_classes], z[:, self.num_classes :]

    # ------------------------------------------------------------------ inverse
    def inverse_and_log_det(self, z):
        """Returns `(x, log|det dx/dz|)` for flat `z` of shape `(batch, latent_dim)`."""
        z = to_tensor(self, z)
        if len(z.shape) != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"FiRevNet '{self.name}' expects z of shape (batch, {self.latent_dim}). "
                f"Received z shape {tuple(z.shape)}."
            )
        log_det = tf.zeros(tf.shape(z)[:1], z.dtype)
        if self.head is not None:
            z, log_det = self.head.inverse_and_log_det(z)
        parts = tf.split(z, self._part_sizes, axis=-1)
        h = self.readout.inverse(parts[0]) if self.readout is not None else parts[0]
        for k in reversed(range(len(self.stages))):
            if k < len(self.factor_outs):
                h = self.factor_outs[k].inverse((h, parts[k + 1]))
            h, stage_log_det = self.stages[k].inverse_and_log_det(h)
            log_det += stage_log_det
        return h, log_det

    def inverse(self, z):
        """x = F^-1(z), the exact inverse of the inference-mode forward pass."""
        return self.inverse_and_log_det(z)[0]

    def decode(self, z_s, z_n):
        """x = F^-1([z_s, z_n]); `z_s` of shape `(batch, C)`, `z_n` of shape `(batch, d - C)`."""
        z_s, z_n = to_tensor(self, z_s), to_tensor(self, z_n)
        for what, value, width in (("z_s", z_s, self.num_classes), ("z_n", z_n, self.num_nuisances)):
            if len(value.shape) != 2 or value.shape[-1] != width:
                raise ValueError(
                    f"FiRevNet '{self.name}'.decode expects {what} of shape (batch, {width}). "
                    f"Received {what} shape {tuple(value.shape)}."
                )
        if None not in (z_s.shape[0], z_n.shape[0]) and z_s.shape[0] != z_n.shape[0]:
            raise ValueError(
                f"FiRevNet '{self.name}'.decode expects z_s and z_n with the same batch size. "
                f"Received z_s shape {tuple(z_s.shape)} and z_n shape {tuple(z_n.shape)}."
            )
        return self.inverse(tf.concat([z_s, z_n], axis=-1))

    # ------------------------------------------------------------------ init
    def _actnorms(self):
        stack, found = list(self.stages), []
        while stack:
            layer = stack.pop()
            if isinstance(layer, ActNorm):
                found.append(layer)
            stack.extend(getattr(layer, "layers", []))
        return found

    @property
    def is_initialized(self):
        return all(layer.is_initialized for layer in self._actnorms())

    def initialize(self, x):
        """ActNorm data-dependent initialisation through all stages, from a batch `x` (eager).

        Run once before training; a no-op when every ActNorm is already initialised (e.g. a
        restored model), so it is safe to call unconditionally.
        """
        if self.is_initialized:
            return
        h = self._check_input(x)
        for k, stage in enumerate(self.stages):
            stage.initialize(h)
            h = stage.forward_and_log_det(h, training=False)[0]
            if k < len(self.factor_outs):
                h = self.factor_outs[k].forward_and_log_det(h)[0][0]

    # ------------------------------------------------------------------ checks
    def _check_input(self, x):
        x = to_tensor(self, x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"FiRevNet '{self.name}' was built for inputs of shape (batch, "
                f"{', '.join(map(str, self.input_shape))}). Received input shape {tuple(x.shape)}."
            )
        return x

    # ------------------------------------------------------------------ config
    def get_config(self):
        return {
            **super().get_config(),
            "stages": [[keras.saving.serialize_keras_object(layer) for layer in stage.layers]
                       for stage in self.stages],
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "factor_out": self.factor_out,
            "head": None if self.head is None else keras.saving.serialize_keras_object(self.head),
            "reversible_gradients": self.reversible_gradients,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["stages"] = [[keras.saving.deserialize_keras_object(layer) for layer in stage]
                            for stage in config["stages"]]
        if config.get("head") is not None:
            config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)

    def get_build_config(self):
        return {}  # built in __init__ from `input_shape`

    def build_from_config(self, config):
        pass
