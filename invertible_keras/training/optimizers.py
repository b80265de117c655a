"""Adam and Adamax with TensorFlow's fused update kernels, and `make_optimizer` by name.

Keras 3 writes an optimizer's update as a dozen element-wise ops per variable; a fiRevNet has
hundreds of small variables (every ActNorm, LU factor and subnet layer), so on a CPU a training
step runs thousands of tiny ops whose dispatch costs more than their arithmetic. `FusedAdam`
and `FusedAdamax` are the Keras optimizers with the same slots, hyperparameters, config and
checkpoints, whose per-variable update is one TensorFlow kernel (`ResourceApplyAdam`,
`ResourceApplyAdaMax`) computing the same formula. Learning-rate schedules, gradient clipping,
decoupled weight decay, EMA and loss scaling stay Keras's own (they run before `update_step`);
AMSGrad and sparse gradients fall back to Keras's update. On another backend than TensorFlow
they are Keras's optimizers unchanged.
"""

import keras
import tensorflow as tf


def _fused(gradient, variable):
    return keras.backend.backend() == "tensorflow" and not isinstance(gradient, tf.IndexedSlices)


def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def _hyper(optimizer, variable, learning_rate):
    dtype = variable.dtype
    step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1 = tf.cast(optimizer.beta_1, dtype)
    return dict(beta1_power=tf.pow(beta_1, step), lr=tf.cast(learning_rate, dtype), beta1=beta_1,
                beta2=tf.cast(optimizer.beta_2, dtype), epsilon=tf.cast(optimizer.epsilon, dtype)), step


@keras.saving.register_keras_serializable(package="invertible_keras")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose update of a variable is one `ResourceApplyAdam` kernel."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or not _fused(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        hyper, step = _hyper(self, variable, learning_rate)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta2_power=tf.pow(hyper["beta2"], step), grad=tf.cast(gradient, variable.dtype), **hyper)


@keras.saving.register_keras_serializable(package="invertible_keras")
class FusedAdamax(keras.optimizers.Adamax):
    """`keras.optimizers.Adamax` whose update of a variable is one `ResourceApplyAdaMax` kernel."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fused(gradient, variable):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        hyper, _ = _hyper(self, variable, learning_rate)
        tf.raw_ops.ResourceApplyAdaMax(
            var=_handle(variable), m=_handle(self._m[index]), v=_handle(self._u[index]),
            grad=tf.cast(gradient, variable.dtype), **hyper)


def make_optimizer(name, learning_rate, weight_decay=0.0, momentum=0.9, clipnorm=None):
    """An optimizer by name ("adam", "adamax": the fused ones; "sgd"); weight decay decoupled when > 0."""
    kwargs = {"learning_rate": learning_rate, "clipnorm": clipnorm}
    if weight_decay:
        kwargs["weight_decay"] = weight_decay
    if name == "adam":
        return FusedAdam(**kwargs)
    if name == "adamax":
        return FusedAdamax(**kwargs)
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum, **kwargs)
    raise ValueError(f"`train.optimizer` must be 'adam', 'adamax' or 'sgd'. Received: {name!r}")
