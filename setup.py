from setuptools import find_packages, setup

setup(
    name="invertible_keras",
    version="0.1.0",
    description="Fully invertible classifiers (fiRevNets), metamers and iCE training for Keras 3.",
    # Only the library: `train/` and `configs/` are the application, run from the repository root
    # (`python -m train.train --config=configs/...`); installed, they would be top-level packages
    # named `train` and `configs` in site-packages.
    packages=find_packages(include=["invertible_keras", "invertible_keras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<4",
        "tensorflow-probability==0.25.*",
        "tf-keras==2.21.*",  # tensorflow-probability imports it
        "tensorflow-datasets==4.9.*",
        "numpy",
        "absl-py",
        "ml_collections",
        "matplotlib",
        "psutil",
        "tensorboard",
    ],
    extras_require={
        "test": ["pytest", "setuptools"],
        # bench/peer_freia.py only; torch pinned to the CPU wheel (a range pulls CUDA builds).
        "bench": ["torch==2.13.0", "FrEIA", "scipy"],
    },
)
