"""Tiny spheres run that trains in seconds: for tests and a first look."""

from configs import base


def get_config():
    config = base.get_config()
    config.data.dim = 10
    config.data.num_train = 512
    config.data.num_test = 256
    config.data.batch_size = 32
    config.model.hidden_units = 16
    config.model.input_dim = config.data.get_ref("dim")
    config.train.epochs = 2
    config.ice.nuisance_hidden_units = (16, 16, 16)
    return config
