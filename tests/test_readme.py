"""Every ```python block of the README runs as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README block {index}", "exec"), {})


@pytest.mark.parametrize("text", ["--quick", "grid_interp.png", "--tf_logs", "configs/smoke.py:cpu",
                                  "--config.data.idx_dir=DIR", "exits with status 1"])
def test_readme_documents_the_command_line(text):
    assert text in README.read_text()
