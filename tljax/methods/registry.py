"""The registry of training recipes by name."""

from __future__ import annotations

from tljax.methods.base import Method, MethodBuilder

_METHODS: dict[str, MethodBuilder] = {}


def register_method(name: str):
  """Decorator: registers ``builder(config, model) -> Method`` under ``name``."""

  def decorator(builder: MethodBuilder) -> MethodBuilder:
    if name in _METHODS:
      raise ValueError(f"method {name!r} is already registered")
    _METHODS[name] = builder
    return builder

  return decorator


def available_methods() -> list[str]:
  return sorted(_METHODS)


def get_method(name: str) -> MethodBuilder:
  """The builder registered as ``name``; unknown names list the registered ones."""
  if name not in _METHODS:
    raise ValueError(f"method {name!r} is unknown; registered methods: "
                     f"{available_methods()}")
  return _METHODS[name]


def build_method(name: str, config, model) -> Method:
  return get_method(name)(config, model)
