"""Metric writing: JSON lines per run and a final summary JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


def to_python(value: Any) -> Any:
  """Converts arrays and NumPy scalars (recursively) into JSON-ready values."""
  if hasattr(value, "to_dict"):  # ml_collections.ConfigDict
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(key): to_python(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_python(item) for item in value]
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:
  """Appends ``{"step": s, **metrics}`` lines to ``workdir/metrics.jsonl``."""

  def __init__(self, workdir: str | os.PathLike):
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, METRICS_FILE)

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    record = {"step": int(step), **to_python(dict(metrics))}
    with open(self.path, "a", encoding="utf-8") as stream:
      stream.write(json.dumps(record) + "\n")


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
  """All records of ``workdir/metrics.jsonl`` in order."""
  path = os.path.join(workdir, METRICS_FILE)
  with open(path, encoding="utf-8") as stream:
    return [json.loads(line) for line in stream if line.strip()]


def write_json_atomically(path: str | os.PathLike, payload: Any) -> None:
  """Writes JSON to a temporary file and renames it, so readers never see half."""
  temporary = f"{os.fspath(path)}.tmp"
  with open(temporary, "w", encoding="utf-8") as stream:
    json.dump(to_python(payload), stream, indent=2, sort_keys=True)
    stream.write("\n")
  os.replace(temporary, path)


def write_summary(workdir: str | os.PathLike, summary: Mapping[str, Any]) -> str:
  path = os.path.join(workdir, SUMMARY_FILE)
  write_json_atomically(path, summary)
  return path


def read_summary(workdir: str | os.PathLike) -> dict:
  with open(os.path.join(workdir, SUMMARY_FILE), encoding="utf-8") as stream:
    return json.load(stream)
