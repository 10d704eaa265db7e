"""tljax: transfer learning in JAX.

Subpackages mirror what is transferred (see docs/design.md): ``tljax.params``
(parameter transfer), ``tljax.align`` (feature-representation transfer),
``tljax.reweight`` (instance transfer: importance weights, TrAdaBoost),
``tljax.select`` (what and whether to transfer: transferability scores),
``tljax.transport`` (optimal-transport alignment: Sinkhorn divergence, OTDA,
linear Monge mapping), and the shared machinery ``tljax.data``,
``tljax.models``, ``tljax.train`` and
``tljax.methods``.

A subpackage is imported when it is first used (``tljax.train`` after
``import tljax``, or ``import tljax.align``), not with the package: importing
a loss library then costs that library only, not the train core's Orbax or
the data's TensorFlow Datasets.
"""

import importlib

__version__ = "0.1.0"
__all__ = [
    "align",
    "data",
    "methods",
    "models",
    "params",
    "relational",
    "reweight",
    "select",
    "train",
    "transport",
]


def __getattr__(name: str):
  # PEP 562: ``tljax.<subpackage>`` imports it on first access.
  if name in __all__:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + __all__)
