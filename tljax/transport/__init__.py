"""Feature-representation transfer by optimal transport, on ott-jax.

Pure, jittable functions of arrays (source before target in every
signature, as in :mod:`tljax.align`), and a scikit-learn-style facade:

* the entropic plan — :func:`sinkhorn` (a cost matrix, as POT's
  ``ot.sinkhorn``), :func:`entropic_plan` (squared Euclidean cost between
  points), both returning a :class:`SinkhornResult`, by ott-jax's
  log-domain solver (differentiable) or ``solver="kernel"`` (scaling
  iterations with absorption and over-relaxation, faster, a constant for
  gradients; :mod:`tljax.transport.kernel`);
* an alignment loss — :func:`sinkhorn_divergence`, the debiased Sinkhorn
  divergence (Genevay et al. 2018; Feydy et al. 2019), differentiable and
  usable wherever :func:`tljax.align.mmd` is;
* OTDA (Courty et al., TPAMI 2017) — the class-regularised plans
  :func:`sinkhorn_lpl1` and :func:`sinkhorn_l1l2`, the
  :func:`barycentric_mapping` of the source onto the target, and the
  out-of-sample maps :func:`nearest_neighbor_mapping` (Ferradans et al.
  2014) and :func:`entropic_mapping` (Pooladian and Niles-Weed 2021);
* the exact plan — :func:`exact_plan` (POT's ``ot.emd``: an assignment for
  equal-size uniform problems, HiGHS otherwise; a constant for gradients);
* JDOT (Courty et al., NeurIPS 2017) — :func:`jdot` and
  :func:`jdot_predict` (kernel ridge regression refitted on the target
  with the labels transported by the exact plan of the joint cost), and
  DeepJDOT's mini-batch term :func:`deepjdot_loss` (Damodaran et al., ECCV
  2018; the ``deepjdot`` recipe);
* the linear Monge mapping between Gaussian approximations —
  :func:`linear_monge_mapping` (Knott and Smith 1984; Flamary et al. 2019);
* the facade — :class:`SinkhornTransport` (``fit(Xs, ys, Xt)``, then
  ``transform``; POT's ``SinkhornTransport``, ``SinkhornLpl1Transport`` and
  ``SinkhornL1l2Transport``) and :class:`LinearMongeTransport` (POT's
  ``LinearTransport``), :class:`JDOTRegressor` and :class:`JDOTClassifier`
  (``fit(Xs, ys, Xt)``, then ``predict``; skada's ``JDOTRegressor`` and
  ``JDOTClassifier``).

Checks follow :mod:`tljax.align`: shapes and dtypes when traced, values
(finiteness, non-negative weights, label ranges) when concrete, each error a
``ValueError`` naming the argument. Memory: :func:`entropic_plan` and
:func:`sinkhorn_divergence` have an online mode (``batch_size=`` an int:
the squared Euclidean cost recomputed in row blocks, no ``n × m`` array,
the plan applied lazily by the returned
:class:`OnlineSinkhornResult`, :mod:`tljax.transport.online`); every other
function, and those two by default, holds ``n × m`` matrices (ott's dense
mode; ott's own online mode fails with JAX >= 0.9 in ott-jax 0.6.0: see
:mod:`tljax.transport.sinkhorn`); :func:`exact_plan` solves on the host,
with SciPy.
"""

from tljax.transport.exact import exact_plan
from tljax.transport.facade import (
    CLASS_REGULARIZATIONS,
    OUT_OF_SAMPLE_MAPS,
    JDOTClassifier,
    JDOTRegressor,
    LinearMongeTransport,
    SinkhornTransport,
)
from tljax.transport.jdot import JDOTResult, deepjdot_loss, jdot, jdot_predict
from tljax.transport.linear_monge import LinearMapping, linear_monge_mapping
from tljax.transport.class_regularized import sinkhorn_l1l2, sinkhorn_lpl1
from tljax.transport.online import OnlineSinkhornResult
from tljax.transport.otda import (
    barycentric_mapping,
    entropic_mapping,
    nearest_neighbor_mapping,
)
from tljax.transport.sinkhorn import (
    DEFAULT_RELATIVE_EPSILON,
    SOLVERS,
    SinkhornResult,
    entropic_plan,
    sinkhorn,
    sinkhorn_divergence,
)

__all__ = [
    "CLASS_REGULARIZATIONS",
    "DEFAULT_RELATIVE_EPSILON",
    "JDOTClassifier",
    "JDOTRegressor",
    "JDOTResult",
    "LinearMapping",
    "LinearMongeTransport",
    "OUT_OF_SAMPLE_MAPS",
    "OnlineSinkhornResult",
    "SOLVERS",
    "SinkhornResult",
    "SinkhornTransport",
    "barycentric_mapping",
    "deepjdot_loss",
    "entropic_mapping",
    "entropic_plan",
    "exact_plan",
    "jdot",
    "jdot_predict",
    "linear_monge_mapping",
    "nearest_neighbor_mapping",
    "sinkhorn",
    "sinkhorn_divergence",
    "sinkhorn_l1l2",
    "sinkhorn_lpl1",
]
