"""Instance transfer: importance weights that re-weight source examples towards the target.

Under covariate shift — the labelling ``p(y | x)`` shared by the domains,
the input densities ``p_s`` (source) and ``p_t`` (target) different — a
model trained on source examples weighted by ``w(x) = p_t(x) / p_s(x)``
minimises an unbiased estimate of the target risk. Each estimator here
returns one non-negative weight per source example from unlabeled source
and target examples (``(n, d)`` matrices, source before target):

* :func:`kmm` — kernel mean matching (Huang et al., NIPS 2007): the
  weights whose kernel mean matches the target's, a box- and
  sum-constrained QP solved by accelerated projected gradient with an exact
  projection (:func:`project_box_slab`); exact in blocks or Nyström-
  approximated at scale.
* :func:`kliep` — KLIEP (Sugiyama et al., NIPS 2007): a Gaussian-basis
  ratio maximising the target likelihood, width by likelihood
  cross-validation.
* :func:`ulsif` — uLSIF (Kanamori et al., JMLR 2009): a Gaussian-basis
  ratio by regularised least squares in closed form, ``(σ, λ)`` by
  closed-form leave-one-out; :func:`rulsif` (Yamada et al., NIPS 2011)
  estimates the bounded relative ratio ``p_t / (α p_t + (1 − α) p_s)``.
* :func:`classifier_density_ratio` — the odds of a logistic domain
  classifier.
* :func:`nearest_neighbors_weighting` — NNeW (Loog, MLSP 2012): target
  counts per source Voronoi cell.

KLIEP, uLSIF and RuLSIF return a :class:`DensityRatioFit`, whose
``ratio(x)`` evaluates the fitted ratio at new points. The losses
:func:`weighted_cross_entropy` and :func:`weighted_squared_error`
(:mod:`tljax.reweight.losses`) train with the weights (importance-weighted
ERM, Shimodaira 2000).

Boosting-based instance transfer (:mod:`tljax.reweight.boosting`):
:func:`tradaboost` (Dai et al., ICML 2007) and two-stage
:func:`tradaboost_r2` (Pardoe & Stone, ICML 2010), with JAX base learners
(:class:`WeightedLogisticRegression`, :class:`WeightedRidge`) or any
scikit-learn estimator taking ``sample_weight``. For tabular users,
:class:`ImportanceWeightedClassifier` and :class:`ImportanceWeightedRegressor`
(:mod:`tljax.reweight.facade`) wrap an estimator and a learner behind
``fit(Xs, ys, Xt)``, ``weights_`` and ``predict``.

The estimators fit on concrete arrays (not inside ``jax.jit``); each
malformed argument raises a ``ValueError`` naming it. None forms an
``n × n`` matrix at scale: KMM multiplies by its kernel matrix in blocks
(or uses a Nyström kernel), the basis methods hold ``n × b`` matrices with
``b`` centres, and NNeW searches neighbours in blocks.

Cost at scale, measured once with ``scripts/benchmark_reweight.py`` on the
development machine (2 CPU cores shared with other jobs, 24 GiB), float32,
``n_s = n_t = 50,000`` examples in 5 dimensions, default arguments; wall
time including compilation, and the process's peak resident memory:

=================================  ==========  ==========
estimator                          time        peak RSS
=================================  ==========  ==========
``kmm`` (exact, blocked)           956 s       0.45 GiB
``kmm`` (Nyström, rank 1000)       50 s        1.6 GiB
``kliep``                          25 s        0.7 GiB
``ulsif``                          58 s        0.7 GiB
``rulsif``                         61 s        0.7 GiB
``classifier_density_ratio``       2.5 s       0.4 GiB
``nearest_neighbors_weighting``    13 s        0.4 GiB
=================================  ==========  ==========

The exact KMM (``--methods kmm_exact --exact_iterations 0``) ran 308
iterations at about 3 s per kernel-matrix product.
"""

from tljax.reweight.basis import DensityRatioFit
from tljax.reweight.boosting import (
    WeightedLogisticRegression,
    WeightedRidge,
    adaboost_r2,
    tradaboost,
    tradaboost_r2,
)
from tljax.reweight.classifier import classifier_density_ratio
from tljax.reweight.kliep import kliep
from tljax.reweight.kmm import KMMResult, kmm, project_box_slab
from tljax.reweight.losses import weighted_cross_entropy, weighted_squared_error
from tljax.reweight.lsif import rulsif, ulsif
from tljax.reweight.nearest_neighbors import (
    nearest_neighbor_counts,
    nearest_neighbors_weighting,
)
from tljax.reweight.facade import (
    ImportanceWeightedClassifier,
    ImportanceWeightedRegressor,
)

__all__ = [
    "DensityRatioFit",
    "ImportanceWeightedClassifier",
    "ImportanceWeightedRegressor",
    "KMMResult",
    "WeightedLogisticRegression",
    "WeightedRidge",
    "adaboost_r2",
    "classifier_density_ratio",
    "kliep",
    "kmm",
    "nearest_neighbor_counts",
    "nearest_neighbors_weighting",
    "project_box_slab",
    "rulsif",
    "tradaboost",
    "tradaboost_r2",
    "ulsif",
    "weighted_cross_entropy",
    "weighted_squared_error",
]
