"""The train core: state, the shared jitted step, evaluation, checkpoints, loop."""

from tljax.checkpoint import Checkpointer
from tljax.train.evaluate import evaluate
from tljax.train.metrics import MetricWriter, read_metrics, read_summary
from tljax.train.optim import make_optimizer, make_schedule
from tljax.train.state import TrainState, create_train_state
from tljax.train.step import (
    GroupedOptimizer,
    LossFn,
    Stage,
    keyed_by_step,
    make_staged_train_step,
    make_train_step,
    updates_per_step,
)

__all__ = [
    "Checkpointer",
    "GroupedOptimizer",
    "LossFn",
    "MetricWriter",
    "Stage",
    "TrainState",
    "create_train_state",
    "evaluate",
    "keyed_by_step",
    "make_optimizer",
    "make_schedule",
    "make_staged_train_step",
    "make_train_step",
    "read_metrics",
    "read_summary",
    "updates_per_step",
]
