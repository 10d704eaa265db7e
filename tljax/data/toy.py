"""Generated domains with a known shift, for tests and quick experiments.

* :func:`two_moons`: the two interleaving half-circles of
  ``sklearn.datasets.make_moons``; the target domain is the source rotated by
  a chosen angle about the figure's centre, the classic toy setting for domain
  adaptation (e.g. the "inter-twinning moons" of Ganin et al., 2016). Labels
  are the moon (0 or 1).
* :func:`gaussian_shift`: 1-D regression under covariate shift, ``p(y | x)``
  shared and ``p(x)`` shifted. ``y = −x + x³ + ε`` is the regression function
  of Shimodaira's (2000) covariate-shift example, reused by Huang et al.
  (2007) to illustrate kernel mean matching; here by default the source draws
  ``x ~ N(0, 0.5²)`` and the target ``x ~ U(−1.5, 1.5)``, with
  ``ε ~ N(0, 0.1²)``, so that the target reaches into the tails where the
  source has little mass and an unweighted fit of a misspecified (e.g.
  linear) model is biased there.

Every generator is a pure function of its arguments: the ``"train"`` and
``"test"`` splits use different random streams derived from ``seed``
(``numpy.random.SeedSequence([seed, split_id])``).

References:
  H. Shimodaira. Improving predictive inference under covariate shift by
  weighting the log-likelihood function. J. Statist. Plann. Inference 90(2),
  2000.
  J. Huang, A. J. Smola, A. Gretton, K. M. Borgwardt, B. Schölkopf.
  Correcting sample selection bias by unlabeled data. NeurIPS 2006 (2007).
  Y. Ganin et al. Domain-adversarial training of neural networks. JMLR 17, 2016.
"""

from __future__ import annotations

import numpy as np

from tljax.checks import (
    check_finite_number,
    check_int,
    check_non_negative,
    check_positive,
)
from tljax.data.base import SPLITS, ArraySource

# Centre of symmetry of the noise-free moons: outer x = cos t, y = sin t and
# inner x = 1 − cos t, y = ½ − sin t (t ∈ [0, π]) map onto each other by the
# point reflection about (½, ¼).
MOONS_CENTER = (0.5, 0.25)
DOMAINS = ("source", "target")


def _split_seed_sequence(
    seed: int, split: str, *extra: int
) -> np.random.SeedSequence:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}.")
  seed = check_int(seed, "seed", minimum=0)
  return np.random.SeedSequence([seed, SPLITS.index(split), *extra])


def rotation_matrix(degrees: float) -> np.ndarray:
  """The 2×2 counter-clockwise rotation ``[[cos θ, −sin θ], [sin θ, cos θ]]``."""
  theta = np.deg2rad(degrees)
  return np.array(
      [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
  )


def two_moons(
    split: str = "train",
    *,
    rotation_degrees: float = 0.0,
    num_examples: int = 1000,
    noise: float = 0.1,
    seed: int = 0,
) -> ArraySource:
  """Two-moons classification, rotated by ``rotation_degrees`` (0 = source).

  Points ``x`` come from ``sklearn.datasets.make_moons(num_examples,
  noise=noise)`` and are rotated counter-clockwise about ``c = (½, ¼)``:
  ``x' = R(θ)(x − c) + c``. For fixed ``(split, num_examples, noise, seed)``
  the unrotated draw is the same whatever the angle, so the target is
  exactly the rotated source sample; pass a different ``seed`` for an
  independent target sample.

  Args:
    split: ``"train"`` or ``"test"`` (independent draws).
    rotation_degrees: rotation angle θ; 0 gives the source domain.
    num_examples: number of points (split as evenly as possible between the
      two moons).
    noise: standard deviation of the Gaussian noise added to the points.
    seed: non-negative seed.

  Returns:
    ArraySource with float32 inputs ``(num_examples, 2)``, int32 labels in
    {0, 1} and ``num_classes=2``.
  """
  from sklearn.datasets import make_moons  # pylint: disable=g-import-not-at-top

  num_examples = check_int(num_examples, "num_examples", minimum=1)
  rotation_degrees = check_finite_number(rotation_degrees, "rotation_degrees")
  noise = float(check_non_negative(noise, "noise"))
  random_state = int(_split_seed_sequence(seed, split).generate_state(1)[0])
  points, labels = make_moons(
      n_samples=num_examples, noise=noise, random_state=random_state
  )
  center = np.asarray(MOONS_CENTER)
  rotated = (points - center) @ rotation_matrix(rotation_degrees).T + center
  name = f"two_moons/{split}" + (
      f"/rot{rotation_degrees:g}" if rotation_degrees else ""
  )
  return ArraySource(rotated, labels, num_classes=2, name=name)


def gaussian_shift(
    split: str = "train",
    *,
    domain: str = "source",
    num_examples: int = 500,
    source_std: float = 0.5,
    target_low: float = -1.5,
    target_high: float = 1.5,
    noise_std: float = 0.1,
    seed: int = 0,
) -> ArraySource:
  """1-D covariate-shift regression: ``y = −x + x³ + ε``, ``ε ~ N(0, noise_std²)``.

  Source inputs ``x ~ N(0, source_std²)``, target inputs
  ``x ~ U(target_low, target_high)``; ``p(y | x)`` is the same in both
  domains, so the importance weight of an example is ``p_target(x) /
  p_source(x)``.

  Args:
    split: ``"train"`` or ``"test"`` (independent draws).
    domain: ``"source"`` or ``"target"`` (independent draws).
    num_examples: number of points.
    source_std: standard deviation of the source inputs.
    target_low: lower end of the target input range.
    target_high: upper end of the target input range.
    noise_std: standard deviation of the label noise.
    seed: non-negative seed.

  Returns:
    ArraySource with float32 inputs ``(num_examples, 1)``, float32 labels
    ``(num_examples,)`` and ``num_classes=None``.
  """
  if domain not in DOMAINS:
    raise ValueError(f"domain must be one of {list(DOMAINS)}, got {domain!r}.")
  num_examples = check_int(num_examples, "num_examples", minimum=1)
  source_std = float(check_positive(source_std, "source_std"))
  noise_std = float(check_non_negative(noise_std, "noise_std"))
  target_low = check_finite_number(target_low, "target_low")
  target_high = check_finite_number(target_high, "target_high")
  if not target_low < target_high:
    raise ValueError(
        f"target_low must be < target_high, got {target_low}, {target_high}."
    )
  rng = np.random.default_rng(
      _split_seed_sequence(seed, split, DOMAINS.index(domain))
  )
  if domain == "source":
    inputs = rng.normal(0.0, source_std, size=num_examples)
  else:
    inputs = rng.uniform(target_low, target_high, size=num_examples)
  labels = -inputs + inputs**3 + rng.normal(0.0, noise_std, size=num_examples)
  return ArraySource(
      inputs[:, None], labels, name=f"gaussian_shift/{domain}/{split}"
  )
