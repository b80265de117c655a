"""FiRevNet: a fully invertible RevNet classifier (Jacobsen et al., ICLR 2019, section 3).

The network is a bijection F: x -> z with z flat and exactly as many entries as x. It is a
multi-scale chain of K stages S_1 .. S_K (each an `InvertibleSequential` of squeezes, actnorms,
1x1 convolutions and couplings). With factoring out (Dinh et al., 2017), half of the channels
leave the network after every stage but the last:

    h_0 = x
    y_k = S_k(h_{k-1})
    n_k = y_k[..., :c_k / 2],   h_k = y_k[..., c_k / 2:]          (k < K)
    z   = [R(y_K), flat(n_1), ..., flat(n_{K-1})]

n_k, the half that leaves, is the half the stage's last coupling changed (a coupling returns
[x2 + f(x1), x1]), as in Glow and the authors' code: the untouched half x1 stays in the network.
R is the readout of the last stage: `DCTPooling` for images (an orthonormal 2D DCT whose first
entries are the DC components, i.e. an invertible global average pooling) and the identity for
vectors. Splitting, flattening, concatenation and the DCT are orthonormal, so

    log|det dz/dx| = sum_k log|det J_{S_k}(h_{k-1})|.

There is no final linear layer: the logits are the first C entries of z (the semantic variables
z_s) and the classifier is argmax softmax(z_s); z_n = z[:, C:] are the nuisances the classifier
never sees. `decode(z_s, z_n)` is the exact inverse (in inference mode), which is what makes
metameric sampling F^-1(z_s(a), z_n(b)) possible without optimisation.

Variants (classmethods, all reachable from `build_model(config)` by `config.kind`):
  * `FiRevNet.dense`    ("dense", adversarial spheres, appendix B.1)
  * `FiRevNet.conv`     ("conv", MNIST / Fashion-MNIST, appendix B.2)
  * `FiRevNet.imagenet` ("imagenet", fiRevNet48, appendix B.3)
"""

import inspect
import itertools
import math

import keras
import tensorflow as tf

from invertible_keras.layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    DCTPooling,
    Invertible1x1Conv,
    InvertibleSequential,
    Squeeze,
)
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

    def __init__(self, stages, input_shape, num_classes, factor_out=True, reversible_gradients=False,
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
        self._build_stages()

    # ------------------------------------------------------------------ structure
    def _build_stages(self):
        """Builds every stage for its input shape; the shapes are static from here on."""
        shape = (None, *self.input_shape)
        self._kept_channels, self._factored_shapes = [], []
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
                self._kept_channels.append(channels // 2)
                self._factored_shapes.append(shape[1:-1] + (channels - channels // 2,))
                shape = shape[:-1] + (channels // 2,)
        if len(shape) == 4:
            self.readout = DCTPooling(name="readout", dtype=self.dtype_policy)
            self.readout.build(shape)
        else:
            self.readout = None
        self._part_sizes = [math.prod(shape[1:])] + [math.prod(s) for s in self._factored_shapes]
        if self.num_classes > self._part_sizes[0]:
            raise ValueError(
                f"`num_classes`={self.num_classes} logits do not fit in the readout of the last stage "
                f"(output shape {shape}, {self._part_sizes[0]} entries)."
            )
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
        names = ["last_stage"] + [f"stage_{k + 1}" for k in range(len(self._factored_shapes))]
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
            if k < len(self._kept_channels):
                shape = shape[:-1] + (self._kept_channels[k],)
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
            if k < len(self._kept_channels):
                drop = h.shape[-1] - self._kept_channels[k]
                factored.append(tf.reshape(h[..., :drop], [-1, self._part_sizes[k + 1]]))
                h = h[..., drop:]
        # The readout is orthonormal (log-det 0) or the identity.
        readout = self.readout.forward_and_log_det(h)[0] if self.readout is not None else h
        return tf.concat([readout] + factored, axis=-1), log_det

    def call(self, x, training=None):
        """Logits z_s = z[:, :num_classes]; there is no final linear layer."""
        return self.forward_and_log_det(x, training=training)[0][:, : self.num_classes]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

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
        parts = tf.split(z, self._part_sizes, axis=-1)
        h = self.readout.inverse(parts[0]) if self.readout is not None else parts[0]
        log_det = tf.zeros(tf.shape(z)[:1], z.dtype)
        for k in reversed(range(len(self.stages))):
            if k < len(self._kept_channels):
                h = tf.concat([tf.reshape(parts[k + 1], (-1, *self._factored_shapes[k])), h], axis=-1)
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
            if k < len(self._kept_channels):
                h = h[..., h.shape[-1] - self._kept_channels[k]:]

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
            "reversible_gradients": self.reversible_gradients,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["stages"] = [[keras.saving.deserialize_keras_object(layer) for layer in stage]
                            for stage in config["stages"]]
        return cls(**config)

    def get_build_config(self):
        return {}  # built in __init__ from `input_shape`

    def build_from_config(self, config):
        pass

    # ------------------------------------------------------------------ variants
    @classmethod
    def dense(cls, input_dim=100, num_classes=2, num_blocks=4, hidden_units=256, mixing=False, seed=None,
              reversible_gradients=False, dtype=None, name="firevnet_dense"):
        """The fully connected fiRevNet of the spheres experiment (appendix B.1).

        z = A_n o ... o A_1 (x) with `num_blocks` additive couplings, each a ReLU bottleneck MLP
        f (two hidden layers of `hidden_units`), no batch norm, volume preserving
        (log|det J| = 0). By default no permutation or mixing is inserted between blocks:
        every coupling already swaps its halves (RevNet), so consecutive blocks update
        alternate halves and each f is dense over its half; the paper's model is volume
        preserving. Variables in the same half then stay in the same half, so a map that
        combines two of them (x_2 - x_1) takes several blocks; `mixing=True` puts a learned
        `Invertible1x1Conv` (a dense LU-parameterised matrix) before every coupling, as Glow.
        The logits z[:, :C] are taken from the half written by the last block.

        Args:
            input_dim: d, the dimension of the spheres (even).
            num_classes: C (2 spheres).
            num_blocks: number of additive coupling blocks (paper: 4).
            hidden_units: width of the hidden layers of every coupling subnet (the paper does
                not give it; 256 > d/2 = 50).
            mixing: a learned invertible linear mixing before every coupling.
            seed: base seed of the mixings' random rotations (None: random).
            reversible_gradients, dtype, name: see `FiRevNet`.
        """
        blocks = []
        for b in range(num_blocks):
            if mixing:
                blocks.append(Invertible1x1Conv(seed=None if seed is None else seed + b, dtype=dtype))
            blocks.append(AdditiveCoupling(hidden_units=hidden_units, batch_norm=False, dtype=dtype))
        return cls([blocks], (input_dim,), num_classes, reversible_gradients=reversible_gradients,
                   dtype=dtype, name=name)

    @classmethod
    def conv(cls, input_shape=(28, 28, 1), num_classes=10, num_stages=3, blocks_per_stage=2, filters=32,
             batch_norm=True, kernel_size=3, factor_out=False, seed=None, reversible_gradients=False,
             dtype=None, name="firevnet_conv"):
        """The convolutional fiRevNet of the MNIST experiment (appendix B.2).

        Every stage starts with a squeeze when its height and width are even, then runs
        `blocks_per_stage` steps ActNorm -> Invertible1x1Conv -> AdditiveCoupling (Glow-style
        steps with RevNet additive blocks); with `factor_out`, half of the channels leave
        into z after every stage but the last; the readout is DCTPooling of the last stage.

        Every logit must be a DC component (an invertible global average pooling, as in the
        paper), so the last stage needs at least `num_classes` channels; the builder checks it.
        28x28x1 images are not padded: the model stays a bijection of exactly the data's 784
        pixels, so `decode` and metamers return images in the data's own space. Without
        factoring out (the default) the stages are 14x14x4 -> 7x7x16 -> 7x7x16 and the 10
        logits are 10 of the 16 DC components; factoring out would leave a 7x7x4 last stage
        with only 4. 32x32 inputs with factoring out give the authors' layout (16x16x4 ->
        8x8x8 -> 4x4x16). RESULTS.md compares the layouts.

        Args:
            input_shape: `(H, W, C)` of one image.
            num_classes: C.
            num_stages: K (paper: 3).
            blocks_per_stage: steps per stage (paper: 16).
            filters: hidden filters of every coupling subnet (paper: 128).
            batch_norm: batch norm inside the coupling subnets (the paper's MNIST model); the
                inverse uses inference statistics.
            kernel_size: kernel size of the subnets' outer convolutions.
            factor_out: factor half of the channels out after every stage but the last.
            seed: base seed of the 1x1 convolutions' random rotations (None: random).
            reversible_gradients, dtype, name: see `FiRevNet`.
        """
        input_shape = _image_shape(input_shape)
        h, w, c = input_shape
        stages = []
        for k in range(num_stages):
            layers = []
            if h % 2 == 0 and w % 2 == 0:
                layers.append(Squeeze(dtype=dtype))
                h, w, c = h // 2, w // 2, c * 4
            for b in range(blocks_per_stage):
                layers += [
                    ActNorm(dtype=dtype),
                    Invertible1x1Conv(seed=None if seed is None else seed + k * blocks_per_stage + b, dtype=dtype),
                    AdditiveCoupling(hidden_units=filters, kernel_size=kernel_size, batch_norm=batch_norm, dtype=dtype),
                ]
            stages.append(layers)
            if factor_out and k < num_stages - 1:
                c //= 2  # the model checks that c is even
        if c < num_classes:
            raise ValueError(
                f"The last stage of this layout has {c} channels, so only {c} of the {num_classes} logits "
                "would be DC components (global average pooling). "
                + ("Use factor_out=False or a larger input. " if factor_out else
                   "Use an input whose height and width can be squeezed (even sizes). ")
                + f"Received: input_shape={input_shape}, num_stages={num_stages}, factor_out={factor_out}.")
        return cls(stages, input_shape, num_classes, factor_out=factor_out,
                   reversible_gradients=reversible_gradients, dtype=dtype, name=name)

    @classmethod
    def imagenet(cls, input_shape=(224, 224, 3), num_classes=1000, blocks_per_stage=4,
                 filters=(64, 128, 256, 512), input_squeezes=2, clamp=2.0, reversible_gradients=False,
                 dtype=None, name="firevnet48"):
        """fiRevNet48, the ImageNet model (appendix B.3).

        Two input squeezes (224x224x3 -> 56x56x48), then 4 stages of `blocks_per_stage` steps
        ActNorm -> coupling with a squeeze before stages 2-4 (56x56x48 -> 28x28x192 ->
        14x14x768 -> 7x7x3072); additive couplings in stages 1-3 and affine couplings in stage
        4; no factoring out (as i-RevNet); DCTPooling readout, whose first 1000 entries (the
        logits) are the DC components, i.e. an invertible global average pooling. "48" counts
        the 3 convolutions of each of the 16 coupling subnets. No 1x1 convolutions: the paper
        does not use them here, and at 3072 channels they would cost 9.4M weights and a
        triangular solve each.

        Args:
            input_shape: `(H, W, 3)`, H and W divisible by 2**(input_squeezes + 3); 64x64 keeps
                the same channel counts and parameters for tests.
            num_classes: C.
            blocks_per_stage: steps per stage (paper: 4).
            filters: hidden filters of the coupling subnets, one int or one per stage; the
                default follows ResNet-50's bottleneck widths (the paper does not give them).
            input_squeezes: squeezes before stage 1 (paper: 2).
            clamp: bound on |log s| of the affine couplings of stage 4.
            reversible_gradients, dtype, name: see `FiRevNet`.
        """
        input_shape = _image_shape(input_shape)
        filters = [filters] * 4 if isinstance(filters, int) else list(filters)
        if len(filters) != 4:
            raise ValueError(f"`filters` must be an int or 4 ints (one per stage). Received: filters={filters!r}")
        stages = []
        for k in range(4):
            layers = [Squeeze(dtype=dtype) for _ in range(input_squeezes if k == 0 else 1)]
            for _ in range(blocks_per_stage):
                coupling = (AffineCoupling(hidden_units=filters[k], clamp=clamp, dtype=dtype) if k == 3
                            else AdditiveCoupling(hidden_units=filters[k], dtype=dtype))
                layers += [ActNorm(dtype=dtype), coupling]
            stages.append(layers)
        return cls(stages, input_shape, num_classes, factor_out=False,
                   reversible_gradients=reversible_gradients, dtype=dtype, name=name)


def _image_shape(input_shape):
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape!r}")
    return shape


_BUILDERS = {"dense": FiRevNet.dense, "conv": FiRevNet.conv, "imagenet": FiRevNet.imagenet}


def build_model(model_config):
    """Builds a FiRevNet from a config (an `ml_collections.ConfigDict` or a mapping).

    Fields read: `kind` ("dense" | "conv" | "imagenet") and any keyword argument of the
    builder of that kind, with the builder's defaults for missing fields:
      * dense: input_dim, num_classes, num_blocks, hidden_units, reversible_gradients,
        dtype, name (see `FiRevNet.dense`);
      * conv: input_shape, num_classes, num_stages, blocks_per_stage, filters, batch_norm,
        kernel_size, seed, reversible_gradients, dtype, name (see `FiRevNet.conv`);
      * imagenet: input_shape, num_classes, blocks_per_stage, filters, input_squeezes, clamp,
        reversible_gradients, dtype, name (see `FiRevNet.imagenet`).
    Any other field is an error, so that a misspelt hyperparameter never goes unnoticed.
    """
    fields = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
    kind = fields.pop("kind", None)
    if kind not in _BUILDERS:
        raise ValueError(f"`kind` must be one of {sorted(_BUILDERS)}. Received: kind={kind!r}")
    builder = _BUILDERS[kind]
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(fields) - accepted)
    if unknown:
        raise ValueError(
            f"Unknown model config fields for kind={kind!r}: {unknown}. Accepted: {sorted(accepted)}."
        )
    for key, value in fields.items():
        if isinstance(value, list):
            fields[key] = tuple(value)
    return builder(**fields)
