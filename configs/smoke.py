"""Tiny spheres run that trains in seconds: for tests and a first look.

Takes a variant like the other configs (`--config=configs/smoke.py:cpu`); `cpu`, the default,
is its only one.
"""

from configs import base

VARIANTS = ("cpu",)


def get_config(variant="cpu"):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {VARIANTS}.")
    config = base.get_config()
    config.data.dim = 10
    config.data.num_train = 512
    config.data.num_test = 256
    config.data.batch_size = 32
    config.model.hidden_units = 16
    config.model.input_dim = config.data.get_ref("dim")
    config.train.epochs = 2
    config.ice.nuisance_hidden_units = (16, 16, 16)
    config.ice.warmup_steps = (4, 16)
    return config
