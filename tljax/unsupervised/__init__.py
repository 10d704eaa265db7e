"""Unsupervised transfer: no labels on either domain.

A representation is learned on unlabeled source data and transferred to
cluster the unlabeled target domain; the clustering is scored against the
target's classes (which nothing else sees). The pieces, as pure functions:

* objectives to learn a representation without labels: the denoising
  autoencoder's corruption and reconstruction loss (:mod:`.denoising`;
  Vincent et al. 2008) and SimCLR's NT-Xent (:mod:`.contrastive`; Chen et al.
  2020) with random views of digit images (:mod:`.augment`); the training
  recipes ``dae`` and ``simclr`` are in :mod:`tljax.methods.unsupervised`;
* :func:`kmeans` in JAX (k-means++ seeding, Lloyd iterations, best of several
  starts) to cluster the transferred features (:mod:`.kmeans`);
* clustering metrics on the host: NMI, ARI and Hungarian accuracy
  (:mod:`.metrics`).

Every function checks its inputs' shapes, dtypes and hyper-parameters and
raises a ``ValueError`` naming the argument; :func:`kmeans` also rejects
non-finite points. The losses and :func:`augment_digits` do not
read their inputs' values (they run inside jitted training steps), so a NaN
input gives a NaN result.
"""

from tljax.unsupervised.augment import augment_digits
from tljax.unsupervised.contrastive import DEFAULT_TEMPERATURE, nt_xent_loss
from tljax.unsupervised.denoising import (
    CORRUPTIONS,
    RECONSTRUCTION_LOSSES,
    corrupt,
    denoising_autoencoder_loss,
)
from tljax.unsupervised.kmeans import KMeansResult, kmeans
from tljax.unsupervised.metrics import (
    adjusted_rand_index,
    clustering_accuracy,
    contingency_table,
    normalized_mutual_info,
)

__all__ = [
    "CORRUPTIONS",
    "DEFAULT_TEMPERATURE",
    "KMeansResult",
    "RECONSTRUCTION_LOSSES",
    "adjusted_rand_index",
    "augment_digits",
    "clustering_accuracy",
    "contingency_table",
    "corrupt",
    "denoising_autoencoder_loss",
    "kmeans",
    "normalized_mutual_info",
    "nt_xent_loss",
]
