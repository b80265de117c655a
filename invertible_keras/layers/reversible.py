"""ReversibleSequential: backpropagation through an invertible chain without stored activations.

A chain F = f_n o ... o f_1 maps x_0 = x to x_n = y, with x_i = f_i(x_{i-1}) and

    log|det J_F(x)| = sum_i l_i(x_{i-1}),      l_i = log|det J_{f_i}|.

For a loss L(y, log_det) the backward pass needs, for every layer i, the input x_{i-1} (to
evaluate the vector-Jacobian products of f_i and l_i) and the upstream gradient
g_i = dL/dx_i. Standard backpropagation stores x_{i-1} and every activation inside f_i (the
hidden layers of a coupling's subnet) during the forward pass, so its memory grows linearly
with the number of layers n. Here only y = x_n is kept; going from i = n down to 1:

    x_{i-1} = f_i^{-1}(x_i)                                       (rebuild the input)
    y_i, l_i = f_i(x_{i-1})        under a local GradientTape     (recompute one layer)
    g_{i-1}  = g_i^T df_i/dx_{i-1} + d_ld * dl_i/dx_{i-1}         (vector-Jacobian products)
    dL/dtheta_i = g_i^T df_i/dtheta_i + d_ld * dl_i/dtheta_i

where g_n = dL/dy and d_ld = dL/dlog_det (the same for every layer, since log_det is a sum).

Why it is exact: each f_i is a bijection with an analytic inverse, so f_i^{-1}(x_i) equals the
stored x_{i-1} up to floating point rounding, and recomputing the forward pass on it gives the
same Jacobians as the stored graph would. This requires every layer to be a fixed function of
its input during the step. Two things break that and are rejected with a `ValueError`:
batch normalisation in training mode (the output depends on the batch statistics and the
inverse always uses the moving statistics, so f_i^{-1} is not the inverse of the training
forward pass; also the recomputation would update the moving averages a second time) and
random layers such as dropout in training mode (the recomputation draws new noise). In
inference mode both are fixed functions and are accepted. ActNorm is fine whether or not it is
initialised: initialisation is an explicit step (`initialize`), never part of the forward pass.
Rounding errors of the reconstruction grow with depth and with the condition numbers of the
layers (affine scales, 1x1 convolutions); `tests/layers/test_reversible.py` bounds the
difference from standard backpropagation.

Memory: live activations during the backward pass are those of one layer (its input, output,
subnet activations and gradients), independent of n; the forward pass keeps only y. The price
is compute: each layer is inverted and run forward once more (`bench/memory.py`; the figures
are in the README's Performance section). Wrapping single
layers would still store every layer's output; the saving comes from wrapping a whole run of
layers in one `ReversibleSequential`.

Implementation: the forward pass is one `tf.custom_gradient` whose gradient function receives
only y (it captures nothing else from the forward pass). In graph mode (`tf.function`,
`model.fit`) the layers are processed strictly one after another in the backward pass by
control dependencies, so the dataflow executor cannot run the cheap chain of inverses ahead and
keep all the x_i alive. The `variables` handed to the gradient function are the backing
`tf.Variable`s (under `tf.distribute`, the mirrored variables), matched to each layer's Keras
weights through `weight.value.ref()`. It works eagerly, in `tf.function`, in `model.fit`,
under `MirroredStrategy` and under XLA (`jit_compile=True`, where memory also stays flat).
"""

import keras
import tensorflow as tf

# Eager `tf.custom_gradient` records the ops inside the function on any active tape, which then
# keeps every activation alive (measured: eager memory grew like standard backprop). Like
# `tf.recompute_grad`, the forward pass runs with recording stopped; there is no public
# equivalent. Should the private module move, gradients stay correct, only eager memory grows.
try:
    from tensorflow.python.eager.record import stop_recording
except ImportError:  # pragma: no cover
    from contextlib import nullcontext as stop_recording

from invertible_keras.layers.sequential import InvertibleSequential

# Layers whose training-mode output is not a fixed function of their input.
_TRAINING_DEPENDENT = (
    keras.layers.BatchNormalization,
    keras.layers.Dropout,  # also SpatialDropout1D/2D/3D
    keras.layers.AlphaDropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
)


@keras.saving.register_keras_serializable(package="invertible_keras")
class ReversibleSequential(InvertibleSequential):
    """An `InvertibleSequential` whose backward pass rebuilds activations by inversion.

    Forward, inverse and log-det are those of `InvertibleSequential`; only the gradient
    computation differs: activation memory is that of one layer instead of all of them.

    Args:
        layers: list of `InvertibleLayer`s. Batch normalisation and random layers (dropout,
            noise) inside them are allowed only in inference mode (`training=False`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Input shape: that of the first layer. Output shape: that of the last.

    First-order gradients only: the rebuilt inputs are constants of the backward pass, so a
    gradient of the gradient (e.g. a gradient penalty) would miss terms.

    Raises:
        ValueError: when called with `training=True`, or with `training=None` (undetermined),
            while a layer contains batch normalisation or a random layer.
    """

    def _forward(self, x, training):
        self._check_recomputable(training)

        @tf.custom_gradient
        def reversible_run(x):
            with stop_recording():
                y, log_det = super(ReversibleSequential, self)._forward(x, training)

            def grad(d_y, d_log_det, variables=None):
                return self._backward(y, d_y, d_log_det, training, variables or [])

            return (y, log_det), grad

        return reversible_run(x)

    def _backward(self, y, d_y, d_log_det, training, variables):
        """Walks the layers in reverse: invert, recompute under a tape, take the VJPs.

        Returns `(dL/dx, [dL/dv for v in variables])`.
        """
        if d_y is None:
            d_y = tf.zeros_like(y)
        if d_log_det is None:
            d_log_det = tf.zeros(tf.shape(y)[:1], y.dtype)
        position = {v.ref(): i for i, v in enumerate(variables)}
        variable_grads = [None] * len(variables)
        matched = set()
        for layer in reversed(self.layers):
            sources = [
                variables[position[w.value.ref()]]
                for w in layer.weights
                if w.value.ref() in position
            ]
            x = tf.stop_gradient(layer.inverse(y))
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(x)
                tape.watch(sources)
                y_again, log_det = layer.forward_and_log_det(x, training=training)
            d_x, *d_sources = tape.gradient(
                [y_again, log_det], [x] + sources, output_gradients=[d_y, d_log_det]
            )
            for v, g in zip(sources, d_sources):
                variable_grads[position[v.ref()]] = g
                matched.add(v.ref())
            # Next layer's inverse only after this layer's gradients: one layer live at a time.
            with tf.control_dependencies([d_x] + [g for g in d_sources if g is not None]):
                y = tf.identity(x)
                d_y = tf.identity(d_x)
        unmatched = [v.name for v in variables if v.ref() not in matched]
        if unmatched:
            raise ValueError(
                f"ReversibleSequential '{self.name}': the forward pass read trainable variables "
                f"{unmatched} that are not weights of its layers, so their gradients cannot be "
                "rebuilt. Expected every variable used in the forward pass to belong to a layer "
                "of the chain."
            )
        return d_y, variable_grads

    def _check_recomputable(self, training):
        if training is not None and not training:
            return
        offenders = [f"{sub.__class__.__name__} '{sub.name}' in {layer.__class__.__name__} '{layer.name}'"
                     for layer in self.layers for sub in _training_dependent_sublayers(layer)]
        if not offenders:
            return
        received = f"training={training!r}"
        if training is None:
            received += " (undetermined: an enclosing Keras call may set training mode)"
        raise ValueError(
            f"ReversibleSequential '{self.name}' recomputes its layers in the backward pass from "
            "inputs rebuilt by inversion, which is exact only if each layer is a fixed function of "
            "its input. In training mode, batch normalisation uses batch statistics (the inverse "
            "uses the moving statistics, and the moving averages would update twice) and random "
            f"layers draw new noise. Found: {', '.join(offenders)}. Received {received}; expected "
            "training=False (inference mode), or use InvertibleSequential (or couplings with "
            "batch_norm=False) to train these layers."
        )


def _training_dependent_sublayers(layer):
    """`layer` and its nested sub-layers (chains, coupling subnets) that `_TRAINING_DEPENDENT` lists."""
    found = [layer] if isinstance(layer, _TRAINING_DEPENDENT) else []
    children = list(getattr(layer, "layers", []))
    if getattr(layer, "subnet", None) is not None:
        children.append(layer.subnet)
    for child in children:
        found += _training_dependent_sublayers(child)
    return found
