"""ReversibleSequential gives the gradients, updates and saved models of InvertibleSequential.

Every comparison runs a reversible chain and a plain chain holding the same weights and checks
that the gradients w.r.t. the input and all trainable weights agree: relative L2 error
<= 1e-4 and cosine >= 0.9999 in float32, over all gradients concatenated and per tensor.
Run with `-s` to see the measured agreement.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import layers
from invertible_keras.layers.reversible import ReversibleSequential
from tests.layer_test_case import perturb_weights, run_layer_test

REL_TOL = 1e-4
COS_TOL = 0.9999
# Weight noise that makes zero-initialised subnets non-zero. Much larger noise (0.3) makes the
# perturbed 1x1 convolutions ill-conditioned (gradient norms ~1e5), and the reconstruction
# error of the inverses, amplified by the condition number, then reaches ~1e-4.
PERTURB_SCALE = 0.1
IMAGE = (8, 8, 4)
VECTOR = (6,)
COUPLINGS = {"additive": layers.AdditiveCoupling, "affine": layers.AffineCoupling}
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- helpers
def blocks(coupling, num_blocks=3, batch_norm=False, hidden_units=8):
    """`num_blocks` steps ActNorm -> Invertible1x1Conv -> coupling."""
    out = []
    for i in range(num_blocks):
        out += [layers.ActNorm(), layers.Invertible1x1Conv(seed=i),
                COUPLINGS[coupling](hidden_units=hidden_units, batch_norm=batch_norm)]
    return out


def twin_chains(coupling, x, perturb=False, num_blocks=3, batch_norm=False, seed=0):
    """A plain and a reversible chain with identical weights (ActNorm initialised on `x`)."""
    keras.utils.set_random_seed(seed)  # subnet initialisation: the same numbers on every run
    plain = layers.InvertibleSequential(blocks(coupling, num_blocks, batch_norm))
    plain.initialize(x)
    if perturb:  # non-zero subnets, non-trivial ActNorm and 1x1 convs
        perturb_weights(plain, scale=PERTURB_SCALE, seed=seed)
    reversible = ReversibleSequential.from_config(plain.get_config())
    reversible.build(x.shape)
    reversible.set_weights(plain.get_weights())
    return plain, reversible


def inputs(shape, batch=4, seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal((batch, *shape)), tf.float32)


def flow_loss(y, log_det, uses="both"):
    """A loss with generic gradients: a fixed random projection of y plus the flow NLL."""
    projection = tf.constant(np.random.default_rng(7).standard_normal(y.shape[1:]), y.dtype)
    terms = []
    if uses in ("y", "both"):
        terms.append(tf.reduce_sum(y * projection) + 0.5 * tf.reduce_sum(tf.square(y)))
    if uses in ("log_det", "both"):
        terms.append(-tf.reduce_sum(log_det) + tf.reduce_sum(tf.sin(log_det)))
    return tf.add_n(terms) / y.shape[0]


def gradients(chain, x, uses="both", mode="eager", training=None):
    """Gradients of `flow_loss` w.r.t. [x] + trainable weights, eagerly or in a tf.function."""

    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = flow_loss(*chain.forward_and_log_det(x, training=training), uses=uses)
        return tape.gradient(loss, [x] + chain.trainable_variables)

    if mode == "function":
        run = tf.function(run)
    elif mode == "xla":
        run = tf.function(run, jit_compile=True)
    return [g.numpy() for g in run(x)]


def agreement(actual, expected):
    """(relative L2 error, cosine) of all gradients concatenated, and the worst tensor's."""
    a = np.concatenate([g.ravel() for g in actual]).astype(np.float64)
    b = np.concatenate([g.ravel() for g in expected]).astype(np.float64)
    rel = np.linalg.norm(a - b) / np.linalg.norm(b)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    worst = max(
        np.linalg.norm(ga - gb) / np.linalg.norm(gb) for ga, gb in zip(actual, expected) if np.any(gb)
    )
    return rel, cos, worst


def assert_gradients_agree(actual, expected, what):
    assert len(actual) == len(expected)
    assert all(g is not None for g in actual), f"{what}: missing gradients"
    # A tensor whose true gradient is exactly zero (zero-initialised subnets) must stay ~0.
    for ga, gb in zip(actual, expected):
        if not np.any(gb):
            np.testing.assert_allclose(ga, 0.0, atol=1e-6)
    rel, cos, worst = agreement(actual, expected)
    print(f"\n{what}: relative L2 {rel:.2e}, cosine {cos:.9f}, worst tensor relative L2 {worst:.2e}")
    assert rel <= REL_TOL and worst <= REL_TOL, f"{what}: relative L2 {rel:.2e}, worst tensor {worst:.2e}"
    assert cos >= COS_TOL, f"{what}: cosine {cos}"


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("shape", [IMAGE, VECTOR], ids=["image", "vector"])
@pytest.mark.parametrize("coupling", list(COUPLINGS))
@pytest.mark.parametrize("perturb", [False, True], ids=["init", "perturbed"])
def test_gradients_match_standard_backprop(coupling, shape, perturb):
    x = inputs(shape)
    plain, reversible = twin_chains(coupling, x, perturb=perturb)
    y, log_det = plain.forward_and_log_det(x)
    y_rev, log_det_rev = reversible.forward_and_log_det(x)
    np.testing.assert_array_equal(y_rev, y)
    np.testing.assert_array_equal(log_det_rev, log_det)

    expected = gradients(plain, x)
    name = f"{coupling}/{'image' if len(shape) == 3 else 'vector'}/{'perturbed' if perturb else 'init'}"
    assert_gradients_agree(gradients(reversible, x), expected, f"{name} eager")
    if perturb and len(shape) == 3:  # graph mode once per coupling: tracing dominates the run time
        assert_gradients_agree(gradients(reversible, x, mode="function"), expected, f"{name} tf.function")


@pytest.mark.parametrize("uses", ["y", "log_det"])
def test_loss_of_one_output_only(uses):
    """The upstream gradient of the unused output arrives as None or zeros; both work."""
    x = inputs(IMAGE)
    plain, reversible = twin_chains("affine", x, perturb=True, num_blocks=1)
    for mode in ("eager", "function"):
        assert_gradients_agree(gradients(reversible, x, uses, mode), gradients(plain, x, uses, mode),
                               f"loss of {uses} only, {mode}")


@pytest.mark.slow
def test_xla_gradients_match():
    x = inputs(IMAGE)
    plain, reversible = twin_chains("affine", x, perturb=True)
    assert_gradients_agree(gradients(reversible, x, mode="xla"), gradients(plain, x), "affine/image XLA")


class FlowModel(keras.Model):
    """Trains a chain by maximum likelihood in a custom `train_step` (as the iCE trainer does)."""

    def __init__(self, chain, **kwargs):
        super().__init__(**kwargs)
        self.chain = chain

    def call(self, x, training=None):
        return self.chain(x, training=training)

    def train_step(self, x):
        with tf.GradientTape() as tape:
            y, log_det = self.chain.forward_and_log_det(x, training=True)
            loss = flow_loss(y, log_det)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return {"loss": loss}


def test_adam_steps_in_fit_match():
    """Four Adam steps through `model.fit` (the reference chain eagerly, to save a trace) give
    the same weights; then, at the trained weights (copied, since the sin(log_det) term
    amplifies 1e-7 weight differences), the same gradients."""
    x = inputs(IMAGE, batch=8)
    plain, reversible = twin_chains("affine", x, num_blocks=2)
    for chain in (plain, reversible):
        model = FlowModel(chain)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02), run_eagerly=chain is plain)
        model.fit(x, epochs=2, batch_size=4, shuffle=False, verbose=0)
    # Adam divides by sqrt(v): a gradient entry near zero turns float32 rounding (~1e-7) into a
    # visible step difference; 1e-4 is 0.5 % of one step (lr 0.02), far below a real mismatch.
    for w_plain, w_rev in zip(plain.weights, reversible.weights):
        np.testing.assert_allclose(w_rev.numpy(), w_plain.numpy(), atol=1e-4, err_msg=w_plain.path)
    last = plain.layers[-1].subnet.layers[-1].kernel.numpy()
    assert np.abs(last).max() > 1e-3, "the zero-initialised subnet output layer did not train"
    reversible.set_weights(plain.get_weights())
    assert_gradients_agree(gradients(reversible, x), gradients(plain, x), "affine/image after Adam")


def test_batch_norm_in_training_is_rejected():
    x = inputs(IMAGE)
    _, reversible = twin_chains("additive", x, batch_norm=True)
    with pytest.raises(ValueError, match=r"BatchNormalization .* in AdditiveCoupling .*training=True"):
        reversible.forward_and_log_det(x, training=True)
    with pytest.raises(ValueError, match=r"Received training=None \(undetermined.*expected training=False"):
        reversible.forward_and_log_det(x)
    model = FlowModel(reversible)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="batch normalisation"):
        model.fit(x, epochs=1, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), reversible(x, training=False), atol=1e-6)
    nested = ReversibleSequential([layers.InvertibleSequential(blocks("additive", 1, batch_norm=True))])
    with pytest.raises(ValueError, match="BatchNormalization"):
        nested.forward_and_log_det(x, training=True)


def test_batch_norm_in_inference_mode_matches():
    x = inputs(IMAGE)
    plain, reversible = twin_chains("additive", x, perturb=True, batch_norm=True)
    assert_gradients_agree(gradients(reversible, x, training=False), gradients(plain, x, training=False),
                           "additive+batchnorm inference")


def _contract_chain(dtype):
    return [layers.ActNorm(dtype=dtype), layers.Invertible1x1Conv(seed=0, dtype=dtype),
            layers.AffineCoupling(hidden_units=8, dtype=dtype), layers.Squeeze(dtype=dtype),
            layers.AdditiveCoupling(hidden_units=8, dtype=dtype)]


@keras.saving.register_keras_serializable(package="tests")
class _ReversibleChain(ReversibleSequential):
    """A fixed reversible chain, so the shared contract helper can build it from kwargs."""

    def __init__(self, layers=None, dtype=None, **kwargs):
        super().__init__(layers or _contract_chain(dtype), dtype=dtype, **kwargs)


def test_layer_contract():
    """Round trip, log-det = slogdet of the Jacobian taken through the reversible gradient, fit."""
    run_layer_test(_ReversibleChain, {}, (4, 4, 2), name="ReversibleSequential/chain")


def test_get_config_and_keras_file_round_trip(tmp_path):
    x = inputs(IMAGE)
    _, reversible = twin_chains("affine", x, perturb=True)
    config = reversible.get_config()
    clone = ReversibleSequential.from_config(config)
    assert type(clone) is ReversibleSequential and clone.get_config() == config

    model = keras.Sequential([keras.Input(IMAGE), reversible])
    path = str(tmp_path / "reversible.keras")
    model.save(path)
    loaded = keras.models.load_model(path).layers[-1]
    assert type(loaded) is ReversibleSequential
    np.testing.assert_allclose(loaded(x), reversible(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gradients(loaded, x)[0], gradients(reversible, x)[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- subprocesses
_MIRRORED = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tests.layers import test_reversible as t

x = t.inputs(t.IMAGE, batch=8)
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
with strategy.scope():
    plain, reversible = t.twin_chains("affine", x, perturb=True, num_blocks=2)
expected = t.gradients(plain, x)[1:]  # one device, the whole batch

@tf.function
def replica_gradients(x):
    def step(x):
        with tf.GradientTape() as tape:
            y, log_det = reversible.forward_and_log_det(x)
            # flow_loss divides by the replica batch; rescale to the global batch.
            loss = t.flow_loss(y, log_det) * x.shape[0] / 8
        return tape.gradient(loss, reversible.trainable_variables)
    grads = strategy.run(step, (x,))
    return [strategy.reduce("SUM", g, axis=None) for g in grads]

dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x))
actual = [g.numpy() for g in replica_gradients(next(iter(dataset)))]
rel, cos, worst = map(float, t.agreement(actual, expected))

# Two Adam steps of model.fit under the strategy: the same weights as the plain chain's.
with strategy.scope():
    models = [t.FlowModel(chain) for chain in (plain, reversible)]
    for model in models:
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.02))
for model in models:
    model.fit(x, epochs=2, batch_size=8, verbose=0)
fit_error = max(float(np.max(np.abs(a - b))) for a, b in zip(plain.get_weights(), reversible.get_weights())
                if a.dtype.kind == "f")
print(json.dumps({"rel": rel, "cos": cos, "worst": worst, "replicas": strategy.num_replicas_in_sync,
                  "fit_max_weight_difference": fit_error}))
"""


def _run_python(code, **env):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=_ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_mirrored_strategy_two_replicas_matches_single_device():
    """Two logical CPUs (set before TF initialises devices, hence a subprocess): the summed
    replica gradients equal one device's, and `model.fit` steps equal the plain chain's."""
    result = _run_python(_MIRRORED)
    print(f"\nMirroredStrategy, 2 replicas vs 1 device: {result}")
    assert result["replicas"] == 2
    assert result["rel"] <= REL_TOL and result["worst"] <= REL_TOL and result["cos"] >= COS_TOL, result
    assert result["fit_max_weight_difference"] <= 1e-5, result


_MEMORY = """
import json, tensorflow as tf
# One inter-op thread: otherwise two large conv-gradient temporaries of one block sometimes run
# at once, and the peak over more blocks is a maximum over more chances of that.
tf.config.threading.set_inter_op_parallelism_threads(1)
from tests.layers import test_reversible as t

def gradients(chain, x):
    with tf.GradientTape() as tape:
        loss = t.flow_loss(*chain.forward_and_log_det(x))
    return tape.gradient(loss, chain.trainable_variables)

def peak_mb(cls, num_blocks):
    x = tf.random.stateless_normal((32, 16, 16, 16), seed=(0, 0))
    chain = cls(t.blocks("additive", num_blocks, hidden_units=32))
    chain.initialize(x)
    step = tf.function(lambda x: gradients(chain, x))
    step(x)
    tf.config.experimental.reset_memory_stats("CPU:0")
    in_use = tf.config.experimental.get_memory_info("CPU:0")["current"]
    step(x)
    return (tf.config.experimental.get_memory_info("CPU:0")["peak"] - in_use) / 2**20

print(json.dumps({name: [peak_mb(cls, n) for n in (4, 16)] for name, cls in
                  [("plain", t.layers.InvertibleSequential), ("reversible", t.ReversibleSequential)]}))
"""


@pytest.mark.slow
def test_activation_memory_does_not_grow_with_depth():
    """TF allocator peak of a gradient step at 4 and 16 blocks (the BFC allocator keeps CPU stats)."""
    result = _run_python(_MEMORY, TF_CPU_ALLOCATOR_USE_BFC="true")
    print(f"\npeak MB at 4 and 16 blocks: {result}")
    (plain_4, plain_16), (rev_4, rev_16) = result["plain"], result["reversible"]
    assert plain_16 > 1.5 * plain_4, result  # the measurement sees the stored activations
    assert rev_16 <= 1.1 * rev_4, result
