"""Data-parallel and multi-host training through ``jax.sharding``.

The step function is the same on one device and on many: with
``config.parallel.data_parallel`` the loop builds a :class:`jax.sharding.Mesh`
over all devices (all hosts' devices under multi-host) with one axis,
``"data"``; every batch is split along it (each device computes the loss and
gradients of its slice, XLA all-reduces the gradients), and the train state is
replicated, except the leaves that ``config.parallel.param_rules`` shard:
``(regex, spec)`` pairs, ``spec`` a tuple of mesh-axis names or ``None`` per
array dimension (e.g. ``("backbone/.*/kernel", (None, "data"))`` shards
kernels' output features, ZeRO/FSDP-style), matched with ``re.search`` against
each leaf's ``a/b/c`` path in the state (so one rule covers a parameter and its
optimizer moments); the first matching rule wins and a dimension that the mesh
axis does not divide falls back to replication.

Multi-host (one process per host, all hosts running the same command): set
``config.parallel.distributed`` (or the ``TLJAX_DISTRIBUTED=1`` environment
variable) to call :func:`jax.distributed.initialize` before the first use of
JAX; on Cloud TPU and SLURM it finds the coordinator itself, elsewhere pass
the environment variables JAX reads (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``)::

  # on host i of N (i = 0 … N−1), the same command everywhere:
  JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i \\
    TLJAX_DISTRIBUTED=1 tljax train --workdir /shared/run \\
    --config configs/digits.py --set parallel.data_parallel=true

Every host draws the same global batch (the streams are pure functions of
seed and step) and feeds only its own devices' rows
(:func:`jax.make_array_from_process_local_data`), so the data order, and
therefore the result, does not depend on the number of hosts. The work dir
must be on a file system all hosts see (orbax writes sharded checkpoints
collectively).
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
_INITIALIZED = False


def maybe_initialize_distributed(config=None) -> bool:
  """Calls :func:`jax.distributed.initialize` once when asked to; whether it did."""
  global _INITIALIZED
  wanted = os.environ.get("TLJAX_DISTRIBUTED", "") in ("1", "true", "True")
  if config is not None:
    wanted = wanted or bool(config.get("parallel", {}).get("distributed"))
  if wanted and not _INITIALIZED:
    jax.distributed.initialize()
    _INITIALIZED = True
  return _INITIALIZED


def make_mesh(devices=None) -> Mesh:
  """A one-axis (``"data"``) mesh over ``devices`` (default: all, all hosts)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices.reshape(-1), (DATA_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh, argument: str = "batch_size"):
  size = mesh.shape[DATA_AXIS]
  if batch_size % size:
    raise ValueError(
        f"{argument} ({batch_size}) must be divisible by the number "
        f"of devices in the data-parallel mesh ({size})"
    )


def _path_name(path) -> str:
  parts = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        parts.append(str(getattr(entry, attribute)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def check_param_rules(rules) -> list[tuple[str, tuple]]:
  """``[(regex, spec)]`` from config rules; ValueError naming the key if malformed."""
  checked = []
  for index, rule in enumerate(rules or ()):
    if not isinstance(rule, (list, tuple)) or len(rule) != 2:
      raise ValueError(
          f"config key 'parallel.param_rules[{index}]' must be a "
          f"(regex, spec) pair, got {rule!r}"
      )
    pattern, spec = rule
    try:
      re.compile(pattern)
    except (re.error, TypeError) as error:
      raise ValueError(
          f"config key 'parallel.param_rules[{index}]': bad regex "
          f"{pattern!r}: {error}"
      ) from None
    spec = tuple(spec) if isinstance(spec, (list, tuple)) else None
    if spec is None or any(axis not in (None, DATA_AXIS) for axis in spec):
      raise ValueError(
          f"config key 'parallel.param_rules[{index}]': spec must be "
          f"a tuple of None or {DATA_AXIS!r} per dimension, got "
          f"{rule[1]!r}"
      )
    checked.append((pattern, spec))
  return checked


def state_shardings(state: Any, mesh: Mesh, rules=()) -> Any:
  """A sharding per leaf of ``state``: replicated unless a rule shards it."""
  rules = check_param_rules(rules)
  replicated = NamedSharding(mesh, PartitionSpec())

  def sharding(path, leaf):
    shape = np.shape(leaf)
    name = _path_name(path)
    for pattern, spec in rules:
      if re.search(pattern, name):
        if len(spec) != len(shape) or any(
            axis is not None and shape[dim] % mesh.shape[axis]
            for dim, axis in enumerate(spec)
        ):
          return replicated
        return NamedSharding(mesh, PartitionSpec(*spec))
    return replicated

  return jax.tree_util.tree_map_with_path(sharding, state)


def shard_state(state: Any, shardings: Any) -> Any:
  """``state`` placed with ``shardings`` (from host or single-device arrays)."""
  return jax.tree.map(
      lambda leaf, sharding: jax.make_array_from_callback(
          np.shape(leaf),
          sharding,
          lambda index, leaf=leaf: np.asarray(leaf)[index],
      ),
      state,
      shardings,
  )


def batch_transfer(mesh: Mesh):
  """A function placing a host batch on ``mesh``: arrays split along their first axis.

  Scalars (the step) are replicated. With several processes, every process
  holds the same global batch and contributes the rows of its own devices.
  """
  data = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  processes = jax.process_count()

  def place(leaf):
    leaf = np.asarray(leaf)
    if leaf.ndim == 0:
      return jax.make_array_from_callback((), replicated, lambda _: leaf)
    if processes == 1:
      return jax.device_put(leaf, data)
    rows = leaf.shape[0] // processes
    index = jax.process_index()
    return jax.make_array_from_process_local_data(
        data, leaf[index * rows : (index + 1) * rows], leaf.shape
    )

  return lambda batch: jax.tree.map(place, batch)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
