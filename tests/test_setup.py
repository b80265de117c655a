"""`pip install` installs the library and nothing else (no top-level `train` or `configs`)."""

import pathlib
import runpy
from unittest import mock

import setuptools

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_setup_installs_only_the_invertible_keras_package(monkeypatch):
    monkeypatch.chdir(ROOT)
    with mock.patch.object(setuptools, "setup") as setup:
        runpy.run_path(str(ROOT / "setup.py"))
    packages = set(setup.call_args.kwargs["packages"])
    library = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "invertible_keras").rglob("__init__.py")}
    assert packages == library, sorted(packages ^ library)
