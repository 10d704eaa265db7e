"""Pictures and reports of runs and experiments.

Everything reads what a run already wrote (``run_config.json``,
``metrics.jsonl``, ``summary.json``, ``checkpoints/``); nothing here touches
training. Pictures are PNG files drawn on matplotlib's Agg canvas (no
display needed, the process-wide backend untouched).

* :func:`plot_training_curves` — the loss split into classification and
  λ × transfer term, accuracies with the periodic evaluations, adaptation
  coefficient and learning rate over steps.
* :func:`plot_features` — source and target test examples in the run's
  feature space (PCA or t-SNE; colour the class, marker the domain), next to
  the same seed's source-only model.
* :func:`plot_weights` — importance weights: histogram, weight against input.
* :func:`plot_ranking` / :func:`plot_rank_sources` — transferability score
  against measured accuracy, with Kendall's τ.
* :func:`run_report` — ``report.md`` of one run, with its pictures.
* :func:`experiment_report` — mean ± std per method across experiment dirs.
* :func:`report_experiment` — every run's report and the experiment's.
"""

from tljax.report.curves import plot_training_curves
from tljax.report.features import plot_features, project, run_features
from tljax.report.ranking import (kendall_tau, plot_rank_sources, plot_ranking)
from tljax.report.reports import (
    experiment_report,
    report_experiment,
    run_report,
)
from tljax.report.weights import effective_sample_size, plot_weights

__all__ = [
    "effective_sample_size",
    "experiment_report",
    "kendall_tau",
    "plot_features",
    "plot_rank_sources",
    "plot_ranking",
    "plot_training_curves",
    "plot_weights",
    "project",
    "report_experiment",
    "run_features",
    "run_report",
]
