"""What and whether to transfer: transferability scores.

Each score rates how well a pretrained model's outputs on target examples
suit the target task, without fine-tuning: rank candidate source models (or
layers) by it and fine-tune the best. All are pure functions of arrays.

* :func:`logme` — log maximum evidence of a Bayesian linear model on the
  features (You et al., ICML 2021).
* :func:`leep` — log expected empirical prediction from the source head's
  probabilities (Nguyen et al., ICML 2020).
* :func:`nce` — negative conditional entropy of target given source labels
  (Tran et al., ICCV 2019).
* :func:`h_score` — between-class over total feature covariance (Bao et al.,
  ICIP 2019), and :func:`shrinkage_h_score`, its Ledoit-Wolf-regularised
  form (Ibrahim et al.).
* :func:`gbc` — Bhattacharyya overlap of Gaussian class fits (Pándy et al.,
  CVPR 2022).
* :func:`transrate` — coding-rate mutual information of features and labels
  (Huang et al., ICML 2022).
* :func:`proxy_a_distance` — how well a linear classifier tells two feature
  distributions apart (Ben-David et al., NeurIPS 2007).
* label-free validators, to choose checkpoints and hyper-parameters of
  domain adaptation without target labels: :func:`prediction_entropy`,
  :func:`information_maximization`, :func:`soft_neighborhood_density`
  (Saito et al., ICCV 2021), and the source-validation risks
  :func:`importance_weighted_validation` (Sugiyama et al., JMLR 2007) and
  :func:`deep_embedded_validation` (You et al., ICML 2019), weighted by
  :func:`domain_density_ratios`.
* task grouping for multi-task transfer (Fifty et al., NeurIPS 2021):
  :func:`lookahead_affinity`, :func:`train_with_affinities`,
  :func:`group_tasks`, :func:`score_grouping`
  (:mod:`tljax.select.task_grouping`).
* :func:`negative_transfer_gap` — after training: ε(transfer) − ε(target
  only) over paired seeds with a confidence interval (Wang et al., CVPR 2019).

For all but the proxy A-distance and the two validation risks, higher means a better expected transfer.
Shapes are checked always; values (finiteness, label ranges, probability
rows) when the arrays are concrete, i.e. outside ``jax.jit``. Under
``jax.jit`` pass the number of classes (``num_classes=...``), which sets
array shapes. Every failure is a ``ValueError`` that names the argument;
a result that comes out non-finite from concrete inputs raises one too,
while the scores are computed on rescaled features, so that magnitudes
from 1e-30 to 1e30 give finite results.
"""

from tljax.select.a_distance import proxy_a_distance
from tljax.select.negative_transfer import TransferGap, negative_transfer_gap
from tljax.select.gbc import gbc
from tljax.select.hscore import h_score, shrinkage_h_score
from tljax.select.leep import leep
from tljax.select.logme import logme
from tljax.select.nce import nce
from tljax.select.task_grouping import (
    group_tasks,
    lookahead_affinity,
    score_grouping,
    train_with_affinities,
)
from tljax.select.transrate import transrate
from tljax.select.validators import (
    deep_embedded_validation,
    domain_density_ratios,
    importance_weighted_validation,
    information_maximization,
    prediction_entropy,
    soft_neighborhood_density,
)

__all__ = [
    "TransferGap",
    "deep_embedded_validation",
    "domain_density_ratios",
    "importance_weighted_validation",
    "information_maximization",
    "prediction_entropy",
    "score_grouping",
    "soft_neighborhood_density",
    "gbc",
    "group_tasks",
    "h_score",
    "leep",
    "logme",
    "lookahead_affinity",
    "nce",
    "negative_transfer_gap",
    "proxy_a_distance",
    "shrinkage_h_score",
    "train_with_affinities",
    "transrate",
]
