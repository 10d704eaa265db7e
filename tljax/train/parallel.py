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
JAX (:func:`maybe_initialize_distributed`); on Cloud TPU and SLURM it finds
the coordinator itself, elsewhere set ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (JAX itself reads only the
first; tljax passes the other two)::

  # on host i of N (i = 0 … N−1), the same command everywhere:
  JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i \\
    TLJAX_DISTRIBUTED=1 tljax train --workdir /shared/run \\
    --config configs/digits.py --set parallel.data_parallel=true

Several processes on one machine (``scripts/launch_local.py``, the tested
case) use a coordinator on ``127.0.0.1``: the coordinator then listens on
that address only, not on every interface as JAX's default does. On CPU the
processes' collectives go through gloo (JAX's default CPU collectives).

Every host draws the same global batch (the streams are pure functions of
seed and step) and feeds only its own devices' rows
(:func:`jax.make_array_from_callback`), so the data order, and
therefore the result, does not depend on the number of hosts. The work dir
must be on a file system all hosts see (orbax writes sharded checkpoints
collectively); only process 0 writes the run's other files (metrics,
summary, provenance, the config record: :func:`is_primary`).

When a process dies (SIGKILL, a lost host), the others stop instead of
waiting for it forever: their next collective fails (the loop raises
:class:`DistributedError`, naming the latest complete checkpoint, from which
the same command rerun in every process resumes), or the coordination
service stops hearing its heartbeats and JAX ends them, after
``TLJAX_DISTRIBUTED_TIMEOUT`` seconds (default 100, JAX's). See
docs/multihost.md.
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
DISTRIBUTED_ENV = "TLJAX_DISTRIBUTED"
TIMEOUT_ENV = "TLJAX_DISTRIBUTED_TIMEOUT"
_LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


class DistributedError(ConnectionError):
  """A process of a multi-process run stopped or cannot be reached."""


def _env_int(name: str, minimum: int) -> int | None:
  text = os.environ.get(name, "").strip()
  if not text:
    return None
  try:
    value = int(text)
  except ValueError:
    value = None
  if value is None or value < minimum:
    raise ValueError(
        f"environment variable {name} must be an integer >= {minimum}, "
        f"got {text!r}"
    )
  return value


def _is_loopback(address: str) -> bool:
  host = address.rsplit(":", 1)[0]
  return host in _LOOPBACK_HOSTS or host.startswith("127.")


def distributed_arguments() -> dict[str, Any]:
  """The keyword arguments of :func:`jax.distributed.initialize` from the environment.

  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (which JAX does not read), a
  bind address equal to a loopback ``JAX_COORDINATOR_ADDRESS`` (unless
  ``JAX_COORDINATOR_BIND_ADDRESS`` says otherwise) and the heartbeat
  timeout ``TLJAX_DISTRIBUTED_TIMEOUT``; what is unset is left to JAX.

  Raises:
    ValueError: naming the environment variable that is not a valid value.
  """
  arguments = {}
  processes = _env_int("JAX_NUM_PROCESSES", 1)
  process_id = _env_int("JAX_PROCESS_ID", 0)
  if processes is not None:
    arguments["num_processes"] = processes
  if process_id is not None:
    if processes is not None and process_id >= processes:
      raise ValueError(
          f"environment variable JAX_PROCESS_ID ({process_id}) must be "
          f"below JAX_NUM_PROCESSES ({processes})"
      )
    arguments["process_id"] = process_id
  coordinator = os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  if (
      _is_loopback(coordinator)
      and ":" in coordinator
      and not os.environ.get("JAX_COORDINATOR_BIND_ADDRESS")
  ):
    arguments["coordinator_bind_address"] = coordinator
  timeout = _env_int(TIMEOUT_ENV, 1)
  if timeout is not None:
    arguments["heartbeat_timeout_seconds"] = timeout
  return arguments


def maybe_initialize_distributed(config=None) -> bool:
  """Calls :func:`jax.distributed.initialize` once when asked to; whether it did.

  Asked by ``TLJAX_DISTRIBUTED=1`` or ``config.parallel.distributed``; the
  arguments come from :func:`distributed_arguments`.
  """
  global _INITIALIZED
  wanted = os.environ.get(DISTRIBUTED_ENV, "") in ("1", "true", "True")
  if config is not None:
    wanted = wanted or bool(config.get("parallel", {}).get("distributed"))
  if wanted and not _INITIALIZED:
    jax.distributed.initialize(**distributed_arguments())
    _INITIALIZED = True
  return _INITIALIZED


def is_primary() -> bool:
  """Whether this process writes the run's files: process 0 (or the only one)."""
  return jax.process_index() == 0


def peer_failure(
    error: BaseException, latest_step: int | None
) -> DistributedError:
  """A failed computation of a multi-process run, as a :class:`DistributedError`.

  ``latest_step``: the run's latest complete checkpoint, where a rerun
  resumes.
  """
  lines = str(error).strip().splitlines()
  cause = (
      lines[0].rsplit("Error dispatching computation: ", 1)[-1] if lines else ""
  )
  resume = (
      f"from its latest complete checkpoint (step {latest_step})"
      if latest_step is not None
      else "from the start (no checkpoint was completed)"
  )
  return DistributedError(
      f"process {jax.process_index()} of {jax.process_count()}: a "
      f"collective operation failed ({cause[:200]}); another process of "
      "this run has probably stopped. Rerun the same command in every "
      f"process: the run resumes {resume}"
  )


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
  holds the same global batch and gives each of its own devices that
  device's rows, wherever the mesh places the device (its rows need not be
  one contiguous block per process).
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
    return jax.make_array_from_callback(
        leaf.shape, data, lambda index: leaf[index]
    )

  return lambda batch: jax.tree.map(place, batch)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
