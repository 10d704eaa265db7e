"""Section ``features``: feature extraction with a converted timm ResNet-50 next to timm's own.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time

import jax
import numpy as np

from benchmarks.common import (
    Section,
    Table,
    fmt,
    interleaved_medians,
    median_seconds,
    ratio,
    short_error,
)
from tljax.models import load_timm

TLJAX_ROW = "tljax, converted (jit)"
TORCH_ROW = "PyTorch eager, NCHW"
CHANNELS_LAST_ROW = "PyTorch eager, channels_last"

# --- Section: feature extraction, converted ResNet-50 vs timm ----------------


def import_timm_tolerantly():
  """timm (needs torch) or the reason it cannot be imported.

  Through scripts/make_pretrained_fixtures.py's ``import_timm``, which
  tolerates a torchvision whose C ops do not load (timm imports torchvision).
  """
  try:
    from make_pretrained_fixtures import import_timm  # noqa: PLC0415

    return import_timm(), None
  except Exception as error:  # noqa: BLE001 (ImportError, or a broken wheel)
    return None, short_error(error)


def timm_model(timm, torch, name: str, seed: int):
  """timm's ``name`` with random weights (no download), in evaluation mode.

  The BatchNorm running statistics are redrawn (timm starts them at 0 and 1,
  which would leave them untested) and the residual branches' last BatchNorm
  is not zero-initialised (``zero_init_last=False``), so every weight
  reaches the features.
  """
  torch.manual_seed(seed)
  model = timm.create_model(name, pretrained=False, zero_init_last=False)
  with torch.no_grad():
    for key, tensor in model.state_dict().items():
      if key.endswith("running_var"):
        tensor.uniform_(0.5, 1.5)
      elif key.endswith("running_mean"):
        tensor.normal_(0.0, 0.1)
  return model.eval()


def relative_error(actual, expected) -> float:
  """The largest absolute difference over the largest absolute value of
  ``expected``, as tests/test_pretrained_live.py measures it."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def section_features(args, ctx) -> Section:
  name, size = args.features_model, args.features_image_size
  # On the CPU, as PyTorch here, whatever JAX's default device: the params
  # are committed to it, so the jitted call runs there.
  cpu = jax.devices("cpu")[0]
  section = Section(
      f"Feature extraction: a converted timm {name} next to timm's own (CPU)"
  )
  torch, timm = ctx.torch, None
  reason = "torch not installed" if torch is None else None
  if torch is not None:
    timm, reason = import_timm_tolerantly()
  if timm is None:
    section.intro = [
        f"Not run: the converted model is timm's own {name}, built and "
        f"saved here, and timm cannot be imported ({reason}); `pip install "
        "-e '.[bench]'` installs torch and timm."
    ]
    return section

  upstream = timm_model(timm, torch, name, seed=0)
  with tempfile.TemporaryDirectory() as directory:
    from safetensors.torch import save_file  # noqa: PLC0415 (optional)

    path = os.path.join(directory, "model.safetensors")
    save_file(
        {
            key: value.contiguous()
            for key, value in upstream.state_dict().items()
        },
        path,
    )
    started = time.perf_counter()
    converted = load_timm(path, image_size=size)
    convert_seconds = time.perf_counter() - started
  model = converted.create_model()
  params = jax.device_put(converted.params, cpu)
  model_state = jax.device_put(converted.model_state, cpu)

  @jax.jit
  def extract(params, model_state, images):
    outputs, _ = model.apply(params, model_state, images, train=False)
    return outputs.backbone_features  # the head's logits are never computed

  # PyTorch: the pooled features of the same module (classifier removed).
  upstream.reset_classifier(0)
  channels_last = copy.deepcopy(upstream).to(memory_format=torch.channels_last)
  mean = np.float32(converted.input_mean)
  std = np.float32(converted.input_std)
  threads = torch.get_num_threads()
  rounds = args.features_rounds
  section.intro = [
      f"The pooled backbone features (2,048 per image for ResNet-50) of a "
      f"batch of {size}×{size} RGB images, float32, evaluation mode, no "
      f"gradients. The model: timm's `{name}` with random weights "
      "(`pretrained=False`, seed 0, BatchNorm running statistics redrawn), "
      "its state dict saved as `model.safetensors` and converted by "
      "`tljax.models.load_timm`; PyTorch runs that same timm module. tljax: "
      "`jax.jit` of `model.apply(params, model_state, images, train=False)` "
      "returning `backbone_features`, on uint8 NHWC images as stored (the "
      "model scales and normalises them on the device, inside the jitted "
      "call). PyTorch: `model.reset_classifier(0)` then `model(x)` under "
      "`torch.inference_mode()` on float32 NCHW images already normalised "
      "(the normalisation not timed); the channels_last row is the same "
      "module and input in channels_last memory format, oneDNN's preferred "
      f"layout. PyTorch intra-op threads: {threads} (the usable cores; "
      "JAX's CPU runtime uses them all too). First call: compilation "
      "included for tljax. Then one more warm call each, and "
      f"{rounds} rounds that call each implementation once in turn, each "
      "call after 0.2 s of sleep (the other's oneDNN / XLA threads spin for "
      "a while after a call); the median round. Ratio: tljax's images/s ÷ "
      "this row's (above 1: tljax faster).",
  ]
  table = Table(
      [
          "batch",
          "implementation",
          "input",
          "first call (s)",
          "ms per batch",
          "images/s",
          "tljax ÷ this",
          "features: relative difference from tljax",
      ]
  )
  errors = []
  for batch in args.features_batch_sizes:
    rng = np.random.default_rng(batch)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    normalised = (images.astype(np.float32) / np.float32(255.0) - mean) / std
    nchw = torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())
    nhwc_strides = nchw.contiguous(memory_format=torch.channels_last)

    def ours(images=images):
      return jax.block_until_ready(extract(params, model_state, images))

    def theirs(module, inputs):
      with torch.inference_mode():
        return module(inputs)

    contenders = {
        TLJAX_ROW: ("uint8 NHWC", ours),
        TORCH_ROW: (
            "float32 NCHW, normalised",
            lambda nchw=nchw: theirs(upstream, nchw),
        ),
        CHANNELS_LAST_ROW: (
            "float32 NCHW (channels_last), normalised",
            lambda x=nhwc_strides: theirs(channels_last, x),
        ),
    }
    first = {
        row: median_seconds(function, 1)
        for row, (_, function) in contenders.items()
    }
    features = {
        row: np.asarray(function()) for row, (_, function) in contenders.items()
    }  # the second, warm call
    difference = {
        row: relative_error(features[TLJAX_ROW], value)
        for row, value in features.items()
        if row != TLJAX_ROW
    }
    errors.append(difference[TORCH_ROW])
    seconds = dict(
        zip(
            contenders,
            interleaved_medians(
                [function for _, function in contenders.values()],
                rounds,
                pause=0.2,
            ),
        )
    )
    rates = {row: batch / value for row, value in seconds.items()}
    for row, (layout, _) in contenders.items():
      table.add(
          batch,
          row,
          layout,
          fmt(first[row]),
          fmt(seconds[row] * 1e3),
          fmt(rates[row]),
          "—" if row == TLJAX_ROW else ratio(rates[TLJAX_ROW], rates[row]),
          "—" if row == TLJAX_ROW else f"{difference[row]:.1e}",
      )
    print(
        f"features batch={batch}: "
        + ", ".join(f"{row} {rate:.1f} images/s" for row, rate in rates.items())
        + f"; relative difference {difference[TORCH_ROW]:.1e}",
        flush=True,
    )
  section.tables.append(table)
  section.notes = [
      f"Agreement: the largest absolute difference between the two models' "
      f"features over the largest absolute feature, {max(errors):.1e} at "
      "most (bound: 1e-4), on the same images (tljax normalising the uint8 "
      "ones itself, PyTorch given them normalised on the host).",
      f"Converting the checkpoint (`load_timm`: read {converted.model_name}'s "
      "safetensors with NumPy, transpose the kernels, check every key and "
      f"shape) took {convert_seconds:.2f} s; not part of the rates.",
  ]
  if max(errors) > 1e-4:
    section.notes.append(
        f"**The features disagree: {max(errors):.1e} > 1e-4.** The rates "
        "above compare different computations."
    )
  return section
