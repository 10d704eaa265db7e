"""The README's Python examples run as written."""

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as stream:
    return re.findall(r"```python\n(.*?)```", stream.read(), flags=re.S)


def test_readme_has_python_examples():
  assert len(python_blocks()) >= 2


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_example_runs(index, tmp_path, monkeypatch):
  monkeypatch.setenv("TLJAX_DATA_DIR", str(tmp_path))
  namespace = {}
  exec(compile(python_blocks()[index], f"README.md[python {index}]", "exec"),
       namespace)
  assert namespace  # the block defined its names
