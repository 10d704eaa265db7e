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
  """The ``a/b/c`` name of a ``jax.tree_util`` key path.

  Raises:
    ValueError: if ``path`` is not a tuple or list of keys (a string would be
      split into characters).
  """
  if not isinstance(path, (tuple, list)):
    raise ValueError(
        f"path must be a jax.tree_util key path (a tuple of keys), got "
        f"{type(path).__name__} {path!r}"
    )
  return "/".join(_key_name(key) for key in path)


def check_tree(tree, argument: str) -> None:
  """A ``ValueError`` naming ``argument`` unless ``tree`` is a mapping."""
  if not isinstance(tree, Mapping):
    raise ValueError(
        f"{argument} must be a nested mapping (dict) of arrays, "
        f"got {type(tree).__name__}"
    )


def flatten_tree(tree: Mapping, argument: str) -> dict[str, Any]:
  """:func:`flatten` with errors naming ``argument``."""
  check_tree(tree, argument)
  try:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  except TypeError as error:  # e.g. keys of mixed types, which cannot be sorted
    raise ValueError(f"{argument} cannot be flattened: {error}") from None
  flat = {}
  for path, leaf in leaves:
    slashed = [_key_name(key) for key in path if "/" in _key_name(key)]
    if slashed:
      raise ValueError(
          f"{argument} has a key {slashed[0]!r} containing '/', the separator "
          "of parameter names, so its name would be ambiguous"
      )
    name = path_name(path)
    if name in flat:
      raise ValueError(
          f"{argument} has two leaves named {name!r} (keys of "
          "different types with the same text)"
      )
    flat[name] = leaf
  return flat


def flatten(tree: Mapping) -> dict[str, Any]:
  """Nested dict -> ``{"a/b/c": leaf}`` in tree order.

  ``None`` leaves and empty sub-dicts have no leaf, so they vanish.

  Raises:
    ValueError: if ``tree`` is not a mapping, or a key contains ``/`` (its
      name would be ambiguous) or two keys give the same name.
  """
  return flatten_tree(tree, "tree")


def unflatten(flat: Mapping[str, Any]) -> dict:
  """``{"a/b/c": leaf}`` -> nested dict (inverse of :func:`flatten`).

  Raises:
    ValueError: if ``flat`` is not a mapping with string keys, or a name is
      both a leaf and the parent of another name (``"a"`` and ``"a/b"``).
  """
  return unflatten_names(flat, "flat")


def unflatten_names(flat: Mapping[str, Any], argument: str) -> dict:
  """:func:`unflatten` with errors naming ``argument``."""
  check_tree(flat, argument)
  tree: dict = {}
  leaf_names = set()
  for name, leaf in flat.items():
    if not isinstance(name, str):
      raise ValueError(
          f"{argument} must have string keys (a/b/c names), got " f"{name!r}"
      )
    *parents, last = name.split("/")
    node = tree
    for depth, key in enumerate(parents):
      prefix = "/".join(parents[: depth + 1])
      if prefix in leaf_names:
        raise ValueError(
            f"{argument} names {prefix!r} both as a leaf and as "
            f"the parent of {name!r}"
        )
      node = node.setdefault(key, {})
    if last in node:
      raise ValueError(
          f"{argument} names {name!r} both as a leaf and as the "
          "parent of other names"
      )
    node[last] = leaf
    leaf_names.add(name)
  return tree


def _check_rules(
    rules: Rules, argument: str = "rules"
) -> list[tuple[re.Pattern, Any]]:
  if isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
    raise ValueError(
        f"{argument} must be a sequence of (regex, value) pairs, got {rules!r}"
    )
  compiled = []
  for index, rule in enumerate(rules):
    if (
        isinstance(rule, (str, bytes))
        or not isinstance(rule, Sequence)
        or len(rule) != 2
        or not isinstance(rule[0], str)
    ):
      raise ValueError(
          f"{argument}[{index}] must be a (regex, value) pair, got {rule!r}"
      )
    try:
      compiled.append((re.compile(rule[0]), rule[1]))
    except re.error as error:
      raise ValueError(
          f"{argument}[{index}] has an invalid regex " f"{rule[0]!r}: {error}"
      ) from None
  return compiled


def match_rules(tree: Mapping, rules: Rules) -> dict[str, Any]:
  """Maps every leaf name of ``tree`` to the value of its first matching rule.

  Raises:
    ValueError: if ``tree`` is not a mapping, a rule is malformed (not a
      ``(regex, value)`` pair, or an invalid regex), or some names match no
      rule (all of them are listed).
  """
  return match_named_rules(
      tree, rules, tree_argument="tree", rules_argument="rules"
  )


def match_named_rules(
    tree: Mapping, rules: Rules, *, tree_argument: str, rules_argument: str
) -> dict[str, Any]:
  """:func:`match_rules` with errors naming the caller's arguments."""
  flat = flatten_tree(tree, tree_argument)
  compiled = _check_rules(rules, rules_argument)
  values, unmatched = {}, []
  for name in flat:
    for pattern, value in compiled:
      if pattern.fullmatch(name):
        values[name] = value
        break
    else:
      unmatched.append(name)
  if unmatched:
    raise ValueError(
        f"{rules_argument} match no rule for parameters {unmatched}; every "
        f"parameter must match one of the patterns "
        f"{[rule[0] for rule in rules]} (add a catch-all rule such as "
        "('.*', None) to freeze the rest)"
    )
  return values


# Strings that look meant to freeze a parameter but are not FROZEN: a typo
# would silently make the parameter trainable.
_NEAR_FROZEN = frozenset({"frozen", "freeze", "none", "null"})


def is_frozen(value) -> bool:
  """Whether a rule value marks a parameter as frozen.

  ``None`` and the string ``"frozen"`` freeze; any other value means
  trainable.

  Raises:
    ValueError: for a string that looks meant to freeze but is not exactly
      ``"frozen"`` (``"Frozen"``, ``"freeze"``, ``"None"``, ``" frozen"``...),
      which would otherwise silently train the parameter.
  """
  if value is None:
    return True
  if isinstance(value, str):
    if value == FROZEN:
      return True
    if value.strip().lower() in _NEAR_FROZEN:
      raise ValueError(
          f"value {value!r} is not a frozen marker: freeze with None or "
          f"exactly {FROZEN!r}"
      )
  return False


def split(params: Mapping, rules: Rules) -> tuple[dict, dict]:
  """Splits ``params`` into disjoint ``(trainable, frozen)`` nested dicts.

  Args:
    params: nested dict of arrays.
    rules: ordered ``(regex, value)`` pairs over ``a/b/c`` names; first full
      match wins; a value of ``None`` or ``"frozen"`` freezes the parameter.

  Returns:
    Two nested dicts holding only their own leaves (empty sub-dicts pruned), so
    ``merge(*split(params, rules)) == params``.

  Raises:
    ValueError: if ``params`` is not a mapping, a rule is malformed, a
      parameter matches no rule, or a rule's value is a near miss of
      ``"frozen"`` (see :func:`is_frozen`).
  """
  values = match_named_rules(
      params, rules, tree_argument="params", rules_argument="rules"
  )
  flat = flatten_tree(params, "params")
  frozen_names = set()
  for name, value in values.items():
    try:
      if is_frozen(value):
        frozen_names.add(name)
    except ValueError as error:
      raise ValueError(f"rules give parameter {name!r} the {error}") from None
  trainable = {
      name: leaf for name, leaf in flat.items() if name not in frozen_names
  }
  frozen = {name: leaf for name, leaf in flat.items() if name in frozen_names}
  return unflatten(trainable), unflatten(frozen)


def merge(trainable: Mapping, frozen: Mapping) -> dict:
  """Deep union of two disjoint parameter trees (inverse of :func:`split`).

  Raises:
    ValueError: if either is not a mapping, they share a parameter, or a
      parameter of one is a sub-tree of the other (``a`` and ``a/b``).
  """
  flat_trainable = flatten_tree(trainable, "trainable")
  flat_frozen = flatten_tree(frozen, "frozen")
  overlap = sorted(set(flat_trainable) & set(flat_frozen))
  if overlap:
    raise ValueError(
        f"trainable and frozen share parameters {overlap}; they must be "
        "disjoint"
    )
  try:
    return unflatten({**flat_trainable, **flat_frozen})
  except ValueError as error:
    raise ValueError(
        f"trainable and frozen do not fit together: " f"{error}"
    ) from None
