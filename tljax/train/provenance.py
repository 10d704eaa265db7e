"""What a run needs to be reproduced: seed, config, package versions, git revision.

:func:`record_session` appends one entry per start or resumption of a run
to ``workdir/provenance.json``, so a run resumed on another machine or after
an upgrade says so.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any

import jax

from tljax.train import metrics as metrics_lib
from tljax.train import parallel

PROVENANCE_FILE = "provenance.json"
PACKAGES = (
    "tljax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "chex",
    "numpy",
    "scipy",
    "scikit-learn",
    "ml-collections",
    "tensorflow-datasets",
)


def package_versions(packages=PACKAGES) -> dict[str, str | None]:
  """``{distribution: version}`` (``None`` when not installed)."""
  versions = {}
  for name in packages:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return versions


def git_revision(directory: str | None = None) -> dict[str, Any] | None:
  """``{"commit", "dirty"}`` of the git checkout holding tljax, or ``None``.

  ``dirty`` is whether tracked files differ from the commit (the run's code
  may then not be the commit's).
  """
  directory = directory or os.path.dirname(
      os.path.dirname(os.path.abspath(__file__))
  )
  try:
    commit = subprocess.run(
        ["git", "-C", directory, "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.strip()
    status = subprocess.run(
        [
            "git",
            "-C",
            directory,
            "status",
            "--porcelain",
            "--untracked-files=no",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit, "dirty": bool(status.strip())}


def session_record(start_step: int) -> dict[str, Any]:
  """This process: versions, git revision, Python, platform, devices."""
  devices = jax.devices()
  return {
      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"
      ),
      "start_step": int(start_step),
      "versions": package_versions(),
      "git": git_revision(),
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "backend": jax.default_backend(),
      "devices": [
          f"{device.platform}:{device.device_kind}" for device in devices
      ],
      "process_index": jax.process_index(),
      "process_count": jax.process_count(),
  }


def record_session(
    workdir: str,
    *,
    seed: Any,
    config: Any,
    start_step: int,
    claimed: bool = True,
    **fields,
) -> dict:
  """Adds this session to ``workdir/provenance.json`` (created on first start).

  ``claimed``: whether the run had completed a step before this session
  (see :mod:`tljax.train.workdir`). If not, a stored record of another
  config belongs to an attempt that never trained, and is replaced.
  """
  path = os.path.join(workdir, PROVENANCE_FILE)
  fresh = {
      "seed": seed,
      "config": metrics_lib.to_python(config),
      **metrics_lib.to_python(fields),
      "sessions": [],
  }
  record = None
  if os.path.exists(path):
    with open(path, encoding="utf-8") as stream:
      record = json.load(stream)
    stale = {key: value for key, value in record.items() if key != "sessions"}
    if not claimed and stale != json.loads(
        json.dumps(
            {key: value for key, value in fresh.items() if key != "sessions"}
        )
    ):
      record = None
  record = record or fresh
  record["sessions"].append(session_record(start_step))
  if parallel.is_primary():  # its session record gives the process count
    metrics_lib.write_json_atomically(path, record)
  return record


def read_provenance(workdir: str) -> dict:
  with open(os.path.join(workdir, PROVENANCE_FILE), encoding="utf-8") as stream:
    return json.load(stream)
