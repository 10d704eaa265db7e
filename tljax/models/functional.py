"""Functional interface to the tljax models: plain dicts of arrays in and out.

The rest of tljax handles parameters as plain nested dicts of arrays, named by
``a/b/c`` paths (``backbone/conv1/kernel``, ``head/bias``), so that freezing
rules, optimisers, checkpoints and ``jax.vmap`` sweeps see ordinary pytrees.
A :class:`Model` wraps a Flax NNX module in two pure functions::

    model = create_model("lenet", num_classes=10, input_shape=(8, 8, 1))
    params, model_state = model.init(jax.random.key(0))
    outputs, model_state = model.apply(
        params, model_state, images, train=True, key=dropout_key)
    outputs.features, outputs.logits

``params`` holds the ``nnx.Param`` variables; ``model_state`` every other
variable (the BatchNorm running ``mean`` and ``var``), ``{}`` when there is
none. Both are nested dicts with string keys.

How it works: the module's ``GraphDef`` (its static structure) is computed once
with ``nnx.eval_shape`` when the :class:`Model` is built, so building a Model
allocates no arrays. ``init`` builds the module from the key (hence it can be
jitted and vmapped over keys) and splits it into pure dicts; ``apply`` merges
the graph definition with the given dicts into a fresh module, calls it, and
reads the BatchNorm statistics back. The module holds no random state, so the
same graph definition serves training and evaluation.

Architectures are registered by name with :func:`register_model`; the built-in
ones are ``mlp``, ``lenet``, ``resnet18``, ``resnet34``, ``resnet50``,
``resnet101``, ``resnet`` (any block,
stage sizes and widths), ``vit`` (any size) and the standard ViTs ``vit_ti16``,
``vit_s16``, ``vit_b16``, ``vit_l16`` and their ``…32`` patch-32 variants.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from tljax.models.classifier import ModelOutput
from tljax.params.tree import flatten, unflatten
from tljax.models.lenet import LeNet
from tljax.models.mlp import MLP
from tljax.models.resnet import resnet, resnet18, resnet34, resnet50, resnet101
from tljax.models.vit import STANDARD_VITS, ViT

__all__ = [
    "Model",
    "ModelOutput",
    "available_models",
    "create_model",
    "register_model",
]

ModelBuilder = Callable[..., nnx.Module]

# Arguments every builder receives from the registry; they are not options.
_BUILDER_ARGUMENTS = ("input_shape", "num_classes", "dtype", "rngs")
_TOP_LEVEL_SUBMODULES = ("backbone", "bottleneck", "head")

_REGISTRY: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
  """Registers a model builder under ``name`` (a decorator).

  A builder is called as ``builder(input_shape=..., num_classes=...,
  dtype=..., rngs=nnx.Rngs(key), **options)`` and returns an ``nnx.Module``
  following the :class:`~tljax.models.classifier.Classifier` contract: top-level
  submodules ``backbone``, ``bottleneck`` and ``head``; ``__call__(inputs, *,
  train, rngs=None)`` returning a :class:`ModelOutput`; no random state held by
  the module. The builder's keyword parameters (other than the four above) are
  the options :func:`create_model` accepts for that name; a builder taking
  ``**kwargs`` accepts any option. A module class with that constructor
  signature is itself a builder.

  Example::

    @register_model("wide_mlp")
    def wide_mlp(input_shape, num_classes, *, dtype, rngs, bottleneck_dim=None):
      return MLP(input_shape, num_classes, hidden_dims=(1024, 1024),
                 bottleneck_dim=bottleneck_dim, dtype=dtype, rngs=rngs)

  Args:
    name: registry name, unique.

  Returns:
    A decorator registering its argument and returning it unchanged.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty string, got {name!r}.")

  def decorator(builder: ModelBuilder) -> ModelBuilder:
    if name in _REGISTRY:
      raise ValueError(
          f"name {name!r} is already registered (to {_REGISTRY[name]!r})."
      )
    if not callable(builder):
      raise ValueError(
          f"builder for {name!r} must be callable, got {builder!r}."
      )
    _REGISTRY[name] = builder
    return builder

  return decorator


def available_models() -> list[str]:
  """Returns the registered model names, sorted."""
  return sorted(_REGISTRY)


register_model("mlp")(MLP)
register_model("lenet")(LeNet)
register_model("resnet18")(resnet18)
register_model("resnet34")(resnet34)
register_model("resnet50")(resnet50)
register_model("resnet101")(resnet101)
register_model("resnet")(resnet)
register_model("vit")(ViT)
for _name, _builder in STANDARD_VITS.items():
  register_model(_name)(_builder)


def _builder_options(builder: ModelBuilder) -> tuple[frozenset[str], bool]:
  """Option names a builder accepts, and whether it accepts any (``**kwargs``)."""
  if inspect.isclass(builder):
    # nnx.Module's metaclass hides the constructor's signature behind
    # ``__call__(*args, **kwargs)``; read ``__init__`` and drop ``self``.
    parameters = list(inspect.signature(builder.__init__).parameters.values())[
        1:
    ]
  else:
    parameters = list(inspect.signature(builder).parameters.values())
  accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
  names = frozenset(
      p.name
      for p in parameters
      if p.kind
      in (
          inspect.Parameter.KEYWORD_ONLY,
          inspect.Parameter.POSITIONAL_OR_KEYWORD,
      )
      and p.name not in _BUILDER_ARGUMENTS
  )
  return names, accepts_any


def _hashable(value: Any) -> Any:
  """Lists become tuples, so options can be part of a hashable Model."""
  if isinstance(value, list | tuple):
    return tuple(_hashable(v) for v in value)
  return value


def _check_variables(
    argument: str, given: Any, expected: Mapping[str, Any], model_name: str
) -> dict:
  """Checks that ``given`` has exactly the expected paths and shapes.

  Returns ``given`` rebuilt as a plain nested dict of JAX arrays (so a
  ``FrozenDict`` or an ``nnx.State`` of plain arrays is accepted too). The
  conversion matters: a BatchNorm update writes into its variables in place,
  which for a NumPy leaf would mutate the caller's array.
  """
  if not isinstance(given, Mapping):
    raise ValueError(
        f"{argument} must be a nested mapping of arrays, got {type(given).__name__}."
    )
  flat = flatten(given)
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  if missing or unexpected:
    raise ValueError(
        f"{argument} does not match model {model_name!r}: missing paths "
        f"{missing}, unexpected paths {unexpected}."
    )
  for path, leaf in flat.items():
    if tuple(jnp.shape(leaf)) != tuple(expected[path].shape):
      raise ValueError(
          f"{argument} path {path!r} has shape {tuple(jnp.shape(leaf))}, model "
          f"{model_name!r} expects {tuple(expected[path].shape)}."
      )
  return unflatten({path: jnp.asarray(leaf) for path, leaf in flat.items()})


@dataclasses.dataclass(frozen=True)
class Model:
  """A registered architecture as two pure functions, ``init`` and ``apply``.

  Build one with :func:`create_model`. A Model is immutable and hashable (its
  options must be hashable; lists are turned into tuples), so it can be closed
  over or passed as a static argument to ``jax.jit``; building it allocates no
  arrays.

  Attributes:
    name: registry name, e.g. ``"resnet18"``.
    num_classes: number of output classes.
    input_shape: per-example input shape, e.g. ``(8, 8, 1)`` (NHWC images
      without the batch axis) or ``(2,)``.
    dtype: computation dtype (``float32``, or ``bfloat16`` for mixed
      precision); parameters are float32 unless a ``param_dtype`` option says
      otherwise.
    options: the builder's extra keyword arguments, as sorted ``(name, value)``
      pairs.
    input_mean, input_std: the input convention, per channel (the last input
      axis) or one value for all: :meth:`apply` feeds the network
      ``(inputs - input_mean) / input_std``, e.g. ImageNet's
      ``(0.485, 0.456, 0.406)`` and ``(0.229, 0.224, 0.225)`` for images in
      [0, 1]; ``None``: the inputs as they are.
    graphdef: the module's static structure (``nnx.GraphDef``).
    has_dropout: whether ``apply(..., train=True)`` needs a ``key``.
  """

  name: str
  num_classes: int
  input_shape: tuple[int, ...]
  dtype: Any = jnp.float32
  options: tuple[tuple[str, Any], ...] = ()
  input_mean: tuple[float, ...] | None = None
  input_std: tuple[float, ...] | None = None
  graphdef: nnx.GraphDef = dataclasses.field(
      init=False, repr=False, compare=False
  )
  has_dropout: bool = dataclasses.field(init=False, repr=False, compare=False)
  _param_shapes: dict = dataclasses.field(init=False, repr=False, compare=False)
  _model_state_shapes: dict = dataclasses.field(
      init=False, repr=False, compare=False
  )

  def __post_init__(self):
    if self.name not in _REGISTRY:
      raise ValueError(
          f"Unknown model name {self.name!r}; registered models: {available_models()}."
      )
    if (
        isinstance(self.num_classes, bool)
        or not isinstance(self.num_classes, int | np.integer)
        or self.num_classes < 1
    ):
      raise ValueError(
          f"num_classes must be a positive integer, got {self.num_classes!r}."
      )
    input_shape = self.input_shape
    if (
        not isinstance(input_shape, Sequence)
        or not input_shape
        or not all(
            isinstance(size, int | np.integer)
            and not isinstance(size, bool)
            and size > 0
            for size in input_shape
        )
    ):
      raise ValueError(
          f"input_shape must be a tuple of positive integers, got {input_shape!r}."
      )
    try:
      dtype = jnp.dtype(self.dtype)
    except TypeError as error:
      raise ValueError(f"dtype {self.dtype!r} is not a dtype.") from error
    if not jnp.issubdtype(dtype, jnp.floating):
      raise ValueError(f"dtype must be a floating dtype, got {dtype}.")
    options = tuple(
        sorted((k, _hashable(v)) for k, v in dict(self.options).items())
    )
    accepted, accepts_any = _builder_options(_REGISTRY[self.name])
    unknown = sorted(k for k, _ in options if k not in accepted)
    if unknown and not accepts_any:
      raise ValueError(
          f"Unknown keyword arguments {unknown} for model {self.name!r}; "
          f"it accepts {sorted(accepted)}."
      )
    self._check_input_convention()
    object.__setattr__(self, "num_classes", int(self.num_classes))
    object.__setattr__(self, "input_shape", tuple(int(s) for s in input_shape))
    object.__setattr__(self, "dtype", dtype)
    object.__setattr__(self, "options", options)

    abstract_module = nnx.eval_shape(lambda: self._build(jax.random.key(0)))
    for submodule in _TOP_LEVEL_SUBMODULES:
      if not isinstance(getattr(abstract_module, submodule, None), nnx.Module):
        raise ValueError(
            f"the builder registered as {self.name!r} returned a "
            f"{type(abstract_module).__name__} without a {submodule!r} submodule; "
            f"models need {list(_TOP_LEVEL_SUBMODULES)}."
        )
    graphdef, param_shapes, model_state_shapes = nnx.split(
        abstract_module, nnx.Param, ...
    )
    object.__setattr__(self, "graphdef", graphdef)
    object.__setattr__(
        self, "_param_shapes", flatten(nnx.to_pure_dict(param_shapes))
    )
    object.__setattr__(
        self,
        "_model_state_shapes",
        flatten(nnx.to_pure_dict(model_state_shapes)),
    )
    object.__setattr__(
        self,
        "has_dropout",
        any(
            isinstance(m, nnx.Dropout)
            for _, m in nnx.iter_modules(abstract_module)
        ),
    )

  def _check_input_convention(self) -> None:
    mean, std = self.input_mean, self.input_std
    if (mean is None) != (std is None):
      raise ValueError(
          "input_mean and input_std must be given together (or neither), got "
          f"input_mean={mean!r}, input_std={std!r}."
      )
    if mean is None:
      return
    channels = self.input_shape[-1]
    for argument, value in (("input_mean", mean), ("input_std", std)):
      values = np.atleast_1d(np.asarray(value, dtype=np.float64))
      if (
          values.ndim != 1
          or values.size not in (1, channels)
          or not np.all(np.isfinite(values))
      ):
        raise ValueError(
            f"{argument} must be 1 or {channels} finite numbers (one per "
            f"channel of input_shape {tuple(self.input_shape)}), got {value!r}."
        )
      if argument == "input_std" and not np.all(values > 0):
        raise ValueError(f"input_std must be positive, got {value!r}.")
      object.__setattr__(self, argument, tuple(float(v) for v in values))

  def normalize_inputs(self, inputs: jax.Array) -> jax.Array:
    """The network's input: uint8 images scaled to [0, 1], then the convention.

    uint8 inputs (images as stored, 0..255) become ``inputs / 255`` in
    float32, so a batch can travel to the device as bytes; then
    ``(x - input_mean) / input_std`` when the model has a convention.
    """
    if inputs.dtype == jnp.uint8:
      inputs = inputs.astype(jnp.float32) / 255.0
    if self.input_mean is None:
      return inputs
    mean = jnp.asarray(self.input_mean, jnp.float32)
    std = jnp.asarray(self.input_std, jnp.float32)
    return ((inputs - mean) / std).astype(inputs.dtype)

  def _build(self, key: jax.Array) -> nnx.Module:
    return _REGISTRY[self.name](
        input_shape=self.input_shape,
        num_classes=self.num_classes,
        dtype=self.dtype,
        rngs=nnx.Rngs(key),
        **dict(self.options),
    )

  @property
  def param_count(self) -> int:
    """Total number of scalar parameters (from shapes; allocates nothing)."""
    return sum(math.prod(s.shape) for s in self._param_shapes.values())

  def init(self, key: jax.Array) -> tuple[dict, dict]:
    """Initialises the variables from a PRNG key.

    Pure, so it can be jitted and vmapped over keys
    (``jax.vmap(model.init)(jax.random.split(key, n))``).

    Args:
      key: a PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``).

    Returns:
      ``(params, model_state)``: nested dicts of arrays with string keys;
      ``model_state`` holds the BatchNorm running statistics (``{}`` when the
      model has no BatchNorm).
    """
    module = self._build(key)
    _, params, model_state = nnx.split(module, nnx.Param, ...)
    return nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)

  def apply(
      self,
      params: Mapping[str, Any],
      model_state: Mapping[str, Any],
      inputs: jax.Array,
      *,
      train: bool,
      key: jax.Array | None = None,
  ) -> tuple[ModelOutput, dict]:
    """Runs the model on a batch.

    Pure and jittable (``train`` must be a Python bool: pass it as a static
    argument). Shapes and variable paths are checked at trace time.

    Args:
      params: parameters, as returned by :meth:`init` (same paths and shapes).
      model_state: non-parameter variables, as returned by :meth:`init` or a
        previous :meth:`apply`.
      inputs: ``(batch, *input_shape)`` array.
      train: training mode: BatchNorm normalises with batch statistics and
        updates its running averages (``running = momentum * running +
        (1 - momentum) * batch_statistic``, with the biased batch variance),
        dropout is active. In evaluation mode BatchNorm uses the running
        averages and dropout is the identity.
      key: PRNG key for dropout; required when ``train`` is True and the model
        has dropout, ignored otherwise.

    Returns:
      ``(outputs, new_model_state)``: a :class:`ModelOutput` and the model
      state, updated when ``train`` is True and returned unchanged otherwise.
    """
    if not isinstance(train, bool | np.bool_):
      raise ValueError(
          f"train must be a Python bool (a static argument under jit), got {train!r}."
      )
    input_shape = tuple(jnp.shape(inputs))
    if (
        len(input_shape) != len(self.input_shape) + 1
        or input_shape[1:] != self.input_shape
    ):
      raise ValueError(
          f"inputs must have shape (batch, {', '.join(map(str, self.input_shape))}) "
          f"for model {self.name!r} built with input_shape={self.input_shape}, "
          f"got shape {input_shape}."
      )
    if train and self.has_dropout and key is None:
      raise ValueError(
          f"key is required when train=True: model {self.name!r} has dropout."
      )
    params = _check_variables("params", params, self._param_shapes, self.name)
    checked_model_state = _check_variables(
        "model_state", model_state, self._model_state_shapes, self.name
    )
    module = nnx.merge(self.graphdef, params, checked_model_state)
    rngs = nnx.Rngs(dropout=key) if train and key is not None else None
    outputs = module(self.normalize_inputs(inputs), train=train, rngs=rngs)
    if not train:
      return outputs, model_state
    _, _, new_model_state = nnx.split(module, nnx.Param, ...)
    return outputs, nnx.to_pure_dict(new_model_state)


def create_model(
    name: str,
    *,
    num_classes: int,
    input_shape: Sequence[int],
    dtype: Any = jnp.float32,
    input_mean: Sequence[float] | float | None = None,
    input_std: Sequence[float] | float | None = None,
    **kwargs: Any,
) -> Model:
  """Builds a registered architecture as a functional :class:`Model`.

  Example::

    model = create_model("resnet18", num_classes=10, input_shape=(32, 32, 3),
                         stem="small", dtype=jnp.bfloat16)

  Args:
    name: a name from :func:`available_models` (``mlp``, ``lenet``,
      ``resnet18``, ``resnet50``, plus any registered with
      :func:`register_model`).
    num_classes: number of output classes.
    input_shape: per-example input shape (no batch axis).
    dtype: computation dtype; parameters stay float32.
    input_mean, input_std: the input convention (see :class:`Model`), e.g.
      ImageNet's (``tljax.data.augment.IMAGENET_MEAN`` and ``IMAGENET_STD``)
      for images in [0, 1] or uint8.
    **kwargs: architecture options, e.g. ``hidden_dims`` (mlp), ``stem`` and
      ``zero_init_residual`` (resnets), and for all built-in models
      ``bottleneck_dim``, ``bottleneck_batch_norm``, ``bottleneck_dropout``,
      ``batch_norm_momentum``, ``param_dtype``.

  Returns:
    The :class:`Model`.

  Raises:
    ValueError: unknown ``name`` (the message lists the registered names),
      unknown option names, or invalid shapes and sizes.
  """
  return Model(
      name=name,
      num_classes=num_classes,
      input_shape=input_shape,
      dtype=dtype,
      options=tuple(kwargs.items()),
      input_mean=_hashable(input_mean),
      input_std=_hashable(input_std),
  )
