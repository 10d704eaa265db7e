"""Where a run puts the source and target test examples: its features in 2-D.

The run's model is rebuilt from its stored config (``run_config.json``) and
final checkpoint by :class:`tljax.train.rundir.Run`; a random subset of both domains' *test* examples goes through it in
inference mode, and the features (the bottleneck by default) are projected
to two dimensions by PCA or t-SNE.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgba_array
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from threadpoolctl import threadpool_limits

from tljax.report import _figure
from tljax.report.runs import sibling_run
from tljax.train.rundir import Run

PROJECTIONS = ("pca", "tsne")
LAYERS = ("bottleneck", "backbone")
# Colour is the class; the marker is the domain: a filled disc and a
# cross stay apart at any size and overlap, where twelve class markers
# of a few pixels did not. Without classes the colour is the domain.
DOMAIN_MARKERS = {
    "source": dict(marker="o", s=16, alpha=0.45, linewidths=0),
    "target": dict(marker="x", s=22, alpha=0.85, linewidths=1.1),
}
DOMAIN_COLOURS = {"source": "tab:blue", "target": "tab:orange"}
MAX_LEGEND_CLASSES = 20
BASELINE = "source_only"


def project(features, *, method: str = "pca", seed: int = 0) -> np.ndarray:
  """``(N, D)`` features → ``(N, 2)`` points.

  ``"pca"``: the centred features on their top two principal axes (the
  top eigenvectors of the ``D × D`` scatter matrix by
  ``numpy.linalg.eigh``, or of the ``N × N`` Gram matrix when ``D > N``: the
  same points as the top right singular vectors of the centred matrix, up
  to sign, some 20× faster than ``numpy.linalg.svd`` on a busy CPU, and on
  one BLAS thread: a few hundred dimensions gain nothing from more, and on
  a shared CPU their threads wait for each other; a zero second coordinate
  when ``D == 1``). ``"tsne"``: ``sklearn.manifold.TSNE``
  (PCA initialisation, perplexity ``min(30, (N − 1) / 3)``, ``random_state
  = seed``; van der Maaten & Hinton 2008).
  """
  if method not in PROJECTIONS:
    raise ValueError(
        f"method must be one of {list(PROJECTIONS)}, got " f"{method!r}"
    )
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 3:
    raise ValueError(
        f"features must be an (N, D) matrix with N >= 3, got "
        f"shape {features.shape}"
    )
  if not np.all(np.isfinite(features)):
    raise ValueError("features must be finite")
  if method == "pca":
    with threadpool_limits(1, user_api="blas"):
      return _pca(features)
  from sklearn.manifold import TSNE

  perplexity = min(30.0, (features.shape[0] - 1) / 3)
  return TSNE(
      n_components=2, perplexity=perplexity, init="pca", random_state=seed
  ).fit_transform(features)


def _pca(features: np.ndarray) -> np.ndarray:
  """:func:`project`'s ``"pca"``: ``(N, D)`` finite features → ``(N, 2)``."""
  centred = features - features.mean(axis=0)
  rank = min(2, *centred.shape)
  if centred.shape[1] <= centred.shape[0]:
    # eigh's eigenvalues ascend: the last columns are the top axes.
    _, axes = np.linalg.eigh(centred.T @ centred)
    points = centred @ axes[:, ::-1][:, :rank]
  else:
    # Left singular vectors scaled by the singular values: the same points.
    values, vectors = np.linalg.eigh(centred @ centred.T)
    top = slice(None, rank)
    points = vectors[:, ::-1][:, top] * np.sqrt(
        np.maximum(values[::-1][top], 0.0)
    )
  if points.shape[1] < 2:
    points = np.concatenate([points, np.zeros_like(points)], axis=1)
  return points


def _check_max_points(max_points) -> int:
  if (
      isinstance(max_points, bool)
      or not isinstance(max_points, (int, np.integer))
      or max_points < 2
  ):
    raise ValueError(
        f"max_points must be an integer >= 2 (examples per "
        f"domain), got {max_points!r}"
    )
  return int(max_points)


@functools.lru_cache(maxsize=8)
def _apply(model):
  return jax.jit(functools.partial(model.apply, train=False))


def run_features(
    run_dir,
    *,
    layer: str = "bottleneck",
    max_points: int = 500,
    seed: int = 0,
    domains=None,
) -> dict:
  """Features of both domains' test examples under a run's final checkpoint.

  Args:
    run_dir: a finished tljax run directory (``run_config.json`` and a
      checkpoint).
    layer: ``"bottleneck"`` (the features alignment methods act on) or
      ``"backbone"``.
    max_points: at most this many test examples per domain, drawn without
      replacement with ``numpy.random.default_rng(seed)`` (the same examples
      for every run on the same data).
    seed: the draw's seed.
    domains: pre-loaded data (:func:`tljax.train.domains.load_domains` of the
      run's config), to share between runs; loaded when ``None``.

  Returns:
    ``{"features": (N, D), "domain": (N,) str, "label": (N,), "num_classes"}``.
  """
  run = Run.open(run_dir, argument="run_dir")
  if layer not in LAYERS:
    raise ValueError(f"layer must be one of {list(LAYERS)}, got {layer!r}")
  max_points = _check_max_points(max_points)
  _check_has_checkpoint(run)
  domains = domains or run.domains()
  model = run.model(domains)
  # A method's own parameters (a domain discriminator) are not the model's.
  params, model_state = run.restore_model(model)
  apply = _apply(model)
  rng = np.random.default_rng(seed)
  features, names, labels = [], [], []
  for domain in ("source", "target"):
    test = domains[domain]["test"]
    count = min(max_points, len(test))
    indices = np.sort(rng.choice(len(test), size=count, replace=False))
    batch = test.get_batch(indices)
    for start in range(0, count, 512):
      outputs, _ = apply(
          params, model_state, np.asarray(batch["input"][start : start + 512])
      )
      chosen = (
          outputs.features
          if layer == "bottleneck"
          else outputs.backbone_features
      )
      features.append(np.asarray(chosen, np.float32))
    names += [domain] * count
    labels.append(np.asarray(batch["label"]))
  return {
      "features": np.concatenate(features),
      "domain": np.array(names),
      "label": np.concatenate(labels),
      "num_classes": domains["source"]["train"].num_classes,
  }


def _check_has_checkpoint(run: Run) -> None:
  if not run.has_checkpoint:
    raise ValueError(
        f"run_dir {run.path!r} has no checkpoint to compute " "features with"
    )


def before_adaptation_run(run_dir) -> str | None:
  """The same seed's ``source_only`` run with a checkpoint, for a run that is not one."""
  baseline = sibling_run(run_dir, BASELINE)
  if baseline is None or not Run.open(baseline).has_checkpoint:
    return None
  return baseline


def class_colours(num_classes: int) -> np.ndarray:
  """``(num_classes, 4)`` RGBA colours, one per class.

  Matplotlib's qualitative ``tab10`` up to 10 classes, ``tab20`` up to 20;
  beyond, evenly spaced colours of the ``turbo`` map (neighbouring classes
  then look alike).
  """
  if num_classes <= 10:
    colours = colormaps["tab10"].colors
  elif num_classes <= 20:
    colours = colormaps["tab20"].colors
  else:
    return colormaps["turbo"](np.linspace(0.0, 1.0, num_classes))
  return to_rgba_array(colours[:num_classes])


def _draw(axis, points, domain, labels, num_classes) -> None:
  for name, style in DOMAIN_MARKERS.items():
    in_domain = domain == name
    if not in_domain.any():
      continue
    colour = (
        DOMAIN_COLOURS[name]
        if num_classes is None
        else class_colours(num_classes)[labels[in_domain]]
    )
    axis.scatter(*points[in_domain].T, c=colour, **style)
  axis.set_xticks([])
  axis.set_yticks([])


def _legend_handles(num_classes) -> list:
  handles = [
      Line2D(
          [],
          [],
          linestyle="",
          marker=style["marker"],
          markersize=7,
          markeredgewidth=1.5,
          color="black" if num_classes is not None else DOMAIN_COLOURS[name],
          alpha=style["alpha"],
          label=f"{name} test",
      )
      for name, style in DOMAIN_MARKERS.items()
  ]
  if num_classes is not None and num_classes <= MAX_LEGEND_CLASSES:
    handles += [
        Patch(color=colour, label=f"class {label}")
        for label, colour in enumerate(class_colours(num_classes))
    ]
  return handles


def plot_features(
    run_dir,
    path,
    *,
    method: str = "pca",
    max_points: int = 500,
    layer: str = "bottleneck",
    compare: bool = True,
    seed: int = 0,
    domains=None,
    cache: dict | None = None,
) -> str:
  """Source and target test examples in a run's feature space, projected to 2-D.

  Colour is the class (:func:`class_colours`), the marker the domain: source
  examples are filled discs, target examples crosses (without class labels,
  colour is the domain: source blue, target orange). Each run's features are
  projected on their own (PCA axes or t-SNE embedding of both domains
  together).

  **Before and after adaptation.** When ``compare`` is true, the run is not
  itself ``source_only`` and its experiment directory holds a finished
  ``source_only`` run of the same seed (``<exp>/source_only/seed_<n>``, what
  :func:`tljax.train.experiment.run_experiment` writes for the baselines),
  the figure has two panels: the source-only model's features (no
  adaptation) on the left, this run's on the right, on the same test
  examples. Aligned domains show as discs and crosses of one colour (class)
  sharing a cluster on the right that were apart on the left.

  Args:
    run_dir: a finished tljax run directory.
    path: the ``.png`` file to write (its directory must exist).
    method: ``"pca"`` or ``"tsne"`` (see :func:`project`).
    max_points: test examples per domain (at most).
    layer: ``"bottleneck"`` or ``"backbone"`` features.
    compare: draw the source-only panel when there is one.
    seed: which examples are drawn, and t-SNE's seed.
    domains: pre-loaded data of the run's config (see :func:`run_features`).
    cache: a dict shared between calls on the runs of one experiment: each
      panel's features and projection are computed once (the same seed's
      ``source_only`` panel appears in several pictures; each computation
      restores a checkpoint).

  Returns:
    ``path``.

  Raises:
    ValueError: naming the argument: no such run directory, no checkpoint,
      an unknown ``method`` or ``layer``, ``max_points`` < 2, or ``path`` not
      a ``.png`` file in an existing directory.
  """
  run = Run.open(run_dir, argument="run_dir")
  path = _figure.check_png_path(path)
  if method not in PROJECTIONS:
    raise ValueError(
        f"method must be one of {list(PROJECTIONS)}, got " f"{method!r}"
    )
  if layer not in LAYERS:
    raise ValueError(f"layer must be one of {list(LAYERS)}, got {layer!r}")
  _check_max_points(max_points)
  _check_has_checkpoint(run)
  domains = domains or run.domains()
  panels = [(run.path, str(run.recipe))]
  baseline = before_adaptation_run(run.path) if compare else None
  if baseline is not None:
    panels.insert(0, (baseline, f"{BASELINE} (no adaptation)"))
  figure, axes = _figure.new_figure(1, len(panels))
  num_classes = None
  for axis, (panel_dir, title) in zip(axes.flat, panels):
    key = (os.path.abspath(panel_dir), layer, max_points, seed, method)
    if cache is not None and key in cache:
      embedding, points = cache[key]
    else:
      embedding = run_features(
          panel_dir,
          layer=layer,
          max_points=max_points,
          seed=seed,
          domains=domains,
      )
      points = project(embedding["features"], method=method, seed=seed)
      if cache is not None:
        cache[key] = embedding, points
    num_classes = embedding["num_classes"]
    _draw(axis, points, embedding["domain"], embedding["label"], num_classes)
    axis.set_title(title)
  figure.legend(
      handles=_legend_handles(num_classes),
      loc="outside right",
      fontsize="small",
  )
  projection = "PCA" if method == "pca" else "t-SNE"
  figure.suptitle(
      f"{layer} features of the test examples ({projection}), "
      f"seed {run.seed}"
  )
  return _figure.save(figure, path)
