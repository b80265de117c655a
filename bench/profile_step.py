"""Where the time of one CE training step of the conv fiRevNet goes, and its kernel floor.

Profiles `--steps` calls of `FiRevNet.compile(Adam, sparse CE from logits)` + `train_on_batch`
(the step `bench/peer_freia.py` times against FrEIA; `--step objective` profiles the `Objective`'s
CE step instead, which also steps the nuisance classifier D_phi and fits the prior) with the
TensorFlow profiler, reads the trace (`*.xplane.pb`) and sums the durations of the executed
TensorFlow ops per category:

  conv kernels         Conv2D forward (oneDNN fuses bias and ReLU) and both backprops
  1x1 conv as matmul   the channel mixing x @ W of `Invertible1x1Conv` (Tensordot MatMuls)
  slice / concat       splitting halves, factor-out, their gradients (StridedSlice(Grad),
                       ConcatV2, Slice, Split), squeeze, transposes and copies
  elementwise          ActNorm, the coupling's add, ReLU gradients, log-det sums and fills
  1x1 weight from LU   composing W = P L (U + diag s): band masks, diag, the c x c MatMuls
  DCT readout          RFFT / IRFFT and friends of `DCTPooling`
  loss                 the cross entropy
  optimizer            Adam's update ops (`adam/...`, `fused_adam/...`, the fused ResourceApplyAdam
                       kernels, variable assignments)
  D_phi, prior         (`--step objective`) the nuisance classifier's and the prior's ops

Op durations are thread time: the executor runs independent ops on both cores at once, so
they add up to more than the wall time. The wall time of a step splits into the graph
function (`one_step_on_data`, traced) and the Python around it (`train_on_batch`: Keras's
data handling, callbacks, metrics). The executor's own bookkeeping is the time of its
`ExecutorState::Process` events not spent inside an op.

The kernel floor is measured, not estimated: a `tf.function` that runs only the step's
convolutions and channel-mixing matmuls, forward and both backward products, on tensors of
the same shapes and nothing else, timed alternating with the real step (`bench/speed.py`'s
`run_cases`); the ratio step / floor is paired per round. Nothing asserts on time.

Usage:
    python -m bench.profile_step                   # 32 filters, 4 couplings per stage
    python -m bench.profile_step --size paper      # 128 filters, 16 couplings per stage
    python -m bench.profile_step --step objective --size small
"""

import argparse
import collections
import glob
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from bench.peer_freia import INPUT_SHAPE, NUM_CLASSES, SIZES, build_ours  # noqa: E402
from bench.speed import paired_ratios, run_cases  # noqa: E402
from invertible_keras.layers import Invertible1x1Conv, Squeeze  # noqa: E402
from invertible_keras.layers.coupling import Coupling  # noqa: E402

CATEGORIES = ("conv kernels", "1x1 conv as matmul", "slice / concat", "elementwise", "1x1 weight from LU",
              "DCT readout", "loss", "optimizer", "D_phi", "prior", "other")
KERNELS = ("conv kernels", "1x1 conv as matmul")
_SLICE_CONCAT = {"StridedSlice", "StridedSliceGrad", "Slice", "ConcatV2", "Split", "SplitV", "Pack", "Unpack",
                 "SpaceToDepth", "DepthToSpace", "Transpose", "_MklTranspose", "Reshape", "Identity",
                 "GatherV2", "ZerosLike", "Pad", "PadV2", "TensorScatterUpdate"}
_ELEMENTWISE = {"AddV2", "Add", "Sub", "Mul", "Exp", "Neg", "ReluGrad", "Relu", "BiasAdd", "BiasAddGrad",
                "Sum", "Fill", "Prod", "Cast", "Shape", "AddN", "RealDiv", "BroadcastTo", "Tile", "Maximum",
                "_MklAdd", "_MklAddV2", "_MklMul", "_MklSub", "_FusedMul"}
_LU = {"MatrixBandPart", "MatrixDiagV3", "MatrixDiagPartV3", "MatrixDiag", "MatrixDiagPart",
       "MatrixSetDiagV3", "Eye"}
_DCT = {"RFFT", "IRFFT", "Complex", "Real", "Imag", "ComplexAbs"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--step", choices=("classifier", "objective"), default="classifier")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds of step vs floor")
    parser.add_argument("--min_seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def category(op_name, op_type):
    op_type = op_type.removeprefix("_MklNative").removeprefix("_Mkl") if "Conv" in op_type or "MatMul" in op_type \
        else op_type
    if "nuisance_classifier" in op_name:
        return "D_phi"
    if "prior" in op_name:
        return "prior"
    if ("adam" in op_name.split("/")[0] or "/adam/" in op_name or "Assign" in op_type or op_type == "ReadVariableOp"
            or op_type.startswith("ResourceApply")):
        return "optimizer"
    if "Conv2D" in op_type:
        return "conv kernels"
    if "MatMul" in op_type:
        return "1x1 conv as matmul" if "channel_mix" in op_name or "Tensordot" in op_name else "1x1 weight from LU"
    if op_type in _LU:
        return "1x1 weight from LU"
    if op_type in _DCT:
        return "DCT readout"
    if "SoftmaxCrossEntropy" in op_type or "Softmax" in op_type:
        return "loss"
    if op_type in _SLICE_CONCAT:
        return "slice / concat"
    if op_type in _ELEMENTWISE:
        return "elementwise"
    return "other"


def profile(step, steps):
    """Runs `steps` profiled calls; returns (op ms per category, executor ms, function ms, wall ms) per step."""
    logdir = tempfile.mkdtemp(prefix="profile_step_")
    options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0)
    tf.profiler.experimental.start(logdir, options=options)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wall = (time.perf_counter() - start) / steps
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    per_category, other_types, counts = collections.Counter(), collections.Counter(), collections.Counter()
    executor = function = 0.0
    for plane in space.planes:
        names = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name, ms = names[event.metadata_id].name, event.duration_ps / 1e9 / steps
                if name == "ExecutorState::Process":
                    executor += ms
                elif name == "one_step_on_data" and line.name == "python":
                    function += ms
                elif ":" in name and "::" not in name and line.name.startswith("tf_Compute"):
                    op_name, op_type = name.rsplit(":", 1)
                    cat = category(op_name, op_type)
                    per_category[cat] += ms
                    counts[cat] += 1 / steps
                    if cat == "other":
                        other_types[op_type] += ms
    return per_category, counts, other_types, executor, function, wall * 1e3


# ----------------------------------------------------------------------------- kernel floor
def kernel_shapes(network, batch):
    """(convs, matmuls) of a fiRevNet step: conv (input shape, kernel shape), matmul (rows, c)."""
    convs, matmuls = [], []
    shape = (batch, *network.input_shape)
    for k, stage in enumerate(network.stages):
        for layer in stage.layers:
            if isinstance(layer, Invertible1x1Conv):
                matmuls.append((int(np.prod(shape[:-1])), shape[-1]))
            elif isinstance(layer, Coupling):
                h = shape[:-1] + (layer.half,)
                for sub in layer.subnet.layers:
                    if isinstance(sub, keras.layers.Conv2D):
                        convs.append((h, tuple(sub.kernel.shape)))
                        h = h[:-1] + (sub.filters,)
            shape = tuple(layer.compute_output_shape(shape))
        if k < len(network._kept_channels):
            shape = shape[:-1] + (network._kept_channels[k],)
    return convs, matmuls


def floor_step(network, batch, seed=0):
    """A step of only the conv and matmul kernels (forward + input and weight gradients)."""
    convs, matmuls = kernel_shapes(network, batch)
    rng = np.random.default_rng(seed)
    rand = lambda *s: tf.constant(rng.standard_normal(s).astype(np.float32))  # noqa: E731
    conv_args = [(rand(*x), rand(*w), rand(*x[:-1], w[-1])) for x, w in convs]
    matmul_args = [(rand(n, c), rand(c, c), rand(n, c)) for n, c in matmuls]

    @tf.function
    def kernels():
        outputs = []
        for x, w, dy in conv_args:
            outputs.append(tf.nn.conv2d(x, w, 1, "SAME"))
            outputs.append(tf.nn.conv2d_transpose(dy, w, tf.shape(x), 1, "SAME"))
            outputs.append(tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(w), dy, [1, 1, 1, 1], "SAME"))
        for x, w, dy in matmul_args:
            outputs += [x @ w, tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)]
        return outputs

    return (lambda: [o.numpy() for o in kernels()[:1]]), len(convs), len(matmuls)


def build_step(args, x, y):
    if args.step == "classifier":
        couplings, filters = SIZES[args.size]
        network = build_ours(couplings, filters, x, y, args.seed)
        return network, lambda: network.train_on_batch(x, y)
    from bench import speed  # the network and objective of the config, as bench/speed.py builds them

    couplings, filters = SIZES[args.size]
    speed_args = argparse.Namespace(batch=args.batch, blocks_per_stage=couplings, filters=filters)
    config = speed.make_config(speed_args, loss="ce")
    from invertible_keras.training.loop import build_network

    network = build_network(config, x)
    network.initialize(x)
    return network, lambda: network.train_on_batch(x, y)


def main():
    args = parse_args()
    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(size=(args.batch, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=args.batch).astype(np.int32)
    network, step = build_step(args, x, y)
    for _ in range(1 + args.warmup):
        step()
    per_category, counts, other_types, executor, function, profiled_wall = profile(step, args.steps)
    floor, n_convs, n_matmuls = floor_step(network, args.batch, args.seed)
    results = run_cases({"step": lambda: step, "kernel floor": lambda: floor}, args)
    step_ms = 1e3 / statistics.median(results["step"][1])
    floor_ms = 1e3 / statistics.median(results["kernel floor"][1])
    per_round = paired_ratios(results, "step", "kernel floor")  # rate(floor) / rate(step)
    ops_total = sum(per_category.values())
    couplings, filters = SIZES[args.size]

    print(f"## Profile of one {args.step} CE training step: {filters} filters, {couplings} couplings/stage, "
          f"batch {args.batch}\n\n{args.steps} profiled steps; load average {os.getloadavg()[0]:.2f}. Op time is "
          f"thread time summed over the executor's threads (2 cores), per step.\n")
    print("| category | ms / step (thread time) | share of op time | ops / step |\n|---|---:|---:|---:|")
    for cat in CATEGORIES:
        if per_category[cat]:
            note = ""
            if cat == "other":
                note = " (" + ", ".join(t for t, _ in other_types.most_common(4)) + ")"
            print(f"| {cat}{note} | {per_category[cat]:.2f} | {per_category[cat] / ops_total:.1%} | "
                  f"{counts[cat]:.0f} |")
    kernels = sum(per_category[c] for c in KERNELS)
    print(f"| **all ops** | {ops_total:.2f} | 100% | {sum(counts.values()):.0f} |\n"
          f"| of which conv + matmul kernels | {kernels:.2f} | {kernels / ops_total:.1%} | "
          f"{sum(counts[c] for c in KERNELS):.0f} |\n"
          f"| executor bookkeeping (Process minus ops) | {executor - ops_total:.2f} | | |\n")
    print(f"Wall time per step under the profiler {profiled_wall:.1f} ms: graph function {function:.1f} ms, "
          f"Python around it (train_on_batch) {profiled_wall - function:.1f} ms "
          f"({(profiled_wall - function) / profiled_wall:.0%}).\n")
    print(f"Kernel floor ({n_convs} convolutions x 3 and {n_matmuls} channel matmuls x 3, alone), timed "
          f"alternating with the step, median of {args.repeats} rounds:\n\n"
          f"| step ms | floor ms | step / floor (paired) | range |\n|---:|---:|---:|---:|\n"
          f"| {step_ms:.1f} | {floor_ms:.1f} | {statistics.median(per_round):.2f} | "
          f"{min(per_round):.2f} - {max(per_round):.2f} |")


if __name__ == "__main__":
    main()
