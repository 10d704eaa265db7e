"""What a run does about a step that is not finite: the policy and its messages.

``config.divergence_policy`` chooses what
:func:`tljax.train.step.guard_nonfinite` does with a step whose loss,
gradients or new parameters are not finite: under ``"stop"`` the state stays
the last finite one and the loop raises :class:`~tljax.errors.DivergenceError`
with :func:`divergence_message`; under ``"skip"`` the update is dropped and
counted, and a run that skipped more than ``config.max_skipped_fraction`` of
its steps warns with :class:`SkippedStepsWarning`
(:func:`skipped_steps_message`).
"""

from __future__ import annotations


def divergence_policy(config) -> str:
  """``config.divergence_policy`` (``"stop"`` when the config predates it)."""
  return config.get("divergence_policy", "stop")


def divergence_message(
    first_step: int, policy: str, last_finite: tuple[int, dict] | None
) -> str:
  if last_finite is None:
    before = "no finite metrics were logged before it"
  else:
    step, metrics = last_finite
    shown = ", ".join(
        f"{key}={value:.6g}"
        for key, value in metrics.items()
        if isinstance(value, float)
    )
    before = f"the last finite metrics (step {step}): {shown}"
  return (
      f"training stopped (divergence_policy={policy!r}): the loss, "
      f"gradients or new parameters of step {first_step + 1} were not "
      f"finite; {before}. The state was not updated from that step on and "
      "no checkpoint was written after it. Lower the learning rate, clip "
      "gradients (optimizer.grad_clip_norm) or set "
      "divergence_policy='skip' to skip such steps."
  )


def skipped_fraction_limit(config) -> float:
  """``config.max_skipped_fraction`` (0.05 when the config predates it)."""
  return float(config.get("max_skipped_fraction", 0.05))


class SkippedStepsWarning(UserWarning):
  """A run skipped more of its steps than ``config.max_skipped_fraction``."""


def skipped_steps_message(
    method_name: str, seed: int, skipped: int, steps: int, limit: float
) -> str:
  return (
      f"{method_name} seed {seed} skipped {skipped} of its {steps} steps "
      f"({100 * skipped / max(steps, 1):.0f}%, more than "
      f"max_skipped_fraction={limit:g}) as non-finite under "
      "divergence_policy='skip'; its results are not those of a trained "
      "model. Lower the learning rate or clip gradients "
      "(optimizer.grad_clip_norm)"
  )
