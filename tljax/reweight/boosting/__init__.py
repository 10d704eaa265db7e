r"""Instance-transfer boosting: TrAdaBoost and two-stage TrAdaBoost.R2.

Both methods reweight a large labelled *source* sample and a small labelled
*target* sample while boosting a weighted base learner, so that source
examples that disagree with the target task lose influence:

* :func:`tradaboost` — classification, Dai, Yang, Xue and Yu, "Boosting for
  transfer learning", ICML 2007 (Algorithm 1, TrAdaBoost).
* :func:`tradaboost_r2` — regression, Pardoe and Stone, "Boosting for
  regression transfer", ICML 2010 (Algorithm 3, two-stage TrAdaBoost.R2),
  built on :func:`adaboost_r2` (Drucker, "Improving regressors using
  boosting techniques", ICML 1997, with optionally frozen weights: the
  paper's AdaBoost.R2′).

Base learners: :class:`WeightedLogisticRegression` and :class:`WeightedRidge`
are fitted by tljax in JAX; any scikit-learn estimator whose ``fit`` takes
``sample_weight`` works as well (it is cloned with ``sklearn.base.clone``
before every fit).

Learners receive the boosting distribution ``p`` (``Σ p = 1``) scaled to
mean 1, i.e. ``sample_weight = len(p) · p``: estimators whose regularisation
is relative to the total weight (scikit-learn's ``LogisticRegression`` ``C``,
``Ridge`` ``alpha``) then behave as without weights when ``p`` is uniform.
The tljax learners and decision trees do not depend on this scale.

Everything here runs eagerly on concrete data (NumPy float64 for the
boosting weights); the JAX learners jit their fits.

Modules: :mod:`~tljax.reweight.boosting.learners` (the scikit-learn-style
learners), :mod:`~tljax.reweight.boosting.classification` (TrAdaBoost),
:mod:`~tljax.reweight.boosting.regression` (AdaBoost.R2, TrAdaBoost.R2).
"""

from tljax.reweight.boosting.classification import (
    TrAdaBoostResult,
    tradaboost,
)
from tljax.reweight.boosting.learners import (
    WeightedLogisticRegression,
    WeightedRidge,
)
from tljax.reweight.boosting.regression import (
    LOSSES,
    AdaBoostR2Model,
    TrAdaBoostR2Result,
    adaboost_r2,
    tradaboost_r2,
)

__all__ = [
    "LOSSES",
    "AdaBoostR2Model",
    "TrAdaBoostR2Result",
    "TrAdaBoostResult",
    "WeightedLogisticRegression",
    "WeightedRidge",
    "adaboost_r2",
    "tradaboost",
    "tradaboost_r2",
]
