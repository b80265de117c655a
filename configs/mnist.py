"""MNIST: the Fashion-MNIST recipe on MNIST (needs prepared TFDS `mnist` or IDX files).

`--config=configs/mnist.py:paper` is the paper's Table 2 setting (appendix B).
"""

from configs import fashion_mnist

VARIANTS = fashion_mnist.VARIANTS


def get_config(variant="cpu"):
    config = fashion_mnist.get_config(variant)
    config.data.name = "mnist"
    return config
