"""MNIST and Fashion-MNIST, from TensorFlow Datasets or offline IDX files, and augmentation.

Sources (`load_split(..., source=...)`):
- `"tfds"`: `tfds.builder(name, data_dir=...)`, used only when the data is already prepared.
  Nothing is downloaded here: run `tfds build mnist` (or `fashion_mnist`) on a machine with
  internet access and copy the data directory over.
- `"idx"`: the four standard IDX files of LeCun's format in one directory (gzipped or not):
  `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
  `t10k-labels-idx1-ubyte`. Debian's `dataset-fashion-mnist` installs Fashion-MNIST this way at
  `/usr/share/datasets/fashion-mnist`.
- `"auto"`: prepared TFDS data if there is any, else the IDX directory.
A data set found nowhere raises `DataNotFoundError` saying how to get it; there is never a
fallback to random data.

Augmentation (paper appendix B, MNIST): inputs are dequantised and randomly shifted by up to
3 pixels during training. Augmentation functions take a per-example stateless seed (a shape
`(2,)` integer tensor); `make_pipeline` hands a fresh seed to every example in every pass, drawn
from the pipeline's seed and the pass's index only, so the training stream is reproducible and
can be started at any batch.
"""

import gzip
import os

import numpy as np
import tensorflow as tf

from invertible_keras.data.checks import check_choice, is_int

IMAGE_SHAPE = (28, 28, 1)
SPLITS = ("train", "test")
NAMES = ("mnist", "fashion_mnist")

# Where Debian packages install the IDX files (`apt-get install dataset-fashion-mnist`).
DEFAULT_IDX_DIRS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}

# The 8-bit grey levels k / 255 are 1/255 apart; noise of width 1/256 < 1/255 keeps the
# dequantised intervals [k/255, k/255 + 1/256) disjoint, so floor(255 * x) recovers k.
GREY_LEVEL_NOISE = 1.0 / 256.0

_IDX_PREFIX = {"train": "train", "test": "t10k"}
_IDX_UBYTE = 0x08


class DataNotFoundError(FileNotFoundError):
    """A data set is neither prepared for TFDS nor present as files; the message says how to get it."""


def load_split(name, split, source="auto", idx_dir=None, data_dir=None):
    """Loads one split of MNIST or Fashion-MNIST.

    Args:
        name: `"mnist"` or `"fashion_mnist"`.
        split: `"train"` (60000 examples) or `"test"` (10000 examples).
        source: `"auto"` (prepared TFDS data, else IDX files), `"tfds"` or `"idx"`.
        idx_dir: directory with the four IDX files. Defaults to `DEFAULT_IDX_DIRS[name]`
            (`/usr/share/datasets/fashion-mnist` for Fashion-MNIST, none for MNIST).
        data_dir: TFDS data directory; None means TFDS's default (`$TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).

    Returns:
        An unbatched `tf.data.Dataset` of `(image, label)`: image float32 of shape `(28, 28, 1)`
        with values `k / 255` in [0, 1], label int32 in [0, 10).

    Raises:
        ValueError: for an unknown name, split or source, or a malformed IDX file.
        DataNotFoundError: when the data is not available from the requested source.
    """
    check_choice("name", name, NAMES)
    check_choice("split", split, SPLITS)
    check_choice("source", source, ("auto", "tfds", "idx"))
    idx_dir = idx_dir or DEFAULT_IDX_DIRS.get(name)

    if source in ("auto", "tfds"):
        builder = _prepared_tfds_builder(name, data_dir)
        if builder is not None:
            dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
            return dataset.map(_to_float_image, num_parallel_calls=tf.data.AUTOTUNE)
        if source == "tfds":
            raise DataNotFoundError(_how_to_get(name, f"TFDS data for {name!r} is not prepared "
                                                      f"in data_dir={data_dir!r}."))
    if idx_dir is None or not os.path.isdir(idx_dir):
        raise DataNotFoundError(_how_to_get(name, f"No prepared TFDS data and no IDX directory "
                                                  f"for {name!r} (idx_dir={idx_dir!r})."))
    try:
        images, labels = load_idx_split(idx_dir, split)
    except DataNotFoundError as e:
        raise DataNotFoundError(_how_to_get(name, str(e))) from None
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return dataset.map(_to_float_image, num_parallel_calls=tf.data.AUTOTUNE)


def load_idx_split(idx_dir, split):
    """Reads one split from the standard IDX files in `idx_dir`.

    Args:
        idx_dir: directory holding `{train,t10k}-{images-idx3,labels-idx1}-ubyte`, each
            optionally gzipped (`.gz`).
        split: `"train"` or `"test"` (the `t10k` files).

    Returns:
        `(images, labels)`: uint8 numpy arrays of shapes `(n, 28, 28)` and `(n,)`.

    Raises:
        DataNotFoundError: if a file is missing.
        ValueError: if a file is malformed or the two files disagree.
    """
    check_choice("split", split, SPLITS)
    prefix = _IDX_PREFIX[split]
    images_path = _find_idx_file(idx_dir, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx_file(idx_dir, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.shape[1:] != IMAGE_SHAPE[:2]:
        raise ValueError(f"Expected images of shape (n, 28, 28) in {images_path}. "
                         f"Received: shape={images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"Expected one label per image: {images.shape[0]} images in "
                         f"{images_path}, labels of shape {labels.shape} in {labels_path}.")
    return images, labels


def read_idx(path):
    """Reads an unsigned-byte IDX file (LeCun's MNIST format), gzipped or not.

    The header is a big-endian magic number `0x0000 0x08 ndim` (0x08: unsigned byte data)
    followed by `ndim` big-endian int32 sizes; the data follows in C order.

    Args:
        path: file path; gzip is recognised by its magic bytes, not by the name.

    Returns:
        A uint8 numpy array of the stored shape.

    Raises:
        ValueError: for a bad magic number, a header or data size that does not match.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or raw[3] == 0:
        raise ValueError(f"Bad IDX magic number in {path}: expected bytes 00 00 08 <ndim>. "
                         f"Received: {raw[:4].hex(' ')!r}")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"Truncated IDX header in {path}: {ndim} dimensions need "
                         f"{header_size} bytes. Received: {len(raw)} bytes")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"IDX file {path} of shape {shape} should have {expected} bytes. "
                         f"Received: {len(raw)} bytes")
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def dequantize(image, seed, noise=GREY_LEVEL_NOISE):
    """Dequantises 8-bit images: `x + u`, `u ~ U[0, noise)` i.i.d. per pixel.

    With the default `noise = 1/256`, a grey level `k / 255` becomes a value in
    `[k/255, k/255 + 1/256)`: every value moves by less than one grey level (1/255), the result
    lies in `[0, 1 + 1/256)`, and `floor(255 * x)` still recovers `k`.

    Args:
        image: float tensor with values `k / 255`.
        seed: stateless seed, int tensor of shape `(2,)`.
        noise: width of the uniform noise.

    Returns:
        A float tensor of the same shape and dtype.
    """
    u = tf.random.stateless_uniform(tf.shape(image), seed=seed, maxval=noise, dtype=image.dtype)
    return image + u


def random_shift(image, seed, max_shift=3):
    """Shifts an image by a random integer offset in `[-max_shift, max_shift]` along H and W.

    Implemented as zero padding by `max_shift` pixels on every side followed by a random crop
    back to the original size (paper appendix B: random shifts of up to 3 pixels). Content
    leaving the frame is lost; the uncovered border is zero (the MNIST background).

    Args:
        image: tensor of shape `(H, W, C)`.
        seed: stateless seed, int tensor of shape `(2,)`.
        max_shift: non-negative int, the largest shift in pixels.

    Returns:
        A tensor of the shape and dtype of `image`.
    """
    if not is_int(max_shift) or max_shift < 0:
        raise ValueError(f"`max_shift` must be a non-negative int. Received: max_shift={max_shift!r}")
    if max_shift == 0:
        return image
    pad = [[max_shift, max_shift], [max_shift, max_shift], [0, 0]]
    padded = tf.pad(image, pad)
    return tf.image.stateless_random_crop(padded, size=tf.shape(image), seed=seed)


def make_pipeline(dataset, batch_size, training, shuffle_buffer=10_000, seed=0, augment=(), start_batch=0):
    """Batches a dataset of `(x, y)`; for training, an endless shuffled and augmented stream.

    Training: an endless stream of passes over `dataset`. Pass k is shuffled, then every `x` is
    augmented, then batched with `drop_remainder=True` (every step has the full global batch,
    so batches split evenly across replicas), with seeds drawn from `(seed, k)` alone. The
    stream is therefore a pure function of `seed`: `start_batch=n` yields exactly the batches
    from the n-th on of the stream that starts at 0 (a resumed run continues the data order
    where it stopped, mid-pass included; the skipped examples are neither augmented nor
    batched). Evaluation: one pass, batched (keeping the last partial batch).

    Args:
        dataset: unbatched `tf.data.Dataset` of `(x, y)`, of known size when training.
        batch_size: positive int, the global batch size.
        training: whether to build the training stream.
        shuffle_buffer: positive int, size of the shuffle buffer.
        seed: int, seed of the shuffle orders and the augmentation noise.
        augment: sequence of functions `fn(x, seed) -> x` (e.g. `dequantize`,
            `functools.partial(random_shift, max_shift=3)`), applied in order in training
            only; each gets its own stateless seed, new for every example and pass.
        start_batch: non-negative int, the position in the training stream to start at.

    Returns:
        The batched, prefetched `tf.data.Dataset` (infinite when training).
    """
    if not is_int(batch_size) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}")
    if not training:
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if not is_int(shuffle_buffer) or shuffle_buffer <= 0:
        raise ValueError("`shuffle_buffer` must be a positive int. "
                         f"Received: shuffle_buffer={shuffle_buffer!r}")
    if not is_int(start_batch) or start_batch < 0:
        raise ValueError(f"`start_batch` must be a non-negative int. Received: start_batch={start_batch!r}")
    per_pass = batches_per_pass(dataset, batch_size)
    first_pass, offset = divmod(int(start_batch), per_pass)
    augment = tuple(augment)

    def apply(example, example_seed):
        x, y = example
        keys = tf.random.experimental.stateless_split(tf.stack([example_seed, 0]), len(augment))
        for fn, key in zip(augment, tf.unstack(keys)):
            x = fn(x, key)
        return x, y

    def one_pass(k):
        # This function's own graph seed, so that pass k depends on (seed, k) only, not on
        # TensorFlow's global seed (which, when 0, also breaks tensor-valued op seeds).
        tf.random.set_seed(1)
        # Two int64 seeds of pass k: the shuffle order and one noise key per example.
        shuffle_seed, noise_seed = tf.unstack(tf.random.stateless_uniform(
            [2], seed=tf.stack([tf.cast(seed, tf.int64), k]), minval=None, maxval=None, dtype=tf.int64))
        examples = dataset.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
        if augment:
            examples = tf.data.Dataset.zip((examples, tf.data.Dataset.random(seed=noise_seed)))
        examples = examples.skip(tf.where(k == first_pass, tf.constant(offset * batch_size, tf.int64), 0))
        if augment:
            examples = examples.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
        return examples.batch(batch_size, drop_remainder=True)

    passes = tf.data.Dataset.range(first_pass, np.iinfo(np.int64).max)
    return passes.flat_map(one_pass).prefetch(tf.data.AUTOTUNE)


def batches_per_pass(dataset, batch_size):
    """Full batches in one pass over an unbatched dataset of known size (ValueError otherwise)."""
    size = int(dataset.cardinality())
    if size < 0:
        raise ValueError("The training data must have a known number of examples (a finite tf.data "
                         f"cardinality) to be streamed by position. Received cardinality {size}.")
    if size < batch_size:
        raise ValueError(f"The training data has {size} examples, fewer than one batch of {batch_size}.")
    return size // batch_size


def _to_float_image(image, label):
    image = tf.reshape(tf.cast(image, tf.float32) / 255.0, IMAGE_SHAPE)
    return image, tf.cast(label, tf.int32)


def _prepared_tfds_builder(name, data_dir):
    """Returns the TFDS builder when its data is prepared, else None; never downloads."""
    import tensorflow_datasets as tfds  # Imported here: only this source needs it.

    # Without a folder for the data set there is nothing prepared; asking tfds.builder anyway
    # logs a warning about the missing folder in every run.
    if not os.path.isdir(os.path.join(data_dir or tfds.core.constants.DATA_DIR, name)):
        return None
    builder = tfds.builder(name, data_dir=data_dir)
    return builder if builder.is_prepared() else None


def _find_idx_file(idx_dir, stem):
    for candidate in (stem + ".gz", stem):
        path = os.path.join(idx_dir, candidate)
        if os.path.isfile(path):
            return path
    raise DataNotFoundError(f"Missing IDX file {stem}[.gz] in idx_dir={idx_dir!r}; the "
                            "directory needs train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (optionally .gz).")


def _how_to_get(name, problem):
    debian = ("  - apt-get install dataset-fashion-mnist (installs the IDX files into "
              "/usr/share/datasets/fashion-mnist), or\n" if name == "fashion_mnist" else "")
    return (f"{problem} To get {name}:\n{debian}"
            f"  - run `tfds build {name}` (or tfds.builder({name!r}).download_and_prepare()) on a "
            "machine with internet access and copy the TFDS data directory here, then pass "
            "--config.data.data_dir=DIR, or\n"
            "  - put the four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory and pass "
            "--config.data.idx_dir=DIR (with --config.data.source=auto or idx).")
