#!/usr/bin/env python
"""Writes docs/api.md, the API reference, from the docstrings of tljax's public modules.

For every module in ``MODULES``: its docstring, then every name in its
``__all__`` (sorted) with its signature and docstring; a class also lists its
public methods and properties. Nothing is written by hand, so the reference
follows the code: ``tests/test_api_reference.py`` fails when docs/api.md
differs from what this script writes.

  python scripts/api_reference.py                  # writes docs/api.md
  python scripts/api_reference.py --check          # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import sys
import typing

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(_REPO, "docs", "api.md")
MODULES = (
    "tljax.align",
    "tljax.reweight",
    "tljax.relational",
    "tljax.select",
    "tljax.params",
    "tljax.methods",
    "tljax.train",
    "tljax.data",
    "tljax.models",
    "tljax.unsupervised",
    "tljax.transport",
    "tljax.report",
)
_MAX_VALUE_CHARACTERS = 200


def _clean(text: str) -> str:
  """Docstring text as markdown: Sphinx roles become code, addresses vanish."""
  text = re.sub(
      r":(?:func|class|mod|meth|attr|data|obj|exc):`~?([^`]+)`", r"`\1`", text
  )
  return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _docstring(obj) -> str:
  doc = inspect.getdoc(obj)
  return _clean(doc) if doc else "*(no docstring)*"


def _anchor(name: str) -> str:
  """The anchor GitHub gives a heading ``name``."""
  return re.sub(r"[^\w\- ]", "", name.lower()).replace(" ", "-")


def _annotation(annotation) -> str:
  if isinstance(
      annotation, str
  ):  # postponed (from __future__ import annotations)
    return annotation
  if isinstance(annotation, typing.ForwardRef):
    return annotation.__forward_arg__
  return inspect.formatannotation(annotation)


def _default(value) -> str:
  if inspect.isclass(value) or inspect.isroutine(value):
    return f"{value.__module__}.{value.__qualname__}"
  return _clean(repr(value))


def _format_signature(signature: inspect.Signature) -> str:
  """``(a: int, *, b=1) -> float``, annotations unquoted, defaults by name."""
  parts, keyword_only_marked = [], False
  previous = None
  for parameter in signature.parameters.values():
    kind = parameter.kind
    if (
        previous == inspect.Parameter.POSITIONAL_ONLY
        and kind != inspect.Parameter.POSITIONAL_ONLY
    ):
      parts.append("/")
    if kind == inspect.Parameter.KEYWORD_ONLY and not keyword_only_marked:
      parts.append("*")
    if kind in (
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.KEYWORD_ONLY,
    ):
      keyword_only_marked = True
    prefix = {
        inspect.Parameter.VAR_POSITIONAL: "*",
        inspect.Parameter.VAR_KEYWORD: "**",
    }.get(kind, "")
    text = prefix + parameter.name
    if parameter.annotation is not inspect.Parameter.empty:
      text += f": {_annotation(parameter.annotation)}"
    if parameter.default is not inspect.Parameter.empty:
      separator = (
          " = " if parameter.annotation is not inspect.Parameter.empty else "="
      )
      text += separator + _default(parameter.default)
    parts.append(text)
    previous = kind
  if previous == inspect.Parameter.POSITIONAL_ONLY:
    parts.append("/")
  text = f"({', '.join(parts)})"
  if signature.return_annotation is not inspect.Signature.empty:
    text += f" -> {_annotation(signature.return_annotation)}"
  return text


def _signature(obj) -> str | None:
  try:
    if inspect.isclass(obj) and "__init__" in vars(obj):
      signature = inspect.signature(obj.__init__)
      parameters = list(signature.parameters.values())[1:]  # self
      signature = signature.replace(
          parameters=parameters, return_annotation=inspect.Signature.empty
      )
    else:
      signature = inspect.signature(obj)
  except (TypeError, ValueError):
    return None
  return _format_signature(signature)


def _type_text(annotation) -> str:
  """A type (alias) by its public name: ``jax.Array``, not ``jax.jaxlib._jax.Array``."""
  if isinstance(annotation, list):  # Callable's argument list
    return "[" + ", ".join(_type_text(item) for item in annotation) + "]"
  if annotation is Ellipsis:
    return "..."
  origin = typing.get_origin(annotation)
  if origin is not None:
    arguments = ", ".join(
        _type_text(item) for item in typing.get_args(annotation)
    )
    return f"{_type_text(origin)}[{arguments}]"
  if inspect.isclass(annotation):
    module = annotation.__module__
    if module == "builtins":
      return annotation.__qualname__
    parts, name = module.split("."), annotation.__qualname__
    if any(part.startswith("_") for part in parts + name.split(".")):
      # Re-exported from a private module (jax.Array lives in jaxlib._jax).
      module, name = parts[0], name.rpartition(".")[2]
    return f"{module}.{name}"
  return repr(annotation)


def _method_signature(method) -> str:
  try:
    signature = inspect.signature(method)
  except (TypeError, ValueError):
    return "(...)"
  parameters = list(signature.parameters.values())
  if parameters and parameters[0].name in ("self", "cls"):
    signature = signature.replace(parameters=parameters[1:])
  return _format_signature(signature)


def _value(obj) -> str:
  text = (
      _type_text(obj)
      if typing.get_origin(obj) is not None
      else _clean(repr(obj))
  )
  if len(text) > _MAX_VALUE_CHARACTERS:
    text = text[:_MAX_VALUE_CHARACTERS] + " ..."
  return text


def _members(cls) -> list[tuple[str, object]]:
  """Public methods and properties a class defines itself."""
  members = []
  for name, member in vars(cls).items():
    if name.startswith("_"):
      continue
    if isinstance(member, (staticmethod, classmethod)):
      member = member.__func__
    if inspect.isfunction(member) or isinstance(member, property):
      members.append((name, member))
  return sorted(members)


def _entry(module_name: str, name: str, obj) -> list[str]:
  qualified = f"{module_name}.{name}"
  lines = [f"### `{qualified}`", ""]
  if inspect.ismodule(obj):
    lines += [f"Module `{obj.__name__}`.", "", _docstring(obj), ""]
    return lines
  if inspect.isclass(obj) or inspect.isroutine(obj):
    signature = _signature(obj)
    kind = "class " if inspect.isclass(obj) else ""
    if signature is not None:
      lines += ["```python", f"{kind}{name}{signature}", "```", ""]
    lines += [_docstring(obj), ""]
    if inspect.isclass(obj):
      for member_name, member in _members(obj):
        if isinstance(member, property):
          lines += [
              f"- `{name}.{member_name}` (property): " f"{_first_line(member)}"
          ]
        else:
          lines += [
              f"- `{name}.{member_name}{_method_signature(member)}`: "
              f"{_first_line(member)}"
          ]
      if _members(obj):
        lines.append("")
    return lines
  lines += ["```python", f"{name} = {_value(obj)}", "```", ""]
  return lines


def _first_line(obj) -> str:
  doc = inspect.getdoc(obj)
  return _clean(doc.split("\n\n")[0].replace("\n", " ")) if doc else ""


def api_reference(modules=MODULES) -> str:
  """The markdown of the whole reference."""
  lines = [
      "# API reference",
      "",
      "Generated from the docstrings by `python scripts/api_reference.py`; "
      "do not edit by hand (`tests/test_api_reference.py` checks that it "
      "is current). Each module's docstring comes first, then every name "
      "in its `__all__`.",
      "",
  ]
  lines += [f"- [`{name}`](#{_anchor(name)})" for name in modules] + [""]
  for module_name in modules:
    module = importlib.import_module(module_name)
    names = sorted(getattr(module, "__all__", ()))
    lines += [f"## {module_name}", "", _docstring(module), ""]
    lines += [
        "Public names: "
        + ", ".join(
            f"[`{name}`](#{_anchor(f'{module_name}.{name}')})" for name in names
        ),
        "",
    ]
    for name in names:
      lines += _entry(module_name, name, getattr(module, name))
  return "\n".join(lines).rstrip("\n") + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
  )
  parser.add_argument(
      "--output",
      default=OUTPUT,
      metavar="PATH",
      help="where to write (default: docs/api.md)",
  )
  parser.add_argument(
      "--check",
      action="store_true",
      help="write nothing; exit 1 if PATH differs from the "
      "generated reference",
  )
  args = parser.parse_args(argv)
  markdown = api_reference()
  if args.check:
    try:
      with open(args.output, encoding="utf-8") as stream:
        current = stream.read()
    except FileNotFoundError:
      current = None
    if current != markdown:
      print(
          f"{args.output} is out of date: run python scripts/api_reference.py",
          file=sys.stderr,
      )
      return 1
    return 0
  with open(args.output, "w", encoding="utf-8") as stream:
    stream.write(markdown)
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
