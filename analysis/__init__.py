"""Analysis of smoe-study results: a Ray Tune study folder as pandas tables, figures and a report.

Typical use in a notebook::

    from analysis import load_study, summarize, compare_routings
    study = load_study("~/ray_results/paper")   # or trials, epochs = load_study(...)
    summarize(study.trials)                      # mean, std, 95 % CI over seeds
    compare_routings(study.trials)               # learned minus supervised, Welch CI

and from the shell: ``python -m analysis.report STUDY [--out DIR]``.
"""

from analysis.load import STATUSES, Study, StudyError, load_study
from analysis.stats import contingency_scores, mean_ci, pareto_mask, welch_difference
from analysis.tables import (
    compare_routings,
    correlate,
    expert_category_table,
    finished,
    pareto_front,
    pooled_specialization,
    summarize,
)



def __getattr__(name):
    # Imported on first use: importing analysis.report here would make
    # `python -m analysis.report` import that module twice.
    if name == "build_report":
        from analysis.report import build_report

        return build_report
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


__all__ = [
    "STATUSES",
    "Study",
    "StudyError",
    "build_report",
    "compare_routings",
    "contingency_scores",
    "correlate",
    "expert_category_table",
    "finished",
    "load_study",
    "mean_ci",
    "pareto_front",
    "pareto_mask",
    "pooled_specialization",
    "summarize",
    "welch_difference",
]
