"""Parameter transfer: naming, trainable/frozen split, and partial restore."""

from tljax.params.tree import (FROZEN, flatten, is_frozen, match_rules, merge,
                               path_name, split, unflatten)
from tljax.params.restore import load_pretrained, resolve_checkpoint_dir

__all__ = ["FROZEN", "flatten", "is_frozen", "match_rules", "merge",
           "load_pretrained", "path_name", "resolve_checkpoint_dir", "split",
           "unflatten"]
