"""Training recipes, registered by name so a config can pick one.

A recipe is a loss function plus the domains it trains on (see
:class:`tljax.methods.base.Method`), registered with its hyper-parameters
and their defaults (:func:`register_method`); a config sets them in
``config.method_kwargs``. Adding one is a module that calls
:func:`register_method` (here, with an import below; or anywhere, imported
before the config is run).
"""

from tljax.methods.base import (
    PRETRAIN,
    Method,
    PriorRun,
    TransferContext,
    cross_entropy_loss,
    pretrain_run,
    supervised_on,
)
from tljax.methods.registry import (
    available_methods,
    build_method,
    get_method,
    method_defaults,
    method_settings,
    register_method,
)
from tljax.methods import (
    adaptation,
    distillation,
    finetune,
    probing,  # registers
    regularized,
    reweighting,
    source_only,
    target_only,
    unsupervised,
)

__all__ = [
    "PRETRAIN",
    "Method",
    "PriorRun",
    "TransferContext",
    "available_methods",
    "build_method",
    "cross_entropy_loss",
    "get_method",
    "method_defaults",
    "method_settings",
    "pretrain_run",
    "register_method",
    "supervised_on",
]
