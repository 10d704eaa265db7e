"""Config files for ``tljax train`` and ``tljax sweep``: find, load, override, check.

``--config PATH[:ARG]`` names a Python file whose ``get_config(arg)``
returns the experiment's ``ml_collections.ConfigDict`` (big_vision style). A
relative path is looked up in the current directory first, then among the
configs packaged with tljax (``tljax.configs``, the repository's
``configs/`` directory); with no ``--config`` the packaged ``digits.py``
runs. Each ``--set key=value`` is converted to the field's type
(:func:`apply_override`), and the result is checked by
:func:`tljax.config.check_config` (keys, types, values) without importing
JAX. A bad file, argument or value is a :class:`CommandError`.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os

from ml_collections import ConfigDict

from tljax import configs as packaged_configs
from tljax import errors
from tljax.config import check_config  # keys, types, values: no JAX

CONFIGS_DIR = os.path.dirname(os.path.abspath(packaged_configs.__file__))
DEFAULT_CONFIG = os.path.join("configs", "digits.py")
# What --set key=true and TLJAX_TRACEBACK=1 accept.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class CommandError(Exception):
  """A bad command line; its message is printed as ``tljax <command>: error: ...``."""


def available_configs() -> list[str]:
  """The config files packaged with tljax (``tljax.configs``), by file name."""
  return sorted(
      name
      for name in os.listdir(CONFIGS_DIR)
      if name.endswith(".py") and not name.startswith("_")
  )


def packaged_config(path: str) -> str | None:
  """The packaged config ``path`` names (``configs/moons.py`` or ``moons.py``)."""
  parts = os.path.normpath(path).split(os.sep)
  if parts[0] == "configs":
    parts = parts[1:]
  if len(parts) != 1 or parts[0] not in available_configs():
    return None
  return os.path.join(CONFIGS_DIR, parts[0])


def _config_path(path: str | None) -> str:
  if path is None:
    return packaged_config(DEFAULT_CONFIG)
  if os.path.isfile(path):
    return path
  found = None if os.path.isabs(path) else packaged_config(path)
  if found is None:
    raise CommandError(
        f"--config {path!r}: config file not found in the current directory "
        f"({os.getcwd()}) nor among the packaged configs "
        f"{['configs/' + name for name in available_configs()]}"
    )
  return found


def load_config_file(spec: str | None) -> ConfigDict:
  """``get_config(arg)`` of ``PATH[:ARG]`` (no ``:ARG``: ``get_config()``)."""
  path, argument = spec, None
  if spec is not None and ".py:" in spec:
    path, argument = spec.split(".py:", 1)
    path += ".py"
  path = _config_path(path)
  name = "tljax_config_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(name, path)
  if module_spec is None:
    raise CommandError(f"config file {path!r} is not a Python file")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise CommandError(f"config file {path!r} defines no get_config(arg)")
  try:
    config = (
        module.get_config() if argument is None else module.get_config(argument)
    )
  except ValueError as error:
    raise CommandError(
        f"bad config argument {argument!r} for {path}: " f"{error}"
    ) from error
  if not isinstance(config, ConfigDict):
    raise CommandError(
        f"get_config() of {path!r} returned "
        f"{type(config).__name__}, not an ml_collections "
        "ConfigDict"
    )
  return config


def _literal(text: str):
  """A Python literal (number, tuple, None, ...) if ``text`` is one, else the string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _sequence(text: str) -> tuple:
  """``(0, 1)``, ``[0, 1]``, ``0,1``, ``0`` or ``""`` (empty) as a tuple."""
  if not text.strip():
    return ()
  value = _literal(text)
  if isinstance(value, (tuple, list)):
    return tuple(value)
  if isinstance(value, str) and "," in value:
    return tuple(_literal(item.strip()) for item in value.split(","))
  return (value,)


def convert_value(key: str, text: str, field_type: type):
  """``text`` as a value of ``field_type`` (the field's current type) for config key ``key``."""
  if text.strip().lower() == "none":
    return None
  try:
    if field_type is bool:
      if text.lower() in TRUE_WORDS:
        return True
      if text.lower() in FALSE_WORDS:
        return False
      raise ValueError(f"expected one of {list(TRUE_WORDS + FALSE_WORDS)}")
    if field_type is int:
      return int(text)
    if field_type is float:
      return float(text)
    if field_type is str:
      return text
    if field_type in (tuple, list):
      return field_type(_sequence(text))
  except ValueError as error:
    raise CommandError(
        f"--set {key}={text}: config key {key!r} takes a "
        f"value of type {field_type.__name__}; {error}"
    ) from error
  return _literal(text)


def apply_override(config: ConfigDict, item: str) -> None:
  """Applies one ``--set a.b=value``, converting the value to the field's type.

  A key the config does not have raises naming it; a new key inside an
  existing group is added (free-form groups such as ``model`` take any key)
  and left to :func:`tljax.config.check_config` to accept or reject (and,
  for the names the registries know, to
  :func:`tljax.train.experiment.check_experiment_config` when the run starts).
  """
  key, separator, text = item.partition("=")
  if not separator or not key:
    raise CommandError(f"--set {item!r} must look like key=value")
  *parents, last = key.split(".")
  node = config
  for part in parents:
    if not isinstance(node, ConfigDict) or part not in node:
      allowed = sorted(node.keys()) if isinstance(node, ConfigDict) else []
      raise CommandError(
          f"--set {item}: config key {key!r} is unknown; "
          f"allowed keys here: {allowed}"
      )
    node = node[part]
  if not isinstance(node, ConfigDict):
    raise CommandError(
        f"--set {item}: config key {'.'.join(parents)!r} is a "
        "value, not a group of keys"
    )
  if last in node:
    if isinstance(node[last], ConfigDict):
      raise CommandError(
          f"--set {item}: config key {key!r} is a group; set "
          f"one of its keys: {sorted(node[last].keys())}"
      )
    value = convert_value(key, text, node.get_type(last))
  else:
    value = _literal(text)
  try:
    node[last] = value
  except (AttributeError, KeyError, TypeError) as error:
    raise CommandError(f"--set {item}: {error}") from error


def load_config(spec: str | None, overrides=()) -> ConfigDict:
  """The config file's config with ``overrides`` applied, checked."""
  config = load_config_file(spec)
  for item in overrides:
    apply_override(config, item)
  try:
    check_config(config)
  except ValueError as error:
    raise CommandError(str(error)) from error
  return config


@contextlib.contextmanager
def config_errors():
  """A ``ValueError`` raised while running becomes a :class:`CommandError`.

  Some values are checked only where they are used (a model option by the
  model, an optimizer setting by its builder), after the run has started;
  tljax raises a ``ValueError`` naming the key for them, which the command
  prints as one line with exit status 2 like the checks made up front.
  """
  try:
    yield
  except errors.RUN_FAILURES:
    raise  # not a config value: reported by main() with exit status 1
  except ValueError as error:
    raise CommandError(str(error)) from error
