"""Study tables: summary over seeds, learned against supervised routing, Spearman
correlations, the Pareto front and specialization pooled over seeds.

Each function takes the trials DataFrame of :func:`analysis.load_study` (or several
studies' frames concatenated) and returns a new DataFrame. Only trials whose status is in
``statuses`` enter the statistics, by default the completed ones: early-stopped trials
trained fewer epochs, and failed, diverged or running trials have no final metrics.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis.load import COMPLETED
from analysis.stats import contingency_scores, mean_ci, pareto_mask, welch_difference

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("recon_error", "purity", "nmi", "active_experts")
COMPARISON_METRICS = ("recon_error", "purity", "nmi")
SPECIALIZATION_METRICS = ("purity", "nmi", "ari", "active_experts", "usage_entropy", "routing_confidence")
# Metrics where a lower value is better; for all others higher is better.
LOWER_IS_BETTER = {"recon_error", "recon_error_mu", "kl"}


def check_columns(frame: pd.DataFrame, columns: Sequence[str], name: str = "trials") -> None:
    """Raise ``KeyError`` naming the columns of ``columns`` that ``frame`` lacks."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise KeyError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")


def finished(trials: pd.DataFrame, statuses: Sequence[str] = (COMPLETED,)) -> pd.DataFrame:
    """Return the trials whose status is in ``statuses`` (all rows if there is no status column)."""
    if "status" not in trials:
        return trials
    return trials[trials["status"].isin(list(statuses))]


def summarize(
    trials: pd.DataFrame,
    by: Sequence[str] = ("routing", "num_experts", "data_fraction"),
    metrics: Sequence[str] = SUMMARY_METRICS,
    *,
    statuses: Sequence[str] = (COMPLETED,),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Summarize metrics over the seeds of each group.

    Parameters
    ----------
    trials : DataFrame
        One row per trial.
    by : sequence of str
        Grouping columns. Pass ``("routing", "active_experts", "data_fraction")`` to
        group by the number of experts actually used.
    metrics : sequence of str
        Columns to summarize. Metrics missing from ``trials`` are skipped.

    Returns
    -------
    DataFrame
        One row per group: the ``by`` columns, ``n`` (trials), ``n_seeds`` and for each
        metric ``<metric>_mean``, ``_std``, ``_ci_low`` and ``_ci_high`` (Student t
        interval; NaN with fewer than two values). Trials in one group may differ in
        parameters outside ``by``, for example a searched beta.
    """
    check_columns(trials, by)
    present = [metric for metric in metrics if metric in trials]
    data = finished(trials, statuses)
    rows = []
    for key, group in data.groupby(list(by), sort=True, dropna=False):
        row = dict(zip(by, key))
        row["n"] = len(group)
        row["n_seeds"] = group["seed"].nunique() if "seed" in group else np.nan
        for metric in present:
            result = mean_ci(pd.to_numeric(group[metric], errors="coerce"), confidence)
            row[f"{metric}_mean"] = result.mean
            row[f"{metric}_std"] = result.std
            row[f"{metric}_ci_low"] = result.ci_low
            row[f"{metric}_ci_high"] = result.ci_high
        rows.append(row)
    columns = list(by) + ["n", "n_seeds"] + [
        f"{metric}_{stat}" for metric in present for stat in ("mean", "std", "ci_low", "ci_high")
    ]
    return pd.DataFrame(rows, columns=columns)


def compare_routings(
    trials: pd.DataFrame,
    treatment: str = "learned",
    baseline: str = "supervised",
    by: Sequence[str] = ("data_fraction",),
    metrics: Sequence[str] = COMPARISON_METRICS,
    *,
    statuses: Sequence[str] = (COMPLETED,),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Compare two routings within each group by Welch's t interval on the difference.

    Returns
    -------
    DataFrame
        One row per group and metric, only for groups where both routings have trials.
        Columns: ``n_<treatment>``, ``n_<baseline>``, both means, ``difference``
        (treatment minus baseline), ``ci_low``, ``ci_high``, ``p_value`` and ``better``.
        ``better`` names the routing with the better value (lower recon_error, higher
        purity and nmi) when the interval excludes 0. It is ``"neither"`` when the
        interval contains 0, and ``"n/a"`` when either side has fewer than two trials.
    """
    check_columns(trials, list(by) + ["routing"])
    present = [metric for metric in metrics if metric in trials]
    data = finished(trials, statuses)
    rows = []
    for key, group in data.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        a = group[group["routing"] == treatment]
        b = group[group["routing"] == baseline]
        if a.empty or b.empty:
            continue
        for metric in present:
            result = welch_difference(
                pd.to_numeric(a[metric], errors="coerce"), pd.to_numeric(b[metric], errors="coerce"), confidence
            )
            rows.append({
                **dict(zip(by, key)),
                "metric": metric,
                f"n_{treatment}": result.n_a,
                f"n_{baseline}": result.n_b,
                f"mean_{treatment}": result.mean_a,
                f"mean_{baseline}": result.mean_b,
                "difference": result.difference,
                "ci_low": result.ci_low,
                "ci_high": result.ci_high,
                "p_value": result.p_value,
                "better": _better(metric, result.ci_low, result.ci_high, treatment, baseline),
            })
    columns = list(by) + [
        "metric", f"n_{treatment}", f"n_{baseline}", f"mean_{treatment}", f"mean_{baseline}",
        "difference", "ci_low", "ci_high", "p_value", "better",
    ]
    return pd.DataFrame(rows, columns=columns)


def _better(metric: str, ci_low: float, ci_high: float, treatment: str, baseline: str) -> str:
    if np.isnan(ci_low) or np.isnan(ci_high):
        return "n/a"
    if ci_low <= 0 <= ci_high:
        return "neither"
    treatment_higher = ci_low > 0
    if metric in LOWER_IS_BETTER:
        return baseline if treatment_higher else treatment
    return treatment if treatment_higher else baseline


def correlate(
    trials: pd.DataFrame,
    target: str = "recon_error",
    metrics: Sequence[str] = SPECIALIZATION_METRICS,
    by: str | None = "data_fraction",
    *,
    statuses: Sequence[str] = (COMPLETED,),
) -> pd.DataFrame:
    """Compute the Spearman correlation of each metric with ``target``, per routing.

    Returns
    -------
    DataFrame
        Columns ``routing``, ``by`` (NaN in the rows over all of its values), ``metric``,
        ``n``, ``spearman_rho`` and ``p_value``. Rho and p are NaN with fewer than three
        trials or when either column is constant.
    """
    check_columns(trials, [target] + (["routing"] if "routing" in trials else []))
    present = [metric for metric in metrics if metric in trials and metric != target]
    data = finished(trials, statuses)
    routings = sorted(data["routing"].dropna().unique()) if "routing" in data else [None]
    rows = []
    for routing in routings:
        subset = data if routing is None else data[data["routing"] == routing]
        scopes = [(np.nan, subset)]
        if by is not None and by in subset:
            scopes += [(value, group) for value, group in subset.groupby(by, sort=True)]
        for scope, group in scopes:
            for metric in present:
                rho, p_value, n = _spearman(group[metric], group[target])
                row = {"routing": routing, "metric": metric, "n": n, "spearman_rho": rho, "p_value": p_value}
                if by is not None:
                    row[by] = scope
                rows.append(row)
    columns = ["routing"] + ([by] if by is not None else []) + ["metric", "n", "spearman_rho", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def _spearman(x: pd.Series, y: pd.Series) -> tuple[float, float, int]:
    pair = pd.DataFrame({"x": pd.to_numeric(x, errors="coerce"), "y": pd.to_numeric(y, errors="coerce")}).dropna()
    n = len(pair)
    if n < 3 or pair["x"].nunique() < 2 or pair["y"].nunique() < 2:
        return np.nan, np.nan, n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about ties in small samples
        result = scipy_stats.spearmanr(pair["x"], pair["y"])
    return float(result.statistic), float(result.pvalue), n


def pareto_front(
    trials: pd.DataFrame,
    minimize: str = "recon_error",
    maximize: str = "nmi",
    *,
    statuses: Sequence[str] = (COMPLETED,),
) -> pd.DataFrame:
    """Return the trials that no other trial beats in both ``minimize`` and ``maximize``.

    Rows are sorted by ``minimize``. Trials with equal values in both objectives are all
    kept.
    """
    check_columns(trials, [minimize, maximize])
    data = finished(trials, statuses)
    mask = pareto_mask(pd.to_numeric(data[minimize], errors="coerce"), pd.to_numeric(data[maximize], errors="coerce"))
    return data[mask].sort_values([minimize, maximize], ascending=[True, False], kind="stable").reset_index(drop=True)


def pooled_specialization(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    by: Sequence[str] = ("routing", "num_experts", "data_fraction"),
    *,
    statuses: Sequence[str] = (COMPLETED,),
) -> pd.DataFrame:
    """Score purity, NMI and ARI on the expert x category counts summed over each group.

    Uses each trial's last reported ``counts`` table (from ``epochs``). Pooling is only
    meaningful where expert indices mean the same in every trial, which holds for
    supervised and label routing (expert e is category e) but not for learned routing,
    whose expert order depends on the seed. For learned routing compare the per-trial
    means of :func:`summarize` instead.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``n`` (trials pooled), ``images`` and ``pooled_purity``,
        ``pooled_nmi``, ``pooled_ari``.
    """
    check_columns(trials, list(by) + ["trial_id"])
    check_columns(epochs, ["trial_id", "epoch", "counts"], name="epochs")
    data = finished(trials, statuses)
    last = epochs.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")["counts"]
    rows = []
    for key, group in data.groupby(list(by), sort=True, dropna=False):
        tables = [np.asarray(last[trial_id], dtype=float) for trial_id in group["trial_id"] if trial_id in last.index]
        tables = [table for table in tables if table.ndim == 2]
        shapes = {table.shape for table in tables}
        if not tables or len(shapes) != 1:
            if len(shapes) > 1:
                logger.warning("not pooling group %s: counts tables differ in shape %s", key, sorted(shapes))
            continue
        pooled = np.sum(tables, axis=0)
        scores = contingency_scores(pooled)
        rows.append({
            **dict(zip(by, key)), "n": len(tables), "images": int(pooled.sum()),
            "pooled_purity": scores["purity"], "pooled_nmi": scores["nmi"], "pooled_ari": scores["ari"],
        })
    return pd.DataFrame(rows, columns=list(by) + ["n", "images", "pooled_purity", "pooled_nmi", "pooled_ari"])


def expert_category_table(assignments: pd.DataFrame, categories: Sequence[str], num_experts: int | None = None,
                          normalize: bool = True) -> pd.DataFrame:
    """Cross-tabulate test images by expert (rows) and true category (columns).

    Parameters
    ----------
    assignments : DataFrame
        Columns ``label`` (category index) and ``expert``, one row per test image, as in a
        trial's assignments.csv.
    categories : sequence of str
        Category names in label order.
    num_experts : int, optional
        Number of rows; experts that received no image get a row of zeros.
    normalize : bool, default True
        Divide each row by its total, giving each expert's category mix.
    """
    check_columns(assignments, ["label", "expert"], name="assignments")
    labels = assignments["label"].to_numpy(dtype=int)
    experts = assignments["expert"].to_numpy(dtype=int)
    if len(labels) and (labels.min() < 0 or labels.max() >= len(categories)):
        raise ValueError(f"assignments label values must lie in [0, {len(categories)}), got {sorted(set(labels))}")
    rows = max(int(experts.max()) + 1 if len(experts) else 0, num_experts or 0)
    table = np.zeros((rows, len(categories)))
    np.add.at(table, (experts, labels), 1)
    if normalize:
        totals = table.sum(axis=1, keepdims=True)
        table = np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)
    frame = pd.DataFrame(table, columns=list(categories))
    frame.index.name = "expert"
    return frame
