"""Statistics behind the study tables: confidence intervals, Welch's test, Pareto fronts
and specialization scores computed from an expert x category contingency table.

References: Welch (1947) for the unequal-variance t interval; the adjusted Rand index of
Hubert and Arabie (1985); NMI with the arithmetic-mean normalization, as in
``sklearn.metrics.normalized_mutual_info_score``.

All functions take plain numpy arrays. Too few values for an interval give NaN, which
the report prints as "n/a".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats
from scipy.special import comb


@dataclass(frozen=True)
class MeanCI:
    """Mean of a sample with its standard deviation and a t confidence interval."""

    n: int
    mean: float
    std: float       # sample standard deviation (ddof=1), NaN when n < 2
    ci_low: float    # NaN when n < 2
    ci_high: float


@dataclass(frozen=True)
class DifferenceCI:
    """Difference of two means (a - b) with Welch's t confidence interval and p-value."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float    # NaN unless both samples have at least 2 values
    ci_high: float
    p_value: float


def _as_finite_1d(values, name: str) -> np.ndarray:
    """Return ``values`` as a float vector with NaN and inf removed."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array[np.isfinite(array)]


def mean_ci(values, confidence: float = 0.95) -> MeanCI:
    """Compute the mean and a Student t confidence interval, ignoring NaN values.

    Parameters
    ----------
    values : array-like of shape (n,)
        One value per seed (or per trial).
    confidence : float, default 0.95
        Coverage of the interval.

    Returns
    -------
    MeanCI
        ``std``, ``ci_low`` and ``ci_high`` are NaN when fewer than two values remain,
        and the mean is NaN when none remain.
    """
    _check_confidence(confidence)
    x = _as_finite_1d(values, "values")
    n = len(x)
    if n == 0:
        return MeanCI(0, np.nan, np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if n < 2:
        return MeanCI(n, mean, np.nan, np.nan, np.nan)

    std = float(x.std(ddof=1))
    half_width = scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / np.sqrt(n)
    return MeanCI(n, mean, std, mean - half_width, mean + half_width)


def welch_difference(a, b, confidence: float = 0.95) -> DifferenceCI:
    """Compare two independent samples by Welch's unequal-variance t interval.

    Parameters
    ----------
    a, b : array-like
        The two samples, for example learned and supervised routing at one data fraction.
        NaN values are ignored.
    confidence : float, default 0.95
        Coverage of the interval on ``mean(a) - mean(b)``.

    Returns
    -------
    DifferenceCI
        The interval and two-sided p-value are NaN unless both samples have at least two
        values. When both samples have zero variance the interval collapses to the
        difference and the p-value is NaN.
    """
    _check_confidence(confidence)
    x = _as_finite_1d(a, "a")
    y = _as_finite_1d(b, "b")
    n_a, n_b = len(x), len(y)
    mean_a = float(x.mean()) if n_a else np.nan
    mean_b = float(y.mean()) if n_b else np.nan
    difference = mean_a - mean_b
    if n_a < 2 or n_b < 2:
        return DifferenceCI(n_a, n_b, mean_a, mean_b, difference, np.nan, np.nan, np.nan)

    var_a = x.var(ddof=1) / n_a
    var_b = y.var(ddof=1) / n_b
    standard_error = np.sqrt(var_a + var_b)
    if standard_error == 0:
        return DifferenceCI(n_a, n_b, mean_a, mean_b, difference, difference, difference, np.nan)

    # Welch-Satterthwaite degrees of freedom.
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    half_width = scipy_stats.t.ppf(0.5 + confidence / 2, df=df) * standard_error
    t_statistic = difference / standard_error
    p_value = float(2 * scipy_stats.t.sf(abs(t_statistic), df=df))
    return DifferenceCI(
        n_a, n_b, mean_a, mean_b, difference,
        difference - half_width, difference + half_width, p_value,
    )


def pareto_mask(minimize, maximize) -> np.ndarray:
    """Mark the points that no other point dominates.

    A point dominates another when it is at least as good in both objectives and strictly
    better in one. Identical points do not dominate each other, so ties stay on the front.
    Points with a NaN objective are never on the front.

    Parameters
    ----------
    minimize : array-like of shape (n,)
        Objective to minimize, for example recon_error.
    maximize : array-like of shape (n,)
        Objective to maximize, for example nmi.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    low = np.asarray(minimize, dtype=float)
    high = np.asarray(maximize, dtype=float)
    if low.shape != high.shape or low.ndim != 1:
        raise ValueError(
            f"minimize and maximize must be vectors of equal length, got shapes {low.shape} and {high.shape}"
        )
    valid = np.isfinite(low) & np.isfinite(high)
    mask = valid.copy()
    for i in np.flatnonzero(valid):
        no_worse = valid & (low <= low[i]) & (high >= high[i])
        strictly_better = (low < low[i]) | (high > high[i])
        if np.any(no_worse & strictly_better):
            mask[i] = False
    return mask


def check_contingency(counts) -> np.ndarray:
    """Validate an expert x category count table and return it as a float array.

    Raises ``ValueError`` naming the problem when the table is not two-dimensional,
    contains negative or non-finite counts, or is empty.
    """
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2:
        raise ValueError(f"counts must be a 2-D experts x categories table, got shape {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError(f"counts must be finite and non-negative, got {table.tolist()}")
    if table.sum() == 0:
        raise ValueError(f"counts must contain at least one assignment, got {table.tolist()}")
    return table


def _entropy(probabilities: np.ndarray) -> float:
    p = probabilities[probabilities > 0]
    return float(-(p * np.log(p)).sum())


def contingency_scores(counts) -> dict[str, float]:
    """Compute purity, NMI and ARI from an expert x category contingency table.

    ``counts[e, c]`` is the number of test images of category ``c`` that expert ``e``
    reconstructs, as in the ``counts`` metric a trial reports. Summing the tables of
    several seeds before scoring gives the pooled scores, which differ from the mean of
    per-seed scores (see :func:`mean_ci` for that).

    Returns
    -------
    dict
        ``purity``: share of images whose expert's majority category is their own.
        ``nmi``: mutual information over the arithmetic mean of both entropies (1.0 when
        experts and categories each have a single value, as in scikit-learn).
        ``ari``: adjusted Rand index.
    """
    table = check_contingency(counts)
    total = table.sum()

    purity = float(table.max(axis=1).sum() / total)

    joint = table / total
    expert_marginal = joint.sum(axis=1)
    category_marginal = joint.sum(axis=0)
    h_experts = _entropy(expert_marginal)
    h_categories = _entropy(category_marginal)
    nonzero = joint > 0
    outer = np.outer(expert_marginal, category_marginal)
    mutual_information = float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())
    if h_experts == 0 and h_categories == 0:
        nmi = 1.0
    elif h_experts == 0 or h_categories == 0:
        nmi = 0.0
    else:
        nmi = mutual_information / ((h_experts + h_categories) / 2)

    pairs_within = comb(table, 2).sum()
    pairs_experts = comb(table.sum(axis=1), 2).sum()
    pairs_categories = comb(table.sum(axis=0), 2).sum()
    pairs_total = comb(total, 2)
    expected = pairs_experts * pairs_categories / pairs_total if pairs_total else 0.0
    maximum = (pairs_experts + pairs_categories) / 2
    ari = 1.0 if maximum == expected else float((pairs_within - expected) / (maximum - expected))

    return {"purity": purity, "nmi": float(min(max(nmi, 0.0), 1.0)), "ari": ari}


def row_normalize(counts) -> np.ndarray:
    """Divide each expert's row by its total, so each row is that expert's category mix.

    Experts that received no images get a row of zeros.
    """
    table = np.asarray(counts, dtype=float)
    totals = table.sum(axis=1, keepdims=True)
    return np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
