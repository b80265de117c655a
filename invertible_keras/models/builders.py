"""The fiRevNet architectures of the paper, and `build_model(config)` that picks one by `kind`.

  * `dense`    ("dense", adversarial spheres, appendix B.1)
  * `conv`     ("conv", MNIST / Fashion-MNIST, appendix B.2)
  * `imagenet` ("imagenet", fiRevNet48, appendix B.3)

Each returns a `FiRevNet` (`models/firevnet.py`: the multi-scale chain and its readout) built
from the stages it lists.
"""

import functools
import inspect

from invertible_keras.layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Invertible1x1Conv,
    SemanticCoupling,
    Squeeze,
)
from invertible_keras.models.firevnet import FiRevNet


def dense(input_dim=100, num_classes=2, num_blocks=4, hidden_units=256, mixing=False, seed=None,
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
    return FiRevNet([blocks], (input_dim,), num_classes, reversible_gradients=reversible_gradients,
                    dtype=dtype, name=name)


def conv(input_shape=(28, 28, 1), num_classes=10, num_stages=3, blocks_per_stage=2, filters=32,
         batch_norm=True, kernel_size=3, factor_out=False, global_context=False, semantic_head_units=0,
         semantic_head_clamp=0.0, semantic_head_blocks=0, affine_clamp=0.0,
         seed=None, reversible_gradients=False, dtype=None, name="firevnet_conv"):
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
    with only 4 (factoring out after stage 1 only, a 7x7x8 one with 8), so at 28x28 it is the
    only layout that reads every logit from a DC component without padding. 32x32 inputs
    with factoring out give the authors' layout (16x16x4 -> 8x8x8 -> 4x4x16).

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
        global_context: a global branch in every coupling subnet (`AdditiveCoupling`).
        semantic_head_units: > 0 ends the network in a `SemanticCoupling` of the logits and
            the nuisances with subnets of this width (the logits are then no longer pure DC
            components); 0: none, as in the paper.
        semantic_head_clamp: > 0 makes the head's g affine, scaling z_n by exp(a(logits)) with
            |a| below this bound (`SemanticCoupling(clamp=...)`); 0: additive g.
        semantic_head_blocks: pairs of couplings of z_n's halves conditioned on the logits in the
            head (`SemanticCoupling(nuisance_blocks=...)`); 0: none.
        affine_clamp: > 0 makes every coupling an `AffineCoupling` with |log s| below this
            bound, so the log-determinant varies with the input; 0: additive couplings
            (volume-preserving, the paper's MNIST model).
        seed: base seed of the 1x1 convolutions' random rotations (None: random).
        reversible_gradients, dtype, name: see `FiRevNet`.
    """
    input_shape = _image_shape(input_shape)
    h, w, c = input_shape
    coupling = functools.partial(AffineCoupling, clamp=affine_clamp) if affine_clamp else AdditiveCoupling
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
                coupling(hidden_units=filters, kernel_size=kernel_size, batch_norm=batch_norm,
                         global_context=global_context, dtype=dtype),
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
    head = (SemanticCoupling(split=num_classes, hidden_units=semantic_head_units, clamp=semantic_head_clamp or None,
                             nuisance_blocks=semantic_head_blocks, dtype=dtype, name="semantic_head")
            if semantic_head_units else None)
    return FiRevNet(stages, input_shape, num_classes, factor_out=factor_out, head=head,
                    reversible_gradients=reversible_gradients, dtype=dtype, name=name)


def imagenet(input_shape=(224, 224, 3), num_classes=1000, blocks_per_stage=4,
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
    return FiRevNet(stages, input_shape, num_classes, factor_out=False,
                    reversible_gradients=reversible_gradients, dtype=dtype, name=name)


def _image_shape(input_shape):
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels). Received: input_shape={input_shape!r}")
    return shape


_BUILDERS = {"dense": dense, "conv": conv, "imagenet": imagenet}


def build_model(model_config):
    """Builds a FiRevNet from a config (an `ml_collections.ConfigDict` or a mapping).

    Fields read: `kind` ("dense" | "conv" | "imagenet") and any keyword argument of the
    builder of that kind, with the builder's defaults for missing fields:
      * dense: input_dim, num_classes, num_blocks, hidden_units, reversible_gradients,
        dtype, name (see `dense`);
      * conv: input_shape, num_classes, num_stages, blocks_per_stage, filters, batch_norm,
        kernel_size, factor_out, global_context, semantic_head_units, semantic_head_clamp,
        semantic_head_blocks, affine_clamp, seed, reversible_gradients, dtype, name (see `conv`);
      * imagenet: input_shape, num_classes, blocks_per_stage, filters, input_squeezes, clamp,
        reversible_gradients, dtype, name (see `imagenet`).
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
