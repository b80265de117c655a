"""The library never imports the application: no `configs` or `train` from `invertible_keras/`.

`configs/` and `train/` are run from the repository root and are not installed (`setup.py`), so
an installed library that imported them would fail, or import someone else's `train`.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
APPLICATION = ("configs", "train")


def _imported_modules(path):
    """Every module name an `import` or `from ... import` statement of `path` names, at any depth."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _is_application(module):
    return module.split(".")[0] in APPLICATION


def test_the_scan_sees_application_imports(tmp_path):
    # The test below must be able to fail: a planted import of each kind is found.
    planted = tmp_path / "planted.py"
    planted.write_text("import configs.base\ndef f():\n    from train import experiments\n")
    assert [m for m in _imported_modules(planted) if _is_application(m)] == ["configs.base", "train"]


def test_library_source_never_imports_configs_or_train():
    offenders = {str(path.relative_to(ROOT)): module
                 for path in sorted((ROOT / "invertible_keras").rglob("*.py"))
                 for module in _imported_modules(path) if _is_application(module)}
    assert not offenders, f"the library imports the application: {offenders}"

