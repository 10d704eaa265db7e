"""Feature-representation transfer: losses and maps that align the domains' features.

Deep methods (pure, jit/vmap/grad-safe functions of arrays, added to a
task loss by a recipe in ``tljax.methods``):

* kernel discrepancies — :func:`mmd` (DAN's MK-MMD), :func:`jmmd` (JAN);
* moment matching — :func:`coral` (Deep CORAL);
* adversarial — :func:`gradient_reversal`, :func:`dann_coefficient`,
  :func:`domain_adversarial_loss` (DANN); :func:`multilinear_map`,
  :func:`randomized_multilinear_map`, :func:`random_multilinear_matrices`,
  :func:`conditional_adversarial_loss` (CDAN, CDAN+E);
  :func:`classifier_discrepancy` (MCD); :func:`margin_disparity_discrepancy`
  (MDD);
* feature and prediction regularisers — :func:`stepwise_adaptive_feature_norm`,
  :func:`adaptive_feature_norm` (AFN), :func:`batch_spectral_penalization`
  (BSP), :func:`minimum_class_confusion` (MCC), :func:`entropy`,
  :func:`entropy_weights`.

Shallow, closed-form methods on fixed feature matrices: :func:`coral_recolor`
(CORAL), :func:`subspace_alignment` (SA), :func:`tca` (TCA).

Conventions: features are ``(batch, dim)`` matrices, logits and
probabilities ``(batch, num_classes)``; source comes before target in every
signature. Losses return the bare term (trade-off weights belong to the
recipe) as a float32-or-wider scalar. Shapes and dtypes are checked when
traced, hyper-parameters when they are concrete numbers (a traced one, e.g.
a ``jax.vmap`` sweep, must only be a real scalar), data values (finiteness,
probability rows, non-negative weights) when the arrays are concrete; each
error is a ``ValueError`` naming the argument. A concrete result that is not
finite (the true value overflows the float type, e.g. CORAL of features of
order 1e30 in float32) raises a ``ValueError`` too; otherwise the
computations are arranged to stay finite for any finite input (exact
power-of-two rescaling, ``0 log 0 = 0``, pseudo-inverses), as each function
documents. None of this adds work to a jitted step.
"""

from tljax.align.class_confusion import minimum_class_confusion
from tljax.align.classifier_discrepancy import classifier_discrepancy
from tljax.align.conditional_adversarial import (
    conditional_adversarial_loss,
    multilinear_map,
    random_multilinear_matrices,
    randomized_multilinear_map,
)
from tljax.align.coral import CORAL_CONVENTIONS, coral, coral_recolor
from tljax.align.domain_adversarial import domain_adversarial_loss
from tljax.align.entropy import entropy, entropy_weights
from tljax.align.feature_norm import (
    adaptive_feature_norm,
    stepwise_adaptive_feature_norm,
)
from tljax.align.gradient_reversal import dann_coefficient, gradient_reversal
from tljax.align.margin_disparity import margin_disparity_discrepancy
from tljax.align.mmd import jmmd, mmd
from tljax.align.spectral_penalization import batch_spectral_penalization
from tljax.align.subspace_alignment import subspace_alignment
from tljax.align.tca import tca

__all__ = [
    "adaptive_feature_norm",
    "batch_spectral_penalization",
    "classifier_discrepancy",
    "conditional_adversarial_loss",
    "CORAL_CONVENTIONS",
    "coral",
    "coral_recolor",
    "dann_coefficient",
    "domain_adversarial_loss",
    "entropy",
    "entropy_weights",
    "gradient_reversal",
    "jmmd",
    "margin_disparity_discrepancy",
    "minimum_class_confusion",
    "mmd",
    "multilinear_map",
    "random_multilinear_matrices",
    "randomized_multilinear_map",
    "stepwise_adaptive_feature_norm",
    "subspace_alignment",
    "tca",
]
