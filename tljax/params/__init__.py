"""Parameter transfer: naming, trainable/frozen split, and partial restore."""

from tljax.params import regularizers
from tljax.params.tree import (
    FROZEN,
    flatten,
    is_frozen,
    match_rules,
    merge,
    path_name,
    split,
    unflatten,
)
from tljax.params.lr_rules import (
    depths,
    learning_rate_multipliers,
    scale_by_multipliers,
    with_learning_rate_multipliers,
)
from tljax.params.restore import (
    load_pretrained,
    merge_pretrained,
    read_checkpoint,
    resolve_checkpoint_dir,
    transferred_names,
)

__all__ = [
    "FROZEN",
    "depths",
    "flatten",
    "is_frozen",
    "learning_rate_multipliers",
    "load_pretrained",
    "match_rules",
    "merge",
    "merge_pretrained",
    "path_name",
    "read_checkpoint",
    "regularizers",
    "resolve_checkpoint_dir",
    "scale_by_multipliers",
    "split",
    "transferred_names",
    "unflatten",
    "with_learning_rate_multipliers",
]
