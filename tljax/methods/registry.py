"""The registry of training recipes by name, with each recipe's settings.

A recipe registers its builder together with its hyper-parameters and their
defaults::

    @register_method("dann", defaults=dict(trade_off=1.0, hidden_dim=500))
    def build_dann(config, model, *, trade_off, hidden_dim) -> Method: ...

A config sets them in one free-form block, ``config.method_kwargs``, which
applies to ``config.method`` only (its baselines, pretrain and teacher runs
use their recipes' defaults). :func:`build_method` merges the block into the
defaults, refusing an unknown key (naming it and the allowed ones) and a
value of the wrong type (naming the key), and calls the builder with the
result as keyword arguments.
"""

from __future__ import annotations

import ast

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from tljax.methods.base import Method, MethodBuilder

KWARGS_KEY = "method_kwargs"


@dataclasses.dataclass(frozen=True)
class _Recipe:
  builder: MethodBuilder
  defaults: Mapping[str, Any]
  check: Callable[[dict], None] | None


_METHODS: dict[str, _Recipe] = {}


def register_method(
    name: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    check: Callable[[dict], None] | None = None,
):
  """Decorator: registers ``builder(config, model, **settings) -> Method`` as ``name``.

  Args:
    name: the registry name (``config.method``).
    defaults: the recipe's hyper-parameters and their defaults; the builder
      receives every one of them as a keyword argument (the default, or the
      value ``config.method_kwargs`` gives). Their types are those of the
      defaults (an int is accepted for a float; tuples and mappings as such).
    check: ``check(settings)``, run on the merged settings by
      :func:`method_settings` (so also before anything is compiled, by
      :func:`tljax.train.experiment.check_experiment_config`); it raises a
      ``ValueError`` naming the key of a bad value.
  """
  defaults = dict(defaults or {})
  for key, value in defaults.items():
    if not isinstance(key, str) or not key.isidentifier():
      raise ValueError(
          f"register_method({name!r}): setting name {key!r} must "
          "be an identifier"
      )
    if value is None:
      raise ValueError(
          f"register_method({name!r}): the default of {key!r} "
          "must not be None (its type is the setting's type)"
      )

  def decorator(builder: MethodBuilder) -> MethodBuilder:
    if name in _METHODS:
      raise ValueError(f"method {name!r} is already registered")
    _METHODS[name] = _Recipe(builder, defaults, check)
    return builder

  return decorator


def available_methods() -> list[str]:
  return sorted(_METHODS)


def _recipe(name: str) -> _Recipe:
  if name not in _METHODS:
    raise ValueError(
        f"method {name!r} is unknown; registered methods: "
        f"{available_methods()}"
    )
  return _METHODS[name]


def get_method(name: str) -> MethodBuilder:
  """The builder registered as ``name``; unknown names list the registered ones."""
  return _recipe(name).builder


def method_defaults(name: str) -> dict:
  """The hyper-parameters recipe ``name`` declares, with their defaults."""
  return dict(_recipe(name).defaults)


def _plain(value):
  """ConfigDicts and mappings as dicts, lists as tuples (recursively)."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {key: _plain(item) for key, item in value.items()}
  if isinstance(value, list):
    return tuple(_plain(item) for item in value)
  return value


def _comma_separated(text: str) -> tuple:
  """``"kd,rkd"`` as ``("kd", "rkd")``, ``"0.5, 1"`` as ``(0.5, 1)``.

  How a sequence setting arrives from the command line
  (``--set method_kwargs.losses=kd,rkd``): each item a Python literal where
  it is one, else the string.
  """
  items = []
  for part in text.split(","):
    part = part.strip()
    if not part:
      continue
    try:
      items.append(ast.literal_eval(part))
    except (ValueError, SyntaxError):
      items.append(part)
  return tuple(items)


def _convert(name: str, key: str, value, default):
  """``value`` as the type of ``default``, or a ``ValueError`` naming the key."""
  expected = type(default)
  if isinstance(default, bool):
    ok = isinstance(value, bool)
  elif isinstance(default, int):
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif isinstance(default, float):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    value = float(value) if ok else value
  elif isinstance(default, str):
    ok = isinstance(value, str)
  elif isinstance(default, tuple):
    if isinstance(value, list):
      value = tuple(value)
    elif isinstance(value, str):
      value = _comma_separated(value)
    ok = isinstance(value, tuple)
    expected = tuple
  elif isinstance(default, Mapping):
    ok = isinstance(value, Mapping)
    expected = dict
  else:
    ok = isinstance(value, expected)
  if not ok:
    raise ValueError(
        f"config key '{KWARGS_KEY}.{key}' of method {name!r} "
        f"must be of type {expected.__name__}, got "
        f"{type(value).__name__} {value!r}"
    )
  return value


def method_settings(name: str, kwargs: Mapping | None = None) -> dict:
  """Recipe ``name``'s defaults updated by ``kwargs`` (``config.method_kwargs``), checked.

  Raises:
    ValueError: a key the recipe does not declare (naming it and the allowed
      ones), a value of another type than its default (naming the key), or
      a value the recipe's own check refuses.
  """
  recipe = _recipe(name)
  given = _plain(kwargs or {})
  unknown = sorted(set(given) - set(recipe.defaults))
  if unknown:
    raise ValueError(
        f"config key '{KWARGS_KEY}.{unknown[0]}' is unknown for "
        f"method {name!r}; allowed keys: "
        f"{sorted(recipe.defaults)}"
    )
  settings = _plain(recipe.defaults)
  for key, value in given.items():
    settings[key] = _convert(name, key, value, recipe.defaults[key])
  if recipe.check is not None:
    recipe.check(settings)
  return settings


def config_kwargs(name: str, config) -> Mapping:
  """The ``method_kwargs`` that apply to recipe ``name`` in ``config``.

  ``config.method_kwargs`` for ``config.method``; none (the defaults) for
  any other recipe the experiment runs (baselines, pretrain and teacher
  runs).
  """
  if name != config.get("method"):
    return {}
  return config.get(KWARGS_KEY) or {}


def build_method(
    name: str, config, model, *, kwargs: Mapping | None = None
) -> Method:
  """Builds recipe ``name`` for ``config`` and ``model``.

  Its settings are :func:`method_settings` of ``kwargs``, by default
  :func:`config_kwargs` (``config.method_kwargs`` when ``name`` is
  ``config.method``).
  """
  recipe = _recipe(name)
  settings = method_settings(
      name, config_kwargs(name, config) if kwargs is None else kwargs
  )
  return recipe.builder(config, model, **settings)
