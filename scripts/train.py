#!/usr/bin/env python
"""Trains a transfer experiment and prints its results table: ``tljax train``.

With no flags it runs the digits experiment (configs/digits.py): a LeNet
trained on labeled MNIST digits, evaluated on the UCI optical digits, next to
the source-only and target-only references, over 3 seeds. Any config field is
overridden with ``--set key=value`` (``tljax train --help``).

  python scripts/train.py
  python scripts/train.py --config configs/digits.py:method=finetune,seeds=1 \\
      --set steps=500 --workdir /tmp/ft
"""

import sys

from tljax import cli


def main(argv=None) -> int:
  """``tljax train ARGV`` (default: this process's arguments)."""
  return cli.main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
  sys.exit(main())
