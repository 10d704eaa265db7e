"""Section ``resnet``: the DANN step with ResNet-50 at 224×224 (on a GPU, or with ``--resnet``).

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations


from benchmarks.common import RESNET_GFLOP_PER_IMAGE, Section, Table, fmt, interleaved_rates, ratio, short_error, warm_up
from benchmarks.dann import tljax_dann, torch_dann

# --- Section: ResNet-50 (GPU) ------------------------------------------------


def section_resnet(args, ctx) -> Section:
  import jax
  import jax.numpy as jnp

  platform_name = jax.devices()[0].platform
  size, batch = args.resnet_image_size, args.resnet_batch
  section = Section(
      f"DANN training step: ResNet-50 at {size}×{size} "
      f"({platform_name.upper()})"
  )
  if platform_name != "gpu" and not args.resnet:
    section.intro = [
        f"Not run: JAX's device is {platform_name}, and ResNet-50 at 224×224 "
        "is too slow there (`--resnet` forces it)."
    ]
    return section
  torch = ctx.torch
  # 4.1 GFLOP per 224×224 image forward; convolutions scale with the area.
  gflop = RESNET_GFLOP_PER_IMAGE * (size / 224) ** 2
  device = (
      "cuda"
      if (
          torch is not None
          and platform_name == "gpu"
          and torch.cuda.is_available()
      )
      else "cpu"
  )
  section.intro = [
      f"The Office-31 DANN step of the Transfer-Learning-Library: ResNet-50 "
      f"(random init) → bottleneck 256 (+BN) → 31 classes; discriminator "
      f"256→1024→1024→1; SGD Nesterov momentum, weight decay 1e-3; inputs "
      f"{size}×{size}×3 already on the device, batch {batch}+{batch}. "
      f"{args.warmup} warm-up steps, then {args.rounds} rounds of the same "
      "number of steps for each implementation (as in the digits section), "
      "alternating; the median round. FLOP/s counts "
      f"{gflop:.3g} GFLOP per image (3 × 4.1 at 224×224, scaled by the "
      "area)."
  ]
  table = Table(
      [
          "implementation",
          "compute dtype",
          "images/s",
          "fraction of peak",
          "tljax ÷ this",
      ]
  )
  runners, dtypes = {}, {}
  failures = {}
  for dtype_name, dtype in (
      ("float32", jnp.float32),
      ("bfloat16", jnp.bfloat16),
  ):
    name = f"tljax {dtype_name}"
    try:
      run, _ = tljax_dann(
          model_name="resnet50",
          image_shape=(size, size, 3),
          batch_size=batch,
          dtype=dtype,
          num_classes=31,
          hidden_dim=1024,
          weight_decay=1e-3,
          model_options={"stem": "imagenet"},
      )
      run(1)
      runners[name], dtypes[name] = run, dtype_name
    except Exception as error:  # noqa: BLE001
      failures[name] = (dtype_name, short_error(error))
  torchvision = None
  if torch is not None:
    try:
      import torchvision  # noqa: PLC0415 (optional)
    except ImportError:
      failures["PyTorch eager (TLlib style)"] = (
          "float32",
          "torchvision not installed",
      )
  else:
    failures["PyTorch eager (TLlib style)"] = ("float32", "torch not installed")
  if torchvision is not None:
    for name, dtype_name, autocast, channels_last in (
        ("PyTorch eager (TLlib style)", "float32", None, False),
        (
            "PyTorch eager, autocast, channels_last",
            "bfloat16",
            torch.bfloat16,
            True,
        ),
    ):
      try:
        backbone = torchvision.models.resnet50()
        backbone.out_features = backbone.fc.in_features
        backbone.fc = torch.nn.Identity()
        run = torch_dann(
            torch,
            backbone=backbone,
            image_shape=(size, size, 3),
            batch_size=batch,
            compiled=False,
            device=device,
            autocast_dtype=autocast,
            channels_last=channels_last,
            hidden_dim=1024,
            discriminator_batch_norm=True,
            weight_decay=1e-3,
            num_classes=31,
        )
        run(1)
        runners[name], dtypes[name] = run, dtype_name
      except Exception as error:  # noqa: BLE001
        failures[name] = (dtype_name, short_error(error))
  steps = warm_up(runners, args)
  rates = interleaved_rates(runners, steps=steps, rounds=args.rounds)
  peaks = {"float32": args.peak_tflops_fp32, "bfloat16": args.peak_tflops_bf16}
  for name, rate in rates.items():
    images = rate * 2 * batch
    peak = peaks[dtypes[name]]
    fraction = (
        f"{images * gflop / (peak * 1e3):.1%}"
        if peak
        else "n/a (pass --peak_tflops_*)"
    )
    ours = rates.get(f"tljax {dtypes[name]}")
    table.add(
        name,
        dtypes[name],
        fmt(images),
        fraction,
        "—" if name.startswith("tljax") else ratio(ours, rate),
    )
  for name, (dtype_name, reason) in failures.items():
    table.add(name, dtype_name, "n/a", "n/a", f"n/a ({reason})")
  section.tables.append(table)
  section.notes.append(
      "tljax's discriminator has no BatchNorm; the PyTorch one has TLlib's "
      "(BatchNorm in both hidden layers)."
  )
  return section
