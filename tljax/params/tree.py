"""Parameter trees as ``a/b/c`` names, and the trainable/frozen split.

tljax keeps model parameters as plain nested dicts of arrays. A leaf is named by
the ``/``-joined keys on its path (``backbone/conv1/kernel``), which is what the
rules of :mod:`tljax.params` match against.

Splitting by rules (big_vision style): an ordered list of ``(regex, value)``
pairs; each parameter name takes the value of the first rule whose regex
*fully* matches it, and every parameter must be matched by some rule. A value of
``None`` (or the string ``"frozen"``) marks the parameter frozen; any other value
marks it trainable (the value is kept for per-group settings such as a learning
rate multiplier). :func:`split` turns one parameter tree into two disjoint trees,
``trainable`` and ``frozen``, so that a train step differentiates only the first
and an optimizer holds state only for it; :func:`merge` puts them back together
for the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax

FROZEN = "frozen"
Rules = Sequence[tuple[str, Any]]


def _key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def path_name(path) -> str:
  """The ``a/b/c`` name of a ``jax.tree_util`` key path."""
  return "/".join(_key_name(key) for key in path)


def flatten(tree: Mapping) -> dict[str, Any]:
  """Nested dict -> ``{"a/b/c": leaf}`` in tree order."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {path_name(path): leaf for path, leaf in leaves}


def unflatten(flat: Mapping[str, Any]) -> dict:
  """``{"a/b/c": leaf}`` -> nested dict (inverse of :func:`flatten`)."""
  tree: dict = {}
  for name, leaf in flat.items():
    *parents, last = name.split("/")
    node = tree
    for key in parents:
      node = node.setdefault(key, {})
    node[last] = leaf
  return tree


def _check_rules(rules: Rules) -> list[tuple[re.Pattern, Any]]:
  if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
    raise ValueError(
        f"rules must be a sequence of (regex, value) pairs, got {rules!r}")
  compiled = []
  for index, rule in enumerate(rules):
    if not isinstance(rule, Sequence) or len(rule) != 2 or not isinstance(
        rule[0], str):
      raise ValueError(
          f"rules[{index}] must be a (regex, value) pair, got {rule!r}")
    try:
      compiled.append((re.compile(rule[0]), rule[1]))
    except re.error as error:
      raise ValueError(
          f"rules[{index}] has an invalid regex {rule[0]!r}: {error}") from None
  return compiled


def match_rules(tree: Mapping, rules: Rules) -> dict[str, Any]:
  """Maps every leaf name of ``tree`` to the value of its first matching rule.

  Raises:
    ValueError: if a rule is malformed, or if some names match no rule (all of
      them are listed).
  """
  compiled = _check_rules(rules)
  values, unmatched = {}, []
  for name in flatten(tree):
    for pattern, value in compiled:
      if pattern.fullmatch(name):
        values[name] = value
        break
    else:
      unmatched.append(name)
  if unmatched:
    raise ValueError(
        f"rules match no rule for parameters {unmatched}; every parameter must "
        f"match one of the patterns {[rule[0] for rule in rules]} (add a "
        "catch-all rule such as ('.*', None) to freeze the rest)")
  return values


def is_frozen(value) -> bool:
  """Whether a rule value marks a parameter as frozen."""
  return value is None or (isinstance(value, str) and value == FROZEN)


def split(params: Mapping, rules: Rules) -> tuple[dict, dict]:
  """Splits ``params`` into disjoint ``(trainable, frozen)`` nested dicts.

  Args:
    params: nested dict of arrays.
    rules: ordered ``(regex, value)`` pairs over ``a/b/c`` names; first full
      match wins; a value of ``None`` or ``"frozen"`` freezes the parameter.

  Returns:
    Two nested dicts holding only their own leaves (empty sub-dicts pruned), so
    ``merge(*split(params, rules)) == params``.
  """
  values = match_rules(params, rules)
  flat = flatten(params)
  trainable = {name: leaf for name, leaf in flat.items()
               if not is_frozen(values[name])}
  frozen = {name: leaf for name, leaf in flat.items()
            if is_frozen(values[name])}
  return unflatten(trainable), unflatten(frozen)


def merge(trainable: Mapping, frozen: Mapping) -> dict:
  """Deep union of two disjoint parameter trees (inverse of :func:`split`)."""
  flat_trainable, flat_frozen = flatten(trainable), flatten(frozen)
  overlap = sorted(set(flat_trainable) & set(flat_frozen))
  if overlap:
    raise ValueError(
        f"trainable and frozen share parameters {overlap}; they must be "
        "disjoint")
  return unflatten({**flat_trainable, **flat_frozen})
