"""The negative-transfer gap and its confidence interval."""

import numpy as np
import pytest
from scipy import stats

from tljax.select import negative_transfer_gap
from tljax.train.experiment import format_gaps, transfer_gaps


def test_gap_and_interval_match_a_paired_t_interval():
  transfer = [0.10, 0.12, 0.08, 0.11]
  target_only = [0.05, 0.06, 0.05, 0.07]
  gap = negative_transfer_gap(transfer, target_only)
  differences = np.subtract(transfer, target_only)
  low, high = stats.t.interval(
      0.95,
      len(differences) - 1,
      loc=differences.mean(),
      scale=stats.sem(differences),
  )
  np.testing.assert_allclose(
      [gap.gap, gap.low, gap.high], [differences.mean(), low, high], rtol=1e-10
  )
  assert gap.verdict == "negative transfer" and gap.num_seeds == 4
  assert negative_transfer_gap(target_only, transfer).verdict == (
      "positive transfer"
  )
  assert negative_transfer_gap([0.1, 0.2], [0.15, 0.15]).verdict == (
      "inconclusive"
  )
  single = negative_transfer_gap([0.2], [0.1])
  assert single.low == single.high == pytest.approx(0.1)
  assert single.verdict == "inconclusive"  # one seed: no spread, no evidence


@pytest.mark.parametrize(
    "transfer, reference, confidence, message",
    [
        ([], [], 0.95, "transfer_errors must be a non-empty"),
        ([0.1, 0.2], [0.1], 0.95, "target_only_errors must pair"),
        ([0.1, 1.5], [0.1, 0.1], 0.95, "transfer_errors must be error rates"),
        ([0.1], [np.nan], 0.95, "target_only_errors must be error rates"),
        ([0.1], [0.1], 1.0, "confidence must be in"),
    ],
)
def test_bad_input_names_the_argument(transfer, reference, confidence, message):
  with pytest.raises(ValueError, match=message):
    negative_transfer_gap(transfer, reference, confidence=confidence)


def test_experiment_reports_gaps_against_target_only():
  def summary(accuracy):
    return {"target_test": {"accuracy": accuracy}}

  summaries = {
      ("finetune", 0): summary(0.9),
      ("finetune", 1): summary(0.92),
      ("source_only", 0): summary(0.7),
      ("source_only", 1): summary(0.72),
      ("target_only", 0): summary(0.95),
      ("target_only", 1): summary(0.96),
  }
  settings = {
      "finetune": "inductive",
      "source_only": "transductive",
      "target_only": "inductive",
  }
  gaps = transfer_gaps(
      ["finetune", "source_only", "target_only"], settings, summaries, [0, 1]
  )
  # Only the inductive method is compared with the target-only reference.
  assert [row["method"] for row in gaps] == ["finetune"]
  assert gaps[0]["gap"] == pytest.approx(((0.1 - 0.05) + (0.08 - 0.04)) / 2)
  assert "| finetune | +4.5 |" in format_gaps(gaps)
  assert transfer_gaps(["finetune"], settings, summaries, [0, 1]) == []
