"""Training recipes, registered by name so a config can pick one.

A recipe is a loss function plus the domains it trains on (see
:class:`tljax.methods.base.Method`). Adding one is a module here that calls
:func:`register_method` and an import below.
"""

from tljax.methods.base import (Method, TransferContext, cross_entropy_loss,
                                supervised_on)
from tljax.methods.registry import (available_methods, build_method, get_method,
                                    register_method)
from tljax.methods import (adaptation, distillation, finetune, probing,  # registers
                           regularized, reweighting, source_only, target_only,
                           unsupervised)

__all__ = ["Method", "TransferContext", "available_methods", "build_method", "cross_entropy_loss",
           "get_method", "register_method", "supervised_on"]
