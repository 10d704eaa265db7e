#!/usr/bin/env python
"""Images/s of the DANN step fed by tljax's image pipeline, next to the step alone.

The Office-31 DANN step of ``benchmarks/dann.py`` (``tljax_dann``: the
registered recipe, ResNet-50 → bottleneck 256 → 31 classes by default) runs
twice in one process on the same compiled step: **step only**, on one batch
already on the device (what ANCHORS.md's figures measure), and **fed**, on
batches made from a folder of synthetic 500×375 JPEGs by tljax's pipeline:
grain (:func:`tljax.data.loader.grain_domain_batches`) decoding and
augmenting (``ResizeImage(256)``, ``RandomResizedCrop(224)``, flip) in
``--workers`` processes, uint8 batches moved to the device ahead of the step
(:func:`tljax.data.prefetch`), the model scaling them on the device. Images/s
count both domains. Rounds alternate; the best of each is reported.

  python scripts/benchmarks/fed_step.py                      # a GPU: ResNet-50 at 224
  python scripts/benchmarks/fed_step.py --model resnet18 --image_size 32 \\
      --batch 8 --steps 3 --images 32 --workers 1             # a CPU smoke run

Needs no tensorflow-datasets and no network (scripts/gpu_check.sh runs it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.augment import JpegFiles, list_folder, make_folder  # noqa: E402
from benchmarks.dann import tljax_dann  # noqa: E402
from tljax import data  # noqa: E402
from tljax.data import augment, images, loader  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="resnet50")
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=32, help="per domain")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
  parser.add_argument("--images", type=int, default=512)
  parser.add_argument(
      "--dtype", default="float32", choices=["float32", "bfloat16"]
  )
  parser.add_argument("--output", help="also write the table here")
  args = parser.parse_args()
  size = args.image_size
  resize = size * 256 // 224
  options = (
      {"stem": "small"} if size < 64 and args.model.startswith("resnet") else {}
  )

  with tempfile.TemporaryDirectory() as folder:
    make_folder(folder, args.images)
    records = JpegFiles(*list_folder(folder))
    transform = loader.ImageTransform(
        augment.TrainAugment(size=size, resize=(resize, resize)),
        decode=images.decode_image,
    )
    streams = {
        domain: loader.Stream(records, args.batch, seed, transform=transform)
        for seed, domain in enumerate(("source", "target"))
    }
    produced = loader.grain_domain_batches(streams, worker_count=args.workers)
    on_device = data.prefetch(
        (
            {
                "source": {
                    "input": b["source"]["input"],
                    "label": b["source"]["label"],
                },
                "target": {"input": b["target"]["input"]},
            }
            for b in produced
        ),
        size=2,
    )
    fixed = {"batch": None}

    def feed():
      while True:
        yield fixed["batch"] if fixed["batch"] is not None else next(on_device)

    run, _ = tljax_dann(
        model_name=args.model,
        image_shape=(size, size, 3),
        batch_size=args.batch,
        dtype=jnp.dtype(args.dtype),
        num_classes=31,
        hidden_dim=1024,
        weight_decay=1e-3,
        model_options=options,
        feed=feed(),
    )
    run(args.warmup)  # compiles; the workers start
    best = {"step only": 0.0, "fed by the pipeline": 0.0}
    for _ in range(args.rounds):
      for name in best:
        # Step only: one batch, already on the device, every step.
        fixed["batch"] = next(on_device) if name == "step only" else None
        seconds = run(args.steps)
        best[name] = max(best[name], 2 * args.batch * args.steps / seconds)
    produced.close()

  device = jax.devices()[0]
  lines = [
      f"DANN step, {args.model} at {size}×{size}, batch {args.batch}+"
      f"{args.batch}, {args.dtype}, on {device.device_kind} "
      f"({device.platform}); pipeline: {args.workers} worker processes on "
      f"{os.cpu_count()} CPUs, {args.images} synthetic JPEGs.",
      "",
      "| input | images/s |",
      "| --- | --- |",
      *(f"| {name} | {rate:,.0f} |" for name, rate in best.items()),
      f"| fed ÷ step only | {best['fed by the pipeline'] / best['step only']:.2f} |",
  ]
  text = "\n".join(lines)
  print(text)
  if args.output:
    with open(args.output, "w", encoding="utf-8") as stream:
      stream.write(text + "\n")


if __name__ == "__main__":
  main()
