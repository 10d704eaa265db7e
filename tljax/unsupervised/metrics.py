"""Clustering quality against ground-truth classes: NMI, ARI, Hungarian accuracy.

The three scores every deep-clustering table reports (e.g. Xie et al., ICML
2016; Caron et al., ECCV 2018). Each compares a clustering ``labels_pred`` of
N examples with their classes ``labels_true``; the cluster ids are arbitrary
(any permutation of them scores the same) and the number of clusters need not
equal the number of classes. They are evaluated once per run on the host, so
they are NumPy functions (float64), not traced JAX code.

With ``n_ij`` the number of examples of class ``i`` in cluster ``j``,
``a_i = Σ_j n_ij`` and ``b_j = Σ_i n_ij``:

* normalized mutual information, arithmetic normalisation (scikit-learn's
  default, Strehl & Ghosh, JMLR 2002; Vinh et al., JMLR 2010):
  ``NMI = I(U; V) / ((H(U) + H(V)) / 2)``;
* adjusted Rand index (Hubert & Arabie, J. Classification 1985): the Rand
  index corrected for chance, ``(index − expected) / (max − expected)`` with
  ``index = Σ_ij C(n_ij, 2)``, ``expected = Σ_i C(a_i, 2) Σ_j C(b_j, 2) /
  C(N, 2)``, ``max = (Σ_i C(a_i, 2) + Σ_j C(b_j, 2)) / 2``;
* clustering accuracy: the accuracy of the best one-to-one map from clusters
  to classes, found by the Hungarian algorithm (Kuhn 1955;
  ``scipy.optimize.linear_sum_assignment``) on the contingency table. With
  more clusters than classes, the examples of unmatched clusters count as
  errors (and vice versa), so splitting a class is penalised.

Degenerate labelings follow scikit-learn: two labelings that both put every
example in one cluster, or both in singletons, score NMI = ARI = 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

__all__ = [
    "adjusted_rand_index",
    "clustering_accuracy",
    "contingency_table",
    "normalized_mutual_info",
]


def _check_labels(labels: Any, argument: str) -> np.ndarray:
  try:
    labels = np.asarray(labels)
  except (TypeError, ValueError) as error:
    raise ValueError(
        f"{argument} must be a 1-D array of labels: {error}"
    ) from None
  if labels.ndim != 1 or labels.shape[0] == 0:
    raise ValueError(
        f"{argument} must be a non-empty 1-D array of labels, got "
        f"shape {labels.shape}."
    )
  if labels.dtype == object:
    raise ValueError(
        f"{argument} must hold numbers or strings, got dtype " "object."
    )
  if np.issubdtype(labels.dtype, np.inexact) and not np.all(
      np.isfinite(labels)
  ):
    raise ValueError(f"{argument} must be finite (it holds NaN or infinity).")
  return labels


def contingency_table(labels_true: Any, labels_pred: Any) -> np.ndarray:
  """``n_ij``: examples of the i-th class (sorted) in the j-th cluster (sorted).

  Args:
    labels_true: ``(N,)`` class labels (ints or strings).
    labels_pred: ``(N,)`` cluster ids.

  Returns:
    int64 ``(num_classes, num_clusters)`` counts.

  Raises:
    ValueError: naming the argument, for an empty or non-1-D labeling,
      non-finite values, or labelings of different lengths.
  """
  labels_true = _check_labels(labels_true, "labels_true")
  labels_pred = _check_labels(labels_pred, "labels_pred")
  if labels_pred.shape != labels_true.shape:
    raise ValueError(
        f"labels_pred must have one label per example of "
        f"labels_true ({labels_true.shape[0]}), got "
        f"{labels_pred.shape[0]}."
    )
  classes, class_codes = np.unique(labels_true, return_inverse=True)
  clusters, cluster_codes = np.unique(labels_pred, return_inverse=True)
  table = np.zeros((classes.size, clusters.size), np.int64)
  np.add.at(table, (class_codes.ravel(), cluster_codes.ravel()), 1)
  return table


def _entropy(counts: np.ndarray) -> float:
  probabilities = counts[counts > 0] / counts.sum()
  return float(-np.sum(probabilities * np.log(probabilities)))


def normalized_mutual_info(labels_true: Any, labels_pred: Any) -> float:
  """``I(U; V) / ((H(U) + H(V)) / 2)`` in [0, 1] (see the module docstring).

  Equals scikit-learn's ``normalized_mutual_info_score`` with its default
  ``average_method="arithmetic"``. Natural logarithms (the ratio does not
  depend on the base).

  Raises:
    ValueError: as :func:`contingency_table`.
  """
  table = contingency_table(labels_true, labels_pred)
  num_classes, num_clusters = table.shape
  if num_classes == num_clusters == 1:
    return 1.0  # neither labeling splits the data: a perfect match
  if min(num_classes, num_clusters) == 1:
    return 0.0  # one labeling has zero entropy: no shared information
  total = table.sum()
  class_counts, cluster_counts = table.sum(1), table.sum(0)
  rows, columns = np.nonzero(table)
  joint = table[rows, columns].astype(np.float64)
  mutual_information = float(
      np.sum(
          joint
          / total
          * (
              np.log(joint)
              + np.log(total)
              - np.log(class_counts[rows].astype(np.float64))
              - np.log(cluster_counts[columns].astype(np.float64))
          )
      )
  )
  if mutual_information <= 0:
    return 0.0  # independent labelings
  normaliser = (_entropy(class_counts) + _entropy(cluster_counts)) / 2
  return float(min(mutual_information / normaliser, 1.0))


def _pairs(counts: np.ndarray) -> float:
  counts = counts.astype(np.float64)
  return float(np.sum(counts * (counts - 1) / 2))


def adjusted_rand_index(labels_true: Any, labels_pred: Any) -> float:
  """Hubert and Arabie's adjusted Rand index, at most 1, 0 in expectation by chance.

  Equals scikit-learn's ``adjusted_rand_score``; negative values mean less
  agreement than chance.

  Raises:
    ValueError: as :func:`contingency_table`.
  """
  table = contingency_table(labels_true, labels_pred)
  total = float(table.sum())
  index = _pairs(table)
  class_pairs, cluster_pairs = _pairs(table.sum(1)), _pairs(table.sum(0))
  all_pairs = total * (total - 1) / 2
  expected = class_pairs * cluster_pairs / all_pairs if all_pairs else 0.0
  maximum = (class_pairs + cluster_pairs) / 2
  if maximum == expected:
    # Only when both labelings are one cluster or both all singletons (or
    # N = 1): identical partitions.
    return 1.0
  return float((index - expected) / (maximum - expected))


def clustering_accuracy(labels_true: Any, labels_pred: Any) -> float:
  """Accuracy under the best one-to-one matching of clusters to classes.

  ``max_σ (1/N) Σ_j n_{σ(j), j}`` over injective maps σ between clusters and
  classes, solved exactly with the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment`` on the contingency table, which
  handles a rectangular table: the larger side keeps unmatched labels, whose
  examples count as errors).

  Raises:
    ValueError: as :func:`contingency_table`.
  """
  table = contingency_table(labels_true, labels_pred)
  rows, columns = scipy.optimize.linear_sum_assignment(table, maximize=True)
  return float(table[rows, columns].sum() / table.sum())
