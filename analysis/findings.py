"""Findings of a study written out as sentences with numbers, and notes on its trials.

Each function returns plain-text sentences, which the report escapes and lists. Where a
statistic cannot be computed (one routing missing, a single seed), the sentence names
what is missing instead of printing NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.load import COMPLETED, DIVERGED, EARLY_STOPPED, ERROR, PAUSED, PENDING, RUNNING, UNKNOWN
from analysis.tables import LOWER_IS_BETTER


def format_number(value, digits: int = 4) -> str:
    """Format a number with ``digits`` significant digits, or "n/a" for None and NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}g}"


def format_fraction(fraction: float) -> str:
    """Format a data fraction as a percentage ("100 %", "5 %")."""
    return f"{float(fraction) * 100:.4g} %"


def trial_notes(trials: pd.DataFrame) -> list[str]:
    """Describe the trials that the statistics leave out, and why."""
    notes = []
    if trials.empty:
        return ["The study has no trials yet."]
    status = trials["status"]
    counts = status.value_counts()
    summary = ", ".join(f"{counts[name]} {name}" for name in counts.index)
    notes.append(f"{len(trials)} trials: {summary}. Statistics use the {counts.get(COMPLETED, 0)} completed trials.")

    def ids(name: str) -> str:
        chosen = trials.loc[status == name, "trial_id"].astype(str).tolist()
        listed = ", ".join(chosen[:8])
        return listed + (f" and {len(chosen) - 8} more" if len(chosen) > 8 else "")

    if counts.get(EARLY_STOPPED, 0):
        notes.append(f"Early-stopped trials ({ids(EARLY_STOPPED)}) trained fewer epochs than configured and are "
                     "left out of the statistics; their curves are dashed in the per-epoch figure.")
    if counts.get(DIVERGED, 0):
        notes.append(f"Diverged trials ({ids(DIVERGED)}) hit a NaN or infinite loss; their metrics are those of "
                     "the last good epoch and are left out of the statistics.")
    if counts.get(ERROR, 0):
        errors = trials.loc[status == ERROR, ["trial_id", "error"]]
        first = errors.iloc[0]
        notes.append(f"Failed trials ({ids(ERROR)}) raised an error and are left out; trial {first['trial_id']}: "
                     f"{first['error'] if isinstance(first['error'], str) else 'no error.txt'}.")
    unfinished = [name for name in (RUNNING, PENDING, PAUSED) if counts.get(name, 0)]
    if unfinished:
        listed = "; ".join(f"{name}: {ids(name)}" for name in unfinished)
        notes.append(f"The study is still running ({listed}). Run the report again when it finishes.")
    if counts.get(UNKNOWN, 0):
        notes.append(f"Trials {ids(UNKNOWN)} stopped before their last epoch and the study folder has no Ray "
                     "state that says why; they are left out of the statistics.")
    return notes


def comparison_findings(comparison: pd.DataFrame, trials: pd.DataFrame,
                        treatment: str = "learned", baseline: str = "supervised") -> list[str]:
    """State, per data fraction, how the treatment routing compares with the baseline."""
    completed = trials[trials["status"] == COMPLETED] if "status" in trials else trials
    routings = set(completed["routing"].dropna()) if "routing" in completed else set()
    missing = [name for name in (treatment, baseline) if name not in routings]
    if missing:
        return [f"No comparison of {treatment} with {baseline} routing: the study has no completed "
                f"{' or '.join(missing)} trials."]
    if comparison.empty:
        return [f"No comparison of {treatment} with {baseline} routing: the two never share a data fraction."]

    sentences = []
    if "num_experts" in completed and "num_experts" not in comparison:
        counts = {name: sorted(completed.loc[completed["routing"] == name, "num_experts"].dropna().unique())
                  for name in (treatment, baseline)}
        if any(len(values) > 1 for values in counts.values()):
            listed = "; ".join(f"{name}: {', '.join(str(int(v)) for v in values)}" for name, values in counts.items())
            sentences.append(f"Each comparison pools a routing's completed trials at one data fraction over their "
                             f"expert counts ({listed}).")
    for fraction, group in comparison.groupby("data_fraction", sort=False):
        for _, row in group.iterrows():
            sentences.append(_comparison_sentence(row, fraction, treatment, baseline))
    return sentences


def _comparison_sentence(row: pd.Series, fraction: float, treatment: str, baseline: str) -> str:
    metric = row["metric"]
    difference = row["difference"]
    counts = f"n = {row[f'n_{treatment}']} vs {row[f'n_{baseline}']}"
    means = (f"{treatment} {format_number(row[f'mean_{treatment}'])}, "
             f"{baseline} {format_number(row[f'mean_{baseline}'])}")
    where = f"at {format_fraction(fraction)} of the data"
    if not math.isfinite(row["ci_low"]):
        return (f"{metric} {where}: {means} (difference {format_number(difference)}; "
                f"CI n/a, it needs at least two trials per routing, {counts}).")

    half_width = (row["ci_high"] - row["ci_low"]) / 2
    better = row["better"]
    p_value = f"p = {format_number(row['p_value'], 2)}" if math.isfinite(row["p_value"]) else "p n/a"
    if better == "neither":
        return (f"{metric} {where}: no clear difference, {treatment} minus {baseline} = "
                f"{format_number(difference)} ± {format_number(half_width, 2)} (95 % CI, {p_value}, {counts}).")
    winner, loser = (treatment, baseline) if better == treatment else (baseline, treatment)
    direction = "lower" if metric in LOWER_IS_BETTER else "higher"
    return (f"{winner} routing beats {loser} by {format_number(abs(difference))} ± "
            f"{format_number(half_width, 2)} in {metric} ({direction} is better) {where} "
            f"({means}; 95 % Welch CI, {p_value}, {counts}).")


def collapse_finding(trials: pd.DataFrame, routing: str = "learned") -> list[str]:
    """Count the finished trials of ``routing`` whose test images all went to one expert.

    Such a trial has purity equal to the largest category's share and NMI 0 whatever its
    hyperparameters, so it carries no information about specialization and flattens the correlations.
    """
    if "active_experts" not in trials or "routing" not in trials:
        return []
    finished = trials[trials["status"].isin([COMPLETED, EARLY_STOPPED]) & (trials["routing"] == routing)]
    finished = finished[finished["num_experts"] > 1] if "num_experts" in finished else finished
    finished = finished.dropna(subset=["active_experts"])
    if finished.empty:
        return []
    collapsed = int((finished["active_experts"] <= 1).sum())
    if collapsed == 0:
        return [f"Every finished {routing}-routing trial with more than one expert used at least two experts "
                "on the test split."]
    return [f"{collapsed} of {len(finished)} finished {routing}-routing trials with more than one expert sent "
            "every test image to a single expert (active_experts 1): the gate collapsed, so their purity "
            "and nmi measure no specialization. A larger lambda_balance, or longer training, keeps more "
            "experts in use."]


def best_trial_finding(best: pd.Series | None) -> list[str]:
    """Describe the trial that the report inspects (see ``checkpoints.choose_best_trial``)."""
    if best is None:
        return ["No completed trial with a checkpoint yet, so there is no trial to inspect."]
    parts = [f"{name} {format_number(best.get(name))}" for name in ("recon_error", "purity", "nmi", "ari")
             if name in best]
    setting = ", ".join(f"{name} {format_number(best.get(name)) if not isinstance(best.get(name), str) else best.get(name)}"
                        for name in ("routing", "num_experts", "data_fraction", "beta", "seed") if name in best)
    active = format_number(best.get("active_experts")) if "active_experts" in best else "n/a"
    return [f"Inspected trial {best['trial_id']} ({setting}): {', '.join(parts)}, active experts {active}."]


def pareto_finding(front: pd.DataFrame) -> list[str]:
    """Describe the recon_error x nmi Pareto front."""
    if front.empty:
        return ["No completed trials, so no Pareto front."]
    first, last = front.iloc[0], front.iloc[-1]
    if len(front) == 1:
        return [f"One trial ({first['trial_id']}) has both the lowest recon_error and the highest nmi: "
                f"recon_error {format_number(first['recon_error'])}, nmi {format_number(first['nmi'])}."]
    return [f"{len(front)} trials form the recon_error x nmi Pareto front, from recon_error "
            f"{format_number(first['recon_error'])} at nmi {format_number(first['nmi'])} to recon_error "
            f"{format_number(last['recon_error'])} at nmi {format_number(last['nmi'])}."]


def correlation_findings(correlations: pd.DataFrame, routing: str = "learned") -> list[str]:
    """State the overall Spearman correlation of nmi and purity with recon_error."""
    if correlations.empty or "routing" not in correlations:
        return []
    rows = correlations[(correlations["routing"] == routing) & correlations["data_fraction"].isna()]
    sentences = []
    for metric in ("nmi", "purity"):
        row = rows[rows["metric"] == metric]
        if row.empty:
            continue
        row = row.iloc[0]
        if not math.isfinite(row["spearman_rho"]):
            sentences.append(f"Spearman correlation of {metric} with recon_error over {routing} trials: n/a "
                             f"(n = {row['n']}; it needs at least 3 trials and varying values).")
            continue
        sentences.append(f"Over {routing} trials, {metric} and recon_error have Spearman rho = "
                         f"{format_number(row['spearman_rho'], 3)} (p = {format_number(row['p_value'], 2)}, "
                         f"n = {row['n']}).")
    return sentences


def pooled_parameter_note(trials: pd.DataFrame, by, ignored=("seed",)) -> list[str]:
    """Warn when summary groups pool trials that differ in a parameter outside ``by``."""
    completed = trials[trials["status"] == COMPLETED] if "status" in trials else trials
    candidates = ("beta", "lambda_balance", "lambda_entropy", "lr", "batch_size", "epochs", "per_category")
    varying = []
    for name in candidates:
        if name in by or name in ignored or name not in completed:
            continue
        groups = completed.groupby(list(by), dropna=False)[name].nunique(dropna=False)
        if (groups > 1).any():
            varying.append(name)
    if not varying:
        return []
    return [f"Summary groups ({' x '.join(by)}) pool trials that differ in {', '.join(varying)}, so their "
            "intervals describe the spread over those parameters as well as over seeds."]
