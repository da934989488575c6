"""Statistics of analysis.stats checked against hand-computed values and scikit-learn/scipy."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from analysis.stats import contingency_scores, mean_ci, pareto_mask, row_normalize, welch_difference


def test_mean_ci_three_values():
    result = mean_ci([1.0, 2.0, 3.0])
    # t(0.975, df=2) = 4.302653; half width = 4.302653 * 1 / sqrt(3) = 2.484138.
    assert result.n == 3
    assert result.mean == pytest.approx(2.0)
    assert result.std == pytest.approx(1.0)
    assert result.ci_low == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert result.ci_high == pytest.approx(2.0 + 2.484138, abs=1e-6)


def test_mean_ci_single_value_is_nan():
    result = mean_ci([5.0])
    assert result.mean == 5.0
    assert math.isnan(result.std)
    assert math.isnan(result.ci_low)
    assert math.isnan(result.ci_high)


def test_mean_ci_ignores_nan():
    result = mean_ci([1.0, np.nan, 3.0])
    assert result.n == 2
    assert result.mean == pytest.approx(2.0)


def test_mean_ci_empty():
    result = mean_ci([])
    assert result.n == 0
    assert math.isnan(result.mean)


def test_mean_ci_invalid_confidence():
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


def test_welch_difference_hand_computed():
    result = welch_difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    # se = sqrt(1/3 + 1/3); Welch df = 4; t(0.975, 4) = 2.776445; t = -3.674235.
    half_width = 2.776445 * math.sqrt(2 / 3)
    assert result.difference == pytest.approx(-3.0)
    assert result.ci_low == pytest.approx(-3.0 - half_width, abs=1e-5)
    assert result.ci_high == pytest.approx(-3.0 + half_width, abs=1e-5)
    assert result.p_value == pytest.approx(0.021311, abs=1e-5)


def test_welch_difference_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 1.0, 7)
    b = rng.normal(0.0, 3.0, 4)
    result = welch_difference(a, b)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.ci_low == pytest.approx(interval.low)
    assert result.ci_high == pytest.approx(interval.high)


def test_welch_difference_one_seed_is_nan():
    result = welch_difference([1.0], [2.0, 3.0])
    assert result.difference == pytest.approx(-1.5)
    assert math.isnan(result.ci_low)
    assert math.isnan(result.p_value)


def test_pareto_mask_ties_and_nan():
    recon = [1.0, 2.0, 3.0, 1.0, np.nan, 0.5]
    nmi = [0.5, 0.9, 0.4, 0.5, 1.0, 0.1]
    # (3, 0.4) is dominated by (1, 0.5); the two (1, 0.5) tie; NaN is never on the front.
    assert pareto_mask(recon, nmi).tolist() == [True, True, False, True, False, True]


def test_pareto_mask_shape_mismatch():
    with pytest.raises(ValueError, match="equal length"):
        pareto_mask([1.0, 2.0], [1.0])


def test_contingency_scores_perfect():
    scores = contingency_scores([[10, 0], [0, 10]])
    assert scores["purity"] == pytest.approx(1.0)
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)


def test_contingency_scores_independent():
    scores = contingency_scores([[5, 5], [5, 5]])
    # ARI: (40 - 90 * 90 / 190) / (90 - 90 * 90 / 190) = -0.055556.
    assert scores["purity"] == pytest.approx(0.5)
    assert scores["nmi"] == pytest.approx(0.0, abs=1e-12)
    assert scores["ari"] == pytest.approx(-0.055556, abs=1e-6)


def test_contingency_scores_match_sklearn():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 30, size=(4, 5))
    experts = np.repeat(np.arange(4), counts.sum(axis=1))
    labels = np.concatenate([np.repeat(np.arange(5), row) for row in counts])
    scores = contingency_scores(counts)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, experts))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, experts))


def test_contingency_scores_pooling_differs_from_mean():
    # Seed 1 splits categories perfectly; seed 2 swaps the experts. Pooled over seeds the
    # expert index no longer identifies a category, so pooled purity drops to 0.5.
    seed_1 = np.array([[10, 0], [0, 10]])
    seed_2 = np.array([[0, 10], [10, 0]])
    per_seed = [contingency_scores(seed_1)["purity"], contingency_scores(seed_2)["purity"]]
    assert np.mean(per_seed) == pytest.approx(1.0)
    assert contingency_scores(seed_1 + seed_2)["purity"] == pytest.approx(0.5)


def test_contingency_scores_single_expert():
    scores = contingency_scores([[3, 7]])
    assert scores["purity"] == pytest.approx(0.7)
    assert scores["nmi"] == pytest.approx(0.0)


def test_contingency_scores_rejects_negative():
    with pytest.raises(ValueError, match="non-negative"):
        contingency_scores([[1, -1], [0, 2]])


def test_contingency_scores_rejects_empty():
    with pytest.raises(ValueError, match="at least one"):
        contingency_scores([[0, 0]])


def test_row_normalize_empty_expert():
    table = row_normalize([[1, 3], [0, 0]])
    assert table.tolist() == [[0.25, 0.75], [0.0, 0.0]]
