"""The floors of the house: tljax's imports run one way, downwards.

Every module under tljax/ is parsed with ``ast`` (nothing is imported), so the
test sees the imports as written. ``FLOORS`` is the table docs/design.md
repeats: a package (or top-level module) may import one on its own floor or
below, never above; on top of that no two modules import each other, directly
or around a loop; and a tljax import inside a function, which would hide an
upward import or a loop from both readers and this test, is allowed only in
tljax/cli/commands.py (each subcommand of the command line imports what it
runs when it runs) and of a module that wraps an optional heavy dependency
(tljax.data.builders, the TFDS builders, is imported where
tensorflow_datasets would be).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tljax")

# Floor 0 at the bottom. A name is a subpackage or a module of tljax/;
# "tljax" is the package's own __init__.
FLOORS = (
    # 0. Foundations: argument checks, errors, the loss contract of the step,
    #    the on-disk checkpoint and run-directory formats, the config's
    #    fields, small solvers.
    (
        "checks",
        "errors",
        "losses",
        "checkpoint",
        "rundir_format",
        "config",
        "solvers",
    ),
    # 1. The loss libraries: pure functions of arrays, what research users
    #    import into their own JAX code.
    ("align", "select", "reweight", "relational", "unsupervised", "transport"),
    # 2. Data, models and parameter trees.
    ("data", "models", "params"),
    # 3. Recipes: a loss built from the floors below, registered by name.
    ("methods",),
    # 4. The train core and the runners (experiment, sweep, rank-sources).
    ("train",),
    # 5. Reports read finished runs.
    ("report",),
    # 6. The command line and the package's front door.
    ("cli", "__main__", "tljax", "configs"),
)
FLOOR = {name: level for level, names in enumerate(FLOORS) for name in names}
# Imports of these stay lazy (inside functions): optional, heavy, or both.
LAZY_DEPENDENCIES = (
    "matplotlib",
    "tensorboardX",
    "tensorflow_datasets",
    "torch",
)
# The subcommands of the command line (not the rest of tljax.cli, whose
# imports are all at module level).
IN_FUNCTION_TLJAX_IMPORTS_ALLOWED = ("tljax.cli.commands",)
LOSS_LIBRARIES = (
    "tljax.align",
    "tljax.select",
    "tljax.reweight",
    "tljax.relational",
)
HEAVY_MODULES = ("orbax", "tensorflow_datasets", "matplotlib")


def _modules() -> dict[str, tuple[str, bool]]:
  """``{dotted name: (path, is_package)}`` of every module under tljax/."""
  modules = {}
  for directory, _, files in os.walk(PACKAGE):
    for file in sorted(files):
      if not file.endswith(".py"):
        continue
      path = os.path.join(directory, file)
      parts = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
      is_package = parts[-1] == "__init__"
      if is_package:
        parts = parts[:-1]
      modules[".".join(parts)] = (path, is_package)
  return modules


MODULES = _modules()


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  if not node.level:
    return node.module or ""
  base = module.split(".")
  if not is_package:
    base = base[:-1]
  base = base[: len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def _parse(module: str) -> ast.Module:
  path, _ = MODULES[module]
  with open(path, encoding="utf-8") as file:
    return ast.parse(file.read(), path)


def _wraps_lazy_dependency(module: str) -> bool:
  """Whether ``module`` imports a :data:`LAZY_DEPENDENCIES` one at module level.

  Such a module (tljax.data.builders: TFDS builder classes) is the optional
  dependency's part of tljax, and is imported where that dependency would be.
  """
  for node in _parse(module).body:
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and not node.level:
      names = [node.module or ""]
    else:
      continue
    if any(name.split(".")[0] in LAZY_DEPENDENCIES for name in names):
      return True
  return False


def _imports(module: str) -> list[tuple[str, int, bool]]:
  """``(imported tljax module, line, inside a function)`` for each import."""
  _, is_package = MODULES[module]
  tree = _parse(module)
  in_function = set()
  for function in ast.walk(tree):
    if isinstance(
        function, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    ):
      in_function.update(
          id(node)
          for node in ast.walk(function)
          if isinstance(node, (ast.Import, ast.ImportFrom))
      )
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      name = _absolute(module, is_package, node)
      # ``from tljax.a import b`` imports the module tljax.a.b if there is one.
      targets = [
          f"{name}.{alias.name}" if f"{name}.{alias.name}" in MODULES else name
          for alias in node.names
      ]
    else:
      continue
    found.extend(
        (target, node.lineno, id(node) in in_function)
        for target in targets
        if target == "tljax" or target.startswith("tljax.")
    )
  return found


IMPORTS = {module: _imports(module) for module in MODULES}


def _floor_name(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_floor():
  unplaced = sorted({_floor_name(module) for module in MODULES} - set(FLOOR))
  assert not unplaced, f"add these to FLOORS: {unplaced}"


def test_no_package_imports_one_on_a_floor_above_it():
  upward = []
  for module, imports in IMPORTS.items():
    for target, line, _ in imports:
      if FLOOR[_floor_name(target)] > FLOOR[_floor_name(module)]:
        upward.append(
            f"{module}:{line} imports {target} (floor "
            f"{FLOOR[_floor_name(module)]} -> "
            f"{FLOOR[_floor_name(target)]})"
        )
  assert not upward, "upward imports:\n" + "\n".join(upward)


def _cycle() -> list[str] | None:
  """One import loop between tljax modules, or None."""
  graph = {
      module: {target for target, _, _ in imports if target != module}
      for module, imports in IMPORTS.items()
  }
  state, stack = {}, []

  def visit(module):
    state[module] = "open"
    stack.append(module)
    for target in sorted(graph[module]):
      if state.get(target) == "open":
        return stack[stack.index(target) :] + [target]
      if target not in state:
        loop = visit(target)
        if loop:
          return loop
    stack.pop()
    state[module] = "done"
    return None

  for module in sorted(graph):
    if module not in state:
      loop = visit(module)
      if loop:
        return loop
  return None


def test_no_import_cycle_between_modules():
  loop = _cycle()
  assert loop is None, "import loop: " + " -> ".join(loop)


def test_tljax_modules_are_imported_at_module_level():
  hidden = [
      f"{module}:{line} imports {target} inside a function"
      for module, imports in IMPORTS.items()
      if module not in IN_FUNCTION_TLJAX_IMPORTS_ALLOWED
      for target, line, in_function in imports
      if in_function and not _wraps_lazy_dependency(target)
  ]
  assert not hidden, "\n".join(hidden)


def _loaded(module: str, among: tuple[str, ...], then: str = "") -> str:
  """Which of ``among`` a fresh interpreter has loaded after ``import module``.

  ``then``: a statement run after the import (before the modules are listed).
  """
  program = (
      "import sys; import {0}; {2}; print(sorted({{name.split('.')[0] for "
      "name in sys.modules}} & set({1!r})))"
  ).format(module, among, then or "pass")
  completed = subprocess.run(
      [sys.executable, "-c", program],
      cwd=ROOT,
      capture_output=True,
      text=True,
      check=False,
  )
  assert completed.returncode == 0, completed.stderr[-2000:]
  return completed.stdout.strip()


@pytest.mark.parametrize("library", LOSS_LIBRARIES)
def test_loss_libraries_import_without_orbax_tfds_or_matplotlib(library):
  assert _loaded(library, HEAVY_MODULES) == "[]"


@pytest.mark.parametrize("module", ["tljax.cli", "tljax.config"])
def test_command_line_and_config_fields_import_without_jax(module):
  # `tljax --help` and a config file (which imports tljax.config) answer
  # without the seconds JAX takes to import.
  assert _loaded(module, ("jax", "flax", "optax", "orbax")) == "[]"


def test_command_line_help_needs_no_jax():
  # `tljax --help` and each subcommand's build the whole parser; the flags of
  # every subcommand are defined without importing what it runs.
  loaded = _loaded(
      "tljax.cli", ("jax", "flax", "optax", "orbax"), "tljax.cli.build_parser()"
  )
  assert loaded == "[]"
