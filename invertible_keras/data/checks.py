"""Argument checks shared by the data pipelines; errors name the field and the value received."""

import numbers


def is_int(value):
    """True for Python and numpy integers, False for bools (which are ints to Python)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_choice(field, value, choices):
    if value not in choices:
        raise ValueError(f"`{field}` must be one of {choices}. Received: {field}={value!r}")
