"""Section ``dann``: one DANN training step on digits, tljax next to PyTorch written the TLlib way.

Part of ``scripts/benchmark.py`` (its docstring describes every section).
"""

from __future__ import annotations

import math
import time
import types

import numpy as np

from benchmarks.common import NUM_DIGIT_CLASSES, Section, Table, XLA_CONV_ROW, fmt, interleaved_rates, ratio, short_error, train_state_and_step, warm_up

# --- tljax: the DANN step, built as tljax.train.loop builds it ---------------


def tljax_dann(
    *,
    model_name: str,
    image_shape,
    batch_size: int,
    dtype,
    num_classes: int = NUM_DIGIT_CLASSES,
    hidden_dim: int = 500,
    weight_decay: float = 5e-4,
    seed: int = 0,
    model_options=None,
    feed=None,
):
  """The registered ``dann`` recipe's jitted step, its state and one batch.

  Follows :func:`tljax.train.loop.train_and_evaluate`: model from the
  registry, method from the registry, the method's extra parameters (the
  discriminator), the optimizer of the config (wrapped for learning-rate
  multipliers as the loop does), the train state, ``make_train_step``.
  Returns ``(run, lower)``: ``run(n)`` executes ``n`` steps the way the loop
  calls them (a host step counter in the batch, the key folded from it in
  the step) and returns the seconds until the last finishes; ``lower()``
  gives the step lowered for the current state and batch. With ``feed``
  (an iterator of host batches ``{"source": {"input", "label"}, "target":
  {"input"}}``, e.g. a loader's, already on the way to the device), each
  step takes its batch from it instead of reusing the one on the device.
  """
  import jax
  import jax.numpy as jnp

  from tljax import methods as methods_lib
  from tljax import models as models_lib
  from tljax.config import base_config

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
  config.method_kwargs.hidden_dim = hidden_dim
  config.steps = 1000
  config.batch_size = batch_size

  options = dict(bottleneck_dim=256, **(model_options or {}))
  model = models_lib.create_model(
      model_name,
      num_classes=num_classes,
      input_shape=tuple(image_shape),
      dtype=dtype,
      **options,
  )
  method = methods_lib.build_method("dann", config, model)
  init_key, train_key = jax.random.split(jax.random.key(seed))
  params, model_state = jax.jit(model.init)(init_key)
  rng = np.random.default_rng(seed)
  probe = types.SimpleNamespace(
      inputs=rng.random((2, *image_shape), dtype=np.float32)
  )
  context = methods_lib.TransferContext(
      params=params,
      model_state=model_state,
      transferred=frozenset(),
      source_params=None,
      source_model_state=None,
      model=model,
      domains={"source": {"train": probe}},
      config=config,
      seed=seed,
  )
  # Jitted so the set-up compiles once instead of op by op (same values).
  params = {**params, **jax.jit(lambda: method.init_params(context))()}
  # As the loop jits it: the per-step key fold_in(train_key, step) is made
  # inside the step from the batch's step counter.
  state, step = train_state_and_step(config, method, params, model_state)

  source = jnp.asarray(rng.random((batch_size, *image_shape), dtype=np.float32))
  target = jnp.asarray(rng.random((batch_size, *image_shape), dtype=np.float32))
  labels = jnp.asarray(rng.integers(0, num_classes, batch_size, dtype=np.int32))
  holder = {"state": state, "counter": 0}

  def batch_for(counter):
    if feed is not None:
      return {"step": np.int32(counter % config.steps), **next(feed)}
    return {
        "step": np.int32(counter % config.steps),
        "source": {"input": source, "label": labels},
        "target": {"input": target},
    }

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
      value = (
          2.0
          * span
          / (1.0 + math.exp(-self.alpha * self.iter_num / self.max_iters))
          - span
          + self.lo
      )
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
          d_s, torch.ones_like(d_s)
      )
      loss_t = nn.functional.binary_cross_entropy_with_logits(
          d_t, torch.zeros_like(d_t)
      )
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
          nn.BatchNorm1d(bottleneck_dim),
          nn.ReLU(),
      )
      self.head = nn.Linear(bottleneck_dim, num_classes)
      self.features_dim = bottleneck_dim

    def forward(self, x):
      f = self.bottleneck(self.backbone(x))
      return self.head(f), f

  return types.SimpleNamespace(
      WarmStartGradientReverseLayer=WarmStartGradientReverseLayer,
      DomainDiscriminator=DomainDiscriminator,
      DomainAdversarialLoss=DomainAdversarialLoss,
      LeNetBackbone=LeNetBackbone,
      ImageClassifier=ImageClassifier,
  )


def torch_dann(
    torch,
    *,
    backbone,
    image_shape,
    batch_size: int,
    compiled: bool,
    device: str = "cpu",
    autocast_dtype=None,
    channels_last: bool = False,
    hidden_dim: int = 500,
    discriminator_batch_norm: bool = False,
    weight_decay: float = 5e-4,
    num_classes: int = NUM_DIGIT_CLASSES,
    seed: int = 0,
):
  """``run(n) -> seconds`` of TLlib's DANN training iteration (see the module doc)."""
  modules = torch_modules(torch)
  torch.manual_seed(seed)
  classifier = modules.ImageClassifier(backbone, num_classes).to(device)
  discriminator = modules.DomainDiscriminator(
      classifier.features_dim, hidden_dim, batch_norm=discriminator_batch_norm
  ).to(device)
  domain_adv = modules.DomainAdversarialLoss(discriminator).to(device)
  grl = modules.WarmStartGradientReverseLayer(
      alpha=1.0, lo=0.0, hi=1.0, max_iters=1000
  )
  if channels_last:
    classifier = classifier.to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(
      list(classifier.parameters()) + list(discriminator.parameters()),
      lr=0.01,
      momentum=0.9,
      weight_decay=weight_decay,
      nesterov=True,
  )
  total = 1000
  scheduler = torch.optim.lr_scheduler.LambdaLR(
      optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total))
  )
  classifier.train()
  domain_adv.train()

  height, width, channels = image_shape
  rng = np.random.default_rng(seed)

  def images():
    array = rng.random((batch_size, channels, height, width), dtype=np.float32)
    tensor = torch.from_numpy(array).to(device)
    return (
        tensor.contiguous(memory_format=torch.channels_last)
        if channels_last
        else tensor
    )

  x_s, x_t = images(), images()
  labels_s = (
      torch.from_numpy(rng.integers(0, num_classes, batch_size))
      .long()
      .to(device)
  )

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
  synchronize = (
      torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
  )

  def one_step():
    coeff = torch.tensor(grl.coefficient(), device=device)
    if autocast_dtype is not None:
      with torch.autocast(
          device_type=device.split(":")[0], dtype=autocast_dtype
      ):
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
      "domains. Ratio: tljax's images/s ÷ PyTorch's (above 1: tljax faster)."
  ]
  table = Table(
      [
          "input",
          "batch (source+target)",
          "implementation",
          "timed steps × rounds",
          "steps/s",
          "images/s",
          "tljax ÷ this",
      ]
  )
  ctx.results.setdefault("dann_first_call", {})
  for size in args.image_sizes:
    image_shape = (size, size, 1)
    for batch in args.batch_sizes:
      label = f"{size}×{size}×1"
      runners, failures = {}, {}
      first_call = {}
      run, _ = tljax_dann(
          model_name="lenet",
          image_shape=image_shape,
          batch_size=batch,
          dtype=jnp.float32,
      )
      first_call["tljax (jit)"] = run(1)  # trace + compile + one step
      runners["tljax (jit, donated)"] = run
      # The same step with LeNet's convolutions left to XLA (conv_impl="xla").
      xla_run, _ = tljax_dann(
          model_name="lenet",
          image_shape=image_shape,
          batch_size=batch,
          dtype=jnp.float32,
          model_options={"conv_impl": "xla"},
      )
      xla_run(1)
      runners[XLA_CONV_ROW] = xla_run
      if torch is not None:
        modules = torch_modules(torch)
        for name, compiled in (
            ("PyTorch eager (TLlib style)", False),
            ("PyTorch torch.compile", True),
        ):
          if compiled and args.no_torch_compile:
            failures[name] = "skipped (--no_torch_compile)"
            continue
          try:
            backbone = modules.LeNetBackbone(size, size, 1)
            torch_run = torch_dann(
                torch,
                backbone=backbone,
                image_shape=image_shape,
                batch_size=batch,
                compiled=compiled,
            )
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
          runners[name] = with_torch_threads(
              torch,
              threads,
              torch_dann(
                  torch,
                  backbone=backbone,
                  image_shape=image_shape,
                  batch_size=batch,
                  compiled=False,
              ),
          )
          runners[name](1)
      else:
        failures["PyTorch eager (TLlib style)"] = "torch not installed"
        failures["PyTorch torch.compile"] = "torch not installed"
      steps = warm_up(runners, args)
      rates = interleaved_rates(runners, steps=steps, rounds=args.rounds)
      ours = rates["tljax (jit, donated)"]
      timed = f"{steps} × {args.rounds}"
      for name, rate in rates.items():
        table.add(
            label,
            f"{batch}+{batch}",
            name,
            timed,
            fmt(rate),
            fmt(rate * 2 * batch),
            "—" if name == "tljax (jit, donated)" else ratio(ours, rate),
        )
      for name, reason in failures.items():
        table.add(
            label,
            f"{batch}+{batch}",
            name,
            "—",
            "n/a",
            "n/a",
            f"n/a ({reason})",
        )
      ctx.results["dann_first_call"][(size, batch)] = first_call
      print(
          f"dann {label} {batch}+{batch}: "
          + ", ".join(
              f"{k} {v * 2 * batch:,.0f} img/s" for k, v in rates.items()
          ),
          flush=True,
      )
  section.tables.append(table)
  section.notes = [
      "tljax: `build_method('dann', config, model)` on `create_model('lenet', "
      "bottleneck_dim=256)` (its default `conv_impl='matmul'`: each "
      "convolution one matrix product, the row "
      f'"{XLA_CONV_ROW}" the same step with `lax.conv_general_dilated`; '
      "see tljax/models/lenet.py), discriminator 256→500→500→1 "
      "(`config.method_kwargs.hidden_dim`), `make_optimizer` (SGD, lr 0.01, "
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
        'cores; JAX\'s CPU runtime uses them all too). The extra "N thread" '
        "rows (`--torch_extra_threads`) show how much PyTorch's OpenMP "
        "threads lose when other processes hold the cores: its workers "
        "spin-wait for each other, which a busy machine punishes."
    )
  return section
