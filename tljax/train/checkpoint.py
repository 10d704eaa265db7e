"""The former home of :mod:`tljax.checkpoint`, kept for its import path.

The checkpoint format moved to the bottom of tljax (see
:mod:`tljax.checkpoint`); ``from tljax.train.checkpoint import Checkpointer``
keeps working.
"""

from tljax.checkpoint import (
    CHECKPOINT_SUBDIR,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointSaveError,
    Checkpointer,
)

__all__ = [
    "CHECKPOINT_SUBDIR",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointSaveError",
    "Checkpointer",
]
