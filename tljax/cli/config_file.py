"""Config files for ``tljax train`` and ``tljax sweep``: find, load, override, check.

``--config PATH[:ARG]`` names a Python file whose ``get_config(arg)``
returns the experiment's ``ml_collections.ConfigDict`` (big_vision style). A
relative path is looked up in the current directory first, then among the
configs packaged with tljax (``tljax.configs``, the repository's
``configs/`` directory); with no ``--config`` the packaged ``digits.py``
runs. Each ``--set key=value`` is converted to the field's type
(:func:`apply_override`), and the result is checked by
:func:`tljax.config.check_config` (keys, types, values) without importing
JAX. A bad file, argument or value is a :class:`CommandError`, and so is a
``--workdir`` that cannot be one (:func:`check_workdir`).
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import re

from ml_collections import ConfigDict

from tljax import configs as packaged_configs
from tljax import errors
from tljax.config import _FREE_FORM as FREE_FORM_GROUPS
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
  if isinstance(value, str):
    # Not a Python literal (bare words): (a, b), [a, b] or a,b.
    inner = value.strip()
    if inner[:1] + inner[-1:] in ("()", "[]"):
      inner = inner[1:-1]
    if "," in inner or inner != value.strip():
      return tuple(
          _literal(item.strip()) for item in inner.split(",") if item.strip()
      )
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
  count = _literal(text.strip())
  if key == "seeds" and isinstance(count, int) and not isinstance(count, bool):
    # configs/x.py:seeds=3 counts seeds (0, 1, 2); this field lists them.
    raise CommandError(
        f"--set {item}: seeds is a list of seed numbers: --set seeds=0,1,2 "
        f"(this one alone: --set seeds={count},); a config file's argument "
        f"counts them: configs/<file>.py:seeds={count} runs seeds "
        f"0..{count - 1}"
    )
  if last in node:
    value = _literal(text)
    if key in FREE_FORM_GROUPS and isinstance(value, dict):
      # A free-form group (a source's kwargs, ...) is replaced whole:
      # --set target.kwargs={} clears what the config gave another source.
      node[last] = ConfigDict(value)
      return
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


def check_workdir(path: str, flag: str = "--workdir") -> None:
  """Refuses a ``path`` that is not, and cannot become, a writable directory.

  Checked before anything is imported or trained: an existing file there
  (or above it), or a directory that cannot be written, is a bad argument
  (exit status 2), not a failure found minutes later. Nothing is created.
  """
  absolute = os.path.abspath(path)
  existing = absolute
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise CommandError(
        f"{flag} {path}: {existing} is a file, not a directory; give a new "
        "or existing directory"
    )
  if not os.access(existing, os.W_OK | os.X_OK):
    raise CommandError(
        f"{flag} {path}: permission denied: {existing} cannot be written; "
        f"give a writable work dir ({flag})"
    )


def _kwargs_mismatch(config: ConfigDict, error: TypeError) -> str | None:
  """The config keys behind a source's "unexpected keyword argument", if any.

  A config's ``source.kwargs`` / ``target.kwargs`` are written for its own
  sources (``configs/moons.py``: ``num_examples``, ``rotation_degrees``);
  ``--set target.name=...`` to another source keeps them, and the source
  refuses the first it does not take.
  """
  found = re.search(r"unexpected keyword argument '(\w+)'", str(error))
  if found is None:
    return None
  option = found.group(1)
  domains = [
      domain
      for domain in ("source", "target")
      if option in (config[domain].get("kwargs") or {})
  ]
  refusing = _refusing_source(error)
  if refusing is not None and len(domains) > 1:
    domains = [d for d in domains if config[d].name == refusing] or domains
  if not domains:
    return None
  keys = " and ".join(f"'{domain}.kwargs.{option}'" for domain in domains)
  names = " / ".join(repr(config[domain].name) for domain in domains)
  given = "; ".join(
      f"{domain}.kwargs: {sorted(config[domain].kwargs)}" for domain in domains
  )
  clear = " ".join(f"--set {domain}.kwargs={{}}" for domain in domains)
  return (
      f"config key {keys}: {names} takes no option {option!r} ({given}); "
      "fix the key, or, when the config wrote them for another source, "
      f"clear them: {clear}"
  )


def _refusing_source(error: BaseException) -> str | None:
  """The ``name`` of the innermost :func:`tljax.data.get_source` call ``error`` left."""
  name = None
  trace = error.__traceback__
  while trace is not None:
    frame = trace.tb_frame
    if frame.f_code.co_name == "get_source" and "name" in frame.f_locals:
      name = frame.f_locals["name"]
    trace = trace.tb_next
  return name if isinstance(name, str) else None


@contextlib.contextmanager
def config_errors(config: ConfigDict | None = None):
  """A ``ValueError`` raised while running becomes a :class:`CommandError`.

  Some values are checked only where they are used (a model option by the
  model, an optimizer setting by its builder), after the run has started;
  tljax raises a ``ValueError`` naming the key for them, which the command
  prints as one line with exit status 2 like the checks made up front. So
  does a ``TypeError`` from a data source given an option of
  ``config``'s ``source.kwargs`` / ``target.kwargs`` that it does not take.
  """
  try:
    yield
  except errors.RUN_FAILURES:
    raise  # not a config value: reported by main() with exit status 1
  except ValueError as error:
    raise CommandError(str(error)) from error
  except TypeError as error:
    message = None if config is None else _kwargs_mismatch(config, error)
    if message is None:
      raise
    raise CommandError(message) from error
