#!/usr/bin/env python
"""tljax next to the PyTorch / NumPy / `adapt` way of doing the same thing, side by side.

Every figure in the report is a ratio of two implementations timed in the
same process, one after the other, on the same inputs, so that a slow or
busy machine slows both alike. Sections (``--sections``, comma-separated,
default all; each is a function of :data:`SECTIONS`, in its own module of
``scripts/benchmarks/``, called from :func:`main`):

* ``dann`` — one domain-adversarial (DANN) training step on digits. tljax:
  the registered ``dann`` recipe on a LeNet with a 256-unit bottleneck
  (BatchNorm) and its domain discriminator, SGD with Nesterov momentum from
  :func:`tljax.train.optim.make_optimizer`, the step of
  :func:`tljax.train.make_train_step` (jitted, state donated), built and
  called as :mod:`tljax.train.loop` does. PyTorch: the same network and
  update written the way the Transfer-Learning-Library's DANN example
  (``tllib``/``dalib``) writes it — ``ImageClassifier`` (backbone →
  bottleneck → head, one forward pass over the concatenated source and
  target batch), ``DomainDiscriminator`` behind a
  ``WarmStartGradientReverseLayer``, ``DomainAdversarialLoss``,
  ``torch.optim.SGD`` with a ``LambdaLR`` schedule — run eagerly, and with
  ``torch.compile`` on the loss (reported "n/a" with the reason where it
  fails). Inputs are already in memory (no data loading in either).
  Reported: steps/s, images/s (source + target), tljax ÷ PyTorch.
* ``resnet`` — on a GPU only (or with ``--resnet``): the same step with
  ResNet-50 at 224×224, batch 32+32, float32 and bfloat16 compute
  (the tljax model's ``dtype``), images/s and the fraction of the peak
  FLOP/s given by ``--peak_tflops_fp32`` / ``--peak_tflops_bf16``
  (counting 3 × 4.1 GFLOP per image). A PyTorch row needs torchvision.
* ``mmd`` — the MK-MMD loss and its gradient with respect to both feature
  batches: :func:`tljax.align.mmd` (default kernels) next to a PyTorch
  ``MultipleKernelMaximumMeanDiscrepancy`` with ``GaussianKernel`` written
  here as the Transfer-Learning-Library writes it.
* ``reweight`` — KMM, KLIEP and uLSIF of :mod:`tljax.reweight` next to
  ``adapt``'s (optional; skipped with a note when it is not importable) at
  several sizes, with the same kernel candidates, and the log-log slope of
  time against ``n``.
* ``logme`` — :func:`tljax.select.logme` next to the NumPy implementation of
  LogME below (You et al., ICML 2021, Algorithm 1), times and slope.
* ``sweep`` — ``--sweep_members`` seeds (8) of DANN on LeNet digits: the
  vmapped step of :mod:`tljax.train.sweep` against the single-run step
  called once per member, and ``run_sweep`` against that many
  ``train_and_evaluate`` runs end to end (``--sweep_steps`` each).
* ``compile`` — the tljax DANN step's compile time (``.lower()`` and
  ``.compile()``) and memory (``compiled.memory_analysis()``, else the
  resident-memory growth), next to ``torch.compile``'s first call.
* ``features`` — feature extraction on the CPU: timm's ``resnet50``
  (``--features_model``) with random weights, saved as ``model.safetensors``
  and converted by :func:`tljax.models.load_timm`, its pooled features
  (jitted ``model.apply(..., train=False)``, uint8 NHWC in) next to the same
  timm module in PyTorch (``reset_classifier(0)``, ``inference_mode``,
  normalised float32 NCHW in, also channels_last) at
  ``--features_batch_sizes``; images/s, tljax ÷ PyTorch, and the features'
  relative difference (at most 1e-4). Needs torch and timm, else "Not run".
* ``transport`` — the entropic OT plan (:func:`tljax.transport.entropic_plan`,
  dense and online modes) at ``--transport_sizes`` points (1,000, 5,000,
  20,000) in ``--transport_dim`` (64) dimensions, next to POT's NumPy
  ``ot.sinkhorn`` (methods ``'sinkhorn'`` and ``'sinkhorn_log'``) at the
  same ``ε`` (``--transport_relative_epsilon`` × the mean squared
  distance), threshold and iteration limit: seconds, iterations, POT ÷
  tljax, the transport costs' difference. Needs POT, else tljax only.

Run with only some sections and an existing ``--output``, the script
replaces those sections of the page (matched by their ``##`` titles, a new
one appended), each with a line saying when it was measured on its own, and
keeps the rest; a run of every section writes the whole page.

PyTorch and ``adapt`` are optional benchmark dependencies (``pip install
-e ".[bench]"``), never imported by tljax; without them their rows read
"n/a". Example::

  nice -n 15 python scripts/benchmark.py --note "2 cores shared with 2 jobs"
  python scripts/benchmark.py --sections dann,compile --steps 20
  python scripts/benchmark.py --sections features
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import sys
import time
import types
import warnings

# The sections live in scripts/benchmarks/ (one module each), imported from
# here however this file is run or loaded.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchmarks.common import SECTION_ORDER, describe_machine, find_adapt, import_torch
from benchmarks.compile import section_compile
from benchmarks.dann import section_dann
from benchmarks.logme import section_logme
from benchmarks.mmd import section_mmd
from benchmarks.resnet import section_resnet
from benchmarks.reweight import adapt_worker, section_reweight
from benchmarks.sweep import section_sweep  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def section_features(args, ctx):
  """The ``features`` section, loaded when it runs: its module imports tljax
  and JAX at its top, and this script must load without them (the
  ``--adapt_worker`` process may run in an environment of its own,
  ``--adapt_python``, with adapt but no JAX)."""
  from benchmarks import features  # noqa: PLC0415

  return features.section_features(args, ctx)


def section_transport(args, ctx):
  """The ``transport`` section, loaded when it runs (it imports tljax)."""
  from benchmarks import transport  # noqa: PLC0415

  return transport.section_transport(args, ctx)


SECTIONS = {
    "dann": section_dann,
    "resnet": section_resnet,
    "mmd": section_mmd,
    "reweight": section_reweight,
    "logme": section_logme,
    "compile": section_compile,
    "sweep": section_sweep,
    "features": section_features,
    "transport": section_transport,
}
# Every section, in the order of a full run.
ALL_SECTIONS = (*SECTION_ORDER, "features", "transport")


# --- Main -------------------------------------------------------------------


def int_list(text: str) -> list[int]:
  return [int(value) for value in text.split(",") if value]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
      "--sections",
      default=",".join(ALL_SECTIONS),
      help=f"comma-separated, from {list(SECTIONS)}",
  )
  parser.add_argument(
      "--output",
      default="docs/benchmarks.md",
      help="markdown file to write ('' or '-': stdout only)",
  )
  parser.add_argument(
      "--note",
      default="",
      help="a sentence for the report's header (e.g. the " "machine's load)",
  )
  parser.add_argument(
      "--image_sizes",
      type=int_list,
      default=[8, 28],
      help="digit input sizes (8: tljax's digits, 28: MNIST)",
  )
  parser.add_argument(
      "--batch_sizes",
      type=int_list,
      default=[64, 256],
      help="per-domain batch sizes",
  )
  parser.add_argument(
      "--warmup",
      type=int,
      default=3,
      help="warm-up steps (the first call included)",
  )
  parser.add_argument(
      "--steps", type=int, default=5, help="the least timed steps per round"
  )
  parser.add_argument(
      "--round_seconds",
      type=float,
      default=2.0,
      help="more timed steps per round until the slowest "
      "implementation's round takes about this long",
  )
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument(
      "--repeats",
      type=int,
      default=3,
      help="timed calls per measurement (mmd, logme)",
  )
  parser.add_argument(
      "--no_torch",
      action="store_true",
      help="leave PyTorch out even if installed",
  )
  parser.add_argument("--no_torch_compile", action="store_true")
  parser.add_argument(
      "--torch_extra_threads",
      type=int_list,
      default=[1],
      help="extra PyTorch eager rows with these thread counts " "('' for none)",
  )
  parser.add_argument(
      "--resnet",
      action="store_true",
      help="run the ResNet-50 section on a CPU too",
  )
  parser.add_argument("--resnet_batch", type=int, default=32)
  parser.add_argument("--resnet_image_size", type=int, default=224)
  parser.add_argument("--peak_tflops_fp32", type=float, default=None)
  parser.add_argument("--peak_tflops_bf16", type=float, default=None)
  parser.add_argument("--mmd_sizes", type=int_list, default=[256, 1024])
  parser.add_argument("--mmd_dim", type=int, default=256)
  parser.add_argument(
      "--torch_memory_gb",
      type=float,
      default=3.0,
      help="skip the TLlib broadcast MMD above this estimate",
  )
  parser.add_argument(
      "--reweight_sizes", type=int_list, default=[100, 250, 500, 1000, 2000]
  )
  parser.add_argument("--reweight_dim", type=int, default=5)
  parser.add_argument("--no_adapt", action="store_true")
  parser.add_argument(
      "--adapt_python",
      default=None,
      help="the Python interpreter of a separate environment "
      "with adapt installed, to time adapt there",
  )
  parser.add_argument(
      "--adapt_worker", action="store_true", help=argparse.SUPPRESS
  )  # see adapt_worker()
  parser.add_argument(
      "--logme_sizes", type=int_list, default=[1000, 2000, 4000, 8000, 16000]
  )
  parser.add_argument("--logme_dim", type=int, default=256)
  parser.add_argument("--logme_classes", type=int, default=10)
  parser.add_argument("--sweep_members", type=int, default=8)
  parser.add_argument("--sweep_batch", type=int, default=64)
  parser.add_argument(
      "--sweep_steps",
      type=int,
      default=300,
      help="steps per member of the end-to-end sweep "
      "comparison (0: step timing only)",
  )
  parser.add_argument(
      "--sweep_data_dir",
      default=None,
      help="TFDS data dir of the digits (default: tljax's)",
  )
  parser.add_argument(
      "--features_model",
      default="resnet50",
      help="the timm ResNet of the features section",
  )
  parser.add_argument("--features_batch_sizes", type=int_list, default=[16, 64])
  parser.add_argument("--features_image_size", type=int, default=224)
  parser.add_argument(
      "--features_rounds",
      type=int,
      default=5,
      help="interleaved timed rounds per batch size (features)",
  )
  parser.add_argument(
      "--transport_sizes", type=int_list, default=[1000, 5000, 20000]
  )
  parser.add_argument(
      "--transport_memory_sizes",
      type=int_list,
      default=[1000, 5000, 20000],
      help="n of the compiled-memory table (compiled, not run)",
  )
  parser.add_argument("--transport_dim", type=int, default=64)
  parser.add_argument(
      "--transport_relative_epsilon",
      type=float,
      default=0.02,
      help="ε as a fraction of the mean squared distance",
  )
  parser.add_argument("--transport_threshold", type=float, default=1e-6)
  parser.add_argument("--transport_max_iterations", type=int, default=1000)
  parser.add_argument(
      "--transport_batch_size",
      type=int,
      default=128,
      help="rows per block of tljax's online mode",
  )
  parser.add_argument(
      "--transport_dense_max",
      type=int,
      default=20000,
      help="the largest n timed in tljax's dense mode",
  )
  parser.add_argument(
      "--transport_online_min",
      type=int,
      default=5000,
      help="the smallest n timed in tljax's online mode",
  )
  parser.add_argument(
      "--transport_pot_methods",
      type=lambda text: [name for name in text.split(",") if name],
      default=["sinkhorn", "sinkhorn_log"],
      help="POT's ot.sinkhorn methods ('' for none)",
  )
  parser.add_argument(
      "--transport_pot_log_max",
      type=int,
      default=5000,
      help="the largest n timed with POT's 'sinkhorn_log'",
  )
  parser.add_argument(
      "--transport_repeats",
      type=int,
      default=3,
      help="warm calls per implementation up to n = 5,000 (above: one "
      "call, compilation included)",
  )
  args = parser.parse_args(argv)
  args.sections = [name for name in args.sections.split(",") if name]
  unknown = sorted(set(args.sections) - set(SECTIONS))
  if unknown:
    parser.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")
  return args


def splice_sections(page: str, sections, stamp: str) -> str:
  """``page`` with ``sections`` in place of their namesakes, the rest untouched.

  A section replaces the block of ``page`` under the same ``## `` title (up
  to the next ``## `` line), or is appended when the page has none; ``stamp``
  (when and how it was measured) opens its text below the title.
  """
  head, *blocks = re.split(r"(?m)^(?=## )", page)
  titles = [block.split("\n", 1)[0] for block in blocks]
  for section in sections:
    lines = section.markdown()
    lines[2:2] = [stamp, ""]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n")
    if lines[0] in titles:
      index = titles.index(lines[0])
      old = blocks[index]
      blocks[index] = text + old[len(old.rstrip("\n")) :]
    else:
      if blocks:
        blocks[-1] = blocks[-1].rstrip("\n") + "\n\n"
      else:
        head = head.rstrip("\n") + "\n\n"
      blocks.append(text + "\n")
      titles.append(lines[0])
  return head + "".join(blocks)


def main(argv=None) -> str | None:
  args = parse_args(argv)
  if args.adapt_worker:
    adapt_worker(args.reweight_sizes, args.reweight_dim)
    return None
  warnings.filterwarnings("ignore", message=".*donated buffers.*")
  torch = None if args.no_torch else import_torch()
  if torch is not None:
    threads = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    torch.set_num_threads(threads)
  adapt = (
      "reweight" in args.sections
      and not args.no_adapt
      and (args.adapt_python is not None or find_adapt())
  )
  ctx = types.SimpleNamespace(
      torch=torch, adapt=adapt, results={}, adapt_python=args.adapt_python
  )
  started = time.perf_counter()
  sections = []
  for name in args.sections:
    print(f"--- {name}", flush=True)
    sections.append(SECTIONS[name](args, ctx))
  elapsed = time.perf_counter() - started
  given = list(argv if argv is not None else sys.argv[1:])
  for index, value in enumerate(given):
    if value == "--note" and index + 1 < len(given):
      given[index + 1] = "…"  # printed below
    elif value.startswith("--note="):
      given[index] = "--note=…"
  command = shlex.join(["scripts/benchmark.py", *given])
  now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
  write = args.output and args.output != "-"
  if (
      write
      and set(args.sections) != set(SECTIONS)
      and os.path.exists(args.output)
  ):
    with open(args.output, encoding="utf-8") as stream:
      page = stream.read()
    report = splice_sections(
        page,
        sections,
        f"Measured on its own on {now} by `{command}` in "
        f"{elapsed / 60:.1f} minutes; the other sections are from the "
        "invocation in the header, unless they say otherwise."
        + (f" Note: {args.note}" if args.note else ""),
    )
    with open(args.output, "w", encoding="utf-8") as stream:
      stream.write(report)
    print(report)
    return report
  lines = [
      "# tljax benchmarks: side by side with PyTorch, NumPy and `adapt`",
      "",
      f"Generated by `{command}` on "
      f"{now} in "
      f"{elapsed / 60:.1f} minutes. Every figure that compares is a ratio of "
      "two implementations measured in this one invocation, in turn, on the "
      "same inputs; absolute numbers depend on the machine and its load.",
      "",
  ]
  if args.note:
    lines += [f"**Note:** {args.note}", ""]
  lines += ["Machine:", "", *describe_machine(ctx), ""]
  for section in sections:
    lines += section.markdown()
  report = "\n".join(lines).rstrip() + "\n"
  report = re.sub(r"\n{3,}", "\n\n", report)
  if write:
    directory = os.path.dirname(args.output)
    if directory:
      os.makedirs(directory, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as stream:
      stream.write(report)
  print(report)
  return report


if __name__ == "__main__":
  main()
