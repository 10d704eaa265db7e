"""tljax: transfer learning in JAX.

Subpackages mirror what is transferred (see DESIGN.md): ``tljax.params``
(parameter transfer), ``tljax.align`` (feature-representation transfer),
``tljax.reweight`` (instance transfer: importance weights, TrAdaBoost),
``tljax.select`` (what and whether to transfer: transferability scores), and
the shared machinery ``tljax.data``, ``tljax.models``, ``tljax.train`` and
``tljax.methods``.
"""

from tljax import (align, data, methods, models, params, relational, reweight,
                   select, train)

__version__ = "0.1.0"
__all__ = ["align", "data", "methods", "models", "params", "relational",
           "reweight", "select", "train"]
