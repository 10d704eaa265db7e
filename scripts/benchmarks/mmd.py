"""Section ``mmd``: the MK-MMD loss and its gradient, tljax next to PyTorch written the TLlib way.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations


import numpy as np

from benchmarks.common import Section, Table, fmt, median_seconds, ratio, short_error

# --- Section: MK-MMD ----------------------------------------------------------


def torch_mkmmd(torch, *, distances: str = "broadcast"):
  """TLlib's ``MultipleKernelMaximumMeanDiscrepancy`` with its ``GaussianKernel``s.

  Kernels: ``GaussianKernel(alpha=2**k)`` for ``k = −3..1`` (TLlib's DAN
  example), each with σ² = α · mean of the pooled squared distance matrix
  (diagonal included; ``track_running_stats``), detached. The loss is the
  kernel matrix summed against TLlib's index matrix (the unbiased
  U-statistic) plus its constant ``2 / (b − 1)``. ``distances='broadcast'``
  forms the ``(N, N, D)`` differences as TLlib does;
  ``'matmul'`` uses ``‖x‖² + ‖y‖² − 2 x·y`` (as tljax).
  """
  nn = torch.nn

  class GaussianKernel(nn.Module):

    def __init__(self, alpha=1.0):
      super().__init__()
      self.alpha = alpha

    def forward(self, pooled):
      if distances == "broadcast":
        squared = ((pooled.unsqueeze(0) - pooled.unsqueeze(1)) ** 2).sum(2)
      else:
        norms = (pooled * pooled).sum(1)
        squared = (
            norms[:, None] + norms[None, :] - 2.0 * pooled @ pooled.T
        ).clamp_min(0.0)
      sigma_square = self.alpha * torch.mean(squared.detach())
      return torch.exp(-squared / (2 * sigma_square))

  def index_matrix(batch, device):
    weights = torch.zeros(2 * batch, 2 * batch, device=device)
    same = 1.0 / (batch * (batch - 1))
    cross = -1.0 / (batch * batch)
    off_diagonal = 1.0 - torch.eye(batch, device=device)
    weights[:batch, :batch] = same * off_diagonal
    weights[batch:, batch:] = same * off_diagonal
    weights[:batch, batch:] = cross
    weights[batch:, :batch] = cross
    return weights

  class MultipleKernelMaximumMeanDiscrepancy(nn.Module):

    def __init__(self, kernels):
      super().__init__()
      self.kernels = nn.ModuleList(kernels)
      self.index_matrix = None

    def forward(self, z_s, z_t):
      pooled = torch.cat([z_s, z_t], dim=0)
      batch = int(z_s.size(0))
      if self.index_matrix is None or self.index_matrix.size(0) != 2 * batch:
        self.index_matrix = index_matrix(batch, z_s.device)
      kernel_matrix = sum(kernel(pooled) for kernel in self.kernels)
      return (kernel_matrix * self.index_matrix).sum() + 2.0 / (batch - 1)

  return MultipleKernelMaximumMeanDiscrepancy(
      [GaussianKernel(alpha=2.0**k) for k in range(-3, 2)]
  )


def section_mmd(args, ctx) -> Section:
  import jax
  import jax.numpy as jnp

  from tljax import align

  torch = ctx.torch
  dim = args.mmd_dim
  section = Section("MK-MMD loss and gradient")
  section.intro = [
      f"`loss, (grad_source, grad_target)` of MK-MMD² between two batches of "
      f"{dim}-dimensional features (standard normal, target shifted by 0.5), "
      f"float32. Median of {args.repeats} calls after one warm-up call; "
      "implementations timed in turn at each size. Ratio: this row's time ÷ "
      "tljax default's (above 1: tljax faster)."
  ]
  table = Table(
      [
          "batch per domain",
          "implementation",
          "ms per call",
          "this ÷ tljax default",
      ]
  )
  check_notes = []
  for batch in args.mmd_sizes:
    rng = np.random.default_rng(batch)
    source = rng.standard_normal((batch, dim)).astype(np.float32)
    target = (rng.standard_normal((batch, dim)) + 0.5).astype(np.float32)
    times = {}
    failures = {}
    pooled = 2 * batch
    tllib_multipliers = [2.0**k * (pooled - 1) / pooled for k in range(-3, 2)]
    variants = {
        "tljax `align.mmd` (default: median heuristic)": {},
        "tljax `align.mmd`, mean heuristic (as TLlib)": {
            "bandwidth_heuristic": "mean"
        },
    }
    source_j, target_j = jnp.asarray(source), jnp.asarray(target)
    for name, options in variants.items():
      function = jax.jit(
          jax.value_and_grad(
              lambda s, t, options=options: align.mmd(s, t, **options),
              argnums=(0, 1),
          )
      )
      jax.block_until_ready(function(source_j, target_j))
      times[name] = median_seconds(
          lambda function=function: jax.block_until_ready(
              function(source_j, target_j)
          ),
          args.repeats,
      )
    if torch is not None:
      for name, distances in (
          (
              "PyTorch TLlib-style (broadcast (N, N, D) distances, as TLlib)",
              "broadcast",
          ),
          ("PyTorch TLlib-style, matmul distances", "matmul"),
      ):
        needed = 5 * pooled * pooled * dim * 4 / 2**30
        if distances == "broadcast" and needed > args.torch_memory_gb:
          failures[name] = (
              f"its (N, N, D) differences would hold "
              f"≈{needed:.1f} GiB (> --torch_memory_gb "
              f"{args.torch_memory_gb:g})"
          )
          continue
        loss_module = torch_mkmmd(torch, distances=distances)
        z_s = torch.from_numpy(source).requires_grad_(True)
        z_t = torch.from_numpy(target).requires_grad_(True)

        def call(loss_module=loss_module, z_s=z_s, z_t=z_t):
          loss = loss_module(z_s, z_t)
          return loss, torch.autograd.grad(loss, (z_s, z_t))

        try:
          value = float(call()[0].detach())
        except Exception as error:  # noqa: BLE001
          failures[name] = short_error(error)
          continue
        times[name] = median_seconds(call, args.repeats)
        if distances == "matmul":
          reference = float(
              align.mmd(
                  source_j,
                  target_j,
                  bandwidth_heuristic="mean",
                  bandwidth_multipliers=tllib_multipliers,
              )
          ) + 2.0 / (batch - 1)
          check_notes.append(
              f"batch {batch}: TLlib-style value {value:.6g}, tljax "
              f"`mmd(bandwidth_heuristic='mean', bandwidth_multipliers="
              f"2^k·(N−1)/N)` + 2/(b−1) = {reference:.6g}."
          )
    else:
      failures["PyTorch TLlib-style"] = "torch not installed"
    base = times["tljax `align.mmd` (default: median heuristic)"]
    for name, seconds in times.items():
      table.add(batch, name, fmt(1e3 * seconds), ratio(seconds, base))
    for name, reason in failures.items():
      table.add(batch, name, "n/a", f"n/a ({reason})")
    print(
        f"mmd {batch}: "
        + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in times.items()),
        flush=True,
    )
  section.tables.append(table)
  section.notes = [
      "tljax's default kernels: 5 Gaussians, σ² = {¼, ½, 1, 2, 4} × the "
      "median pooled squared distance (exact, found by a bisection over "
      "the N(N−1)/2 pairs' bit patterns, not a sort); the "
      "TLlib DAN example's: {⅛, ¼, ½, 1, 2} × the mean. Both are 5 kernels "
      "on one pooled distance matrix (tljax computes it once, TLlib once per "
      "kernel), the unbiased estimator, bandwidths detached.",
      "Same computation check (the matmul variant against tljax with TLlib's "
      "bandwidths): " + (" ".join(check_notes) if check_notes else "n/a."),
  ]
  return section
