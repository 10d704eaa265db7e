"""Figures drawn on matplotlib's Agg canvas: no display and no pyplot state.

Every picture of :mod:`tljax.report` is a :class:`matplotlib.figure.Figure`
attached to its own ``FigureCanvasAgg``, so drawing neither needs a display
nor changes the process-wide backend a notebook or another library chose.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PANEL_SIZE = (5.2, 3.8)  # inches, one subplot
DPI = 110


def check_png_path(path, argument: str = "path") -> str:
  """``path`` as a string, if it names a ``.png`` file in an existing directory."""
  if not isinstance(path, (str, os.PathLike)):
    raise ValueError(f"{argument} must be a file path, got {path!r}")
  path = os.fspath(path)
  if not path.lower().endswith(".png"):
    raise ValueError(f"{argument} {path!r} must name a .png file")
  parent = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(parent):
    raise ValueError(
        f"{argument} {path!r}: its directory {parent!r} does not " "exist"
    )
  return path


def new_figure(rows: int, columns: int) -> tuple[Figure, np.ndarray]:
  """A figure with a ``(rows, columns)`` array of subplots."""
  figure = Figure(
      figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows),
      layout="constrained",
  )
  FigureCanvasAgg(figure)
  return figure, figure.subplots(rows, columns, squeeze=False)


def save(figure: Figure, path: str) -> str:
  figure.savefig(path, dpi=DPI)
  return path
