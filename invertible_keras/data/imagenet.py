"""ImageNet (ILSVRC 2012) from TensorFlow Datasets, with ResNet-style preprocessing.

TFDS `imagenet2012` needs a manual download: the user registers at image-net.org, downloads
`ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` into a directory (`manual_dir`), and
TFDS prepares the data from them once (hours, and about as much disk again as the tars). Here
preparation runs only when the user passes `manual_dir`; otherwise the data must already be
prepared in `data_dir`. Nothing is fetched from the internet.

Preprocessing (as in ResNet / Inception training, paper section 5 uses the standard recipe):
- training: an Inception-style random crop (`tf.image.sample_distorted_bounding_box`: area
  8%-100% of the image, aspect ratio 3/4-4/3) resized to `size x size`, and a random
  horizontal flip;
- evaluation: resize the shorter side to `size / 0.875` (256 for 224), then a central
  `size x size` crop;
- both scale pixel values to [0, 1] (float32).
The functions accept a decoded image (uint8 in [0, 255], or float already in [0, 1]) or an
encoded JPEG string; for training, a JPEG is decoded only inside the crop window
(`tf.image.decode_and_crop_jpeg`), which is how the input pipeline keeps up. (For JPEGs with
subsampled chroma, the pixels at the window's edge can differ slightly from decoding the whole
image and cropping, since chroma is upsampled from a smaller neighbourhood.)
"""

import os

import tensorflow as tf

from invertible_keras.data.images import DataNotFoundError

NUM_CLASSES = 1000
SPLITS = ("train", "validation")
MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

# Inception-style crop (Szegedy et al. 2015), the defaults of the TF and Flax ResNet pipelines.
CROP_AREA_RANGE = (0.08, 1.0)
CROP_ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
CROP_MIN_OBJECT_COVERED = 0.1
CROP_MAX_ATTEMPTS = 10
# Evaluation crops the central 87.5% of the resized image: 224 out of 256.
EVAL_CROP_FRACTION = 0.875


def load_imagenet(split, data_dir=None, manual_dir=None):
    """Loads a split of TFDS `imagenet2012` with images left JPEG-encoded.

    Args:
        split: `"train"` (1,281,167 images) or `"validation"` (50,000 images, the usual test
            set).
        data_dir: TFDS data directory; None means TFDS's default (`$TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).
        manual_dir: directory holding `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar`.
            When given and the data is not prepared yet, it is prepared from these files.

    Returns:
        An unbatched `tf.data.Dataset` of `(jpeg, label)`: a scalar string tensor (decode it
        with `preprocess_train` or `preprocess_eval`) and an int32 label in [0, 1000).

    Raises:
        ValueError: for an unknown split.
        DataNotFoundError: when the data is not prepared and no usable `manual_dir` is given.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
    import tensorflow_datasets as tfds  # Imported here: only ImageNet and TFDS sources need it.

    builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not builder.is_prepared():
        if manual_dir is None:
            raise DataNotFoundError(
                f"ImageNet (TFDS imagenet2012) is not prepared in data_dir={data_dir!r}. "
                "It needs a manual download: register at https://image-net.org/download-images, "
                f"download {' and '.join(MANUAL_FILES)} into a directory and pass "
                "--config.data.manual_dir=DIR (TFDS then prepares the data once, which takes "
                "hours and about 150 GB of disk), or pass --config.data.data_dir=DIR of an "
                "already prepared TFDS data directory.")
        missing = [f for f in MANUAL_FILES if not os.path.isfile(os.path.join(manual_dir, f))]
        if missing:
            raise DataNotFoundError(
                f"manual_dir={manual_dir!r} lacks {', '.join(missing)}; it must hold "
                f"{' and '.join(MANUAL_FILES)} downloaded from https://image-net.org/download-images.")
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, try_download_gcs=False))
    dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    return dataset.map(lambda jpeg, label: (jpeg, tf.cast(label, tf.int32)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def preprocess_train(image, size=224, seed=None):
    """Random Inception-style crop resized to `size x size`, random flip, scaled to [0, 1].

    Args:
        image: an encoded JPEG (scalar string) or a decoded `(H, W, 3)` image, uint8 in
            [0, 255] or float in [0, 1].
        size: int, output height and width.
        seed: optional stateless seed (int tensor of shape `(2,)`) for a reproducible crop and
            flip; None uses the stateful random ops.

    Returns:
        float32 tensor of shape `(size, size, 3)` with values in [0, 1].
    """
    is_jpeg = image.dtype == tf.string
    image_shape = tf.image.extract_jpeg_shape(image) if is_jpeg else tf.shape(image)
    crop_seed, flip_seed = (None, None) if seed is None else tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])
    crop_args = dict(bounding_boxes=whole_image, min_object_covered=CROP_MIN_OBJECT_COVERED,
                     aspect_ratio_range=CROP_ASPECT_RATIO_RANGE, area_range=CROP_AREA_RANGE,
                     max_attempts=CROP_MAX_ATTEMPTS, use_image_if_no_bounding_boxes=True)
    if seed is None:
        begin, crop_size, _ = tf.image.sample_distorted_bounding_box(image_shape, **crop_args)
    else:
        begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
            image_shape, seed=crop_seed, **crop_args)
    top, left, _ = tf.unstack(begin)
    height, width, _ = tf.unstack(crop_size)
    if is_jpeg:
        window = tf.stack([top, left, height, width])
        image = tf.image.decode_and_crop_jpeg(image, window, channels=3)
    else:
        image = tf.image.crop_to_bounding_box(image, top, left, height, width)
    image = _resize(_to_unit_float(image), [size, size])
    if seed is None:
        return tf.image.random_flip_left_right(image)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def preprocess_eval(image, size=224):
    """Resizes the shorter side to `size / 0.875`, crops the central `size x size`, scales to [0, 1].

    Args:
        image: an encoded JPEG (scalar string) or a decoded `(H, W, 3)` image, uint8 in
            [0, 255] or float in [0, 1].
        size: int, output height and width (224 gives the usual 256 -> 224 recipe).

    Returns:
        float32 tensor of shape `(size, size, 3)` with values in [0, 1].
    """
    if image.dtype == tf.string:
        image = tf.io.decode_jpeg(image, channels=3)
    image = _to_unit_float(image)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resize_size = round(size / EVAL_CROP_FRACTION)
    scale = resize_size / tf.reduce_min(shape)
    # max(size, .) guards against rounding the shorter side just below the crop size.
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    image = _resize(image, new_shape)
    top = (new_shape[0] - size) // 2
    left = (new_shape[1] - size) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def _to_unit_float(image):
    """uint8 [0, 255] -> float32 [0, 1]; float input is taken to be in [0, 1] already."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    image.set_shape([None, None, 3])
    return image


def _resize(image, shape):
    # Antialiased bilinear resampling has non-negative weights: the result stays in [0, 1],
    # the clip only removes float rounding.
    image = tf.image.resize(image, shape, method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0)
