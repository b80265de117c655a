"""Input pipelines: adversarial spheres, MNIST / Fashion-MNIST and ImageNet.

`load_dataset(config.data, split, training)` is the one entry point of the training binaries;
the modules below it can be used on their own:
- `spheres`: `spheres_dataset`, `oracle`.
- `images`: `load_split` (TFDS or offline IDX files), `dequantize`, `random_shift`,
  `make_pipeline`.
- `imagenet`: `load_imagenet`, `preprocess_train`, `preprocess_eval`.
"""

import functools

import tensorflow as tf

from invertible_keras.data.checks import check_choice
from invertible_keras.data import imagenet, images, spheres
from invertible_keras.data.imagenet import load_imagenet, preprocess_eval, preprocess_train
from invertible_keras.data.images import (
    DataNotFoundError,
    dequantize,
    load_split,
    make_pipeline,
    random_shift,
    read_idx,
)
from invertible_keras.data.spheres import oracle, spheres_dataset

__all__ = [
    "DataNotFoundError",
    "dequantize",
    "input_shape",
    "load_dataset",
    "load_imagenet",
    "batches_per_pass",
    "load_split",
    "make_pipeline",
    "num_classes",
    "oracle",
    "preprocess_eval",
    "preprocess_train",
    "random_shift",
    "read_idx",
    "spheres_dataset",
]

NAMES = ("spheres", "mnist", "fashion_mnist", "imagenet2012")
SPLITS = ("train", "test")
_NUM_CLASSES = {"spheres": 2, "mnist": 10, "fashion_mnist": 10, "imagenet2012": 1000}
# The paper's random shifts (appendix B), used when `random_shift` is given as True.
PAPER_MAX_SHIFT = 3

# Defaults of the optional config fields (the paper's values where it gives them).
_DEFAULTS = {
    "source": "auto",
    "idx_dir": None,
    "data_dir": None,
    "manual_dir": None,
    "seed": 0,
    "shuffle_buffer": 10_000,
    "dequantize": False,
    "random_shift": 0,
    "dim": 100,
    "radii": (1.0, 10.0),
    "num_train": 500_000,
    "num_test": 10_000,
    "image_size": 224,
}


def load_dataset(data_config, split, training, start_batch=0):
    """Builds the batched input pipeline of `(x, y)` described by a data config.

    Training (`training=True`) is an endless stream of shuffled, augmented passes over the
    split, with the last partial batch of each pass dropped (so that global batches split
    evenly across replicas); it is a pure function of the data seed, and `start_batch=n`
    starts it at its n-th batch (`images.make_pipeline`): give `fit` a `steps_per_epoch`
    (`batches_per_pass` for full passes). Evaluation is one pass in order, every example kept.

    Fields read from `data_config` (an `ml_collections.ConfigDict` or a dict; the optional ones
    fall back to the defaults given):
    - `name` (required): `"spheres"`, `"mnist"`, `"fashion_mnist"` or `"imagenet2012"`.
    - `batch_size` (required): int, the global batch size.
    - `seed` (0): int seed of the data: the spheres' samples (train uses the stateless seed
      `(seed, 0)`, test `(seed, 1)`, so they never coincide), the shuffle order and the
      augmentation noise. Point it at the top-level seed: `config.data.seed =
      config.get_ref("seed")`.
    - `shuffle_buffer` (10000): int, shuffle buffer size in training.
    - spheres only: `dim` (100), `radii` ((1.0, 10.0)), `num_train` (500000, the paper's),
      `num_test` (10000).
    - MNIST / Fashion-MNIST only: `source` ("auto": prepared TFDS data, else IDX files; "tfds";
      "idx"), `idx_dir` (None: `/usr/share/datasets/fashion-mnist` for Fashion-MNIST, none for
      MNIST), `data_dir` (None: TFDS's default), and the training augmentations
      `dequantize` (False; True adds uniform noise of one grey level, see
      `images.dequantize`) and `random_shift` (0: off; an int n shifts by up to n pixels;
      True means the paper's 3), applied in the order shift, then dequantise.
    - ImageNet only: `data_dir` (None: TFDS's default), `manual_dir` (None: the data must be
      prepared already), `image_size` (224). Split "test" reads the ImageNet validation set.
      Training uses the random-crop-and-flip preprocessing, evaluation the central crop.

    Args:
        data_config: the data config (`config.data`).
        split: `"train"` or `"test"`.
        training: whether to build the training stream (shuffle, augment, drop remainder).
        start_batch: the training stream's first batch (a resumed run's position).

    Returns:
        A batched, prefetched `tf.data.Dataset` of `(x, y)`, `x` float32 of shape
        `(batch,) + input_shape(data_config)`, `y` int32 of shape `(batch,)`; infinite when
        training.

    Raises:
        ValueError: for an unknown name or split, or an invalid field value.
        DataNotFoundError: when the data set is not available (the message says how to get it).
    """
    batch_size = _field(data_config, "batch_size")
    dataset, augment = _examples(data_config, split, training)
    return images.make_pipeline(dataset, batch_size, training,
                                shuffle_buffer=_field(data_config, "shuffle_buffer"),
                                seed=_field(data_config, "seed"), augment=augment, start_batch=start_batch)


def _examples(data_config, split, training):
    """The unbatched `(x, y)` of a split, and the training augmentations `fn(x, seed)`."""
    name = _field(data_config, "name")
    check_choice("name", name, NAMES)
    check_choice("split", split, SPLITS)
    seed = _field(data_config, "seed")
    augment = ()
    if name == "spheres":
        num_samples = _field(data_config, "num_train" if split == "train" else "num_test")
        dataset = spheres.spheres_dataset(
            num_samples, dim=_field(data_config, "dim"), radii=tuple(_field(data_config, "radii")),
            seed=(seed, SPLITS.index(split)))
    elif name == "imagenet2012":
        size = _field(data_config, "image_size")
        dataset = imagenet.load_imagenet(
            "train" if split == "train" else "validation",
            data_dir=_field(data_config, "data_dir"), manual_dir=_field(data_config, "manual_dir"))
        if training:
            # The random crop and flip take their seed from `make_pipeline`, like augmentations.
            augment = (lambda jpeg, key: imagenet.preprocess_train(jpeg, size=size, seed=key),)
        else:
            dataset = dataset.map(lambda jpeg, y: (imagenet.preprocess_eval(jpeg, size), y),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = images.load_split(
            name, split, source=_field(data_config, "source"),
            idx_dir=_field(data_config, "idx_dir"), data_dir=_field(data_config, "data_dir"))
        max_shift = _max_shift(_field(data_config, "random_shift"))
        if max_shift:
            augment += (functools.partial(images.random_shift, max_shift=max_shift),)
        if _field(data_config, "dequantize"):
            augment += (images.dequantize,)
    return dataset, augment


def batches_per_pass(data_config):
    """The number of training batches in one pass over the training split (a full epoch)."""
    return images.batches_per_pass(_examples(data_config, "train", training=True)[0],
                                   _field(data_config, "batch_size"))


def num_classes(name):
    """Returns the number of classes C of a data set (the number of logits z_s).

    Args:
        name: `"spheres"` (2), `"mnist"` (10), `"fashion_mnist"` (10) or `"imagenet2012"` (1000).
    """
    check_choice("name", name, NAMES)
    return _NUM_CLASSES[name]


def input_shape(data_config):
    """Returns the shape of one input example, without the batch dimension.

    Reads `name`, and `dim` for spheres or `image_size` for ImageNet (defaults as in
    `load_dataset`).

    Returns:
        `(dim,)` for spheres, `(28, 28, 1)` for MNIST and Fashion-MNIST,
        `(image_size, image_size, 3)` for ImageNet.
    """
    name = _field(data_config, "name")
    check_choice("name", name, NAMES)
    if name == "spheres":
        return (int(_field(data_config, "dim")),)
    if name == "imagenet2012":
        size = int(_field(data_config, "image_size"))
        return (size, size, 3)
    return images.IMAGE_SHAPE


def _field(config, field):
    """Reads `config.field` from a ConfigDict or a dict, with the default of `_DEFAULTS`."""
    value = config.get(field, _DEFAULTS.get(field)) if hasattr(config, "get") else getattr(
        config, field, _DEFAULTS.get(field))
    if value is None and field not in _DEFAULTS:
        raise ValueError(f"The data config needs the field `{field}`. Received: {config!r}")
    return value


def _max_shift(random_shift_field):
    if random_shift_field is True:
        return PAPER_MAX_SHIFT
    if random_shift_field is False or random_shift_field is None:
        return 0
    return random_shift_field
