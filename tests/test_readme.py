"""The README's Python examples run as written, in order, as one session."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as stream:
    return re.findall(r"```python\n(.*?)```", stream.read(), flags=re.S)


def test_readme_examples_run_in_order(tmp_path, monkeypatch):
  monkeypatch.setenv("TLJAX_DATA_DIR", str(tmp_path))
  blocks = python_blocks()
  assert len(blocks) >= 3
  namespace = {}
  for index, block in enumerate(blocks):
    exec(compile(block, f"README.md[python {index}]", "exec"), namespace)
  # The rules example really froze conv1 and scaled the rest.
  assert "conv1" not in namespace["trainable"]["backbone"]
  assert set(namespace["frozen"]["backbone"]) == {"conv1"}
