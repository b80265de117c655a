"""Tests of the image data: IDX reader, real Fashion-MNIST, augmentation, pipelines, ImageNet."""

import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from invertible_keras import data
from invertible_keras.data import DataNotFoundError, images, imagenet

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
ONE_GREY_LEVEL = 1.0 / 255.0


def _idx_bytes(array, magic=None):
    header = bytes([0, 0, 0x08, array.ndim]) if magic is None else magic
    return header + np.asarray(array.shape, ">i4").tobytes() + array.astype(np.uint8).tobytes()


def _write_idx(path, array, compress, magic=None):
    raw = _idx_bytes(array, magic)
    with open(str(path) + (".gz" if compress else ""), "wb") as f:
        f.write(gzip.compress(raw) if compress else raw)


def _write_idx_dir(directory, compress, num_train=5, num_test=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        _write_idx(directory / f"{prefix}-images-idx3-ubyte", arrays[prefix][0], compress)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte", arrays[prefix][1], compress)
    return arrays


def _shift_with_zeros(image, dy, dx):
    """Reference: content moves by (dy, dx), the uncovered border is zero."""
    h, w = image.shape[:2]
    out = np.zeros_like(image)
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


# --- IDX files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_load_exactly(tmp_path, compress):
    arrays = _write_idx_dir(tmp_path, compress)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        dataset = images.load_split("mnist", split, source="idx", idx_dir=str(tmp_path))
        assert dataset.element_spec[0].shape == (28, 28, 1)
        assert dataset.element_spec[0].dtype == tf.float32
        assert dataset.element_spec[1].dtype == tf.int32
        x, y = next(iter(dataset.batch(100)))
        expected_images, expected_labels = arrays[prefix]
        np.testing.assert_array_equal(x.numpy()[..., 0], expected_images.astype(np.float32) / 255)
        np.testing.assert_array_equal(y.numpy(), expected_labels)


def test_read_idx_rejects_bad_magic(tmp_path):
    path = tmp_path / "bad-idx"
    _write_idx(path, np.zeros((2, 28, 28)), compress=True, magic=bytes([0, 0, 0x0D, 3]))
    with pytest.raises(ValueError, match=r"magic number.*00 00 08 <ndim>.*00 00 0d 03"):
        images.read_idx(str(path) + ".gz")
    (tmp_path / "text").write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="magic number"):
        images.read_idx(str(tmp_path / "text"))


def test_read_idx_rejects_wrong_size(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(_idx_bytes(np.zeros((4, 28, 28)))[:-10])
    with pytest.raises(ValueError, match=r"shape \(4, 28, 28\) should have 3152 bytes.*3142"):
        images.read_idx(str(path))


def test_idx_split_rejects_mismatched_labels_and_shapes(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)), compress=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3), compress=False)
    with pytest.raises(ValueError, match="one label per image"):
        images.load_idx_split(str(tmp_path), "train")
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 32, 32)), compress=False)
    with pytest.raises(ValueError, match=r"\(n, 28, 28\).*\(3, 32, 32\)"):
        images.load_idx_split(str(tmp_path), "train")


# --- Real Fashion-MNIST (Debian package dataset-fashion-mnist) -----------------------------------


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR),
                    reason=f"{FASHION_MNIST_DIR} missing: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_loads(tmp_path):
    for split, size in (("train", 60_000), ("test", 10_000)):
        raw_images, labels = images.load_idx_split(FASHION_MNIST_DIR, split)
        assert raw_images.shape == (size, 28, 28)
        # Fashion-MNIST is balanced: every one of the 10 classes has a tenth of the examples.
        np.testing.assert_array_equal(np.bincount(labels), [size // 10] * 10)
        assert raw_images.min() == 0 and raw_images.max() == 255
        # "auto" with no TFDS data (empty data_dir) reads the Debian IDX files.
        dataset = images.load_split("fashion_mnist", split, data_dir=str(tmp_path / "tfds"))
        assert int(dataset.cardinality()) == size
        assert dataset.element_spec[0].shape == (28, 28, 1)
    x, y = next(iter(dataset.batch(size)))
    x = x.numpy()
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(np.round(x[..., 0] * 255).astype(np.uint8), raw_images)
    np.testing.assert_array_equal(y.numpy(), labels)


# --- Missing data ------------------------------------------------------------------------------


def test_missing_mnist_is_one_clear_error(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        images.load_split("mnist", "train", data_dir=str(tmp_path / "tfds"))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "tfds build mnist" in message and "--config.data.idx_dir=DIR" in message


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    for source in ("auto", "idx"):
        with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
            images.load_split("fashion_mnist", "test", source=source,
                              idx_dir=str(tmp_path / "missing"), data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataNotFoundError, match="TFDS data for 'fashion_mnist' is not prepared"):
        images.load_split("fashion_mnist", "test", source="tfds", data_dir=str(tmp_path / "tfds"))


def test_idx_dir_missing_one_file_names_it(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)), compress=True)
    with pytest.raises(DataNotFoundError, match=r"(?s)t10k-labels-idx1-ubyte\[\.gz\].*tfds build"):
        images.load_split("mnist", "test", source="idx", idx_dir=str(tmp_path))


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="cifar10", split="train"), "name='cifar10'"),
    (dict(name="mnist", split="validation"), "split='validation'"),
    (dict(name="mnist", split="train", source="web"), "source='web'"),
])
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        images.load_split(**kwargs)


# --- Augmentation ------------------------------------------------------------------------------


def test_dequantize_moves_every_value_by_less_than_one_grey_level():
    grey_levels = np.arange(256, dtype=np.float32)
    x = tf.constant(np.tile(grey_levels / 255, (40, 1)).reshape(40, 256, 1))
    y = images.dequantize(x, seed=tf.constant([1, 2])).numpy()
    noise = y - x.numpy()
    assert noise.min() >= 0.0 and noise.max() < 1.0 / 256
    assert y.min() >= 0.0 and y.max() < 1.0 + 1.0 / 256
    assert np.abs(noise).max() < ONE_GREY_LEVEL
    # The grey level is still recoverable and the noise fills its interval (mean 1/512).
    np.testing.assert_array_equal(np.floor(255 * y[..., 0]), np.tile(grey_levels, (40, 1)))
    assert abs(noise.mean() - 1.0 / 512) < 1e-4
    same = images.dequantize(x, seed=tf.constant([1, 2])).numpy()
    other = images.dequantize(x, seed=tf.constant([1, 3])).numpy()
    np.testing.assert_array_equal(y, same)
    assert not np.array_equal(y, other)


def test_random_shift_moves_content_by_at_most_max_shift():
    image = np.random.default_rng(0).uniform(0.1, 1.0, (28, 28, 1)).astype(np.float32)
    seen = set()
    for i in range(150):
        shifted = images.random_shift(tf.constant(image), seed=tf.constant([i, 0])).numpy()
        assert shifted.shape == image.shape
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if np.array_equal(shifted, _shift_with_zeros(image, dy, dx))]
        assert len(matches) == 1, f"seed {i}: output is no integer shift of at most 3 px"
        seen.add(matches[0])
    # Shifts are spread over the 7 x 7 possibilities, extremes included.
    assert len(seen) >= 35
    assert {dy for dy, _ in seen} == {dx for _, dx in seen} == set(range(-3, 4))
    np.testing.assert_array_equal(
        images.random_shift(tf.constant(image), seed=tf.constant([0, 0]), max_shift=0), image)
    with pytest.raises(ValueError, match="max_shift=-1"):
        images.random_shift(tf.constant(image), seed=tf.constant([0, 0]), max_shift=-1)


# --- Pipelines ---------------------------------------------------------------------------------


def _toy_dataset(n=10):
    x = np.arange(n, dtype=np.float32).reshape(n, 1) * np.ones((n, 4), np.float32)
    return tf.data.Dataset.from_tensor_slices((x, np.arange(n, dtype=np.int32)))


def test_pipeline_batches_training_and_evaluation():
    train = images.make_pipeline(_toy_dataset(), 4, training=True, shuffle_buffer=10, seed=1)
    test = images.make_pipeline(_toy_dataset(), 4, training=False)
    assert train.element_spec[0].shape.as_list() == [4, 4]
    assert [b[1].numpy().tolist() for b in test] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # An endless stream of passes of 2 full batches: seeded, without repeats within a pass,
    # reproducible, and a new order in every pass.
    stream = [b[1].numpy() for b in train.take(6)]
    passes = [np.concatenate(stream[i:i + 2]) for i in (0, 2, 4)]
    assert all(len(set(p)) == 8 for p in passes)
    assert not np.array_equal(passes[0], passes[1]) and not np.array_equal(passes[1], passes[2])
    again = images.make_pipeline(_toy_dataset(), 4, training=True, shuffle_buffer=10, seed=1)
    np.testing.assert_array_equal(np.concatenate(stream), np.concatenate([b[1] for b in again.take(6)]))
    other = images.make_pipeline(_toy_dataset(), 4, training=True, shuffle_buffer=10, seed=2)
    assert not np.array_equal(np.concatenate(stream), np.concatenate([b[1] for b in other.take(6)]))


def test_pipeline_augments_in_training_only_with_new_noise_every_pass():
    def add_noise(x, seed):
        return x + tf.random.stateless_uniform(tf.shape(x), seed=seed)

    train = images.make_pipeline(_toy_dataset(), 5, training=True, shuffle_buffer=1, seed=3,
                                 augment=[add_noise])
    test = images.make_pipeline(_toy_dataset(), 5, training=False, augment=[add_noise])
    stream = [b[0].numpy() for b in train.take(4)]
    epoch1, epoch2 = np.concatenate(stream[:2]), np.concatenate(stream[2:])
    clean = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    noise = epoch1 - clean  # shuffle_buffer=1 keeps the order.
    assert noise.min() >= 0 and noise.max() < 1 and noise.std() > 0.1
    assert not np.array_equal(epoch1, epoch2)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in test]), clean)


@pytest.mark.parametrize("start_batch", [1, 2, 5])
def test_the_training_stream_started_at_batch_n_is_the_stream_from_its_nth_batch(start_batch):
    """A resumed run reads the batches, order and noise, the uninterrupted one would have."""
    def add_noise(x, seed):
        return x + tf.random.stateless_uniform(tf.shape(x), seed=seed)

    def stream(start, n):
        pipeline = images.make_pipeline(_toy_dataset(), 4, training=True, shuffle_buffer=6, seed=7,
                                         augment=[add_noise], start_batch=start)
        return [(x.numpy(), y.numpy()) for x, y in pipeline.take(n)]

    whole, resumed = stream(0, 8), stream(start_batch, 8 - start_batch)
    for (x, y), (x_resumed, y_resumed) in zip(whole[start_batch:], resumed, strict=True):
        np.testing.assert_array_equal(y, y_resumed)
        np.testing.assert_array_equal(x, x_resumed)


def test_the_training_stream_needs_a_known_size_and_a_valid_start():
    unknown = _toy_dataset().filter(lambda x, y: True)
    with pytest.raises(ValueError, match="known number of examples"):
        images.make_pipeline(unknown, 4, training=True)
    with pytest.raises(ValueError, match="fewer than one batch"):
        images.make_pipeline(_toy_dataset(), 16, training=True)
    with pytest.raises(ValueError, match="start_batch"):
        images.make_pipeline(_toy_dataset(), 4, training=True, start_batch=-1)


def test_load_dataset_images_with_augmentation(tmp_path):
    _write_idx_dir(tmp_path, compress=True, num_train=10, num_test=7)
    config = dict(name="mnist", source="idx", idx_dir=str(tmp_path), batch_size=4, seed=0,
                  dequantize=True, random_shift=True)
    assert data.batches_per_pass(config) == 2
    train = list(data.load_dataset(config, "train", training=True).take(2))
    test = list(data.load_dataset(config, "test", training=False))
    assert [tuple(b[0].shape) for b in train] == [(4, 28, 28, 1)] * 2
    assert [tuple(b[0].shape) for b in test] == [(4, 28, 28, 1), (3, 28, 28, 1)]
    x_train = np.concatenate([b[0] for b in train])
    assert x_train.min() >= 0 and x_train.max() < 1 + 1 / 256
    # Dequantised: training values are off the grey-level grid; evaluation values are on it.
    assert np.mean(np.abs(x_train * 255 - np.round(x_train * 255)) > 1e-3) > 0.5
    x_test = np.concatenate([b[0] for b in test])
    np.testing.assert_allclose(x_test * 255, np.round(x_test * 255), atol=1e-4)
    assert data.input_shape(config) == (28, 28, 1)
    assert data.num_classes("mnist") == data.num_classes("fashion_mnist") == 10
    with pytest.raises(ValueError, match="name='svhn'"):
        data.load_dataset(dict(config, name="svhn"), "train", training=True)
    with pytest.raises(ValueError, match="batch_size"):
        data.load_dataset({"name": "mnist"}, "train", training=True)


# --- ImageNet preprocessing and missing data ---------------------------------------------------


def _two_tone(height, width):
    """Left half black, right half white, uint8 RGB."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, width // 2:] = 255
    return image


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (120, 90)])
def test_imagenet_preprocessing_shapes_and_range(shape):
    image = np.random.default_rng(0).integers(0, 256, shape + (3,)).astype(np.uint8)
    for inputs in (tf.constant(image), tf.io.encode_jpeg(image)):
        for out in (imagenet.preprocess_train(inputs, seed=tf.constant([0, 1])),
                    imagenet.preprocess_train(inputs),
                    imagenet.preprocess_eval(inputs),
                    imagenet.preprocess_eval(inputs, size=64)):
            assert out.dtype == tf.float32 and out.shape[2] == 3
            assert out.shape[0] == out.shape[1] in (224, 64)
            assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0


def test_imagenet_eval_resizes_shorter_side_then_crops_the_centre():
    constant = np.full((300, 400, 3), 51, np.uint8)
    np.testing.assert_allclose(imagenet.preprocess_eval(tf.constant(constant)), 0.2, atol=1e-6)
    # 300 x 600 -> 256 x 512; the centre crop keeps columns 144..367, so the edge at column
    # 256 of the resized image lands at column 112 of the crop.
    out = imagenet.preprocess_eval(tf.constant(_two_tone(300, 600))).numpy()
    np.testing.assert_allclose(out[:, :110], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 114:], 1.0, atol=1e-6)
    # Portrait, 600 x 300 -> 512 x 256: the crop keeps columns 16..239, the edge at column 128
    # lands at column 112 again.
    out = imagenet.preprocess_eval(tf.constant(_two_tone(600, 300))).numpy()
    assert out.shape == (224, 224, 3)
    np.testing.assert_allclose(out[:, :110], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 114:], 1.0, atol=1e-6)


def test_imagenet_train_crop_is_seeded_and_flips_both_ways():
    image = tf.constant(_two_tone(200, 300))
    np.testing.assert_array_equal(imagenet.preprocess_train(image, seed=tf.constant([4, 2])),
                                  imagenet.preprocess_train(image, seed=tf.constant([4, 2])))
    directions = set()
    crops = []
    for i in range(40):
        out = imagenet.preprocess_train(image, size=32, seed=tf.constant([i, 7])).numpy()
        crops.append(out)
        profile = out.mean(axis=(0, 2))
        if profile[-1] - profile[0] > 0.5:
            directions.add("dark to bright")
        if profile[0] - profile[-1] > 0.5:
            directions.add("bright to dark")
    assert directions == {"dark to bright", "bright to dark"}
    assert len({c.tobytes() for c in crops}) > 30


def test_imagenet_jpeg_path_equals_decoded_path():
    image = np.random.default_rng(1).integers(0, 256, (180, 240, 3)).astype(np.uint8)
    # Without chroma subsampling: a subsampled JPEG decoded inside a window upsamples chroma
    # differently at the window's edge, so the two paths differ there by design.
    jpeg = tf.io.encode_jpeg(image, quality=95, chroma_downsampling=False)
    decoded = tf.io.decode_jpeg(jpeg, channels=3)
    for i in range(5):
        seed = tf.constant([3, i])
        np.testing.assert_allclose(imagenet.preprocess_train(jpeg, seed=seed),
                                   imagenet.preprocess_train(decoded, seed=seed), atol=1e-6)
    np.testing.assert_allclose(imagenet.preprocess_eval(jpeg), imagenet.preprocess_eval(decoded),
                               atol=1e-6)


def test_missing_imagenet_explains_the_manual_download(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"manual download.*ILSVRC2012_img_train\.tar.*"
                                                r"--config\.data\.manual_dir=DIR"):
        imagenet.load_imagenet("validation", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataNotFoundError, match=r"lacks ILSVRC2012_img_train\.tar, "
                                                r"ILSVRC2012_img_val\.tar"):
        imagenet.load_imagenet("train", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path))
    with pytest.raises(DataNotFoundError, match="manual download"):
        data.load_dataset({"name": "imagenet2012", "batch_size": 8,
                           "data_dir": str(tmp_path / "tfds")}, "test", training=False)
    with pytest.raises(ValueError, match="split='test'"):
        imagenet.load_imagenet("test")
    assert data.num_classes("imagenet2012") == 1000
    assert data.input_shape({"name": "imagenet2012", "image_size": 160}) == (160, 160, 3)
