"""SavedModel export of a FiRevNet with named endpoints.

The artifact holds four `tf.function`s, all in inference mode and with a `None` batch axis:

    logits(x)             -> z_s                    (batch, C)
    encode(x)             -> (z_s, z_n)             (batch, C), (batch, d - C)
    decode(z_s, z_n)      -> x = F^-1([z_s, z_n])   (batch, *input_shape)
    metamer(x_a, x_b)     -> F^-1(z_s(x_a), z_n(x_b))

and `nuisance_parts()` -> `{name: [start, stop]}`, the column ranges of z_n that come from each
part of z (`FiRevNet.nuisance_parts`), so an analysis of the export needs no model code.

Loading needs only TensorFlow:

    loaded = tf.saved_model.load(directory)
    z_s, z_n = loaded.encode(x)

The endpoints are registered with `keras.export.ExportArchive`, which tracks the model's
variables; the first endpoint (`logits`) is also the `serving_default` signature.
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

from invertible_keras import metamers

ENDPOINTS = ("logits", "encode", "decode", "metamer")


def export_saved_model(model, directory):
    """Writes `model` as a SavedModel with the endpoints above, atomically.

    The SavedModel is written to a temporary directory beside `directory` and then renamed,
    so a reader never sees a half-written artifact. An existing `directory` is replaced: it is
    moved aside first and deleted only after the new one is in place.

    Args:
        model: a built `FiRevNet` (with `input_shape`, `num_classes`, `num_nuisances`,
            `encode`, `decode`).
        directory: destination path of the SavedModel.

    Returns:
        The absolute path of the written SavedModel.
    """
    directory = os.path.abspath(os.fspath(directory))
    parent, base = os.path.split(directory)
    os.makedirs(parent, exist_ok=True)

    dtype = model.compute_dtype
    x_spec = tf.TensorSpec((None, *model.input_shape), dtype, name="x")
    z_s_spec = tf.TensorSpec((None, model.num_classes), dtype, name="z_s")
    z_n_spec = tf.TensorSpec((None, model.num_nuisances), dtype, name="z_n")
    x_a_spec = tf.TensorSpec(x_spec.shape, dtype, name="x_a")
    x_b_spec = tf.TensorSpec(x_spec.shape, dtype, name="x_b")

    archive = keras.export.ExportArchive()
    archive.track(model)
    endpoints = {
        "logits": (lambda x: model(x, training=False), [x_spec]),
        "encode": (model.encode, [x_spec]),
        "decode": (model.decode, [z_s_spec, z_n_spec]),
        "metamer": (lambda x_a, x_b: metamers.metamer(model, x_a, x_b), [x_a_spec, x_b_spec]),
    }
    for name, (fn, signature) in endpoints.items():
        # Traced once here: given a plain callable, the archive traces every endpoint twice
        # (to list its variables, then to build the signature), doubling the export time.
        traced = tf.function(fn, autograph=False).get_concrete_function(*signature)
        archive.add_endpoint(name, traced, input_signature=signature)
    parts = {name: tf.constant(bounds, tf.int32) for name, bounds in model.nuisance_parts.items()}
    archive.add_endpoint("nuisance_parts", tf.function(lambda: parts, autograph=False).get_concrete_function(),
                         input_signature=[])

    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    old = None
    try:
        archive.write_out(tmp, verbose=False)
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(directory, os.path.join(old, base))
        os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(directory):
            os.rename(os.path.join(old, base), directory)  # put the previous artifact back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return directory
