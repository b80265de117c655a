"""Every field of every config (and variant) can be overridden on the command line.

The flags are parsed exactly as `python -m train.train` parses them: `config_flags` with
`--config=configs/<file>.py:<variant>` and one `--config.<field>=<value>` per field.
"""

import importlib

import pytest
from absl import flags
from ml_collections import config_flags

CONFIG_FILES = ("smoke", "spheres", "fashion_mnist", "mnist", "imagenet")
CASES = [(name, variant) for name in CONFIG_FILES
         for variant in importlib.import_module(f"configs.{name}").VARIANTS]
# A value of each type different from every default, as (command-line text, parsed value).
NEW_VALUES = {str: ("override", "override"), int: ("7", 7), float: ("0.25", 0.25)}


def parse(argv):
    """Parses `argv` with a fresh `FlagValues` as the binaries do; returns the config."""
    argv = ["train", *argv]
    flag_values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", None, flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    return holder.value


def leaves(config, prefix=""):
    """`(dotted name, field type, value)` of every leaf field, placeholders included."""
    for key in config.keys():
        value = config[key]
        if hasattr(value, "keys"):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", config.get_ref(key).get_type(), value


def new_value(field_type, value):
    if field_type is bool:
        return str(not value), not value
    if field_type is tuple:
        return str(tuple(value)), tuple(value)
    return NEW_VALUES[field_type]


@pytest.mark.parametrize("name,variant", CASES)
def test_every_field_is_overridable_including_none_defaults(name, variant):
    config = importlib.import_module(f"configs.{name}").get_config(variant)
    expected = {path: new_value(field_type, value) for path, field_type, value in leaves(config)}
    parsed = parse([f"--config=configs/{name}.py:{variant}"]
                   + [f"--config.{path}={text}" for path, (text, _) in expected.items()])
    assert {path: value for path, _, value in leaves(parsed)} == {path: v for path, (_, v) in expected.items()}


@pytest.mark.parametrize("flag,field,value", [
    ("--config.data.idx_dir=/data/mnist", "data.idx_dir", "/data/mnist"),
    ("--config.data.data_dir=/data/tfds", "data.data_dir", "/data/tfds"),
    ("--config.train.steps_per_epoch=5", "train.steps_per_epoch", 5),
    ("--config.train.eval_steps=2", "train.eval_steps", 2),
    ("--config.train.clipnorm=1", "train.clipnorm", 1.0),
])
def test_fields_defaulting_to_none_take_a_value(flag, field, value):
    section, key = field.split(".")
    assert importlib.import_module("configs.base").get_config()[section][key] is None
    assert parse(["--config=configs/base.py", flag])[section][key] == value


def test_smoke_takes_a_variant_like_the_other_configs():
    assert parse(["--config=configs/smoke.py:cpu"]).to_dict() == parse(["--config=configs/smoke.py"]).to_dict()
    with pytest.raises(ValueError, match="Unknown variant 'paper'"):
        importlib.import_module("configs.smoke").get_config("paper")
