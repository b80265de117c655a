"""ImageNet fiRevNet48 (paper, Table 1, appendix B). Needs TFDS `imagenet2012` (manual download).

`:cpu` (default) is a tiny 64x64 run to check the pipeline end to end; `:paper` is appendix B:
224x224, 4 stages x 4 blocks, momentum SGD 0.1, 128 epochs, batch 480 (6 GPUs), CE loss.
"""

from ml_collections import config_dict

from configs import base

VARIANTS = ("cpu", "paper")


def get_config(variant="cpu"):
    config = base.get_config()
    config.data.name = "imagenet2012"
    config.data.image_size = 64
    config.data.manual_dir = config_dict.placeholder(str)  # ILSVRC2012 tars (TFDS manual_dir)
    config.data.batch_size = 16
    config.model.kind = "imagenet"
    config.model.input_shape = (64, 64, 3)
    config.train.loss = "ce"
    config.train.epochs = 1
    config.train.steps_per_epoch = 10
    config.train.eval_steps = 2
    config.train.metamer_images = 4
    if variant == "paper":
        config.data.image_size = 224
        config.data.batch_size = 480
        config.model.input_shape = (224, 224, 3)
        config.train.optimizer = "sgd"
        config.train.learning_rate = 0.1
        config.train.momentum = 0.9
        config.train.epochs = 128
        config.train.steps_per_epoch = None
        config.train.eval_steps = None
        config.train.lr_decay_epochs = 30
        config.train.lr_decay_factor = 0.1
        config.train.weight_decay = 1e-4
        config.train.checkpoint_every_steps = 500  # an epoch is 2,669 steps of 480: hours
    elif variant != "cpu":
        raise ValueError(f"Unknown variant {variant!r}; expected 'cpu' or 'paper'.")
    return config
