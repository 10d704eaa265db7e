"""DeepJDOT: the source cross-entropy plus the mini-batch joint transport term.

Damodaran, Kellenberger, Flamary, Tuia and Courty, "DeepJDOT: deep joint
distribution optimal transport for unsupervised domain adaptation", ECCV
2018: for a source batch ``(x_i, y_i)`` and a target batch ``z_j`` through
the features ``g`` (the bottleneck) and the classifier ``f``::

  loss = CE(source) + λ Σ_ij γ_ij [α ‖g(x_i) − g(z_j)‖² + λ_t CE(y_i, f(g(z_j)))],

``γ`` the exact plan of the bracketed cost on the batch, solved with the
gradient stopped (:func:`tljax.transport.deepjdot_loss`, on
:func:`tljax.transport.exact_plan`); ``λ`` is ``trade_off`` (1: the paper
weighs the source loss and the term equally), ``α = 0.001`` and
``λ_t = 0.0001`` the paper's (its SVHN → MNIST script; skada's
``DeepJDOT`` defaults ``reg_dist = reg_cl = 1``). Deviations from the
authors' Keras code: the plan comes from the training forward pass (theirs
from a separate prediction pass before the step, in inference mode), and
its label cost is the cross-entropy of the loss (theirs
``‖e_y − softmax‖²``); the mini-batches are the loop's (theirs are
class-balanced, 50 source examples per class, against 500 target ones).
"""

from __future__ import annotations

try:  # ott-jax: a dependency of tljax, but absent from some bare machines
  from tljax import transport
except ImportError as _error:  # (a GPU box with jax alone): the rest works
  transport = None
  _TRANSPORT_ERROR = str(_error)
from tljax.methods.adaptation._base import check_non_negative, joint_forward
from tljax.methods.base import Method
from tljax.methods.registry import register_method

#: The paper's α (features) and λ_t (target labels).
PAPER_ALPHA = 0.001
PAPER_TARGET_WEIGHT = 0.0001


def check_deepjdot(settings):
  check_non_negative(settings, "trade_off", "alpha", "target_weight")


@register_method(
    "deepjdot",
    defaults=dict(
        trade_off=1.0, alpha=PAPER_ALPHA, target_weight=PAPER_TARGET_WEIGHT
    ),
    check=check_deepjdot,
)
def build_deepjdot(config, model, *, trade_off, alpha, target_weight) -> Method:
  """DeepJDOT on the bottleneck features and the logits (module docstring)."""
  del config
  if transport is None:
    raise ImportError(
        f"method 'deepjdot' needs ott-jax ({_TRANSPORT_ERROR}); pip install "
        "ott-jax"
    )

  def loss_fn(params, model_state, batch, key, extras, *, hparams):
    del extras
    (
        loss,
        model_state,
        source_features,
        target_features,
        _,
        target_logits,
        metrics,
    ) = joint_forward(model, params, model_state, batch, key)
    term, _ = transport.deepjdot_loss(
        source_features,
        target_features,
        batch["source"]["label"],
        target_logits,
        alpha=alpha,
        target_weight=target_weight,
    )
    return loss + hparams["trade_off"] * term, (
        model_state,
        {**metrics, "deepjdot": term},
    )

  return Method(
      name="deepjdot",
      loss_fn=loss_fn,
      domains=("source", "target"),
      labeled=("source",),
      setting="transductive",
      hparams={"trade_off": trade_off},
  )
