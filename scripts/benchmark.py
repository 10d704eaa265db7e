#!/usr/bin/env python
"""tljax next to the PyTorch / NumPy / `adapt` way of doing the same thing, side by side.

Every figure in the report is a ratio of two implementations timed in the
same process, one after the other, on the same inputs, so that a slow or
busy machine slows both alike. Sections (``--sections``, comma-separated,
default all; each is a function of :data:`SECTIONS` called from
:func:`main`):

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

PyTorch and ``adapt`` are optional benchmark dependencies (``pip install
-e ".[bench]"``), never imported by tljax; without them their rows read
"n/a". Example::

  nice -n 15 python scripts/benchmark.py --note "2 cores shared with 2 jobs"
  python scripts/benchmark.py --sections dann,compile --steps 20
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import platform
import re
import shlex
import statistics
import sys
import time
import types
import warnings
from importlib import metadata

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SECTION_ORDER = ("dann", "resnet", "mmd", "reweight", "logme", "compile",
                 "sweep")
RESNET_GFLOP_PER_IMAGE = 3 * 4.1  # forward + backward, ResNet-50 at 224×224
NUM_DIGIT_CLASSES = 10
XLA_CONV_ROW = "tljax, conv_impl='xla'"


# --- Report structure ------------------------------------------------------


@dataclasses.dataclass
class Table:
  header: list[str]
  rows: list[list[str]] = dataclasses.field(default_factory=list)

  def add(self, *cells) -> None:
    if len(cells) != len(self.header):
      raise ValueError(f"row {cells} has {len(cells)} cells, the header "
                       f"{self.header} {len(self.header)}")
    self.rows.append([str(cell) for cell in cells])

  def markdown(self) -> list[str]:
    lines = ["| " + " | ".join(self.header) + " |",
             "| " + " | ".join("---" for _ in self.header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in self.rows]
    return lines


@dataclasses.dataclass
class Section:
  title: str
  intro: list[str] = dataclasses.field(default_factory=list)
  tables: list[Table] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def markdown(self) -> list[str]:
    lines = [f"## {self.title}", ""]
    if self.intro:
      lines += [" ".join(self.intro), ""]
    for table in self.tables:
      lines += table.markdown() + [""]
    lines += [f"- {note}" for note in self.notes]
    if self.notes:
      lines.append("")
    return lines


def fmt(value, digits: int = 3) -> str:
  """A number with ``digits`` significant digits, thousands separated; n/a for None."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "n/a"
  if isinstance(value, str):
    return value
  if abs(value) >= 10 ** digits:
    return f"{value:,.0f}"
  return f"{value:.{digits}g}"


def ratio(numerator, denominator) -> str:
  if numerator is None or denominator is None or not denominator:
    return "n/a"
  return f"{numerator / denominator:.2f}×"


def loglog_slope(sizes, seconds) -> float | None:
  """The slope of log(time) against log(n): the empirical exponent of the cost."""
  points = [(n, t) for n, t in zip(sizes, seconds) if t is not None and t > 0]
  if len(points) < 2:
    return None
  sizes, seconds = zip(*points)
  return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def short_error(error: BaseException) -> str:
  text = " ".join(f"{type(error).__name__}: {error}".split())
  text = text.replace("|", "/")
  return text if len(text) <= 160 else text[:157] + "..."


# --- Environment ------------------------------------------------------------


def import_torch():
  """torch, or None when it is not installed (an optional dependency)."""
  try:
    import torch  # noqa: PLC0415 (optional)
  except ImportError:
    return None
  return torch


def find_adapt() -> bool:
  """Whether ``adapt`` is installed (imported only in a worker process)."""
  import importlib.util  # noqa: PLC0415

  return importlib.util.find_spec("adapt") is not None


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as stream:
      for line in stream:
        if line.lower().startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def version(name: str) -> str:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return "not installed"


def describe_machine(ctx) -> list[str]:
  import jax

  device = jax.devices()[0]
  cores = os.cpu_count()
  usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
  torch = ctx.torch
  lines = [
      f"- CPU: {cpu_model()}, {cores} logical cores ({usable} usable by this "
      "process)",
      f"- JAX backend: {device.platform} ({device.device_kind}, "
      f"{jax.device_count()} device(s))"
      + ("; JAX's CPU runtime uses all usable cores"
         if device.platform == "cpu" else ""),
      f"- Python {platform.python_version()}, jax {jax.__version__}, "
      f"jaxlib {version('jaxlib')}, flax {version('flax')}, "
      f"optax {version('optax')}, numpy {np.__version__}",
  ]
  if torch is None:
    lines.append("- PyTorch: not installed (its rows read n/a)")
  else:
    lines.append(f"- PyTorch {torch.__version__}, intra-op threads set to "
                 f"{torch.get_num_threads()} (= the usable cores, as JAX)")
  lines.append(f"- adapt: run by {ctx.adapt_python}" if ctx.adapt_python
               else f"- adapt: {version('adapt')}")
  return lines


# --- Timing -----------------------------------------------------------------


def interleaved_rates(runners: dict, *, steps: int, rounds: int) -> dict:
  """Steps per second of each runner: the median over rounds, runners alternating.

  ``runners`` maps a name to ``run(n) -> seconds`` (which runs ``n`` steps and
  waits for them to finish). Alternating the runners within each round puts
  them under the same background load.
  """
  samples = {name: [] for name in runners}
  for _ in range(rounds):
    for name, run in runners.items():
      samples[name].append(steps / run(steps))
  return {name: statistics.median(values) for name, values in samples.items()}


def warm_up(runners: dict, args) -> int:
  """Runs the warm-up steps of every runner (each has run one step already).

  Returns the timed steps per round, the same for every runner: at least
  ``args.steps``, and enough for the slowest runner's round to last about
  ``args.round_seconds`` (judged from its last warm-up step).
  """
  slowest = 0.0
  for run in runners.values():
    if args.warmup > 2:
      run(args.warmup - 2)
    slowest = max(slowest, run(1) if args.warmup > 1 else 0.0)
  if not slowest:
    return args.steps
  return max(args.steps, min(1000, math.ceil(args.round_seconds / slowest)))


def median_seconds(function, repeats: int) -> float:
  """The median wall time of ``repeats`` calls of ``function`` (which waits)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def resident_bytes() -> int | None:
  try:
    with open("/proc/self/status", encoding="utf-8") as stream:
      for line in stream:
        if line.startswith("VmRSS:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


# --- tljax: the DANN step, built as tljax.train.loop builds it ---------------


def tljax_dann(*, model_name: str, image_shape, batch_size: int, dtype,
               num_classes: int = NUM_DIGIT_CLASSES, hidden_dim: int = 500,
               weight_decay: float = 5e-4, seed: int = 0,
               model_options=None):
  """The registered ``dann`` recipe's jitted step, its state and one batch.

  Follows :func:`tljax.train.loop.train_and_evaluate`: model from the
  registry, method from the registry, the method's extra parameters (the
  discriminator), the optimizer of the config (wrapped for learning-rate
  multipliers as the loop does), the train state, ``make_train_step``.
  Returns ``(run, lower)``: ``run(n)`` executes ``n`` steps the way the loop
  calls them (a host step counter in the batch, the key folded from it in
  the step) and returns the seconds until the last finishes; ``lower()``
  gives the step lowered for the current state and batch.
  """
  import jax
  import jax.numpy as jnp

  from tljax import methods as methods_lib
  from tljax import models as models_lib
  from tljax import params as params_lib
  from tljax.config import base_config
  from tljax.train import create_train_state, keyed_by_step, make_train_step
  from tljax.train.optim import make_optimizer

  config = base_config()  # the fields of configs/digits.py that matter here
  config.method = "dann"
  config.model.name = model_name
  config.model.bottleneck_dim = 256
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = weight_decay
  config.optimizer.schedule = "cosine"
  config.adaptation.hidden_dim = hidden_dim
  config.steps = 1000
  config.batch_size = batch_size

  options = dict(bottleneck_dim=256, **(model_options or {}))
  model = models_lib.create_model(model_name, num_classes=num_classes,
                                  input_shape=tuple(image_shape), dtype=dtype,
                                  **options)
  method = methods_lib.build_method("dann", config, model)
  init_key, train_key = jax.random.split(jax.random.key(seed))
  params, model_state = jax.jit(model.init)(init_key)
  rng = np.random.default_rng(seed)
  probe = types.SimpleNamespace(
      inputs=rng.random((2, *image_shape), dtype=np.float32))
  context = methods_lib.TransferContext(
      params=params, model_state=model_state, transferred=frozenset(),
      source_params=None, source_model_state=None, model=model,
      domains={"source": {"train": probe}}, config=config, seed=seed)
  # Jitted so the set-up compiles once instead of op by op (same values).
  params = {**params, **jax.jit(lambda: method.init_params(context))()}
  rules = [tuple(rule) for rule in config.trainable_rules]
  trainable, _ = params_lib.split(params, rules)
  optimizer = params_lib.with_learning_rate_multipliers(
      make_optimizer(dict(config.optimizer), config.steps), trainable, rules,
      layer_decay=config.optimizer.get("layer_decay"),
      depth_rules=[tuple(rule) for rule in config.optimizer.depth_rules])
  state = jax.jit(lambda params, model_state: create_train_state(
      params, model_state, optimizer, rules=rules))(params, model_state)
  # As the loop jits it: the per-step key fold_in(train_key, step) is made
  # inside the step from the batch's step counter.
  step = jax.jit(keyed_by_step(make_train_step(method.loss_fn, optimizer,
                                               jit=False)),
                 donate_argnums=0)

  source = jnp.asarray(rng.random((batch_size, *image_shape), dtype=np.float32))
  target = jnp.asarray(rng.random((batch_size, *image_shape), dtype=np.float32))
  labels = jnp.asarray(rng.integers(0, num_classes, batch_size, dtype=np.int32))
  holder = {"state": state, "counter": 0}

  def batch_for(counter):
    return {"step": np.int32(counter % config.steps),
            "source": {"input": source, "label": labels},
            "target": {"input": target}}

  def run(num_steps: int) -> float:
    start = time.perf_counter()
    state, metrics = holder["state"], None
    for _ in range(num_steps):
      counter = holder["counter"]
      state, metrics = step(state, batch_for(counter), train_key)
      holder["counter"] = counter + 1
    jax.block_until_ready((state, metrics))
    holder["state"] = state
    return time.perf_counter() - start

  def lower():
    return step.lower(holder["state"], batch_for(0), train_key)

  return run, lower


# --- PyTorch: the Transfer-Learning-Library's DANN, written here ---------------


def torch_modules(torch):
  """The TLlib-style modules (defined lazily: torch is optional)."""
  nn = torch.nn

  class GradientReverseFunction(torch.autograd.Function):
    """Identity forward, gradient times −coeff backward (coeff a 0-d tensor)."""

    @staticmethod
    def forward(ctx, inputs, coeff):
      ctx.save_for_backward(coeff)
      return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, gradient):
      (coeff,) = ctx.saved_tensors
      return gradient.neg() * coeff, None

  class WarmStartGradientReverseLayer:
    """TLlib's warm start: coeff = 2 (hi − lo) / (1 + exp(−α i / N)) − (hi − lo) + lo.

    TLlib keeps the iteration count in the module and turns it into a Python
    float; here the coefficient is computed on the host the same way and
    handed to the loss as a 0-d tensor, so ``torch.compile`` does not
    recompile for every new value.
    """

    def __init__(self, alpha=1.0, lo=0.0, hi=1.0, max_iters=1000.0):
      self.alpha, self.lo, self.hi, self.max_iters = alpha, lo, hi, max_iters
      self.iter_num = 0

    def coefficient(self) -> float:
      span = self.hi - self.lo
      value = (2.0 * span / (1.0 + math.exp(-self.alpha * self.iter_num
                                            / self.max_iters)) - span + self.lo)
      self.iter_num += 1
      return value

  class DomainDiscriminator(nn.Sequential):
    """TLlib's ``DomainDiscriminator``: in → hidden → hidden → 1 (logits).

    With ``batch_norm`` the hidden layers are Linear → BatchNorm1d → ReLU (as
    TLlib's default); without, Linear → ReLU (TLlib adds Dropout(0.5) there;
    tljax's discriminator has neither, so this benchmark leaves it out).
    """

    def __init__(self, in_feature, hidden_size, batch_norm=False):
      layers = []
      for width_in in (in_feature, hidden_size):
        layers.append(nn.Linear(width_in, hidden_size))
        if batch_norm:
          layers.append(nn.BatchNorm1d(hidden_size))
        layers.append(nn.ReLU())
      layers.append(nn.Linear(hidden_size, 1))
      super().__init__(*layers)

  class DomainAdversarialLoss(nn.Module):
    """TLlib's loss: GRL on the concatenated features, BCE per domain, averaged."""

    def __init__(self, discriminator):
      super().__init__()
      self.domain_discriminator = discriminator

    def forward(self, f_s, f_t, coeff):
      features = GradientReverseFunction.apply(torch.cat((f_s, f_t)), coeff)
      d_s, d_t = self.domain_discriminator(features).float().chunk(2)
      loss_s = nn.functional.binary_cross_entropy_with_logits(
          d_s, torch.ones_like(d_s))
      loss_t = nn.functional.binary_cross_entropy_with_logits(
          d_t, torch.zeros_like(d_t))
      return 0.5 * (loss_s + loss_t)

  class LeNetBackbone(nn.Module):
    """tljax's LeNet geometry in NCHW: 'SAME' 5×5 convs (20, 50), 2×2 pools, fc 500.

    (TLlib's digits LeNet uses unpadded convolutions and dropout; the padding
    and the absence of dropout here make both frameworks compute the same
    network.)
    """

    def __init__(self, height, width, channels):
      super().__init__()
      self.conv1 = nn.Conv2d(channels, 20, 5, padding=2)
      self.conv2 = nn.Conv2d(20, 50, 5, padding=2)
      self.fc = nn.Linear((height // 4) * (width // 4) * 50, 500)
      self.out_features = 500

    def forward(self, x):
      x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
      x = nn.functional.max_pool2d(nn.functional.relu(self.conv2(x)), 2)
      return nn.functional.relu(self.fc(torch.flatten(x, 1)))

  class ImageClassifier(nn.Module):
    """TLlib's ``Classifier``: backbone → bottleneck (Linear, BN, ReLU) → head."""

    def __init__(self, backbone, num_classes, bottleneck_dim=256):
      super().__init__()
      self.backbone = backbone
      self.bottleneck = nn.Sequential(
          nn.Linear(backbone.out_features, bottleneck_dim),
          nn.BatchNorm1d(bottleneck_dim), nn.ReLU())
      self.head = nn.Linear(bottleneck_dim, num_classes)
      self.features_dim = bottleneck_dim

    def forward(self, x):
      f = self.bottleneck(self.backbone(x))
      return self.head(f), f

  return types.SimpleNamespace(
      WarmStartGradientReverseLayer=WarmStartGradientReverseLayer,
      DomainDiscriminator=DomainDiscriminator,
      DomainAdversarialLoss=DomainAdversarialLoss,
      LeNetBackbone=LeNetBackbone, ImageClassifier=ImageClassifier)


def torch_dann(torch, *, backbone, image_shape, batch_size: int,
               compiled: bool, device: str = "cpu", autocast_dtype=None,
               channels_last: bool = False, hidden_dim: int = 500,
               discriminator_batch_norm: bool = False,
               weight_decay: float = 5e-4, num_classes: int = NUM_DIGIT_CLASSES,
               seed: int = 0):
  """``run(n) -> seconds`` of TLlib's DANN training iteration (see the module doc)."""
  modules = torch_modules(torch)
  torch.manual_seed(seed)
  classifier = modules.ImageClassifier(backbone, num_classes).to(device)
  discriminator = modules.DomainDiscriminator(
      classifier.features_dim, hidden_dim,
      batch_norm=discriminator_batch_norm).to(device)
  domain_adv = modules.DomainAdversarialLoss(discriminator).to(device)
  grl = modules.WarmStartGradientReverseLayer(alpha=1.0, lo=0.0, hi=1.0,
                                              max_iters=1000)
  if channels_last:
    classifier = classifier.to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(
      list(classifier.parameters()) + list(discriminator.parameters()),
      lr=0.01, momentum=0.9, weight_decay=weight_decay, nesterov=True)
  total = 1000
  scheduler = torch.optim.lr_scheduler.LambdaLR(
      optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
  classifier.train()
  domain_adv.train()

  height, width, channels = image_shape
  rng = np.random.default_rng(seed)

  def images():
    array = rng.random((batch_size, channels, height, width), dtype=np.float32)
    tensor = torch.from_numpy(array).to(device)
    return (tensor.contiguous(memory_format=torch.channels_last)
            if channels_last else tensor)

  x_s, x_t = images(), images()
  labels_s = torch.from_numpy(
      rng.integers(0, num_classes, batch_size)).long().to(device)

  def compute_loss(x_s, x_t, labels_s, coeff):
    x = torch.cat((x_s, x_t), dim=0)
    y, f = classifier(x)
    y_s = y[:batch_size].float()
    f_s, f_t = f[:batch_size], f[batch_size:]
    cls_loss = torch.nn.functional.cross_entropy(y_s, labels_s)
    transfer_loss = domain_adv(f_s, f_t, coeff)
    accuracy = (y_s.argmax(1) == labels_s).float().mean()
    return cls_loss + 1.0 * transfer_loss, accuracy

  loss_fn = torch.compile(compute_loss) if compiled else compute_loss
  synchronize = (torch.cuda.synchronize if device.startswith("cuda")
                 else (lambda: None))

  def one_step():
    coeff = torch.tensor(grl.coefficient(), device=device)
    if autocast_dtype is not None:
      with torch.autocast(device_type=device.split(":")[0],
                          dtype=autocast_dtype):
        loss, accuracy = loss_fn(x_s, x_t, labels_s, coeff)
    else:
      loss, accuracy = loss_fn(x_s, x_t, labels_s, coeff)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss, accuracy

  def run(num_steps: int) -> float:
    start = time.perf_counter()
    for _ in range(num_steps):
      one_step()
    synchronize()
    return time.perf_counter() - start

  return run


def with_torch_threads(torch, threads: int, run):
  """``run`` with PyTorch's intra-op thread count set to ``threads`` meanwhile."""

  def wrapped(num_steps: int) -> float:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
      return run(num_steps)
    finally:
      torch.set_num_threads(previous)

  return wrapped


# --- Section: DANN step on digits -------------------------------------------


def section_dann(args, ctx) -> Section:
  import jax.numpy as jnp

  torch = ctx.torch
  section = Section("DANN training step: LeNet on digits (CPU scale)")
  section.intro = [
      f"One DANN update (forward over source+target, backward, SGD Nesterov "
      f"momentum, weight decay) on random digit-sized inputs already in memory. "
      f"{args.warmup} warm-up steps per implementation (the first call, "
      f"compilation included, among them), then {args.rounds} rounds of the "
      "same number of timed steps for every implementation (at least "
      f"{args.steps}, enough for the slowest to take about "
      f"{args.round_seconds:g} s), the implementations alternating within "
      "each round; the median round is reported. images/s counts both "
      "domains. Ratio: tljax's images/s ÷ PyTorch's (above 1: tljax faster)."]
  table = Table(["input", "batch (source+target)", "implementation",
                 "timed steps × rounds", "steps/s", "images/s",
                 "tljax ÷ this"])
  ctx.results.setdefault("dann_first_call", {})
  for size in args.image_sizes:
    image_shape = (size, size, 1)
    for batch in args.batch_sizes:
      label = f"{size}×{size}×1"
      runners, failures = {}, {}
      first_call = {}
      run, _ = tljax_dann(model_name="lenet", image_shape=image_shape,
                          batch_size=batch, dtype=jnp.float32)
      first_call["tljax (jit)"] = run(1)  # trace + compile + one step
      runners["tljax (jit, donated)"] = run
      # The same step with LeNet's convolutions left to XLA (conv_impl="xla").
      xla_run, _ = tljax_dann(model_name="lenet", image_shape=image_shape,
                              batch_size=batch, dtype=jnp.float32,
                              model_options={"conv_impl": "xla"})
      xla_run(1)
      runners[XLA_CONV_ROW] = xla_run
      if torch is not None:
        modules = torch_modules(torch)
        for name, compiled in (("PyTorch eager (TLlib style)", False),
                               ("PyTorch torch.compile", True)):
          if compiled and args.no_torch_compile:
            failures[name] = "skipped (--no_torch_compile)"
            continue
          try:
            backbone = modules.LeNetBackbone(size, size, 1)
            torch_run = torch_dann(torch, backbone=backbone,
                                   image_shape=image_shape, batch_size=batch,
                                   compiled=compiled)
            first_call[name] = torch_run(1)
          except Exception as error:  # noqa: BLE001 (torch.compile may fail)
            failures[name] = short_error(error)
            continue
          runners[name] = torch_run
        main_threads = torch.get_num_threads()
        for threads in args.torch_extra_threads:
          if threads == main_threads:
            continue
          name = f"PyTorch eager, {threads} thread{'s' * (threads > 1)}"
          backbone = modules.LeNetBackbone(size, size, 1)
          runners[name] = with_torch_threads(torch, threads, torch_dann(
              torch, backbone=backbone, image_shape=image_shape,
              batch_size=batch, compiled=False))
          runners[name](1)
      else:
        failures["PyTorch eager (TLlib style)"] = "torch not installed"
        failures["PyTorch torch.compile"] = "torch not installed"
      steps = warm_up(runners, args)
      rates = interleaved_rates(runners, steps=steps, rounds=args.rounds)
      ours = rates["tljax (jit, donated)"]
      timed = f"{steps} × {args.rounds}"
      for name, rate in rates.items():
        table.add(label, f"{batch}+{batch}", name, timed, fmt(rate),
                  fmt(rate * 2 * batch),
                  "—" if name == "tljax (jit, donated)"
                  else ratio(ours, rate))
      for name, reason in failures.items():
        table.add(label, f"{batch}+{batch}", name, "—", "n/a", "n/a",
                  f"n/a ({reason})")
      ctx.results["dann_first_call"][(size, batch)] = first_call
      print(f"dann {label} {batch}+{batch}: "
            + ", ".join(f"{k} {v * 2 * batch:,.0f} img/s"
                        for k, v in rates.items()), flush=True)
  section.tables.append(table)
  section.notes = [
      "tljax: `build_method('dann', config, model)` on `create_model('lenet', "
      "bottleneck_dim=256)` (its default `conv_impl='matmul'`: each "
      "convolution one matrix product, the row "
      f"\"{XLA_CONV_ROW}\" the same step with `lax.conv_general_dilated`; "
      "see tljax/models/lenet.py), discriminator 256→500→500→1 "
      "(`config.adaptation.hidden_dim`), `make_optimizer` (SGD, lr 0.01, "
      "momentum 0.9 Nesterov, weight decay 5e-4, cosine schedule), "
      "`make_train_step` (jit, state donated), called as the loop calls it "
      "(host step counter in the batch, the key folded from it inside the "
      "step by `keyed_by_step`); metrics are "
      "not fetched. (The one-off set-up — the method's `init_params` and "
      "`create_train_state` — is jitted here so that it compiles once rather "
      "than op by op; the step is untouched.)",
      "PyTorch: TLlib's `ImageClassifier` + `DomainDiscriminator` + "
      "`DomainAdversarialLoss` + `WarmStartGradientReverseLayer`, SGD "
      "(same hyper-parameters, `foreach` default) with a `LambdaLR` step per "
      "iteration; the LeNet has tljax's 'SAME' padding and, as tljax's "
      "discriminator, no BatchNorm or Dropout in the discriminator (TLlib's "
      "default has BatchNorm), so both compute the same network. "
      "`torch.compile` wraps the loss (forward; AOTAutograd compiles its "
      "backward); the optimizer step stays eager. No `.item()` per step.",
  ]
  if torch is not None:
    section.notes.append(
        f"PyTorch intra-op threads: {torch.get_num_threads()} (the usable "
        "cores; JAX's CPU runtime uses them all too). The extra \"N thread\" "
        "rows (`--torch_extra_threads`) show how much PyTorch's OpenMP "
        "threads lose when other processes hold the cores: its workers "
        "spin-wait for each other, which a busy machine punishes.")
  return section


# --- Section: ResNet-50 (GPU) ------------------------------------------------


def section_resnet(args, ctx) -> Section:
  import jax
  import jax.numpy as jnp

  platform_name = jax.devices()[0].platform
  size, batch = args.resnet_image_size, args.resnet_batch
  section = Section(f"DANN training step: ResNet-50 at {size}×{size} "
                    f"({platform_name.upper()})")
  if platform_name != "gpu" and not args.resnet:
    section.intro = [
        f"Not run: JAX's device is {platform_name}, and ResNet-50 at 224×224 "
        "is too slow there (`--resnet` forces it)."]
    return section
  torch = ctx.torch
  # 4.1 GFLOP per 224×224 image forward; convolutions scale with the area.
  gflop = RESNET_GFLOP_PER_IMAGE * (size / 224) ** 2
  device = "cuda" if (torch is not None and platform_name == "gpu"
                      and torch.cuda.is_available()) else "cpu"
  section.intro = [
      f"The Office-31 DANN step of the Transfer-Learning-Library: ResNet-50 "
      f"(random init) → bottleneck 256 (+BN) → 31 classes; discriminator "
      f"256→1024→1024→1; SGD Nesterov momentum, weight decay 1e-3; inputs "
      f"{size}×{size}×3 already on the device, batch {batch}+{batch}. "
      f"{args.warmup} warm-up steps, then {args.rounds} rounds of the same "
      "number of steps for each implementation (as in the digits section), "
      "alternating; the median round. FLOP/s counts "
      f"{gflop:.3g} GFLOP per image (3 × 4.1 at 224×224, scaled by the "
      "area)."]
  table = Table(["implementation", "compute dtype", "images/s",
                 "fraction of peak", "tljax ÷ this"])
  runners, dtypes = {}, {}
  failures = {}
  for dtype_name, dtype in (("float32", jnp.float32),
                            ("bfloat16", jnp.bfloat16)):
    name = f"tljax {dtype_name}"
    try:
      run, _ = tljax_dann(model_name="resnet50", image_shape=(size, size, 3),
                          batch_size=batch, dtype=dtype, num_classes=31,
                          hidden_dim=1024, weight_decay=1e-3,
                          model_options={"stem": "imagenet"})
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
          "float32", "torchvision not installed")
  else:
    failures["PyTorch eager (TLlib style)"] = ("float32", "torch not installed")
  if torchvision is not None:
    for name, dtype_name, autocast, channels_last in (
        ("PyTorch eager (TLlib style)", "float32", None, False),
        ("PyTorch eager, autocast, channels_last", "bfloat16",
         torch.bfloat16, True)):
      try:
        backbone = torchvision.models.resnet50()
        backbone.out_features = backbone.fc.in_features
        backbone.fc = torch.nn.Identity()
        run = torch_dann(torch, backbone=backbone, image_shape=(size, size, 3),
                         batch_size=batch, compiled=False, device=device,
                         autocast_dtype=autocast, channels_last=channels_last,
                         hidden_dim=1024, discriminator_batch_norm=True,
                         weight_decay=1e-3, num_classes=31)
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
    fraction = (f"{images * gflop / (peak * 1e3):.1%}"
                if peak else "n/a (pass --peak_tflops_*)")
    ours = rates.get(f"tljax {dtypes[name]}")
    table.add(name, dtypes[name], fmt(images), fraction,
              "—" if name.startswith("tljax") else ratio(ours, rate))
  for name, (dtype_name, reason) in failures.items():
    table.add(name, dtype_name, "n/a", "n/a", f"n/a ({reason})")
  section.tables.append(table)
  section.notes.append(
      "tljax's discriminator has no BatchNorm; the PyTorch one has TLlib's "
      "(BatchNorm in both hidden layers).")
  return section


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
        squared = (norms[:, None] + norms[None, :]
                   - 2.0 * pooled @ pooled.T).clamp_min(0.0)
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
      [GaussianKernel(alpha=2.0 ** k) for k in range(-3, 2)])


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
      "tljax default's (above 1: tljax faster)."]
  table = Table(["batch per domain", "implementation", "ms per call",
                 "this ÷ tljax default"])
  check_notes = []
  for batch in args.mmd_sizes:
    rng = np.random.default_rng(batch)
    source = rng.standard_normal((batch, dim)).astype(np.float32)
    target = (rng.standard_normal((batch, dim)) + 0.5).astype(np.float32)
    times = {}
    failures = {}
    pooled = 2 * batch
    tllib_multipliers = [2.0 ** k * (pooled - 1) / pooled for k in range(-3, 2)]
    variants = {
        "tljax `align.mmd` (default: median heuristic)": {},
        "tljax `align.mmd`, mean heuristic (as TLlib)": {
            "bandwidth_heuristic": "mean"},
    }
    source_j, target_j = jnp.asarray(source), jnp.asarray(target)
    for name, options in variants.items():
      function = jax.jit(jax.value_and_grad(
          lambda s, t, options=options: align.mmd(s, t, **options),
          argnums=(0, 1)))
      jax.block_until_ready(function(source_j, target_j))
      times[name] = median_seconds(
          lambda function=function: jax.block_until_ready(
              function(source_j, target_j)), args.repeats)
    if torch is not None:
      for name, distances in (
          ("PyTorch TLlib-style (broadcast (N, N, D) distances, as TLlib)",
           "broadcast"),
          ("PyTorch TLlib-style, matmul distances", "matmul")):
        needed = 5 * pooled * pooled * dim * 4 / 2 ** 30
        if distances == "broadcast" and needed > args.torch_memory_gb:
          failures[name] = (f"its (N, N, D) differences would hold "
                            f"≈{needed:.1f} GiB (> --torch_memory_gb "
                            f"{args.torch_memory_gb:g})")
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
          reference = float(align.mmd(
              source_j, target_j, bandwidth_heuristic="mean",
              bandwidth_multipliers=tllib_multipliers)) + 2.0 / (batch - 1)
          check_notes.append(
              f"batch {batch}: TLlib-style value {value:.6g}, tljax "
              f"`mmd(bandwidth_heuristic='mean', bandwidth_multipliers="
              f"2^k·(N−1)/N)` + 2/(b−1) = {reference:.6g}.")
    else:
      failures["PyTorch TLlib-style"] = "torch not installed"
    base = times["tljax `align.mmd` (default: median heuristic)"]
    for name, seconds in times.items():
      table.add(batch, name, fmt(1e3 * seconds), ratio(seconds, base))
    for name, reason in failures.items():
      table.add(batch, name, "n/a", f"n/a ({reason})")
    print(f"mmd {batch}: " + ", ".join(f"{k} {1e3 * v:.2f} ms"
                                       for k, v in times.items()), flush=True)
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


# --- Section: instance reweighting vs adapt ---------------------------------

REWEIGHT_ESTIMATORS = ("KMM", "KLIEP", "uLSIF")


def reweight_repeats(n: int) -> int:
  """Timed calls per estimator and size, on both sides: the median of 5 up
  to n = 500 (calls of milliseconds, where one call is mostly noise), one
  above."""
  return 5 if n <= 500 else 1


def reweight_problem(n: int, dim: int) -> dict:
  """The data and the shared kernel candidates for size ``n`` (deterministic)."""
  rng = np.random.default_rng(n)
  source = rng.standard_normal((n, dim))
  target = 0.5 + 0.8 * rng.standard_normal((n, dim))
  pooled = np.concatenate([source, target])
  subset = pooled[rng.choice(len(pooled), min(len(pooled), 1000),
                             replace=False)]
  squared = ((subset[:, None, :] - subset[None, :, :]) ** 2).sum(-1)
  median_squared = float(np.median(squared[np.triu_indices(len(subset), 1)]))
  return {"source": source, "target": target,
          "gamma": 1.0 / (2.0 * median_squared),
          "sigmas": np.logspace(-1, 1, 9) * math.sqrt(median_squared),
          "lambdas": 10.0 ** np.arange(-3.0, 1.01, 0.5),
          "eps": (math.sqrt(n) - 1) / math.sqrt(n)}


def adapt_worker(sizes, dim) -> None:
  """Times adapt's fits in a process of their own; prints one JSON line.

  adapt imports TensorFlow, which must not share a process with PyTorch and
  JAX (the three together crashed), so :func:`section_reweight` runs this
  through ``--adapt_worker``.
  """
  import json  # noqa: PLC0415

  warnings.filterwarnings("ignore")
  try:
    from adapt import instance_based as adapt  # noqa: PLC0415 (optional)
  except Exception as error:  # noqa: BLE001 (ImportError, TensorFlow failing)
    print("ADAPT_TIMES " + json.dumps({"error": short_error(error)}))
    return
  times = {}
  for n in (30, *sizes):  # 30: a warm-up fit of each (lazy imports), untimed
    p = reweight_problem(n, dim)
    widths = list(1.0 / (2.0 * p["sigmas"] ** 2))
    fits = {
        "KMM": lambda: adapt.KMM(kernel="rbf", gamma=p["gamma"], B=1000,
                                 eps=p["eps"], max_size=n, verbose=0,
                                 random_state=0),
        "KLIEP": lambda: adapt.KLIEP(kernel="rbf", gamma=widths,
                                     max_centers=100, cv=5, verbose=0,
                                     random_state=0),
        "uLSIF": lambda: adapt.ULSIF(kernel="rbf", gamma=widths,
                                     lambdas=list(p["lambdas"]),
                                     max_centers=100, verbose=0,
                                     random_state=0),
    }
    for name in REWEIGHT_ESTIMATORS:
      model = fits[name]()
      times[f"{name}/{n}"] = median_seconds(
          lambda model=model: model.fit_weights(p["source"], p["target"]),
          reweight_repeats(n))
  times = {key: value for key, value in times.items()
           if not key.endswith("/30") or 30 in sizes}
  print("ADAPT_TIMES " + json.dumps(times))


def run_adapt_worker(n: int, dim: int,
                     python: str | None = None) -> tuple[dict, str | None]:
  """``({estimator: seconds}, None)`` from a worker process, or ``({}, reason)``.

  ``python``: the interpreter of the worker (``--adapt_python``, an
  environment with adapt and its TensorFlow), this one's by default.
  """
  import json  # noqa: PLC0415
  import subprocess  # noqa: PLC0415

  completed = subprocess.run(
      [python or sys.executable, os.path.abspath(__file__), "--adapt_worker",
       "--reweight_sizes", str(n), "--reweight_dim", str(dim)],
      capture_output=True, text=True, check=False)
  for line in completed.stdout.splitlines():
    if line.startswith("ADAPT_TIMES "):
      result = json.loads(line[len("ADAPT_TIMES "):])
      if "error" in result:
        return {}, result["error"]
      return {key.split("/")[0]: value for key, value in result.items()}, None
  tail = " ".join(completed.stderr.split()[-20:])
  return {}, f"adapt worker exited with {completed.returncode}: {tail}"


def section_reweight(args, ctx) -> Section:
  import jax

  from tljax import reweight

  dim = args.reweight_dim
  section = Section("Instance reweighting: KMM, KLIEP, uLSIF next to `adapt`")
  precision = ("kept in float64 by tljax: JAX_ENABLE_X64"
               if jax.config.jax_enable_x64 else "cast to float32 by tljax")
  section.intro = [
      f"n source examples from N(0, I_{dim}) and n target examples from "
      f"N(0.5, 0.8² I_{dim}), float64 inputs ({precision}). "
      "Same kernel candidates for both: KMM with γ = 1/(2 · median pooled "
      "squared distance), B = 1000, ε = (√n − 1)/√n, the whole QP at once "
      "(`max_size = n` in adapt); KLIEP and uLSIF with the nine widths σ = "
      "10^[−1, 1] × the median pooled distance (γ = 1/(2σ²) in adapt), 100 "
      "centres, uLSIF with λ ∈ 10^{−3, −2.5, …, 1}; KLIEP 5-fold likelihood "
      "cross-validation in both. tljax: the first call (compilation "
      "included) and warm calls; adapt: warm calls (after an untimed "
      "fit at n = 30); warm: the median of 5 calls up to n = 500, one call "
      "above, in a separate process run right after tljax's at the "
      "same n (TensorFlow, which adapt "
      "imports, cannot share a process with PyTorch and JAX here). Ratio: "
      "adapt's time ÷ tljax's warm time (above 1: tljax faster)."]
  table = Table(["estimator", "n", "tljax first call (s)", "tljax warm (s)",
                 "adapt (s)", "adapt ÷ tljax warm"])
  collected = {}
  adapt_problem = None if ctx.adapt else (
      "not installed" if not args.no_adapt else "skipped (--no_adapt)")
  for n in args.reweight_sizes:
    p = reweight_problem(n, dim)
    source, target = p["source"], p["target"]
    ours = {
        "KMM": lambda: reweight.kmm(source, target, gamma=p["gamma"], B=1000.0,
                                    eps=p["eps"]).weights,
        "KLIEP": lambda: reweight.kliep(source, target,
                                        sigmas=p["sigmas"]).weights,
        "uLSIF": lambda: reweight.ulsif(source, target, sigmas=p["sigmas"],
                                        lambdas=p["lambdas"]).weights,
    }
    timings = {}
    for name in REWEIGHT_ESTIMATORS:
      function = ours[name]
      first = median_seconds(lambda: jax.block_until_ready(function()), 1)
      warm = median_seconds(lambda: jax.block_until_ready(function()),
                            reweight_repeats(n))
      timings[name] = (first, warm)
    theirs = {}
    if adapt_problem is None:
      theirs, adapt_problem = run_adapt_worker(n, dim, args.adapt_python)
    for name in REWEIGHT_ESTIMATORS:
      first, warm = timings[name]
      other = theirs.get(name)
      collected.setdefault(name, []).append((n, warm, other))
      table.add(name, n, fmt(first), fmt(warm), fmt(other),
                ratio(other, warm) if other is not None
                else f"n/a (adapt {adapt_problem})")
      print(f"reweight {name} n={n}: tljax {first:.2f}/{warm:.2f} s, "
            f"adapt {other}", flush=True)
  section.tables.append(table)
  slopes = Table(["estimator", "log-log slope of time vs n, tljax (warm)",
                  "slope, adapt"])
  for name, points in collected.items():
    sizes = [n for n, _, _ in points]
    slopes.add(name, fmt(loglog_slope(sizes, [t for _, t, _ in points]), 2),
               fmt(loglog_slope(sizes, [t for _, _, t in points]), 2))
  section.tables.append(slopes)
  section.notes = [
      "The slope is the exponent p of time ∝ n^p fitted over the sizes "
      "above; fixed overheads (dispatch, cross-validation bookkeeping) pull "
      "it below the asymptotic exponent at small n.",
  ]
  if adapt_problem is not None:
    section.notes.append(f"adapt: {adapt_problem} (it is optional: `pip "
                         "install adapt`), so its columns read n/a.")
  return section


# --- Section: LogME vs NumPy ---------------------------------------------------


def logme_numpy(features, labels, *, tolerance: float = 1e-10,
                max_iterations: int = 100_000) -> float:
  """LogME in NumPy, float64: You et al., ICML 2021, Algorithm 1, per class.

  For each class ``k`` the one-hot column ``y`` is Bayesian linear
  regression on ``F``; with the eigen-decomposition of ``FᵀF`` (eigenvalues
  ``σ_i``, left singular vectors ``u_i``) and ``z = Uᵀy``, the fixed point
  from ``α = β = 1`` is::

    γ = Σ βσ_i / (α + βσ_i)
    ‖m‖² = Σ β²σ_i z_i² / (α + βσ_i)²
    ‖Fm − y‖² = Σ α² z_i² / (α + βσ_i)² + ‖y − UUᵀy‖²
    α ← γ / ‖m‖²,   β ← (N − γ) / ‖Fm − y‖²

  (evaluated through ``r = α/β`` so nothing overflows when the weights go to
  zero and α grows without bound), until α/β changes by at most
  ``tolerance`` (relative) or the evidence per example by at most
  ``tolerance``. The evidence ``D/2 log α + N/2 log β − N/2 log 2π
  − β/2 ‖Fm − y‖² − α/2 ‖m‖² − 1/2 log|αI + βFᵀF|`` divided by ``N``,
  averaged over the classes present, is the score. An independent
  reference for the tests.
  """
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  num_examples, dim = features.shape
  if dim <= num_examples:
    eigenvalues, vectors = np.linalg.eigh(features.T @ features)
    keep = eigenvalues > max(num_examples, dim) * np.finfo(float).eps * max(
        eigenvalues.max(), 0.0)
    sigma = eigenvalues[keep]
    left = features @ vectors[:, keep] / np.sqrt(sigma)
  else:
    left, singular, _ = np.linalg.svd(features, full_matrices=False)
    keep = singular > max(num_examples, dim) * np.finfo(float).eps * singular[0]
    sigma, left = singular[keep] ** 2, left[:, keep]
  rank = sigma.shape[0]

  def terms(alpha, beta, z2, outside):
    """(L/N, γ, ‖m‖², ‖Fm − y‖²) at (α, β)."""
    r = alpha / beta
    denominator = r + sigma
    gamma = float(np.sum(sigma / denominator))
    weight_norm = float(np.sum(sigma * z2 / denominator ** 2))
    residual = float(np.sum(r * r * z2 / denominator ** 2)) + outside
    # β²σz²/(α+βσ)² = σz²/(r+σ)²; log(α + βσ) = log β + log(r + σ).
    log_det = (rank * math.log(beta) + float(np.sum(np.log(denominator)))
               + (dim - rank) * math.log(alpha))
    evidence = (dim / 2 * math.log(alpha) + num_examples / 2 * math.log(beta)
                - num_examples / 2 * math.log(2 * math.pi)
                - beta / 2 * residual - alpha / 2 * weight_norm - log_det / 2)
    return evidence / num_examples, gamma, weight_norm, residual

  scores = []
  for k in np.unique(labels):
    y = (labels == k).astype(np.float64)
    z = left.T @ y
    z2 = z * z
    outside = max(float(y @ y - z2.sum()), 0.0)
    alpha, beta, previous = 1.0, 1.0, -math.inf
    for _ in range(max_iterations):
      evidence, gamma, weight_norm, residual = terms(alpha, beta, z2, outside)
      new_alpha = gamma / weight_norm
      new_beta = (num_examples - gamma) / residual
      converged = (abs(new_alpha / new_beta - alpha / beta)
                   <= tolerance * alpha / beta
                   or abs(evidence - previous) <= tolerance)
      alpha, beta, previous = new_alpha, new_beta, evidence
      if converged:
        break
    scores.append(terms(alpha, beta, z2, outside)[0])
  return float(np.mean(scores))


def logme_data(n: int, dim: int, num_classes: int, seed: int = 0):
  """Features with class structure: class means plus unit noise; balanced labels."""
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % num_classes
  rng.shuffle(labels)
  means = rng.standard_normal((num_classes, dim))
  features = means[labels] + rng.standard_normal((n, dim)) * 2.0
  return features.astype(np.float32), labels.astype(np.int32)


def section_logme(args, ctx) -> Section:
  import jax

  from tljax import select

  dim, classes = args.logme_dim, args.logme_classes
  section = Section("LogME next to a NumPy LogME")
  section.intro = [
      f"n examples of {dim}-dimensional features (class means plus noise), "
      f"{classes} classes. tljax: `select.logme` (float32, first call with "
      f"compilation, then the median of {args.repeats} warm calls); NumPy: "
      "`logme_numpy` of this script (float64, the paper's fixed point per "
      "class, run to convergence), median of the same number of calls. "
      "Ratio: NumPy's time ÷ tljax's warm time (above 1: tljax faster)."]
  table = Table(["n", "tljax first call (s)", "tljax warm (s)", "NumPy (s)",
                 "NumPy ÷ tljax warm", "|score difference|"])
  points = []
  for n in args.logme_sizes:
    features, labels = logme_data(n, dim, classes, seed=n)

    def ours(features=features, labels=labels):
      return jax.block_until_ready(
          select.logme(features, labels, num_classes=classes))

    first = median_seconds(ours, 1)
    warm = median_seconds(ours, args.repeats)
    reference = median_seconds(lambda: logme_numpy(features, labels),
                               args.repeats)
    difference = abs(float(ours()) - logme_numpy(features, labels))
    points.append((n, warm, reference))
    table.add(n, fmt(first), fmt(warm), fmt(reference), ratio(reference, warm),
              f"{difference:.1e}")
    print(f"logme n={n}: tljax {warm:.4f} s, numpy {reference:.4f} s", flush=True)
  sizes = [n for n, _, _ in points]
  section.tables.append(table)
  slopes = Table(["implementation", "log-log slope of time vs n"])
  slopes.add("tljax (warm)", fmt(loglog_slope(sizes, [t for _, t, _ in points]), 2))
  slopes.add("NumPy", fmt(loglog_slope(sizes, [t for _, _, t in points]), 2))
  section.tables.append(slopes)
  section.notes = [
      "Both form the D × D Gram matrix (O(n·D²)), decompose it once with "
      "LAPACK (`eigh`: jaxlib's, NumPy's OpenBLAS) and iterate on its "
      "eigenvalues, so the cost grows at most linearly in n at fixed D; a "
      "slope near 0 means the n-independent D × D eigendecomposition (and, "
      "on a busy machine, the BLAS threads waiting for a core) dominates at "
      "these sizes.",
  ]
  return section


# --- Section: compile time and memory ---------------------------------------


def section_compile(args, ctx) -> Section:
  import jax.numpy as jnp

  section = Section("Compile time and memory of the tljax DANN step")
  section.intro = [
      "A freshly built step (new method closures, so no cache hit) for each "
      "digit configuration: `step.lower(state, batch, key)` (trace and lower "
      "to StableHLO) and `.compile()` (XLA), then XLA's memory analysis of "
      "the compiled step; the process's resident-memory growth over "
      "building, compiling and running one step where the analysis is "
      "missing. `torch.compile` first call: the first step of the compiled "
      "PyTorch DANN in the `dann` section (compilation plus one step), next "
      "to tljax's first jitted call there."]
  table = Table(["input", "batch", "lower (s)", "compile (s)",
                 "XLA memory: arguments / outputs / temporaries (MiB)",
                 "RSS growth (MiB)", "tljax first call (s)",
                 "torch.compile first call (s)", "torch.compile ÷ tljax"])
  first_calls = ctx.results.get("dann_first_call", {})
  for size in args.image_sizes:
    for batch in args.batch_sizes:
      before = resident_bytes()
      run, lower = tljax_dann(model_name="lenet", image_shape=(size, size, 1),
                              batch_size=batch, dtype=jnp.float32, seed=1)
      start = time.perf_counter()
      lowered = lower()
      lowered_at = time.perf_counter()
      compiled = lowered.compile()
      compiled_at = time.perf_counter()
      memory = "n/a"
      try:
        analysis = compiled.memory_analysis()
        if analysis is not None:
          memory = " / ".join(f"{value / 2 ** 20:.1f}" for value in (
              analysis.argument_size_in_bytes, analysis.output_size_in_bytes,
              analysis.temp_size_in_bytes))
      except Exception:  # noqa: BLE001 (not every backend has it)
        pass
      run(1)
      after = resident_bytes()
      growth = ((after - before) / 2 ** 20 if before is not None
                and after is not None else None)
      first = first_calls.get((size, batch), {})
      ours = first.get("tljax (jit)")
      theirs = first.get("PyTorch torch.compile")
      table.add(f"{size}×{size}×1", f"{batch}+{batch}",
                fmt(lowered_at - start), fmt(compiled_at - lowered_at),
                memory, fmt(growth), fmt(ours), fmt(theirs),
                ratio(theirs, ours))
      print(f"compile {size} {batch}: lower {lowered_at - start:.2f} s, "
            f"compile {compiled_at - lowered_at:.2f} s, memory {memory}",
            flush=True)
  section.tables.append(table)
  section.notes = [
      "The state is donated, so XLA aliases most of the arguments to the "
      "outputs; peak device memory is about arguments + temporaries.",
      "First-call columns read n/a when the `dann` section did not run (or "
      "torch is missing).",
  ]
  return section


# --- Section: a vmapped sweep against sequential runs -------------------------


def sweep_config(args, steps: int):
  from tljax.config import base_config

  config = base_config()
  config.method = "dann"
  config.baselines = ()
  config.seeds = tuple(range(args.sweep_members))
  config.model.name = "lenet"
  config.batch_size = args.sweep_batch
  config.steps = steps
  config.log_every = max(steps, 1)
  config.checkpoint_every = max(steps, 1)
  config.eval_every = 0
  config.progress_bar = False
  if args.sweep_data_dir:
    config.data_dir = args.sweep_data_dir
  return config


def section_sweep(args, ctx) -> Section:
  import tempfile

  import jax
  import jax.numpy as jnp

  from tljax.train import loop
  from tljax.train import sweep as sweep_lib

  del ctx
  members = args.sweep_members
  section = Section(f"A sweep of {members} seeds: one vmapped program against "
                    f"{members} runs one after the other")
  section.intro = [
      f"DANN on LeNet, UCI digits as the target (`configs`-style run, batch "
      f"{args.sweep_batch}+{args.sweep_batch}), {members} seeds. Step: the "
      f"jitted `jax.vmap` of the step over the {members} stacked states "
      f"(what `scripts/sweep.py` runs) against the same jitted single-run "
      f"step called once per member, each member with its own state, batch "
      f"and key; batches already in memory; rounds alternate as in the DANN "
      f"section. End to end: `run_sweep` against {members} calls of "
      "`train_and_evaluate` (data, initialisation, compilation, the steps, "
      "checkpoints and evaluation), each started fresh in a new work dir."]
  config = sweep_config(args, steps=1)
  domains = loop.load_domains(config)
  runs = [loop.setup_run(config, "dann", seed, domains=domains)
          for seed in range(members)]
  single = jax.jit(runs[0].step_fn, donate_argnums=0)
  vmapped = jax.jit(jax.vmap(runs[0].step_fn), donate_argnums=0)
  pool = 8  # distinct batches per member, cycled
  streams = [loop.training_batches(run.method, run.domains,
                                   batch_size=args.sweep_batch, seed=seed,
                                   start_step=0)
             for seed, run in enumerate(runs)]
  member_batches = [[jax.device_put(next(stream)) for _ in range(pool)]
                    for stream in streams]
  stacked_batches = [sweep_lib._stack([member_batches[m][k]  # pylint: disable=protected-access
                                       for m in range(members)])
                     for k in range(pool)]
  keys = [[jax.random.fold_in(run.train_key, k) for k in range(pool)]
          for run in runs]
  stacked_keys = [jnp.stack([keys[m][k] for m in range(members)])
                  for k in range(pool)]
  holder = {"states": [run.state for run in runs],
            "stacked": sweep_lib._stack([run.state for run in runs])}  # pylint: disable=protected-access

  def run_sequential(n: int) -> float:
    start = time.perf_counter()
    states = holder["states"]
    for k in range(n):
      for m in range(members):
        states[m], _ = single(states[m], member_batches[m][k % pool],
                              keys[m][k % pool])
    jax.block_until_ready(states)
    holder["states"] = states
    return time.perf_counter() - start

  def run_vmapped(n: int) -> float:
    start = time.perf_counter()
    stacked = holder["stacked"]
    for k in range(n):
      stacked, _ = vmapped(stacked, stacked_batches[k % pool],
                           stacked_keys[k % pool])
    jax.block_until_ready(stacked)
    holder["stacked"] = stacked
    return time.perf_counter() - start

  runners = {"vmapped (one program)": run_vmapped,
             f"sequential ({members} calls per step)": run_sequential}
  first = {name: run(1) for name, run in runners.items()}
  steps = warm_up(runners, args)
  rates = interleaved_rates(runners, steps=steps, rounds=args.rounds)
  ours = rates["vmapped (one program)"]
  table = Table(["implementation", "timed steps × rounds",
                 f"sweep steps/s (all {members} members)", "member steps/s",
                 "first call (s)", "vmapped ÷ this"])
  for name, rate in rates.items():
    table.add(name, f"{steps} × {args.rounds}", fmt(rate),
              fmt(rate * members), fmt(first[name]),
              "—" if name.startswith("vmapped") else ratio(ours, rate))
  section.tables.append(table)
  print("sweep step: " + ", ".join(f"{k} {v:,.1f} sweep steps/s"
                                   for k, v in rates.items()), flush=True)

  if args.sweep_steps:
    config = sweep_config(args, steps=args.sweep_steps)
    with tempfile.TemporaryDirectory() as root:
      start = time.perf_counter()
      sweep_lib.run_sweep(config, os.path.join(root, "sweep"))
      vmapped_seconds = time.perf_counter() - start
      start = time.perf_counter()
      for seed in range(members):
        loop.train_and_evaluate(config, os.path.join(root, f"seed_{seed}"),
                                method_name="dann", seed=seed)
      sequential_seconds = time.perf_counter() - start
    end = Table(["implementation", "steps per member", "wall time (s)",
                 "vmapped ÷ this (speed)"])
    end.add("`run_sweep` (vmapped)", args.sweep_steps, fmt(vmapped_seconds),
            "—")
    end.add(f"{members} × `train_and_evaluate`", args.sweep_steps,
            fmt(sequential_seconds), ratio(sequential_seconds,
                                           vmapped_seconds))
    section.tables.append(end)
    print(f"sweep end to end: vmapped {vmapped_seconds:.1f} s, sequential "
          f"{sequential_seconds:.1f} s", flush=True)
  section.notes = [
      "Both compute the same thing: each vmapped member equals its own "
      "single run to float tolerance (tests/test_sweep.py).",
      "The end-to-end sequential runs reuse one compilation through JAX's "
      "in-process cache after the first, as a loop over seeds in one process "
      "would; the vmapped sweep compiles its own, bigger program once.",
  ]
  return section


SECTIONS = {
    "dann": section_dann,
    "resnet": section_resnet,
    "mmd": section_mmd,
    "reweight": section_reweight,
    "logme": section_logme,
    "compile": section_compile,
    "sweep": section_sweep,
}


# --- Main -------------------------------------------------------------------


def int_list(text: str) -> list[int]:
  return [int(value) for value in text.split(",") if value]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sections", default=",".join(SECTION_ORDER),
                      help=f"comma-separated, from {list(SECTIONS)}")
  parser.add_argument("--output", default="docs/benchmarks.md",
                      help="markdown file to write ('' or '-': stdout only)")
  parser.add_argument("--note", default="",
                      help="a sentence for the report's header (e.g. the "
                      "machine's load)")
  parser.add_argument("--image_sizes", type=int_list, default=[8, 28],
                      help="digit input sizes (8: tljax's digits, 28: MNIST)")
  parser.add_argument("--batch_sizes", type=int_list, default=[64, 256],
                      help="per-domain batch sizes")
  parser.add_argument("--warmup", type=int, default=3,
                      help="warm-up steps (the first call included)")
  parser.add_argument("--steps", type=int, default=5,
                      help="the least timed steps per round")
  parser.add_argument("--round_seconds", type=float, default=2.0,
                      help="more timed steps per round until the slowest "
                      "implementation's round takes about this long")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3,
                      help="timed calls per measurement (mmd, logme)")
  parser.add_argument("--no_torch", action="store_true",
                      help="leave PyTorch out even if installed")
  parser.add_argument("--no_torch_compile", action="store_true")
  parser.add_argument("--torch_extra_threads", type=int_list, default=[1],
                      help="extra PyTorch eager rows with these thread counts "
                      "('' for none)")
  parser.add_argument("--resnet", action="store_true",
                      help="run the ResNet-50 section on a CPU too")
  parser.add_argument("--resnet_batch", type=int, default=32)
  parser.add_argument("--resnet_image_size", type=int, default=224)
  parser.add_argument("--peak_tflops_fp32", type=float, default=None)
  parser.add_argument("--peak_tflops_bf16", type=float, default=None)
  parser.add_argument("--mmd_sizes", type=int_list, default=[256, 1024])
  parser.add_argument("--mmd_dim", type=int, default=256)
  parser.add_argument("--torch_memory_gb", type=float, default=3.0,
                      help="skip the TLlib broadcast MMD above this estimate")
  parser.add_argument("--reweight_sizes", type=int_list,
                      default=[100, 250, 500, 1000, 2000])
  parser.add_argument("--reweight_dim", type=int, default=5)
  parser.add_argument("--no_adapt", action="store_true")
  parser.add_argument("--adapt_python", default=None,
                      help="the Python interpreter of a separate environment "
                      "with adapt installed, to time adapt there")
  parser.add_argument("--adapt_worker", action="store_true",
                      help=argparse.SUPPRESS)  # see adapt_worker()
  parser.add_argument("--logme_sizes", type=int_list,
                      default=[1000, 2000, 4000, 8000, 16000])
  parser.add_argument("--logme_dim", type=int, default=256)
  parser.add_argument("--logme_classes", type=int, default=10)
  parser.add_argument("--sweep_members", type=int, default=8)
  parser.add_argument("--sweep_batch", type=int, default=64)
  parser.add_argument("--sweep_steps", type=int, default=300,
                      help="steps per member of the end-to-end sweep "
                      "comparison (0: step timing only)")
  parser.add_argument("--sweep_data_dir", default=None,
                      help="TFDS data dir of the digits (default: tljax's)")
  args = parser.parse_args(argv)
  args.sections = [name for name in args.sections.split(",") if name]
  unknown = sorted(set(args.sections) - set(SECTIONS))
  if unknown:
    parser.error(f"unknown sections {unknown}; known: {list(SECTIONS)}")
  return args


def main(argv=None) -> str | None:
  args = parse_args(argv)
  if args.adapt_worker:
    adapt_worker(args.reweight_sizes, args.reweight_dim)
    return None
  warnings.filterwarnings("ignore", message=".*donated buffers.*")
  torch = None if args.no_torch else import_torch()
  if torch is not None:
    threads = (len(os.sched_getaffinity(0))
               if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
  adapt = ("reweight" in args.sections and not args.no_adapt
           and (args.adapt_python is not None or find_adapt()))
  ctx = types.SimpleNamespace(torch=torch, adapt=adapt, results={},
                              adapt_python=args.adapt_python)
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
  lines = [
      "# tljax benchmarks: side by side with PyTorch, NumPy and `adapt`",
      "",
      f"Generated by `{command}` on "
      f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} in "
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
  if args.output and args.output != "-":
    directory = os.path.dirname(args.output)
    if directory:
      os.makedirs(directory, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as stream:
      stream.write(report)
  print(report)
  return report


if __name__ == "__main__":
  main()
