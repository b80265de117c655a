"""invertible_keras: fully invertible classifiers (fiRevNets) for Keras 3.

Reproduces "Excessive Invariance Causes Adversarial Vulnerability" (Jacobsen et al., ICLR 2019).
"""

from invertible_keras import layers

__version__ = "0.1.0"
