"""docs/api.md is what scripts/api_reference.py writes from the current docstrings."""

import importlib
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script():
  spec = importlib.util.spec_from_file_location(
      "api_reference_script", os.path.join(REPO, "scripts", "api_reference.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def read_api_md():
  with open(os.path.join(REPO, "docs", "api.md"), encoding="utf-8") as stream:
    return stream.read()


def test_api_md_is_up_to_date():
  script = load_script()
  assert (
      read_api_md() == script.api_reference()
  ), "docs/api.md is out of date: run python scripts/api_reference.py"


def test_every_public_name_has_an_entry():
  script = load_script()
  markdown = read_api_md()
  for module_name in script.MODULES:
    module = importlib.import_module(module_name)
    assert f"\n## {module_name}\n" in markdown
    first_line = module.__doc__.strip().splitlines()[0]
    assert first_line in markdown, module_name
    for name in module.__all__:
      assert f"### `{module_name}.{name}`" in markdown, f"{module_name}.{name}"


def test_signatures_and_docstrings_are_rendered(tmp_path):
  script = load_script()
  output = tmp_path / "api.md"
  assert script.main(["--output", str(output)]) == 0
  markdown = output.read_text(encoding="utf-8")
  # A function: signature without quotes, the docstring's first line.
  assert (
      "mmd(source_features: jax.Array, target_features: jax.Array, *,"
      in markdown
  )
  assert (
      "class MetricWriter(workdir: str | os.PathLike, *, tensorboard: "
      "bool = False, resume_step: int | None = None)" in markdown
  )
  assert "- `MetricWriter.close() -> None`:" in markdown
  assert ":func:`" not in markdown
  assert script.main(["--output", str(output), "--check"]) == 0
  output.write_text(markdown + "stale\n", encoding="utf-8")
  assert script.main(["--output", str(output), "--check"]) == 1
