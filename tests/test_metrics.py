"""Specialization metrics against hand-made count tables, with scikit-learn as a cross-check."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from smoe import metrics


def expand(table):
    """Labels and experts arrays whose contingency table (experts x categories) is table."""
    labels, experts = [], []
    for e, row in enumerate(table):
        for c, count in enumerate(row):
            labels += [c] * count
            experts += [e] * count
    return np.array(labels), np.array(experts)


def entropy(*probs):
    return -sum(p * math.log(p) for p in probs if p > 0)


# Table [[3, 1], [0, 4]]: N = 8, expert totals 4, 4, category totals 3, 5.
SMALL = [[3, 1], [0, 4]]
SMALL_MI = 3 / 8 * math.log(2) + 1 / 8 * math.log(2 / 5) + 1 / 2 * math.log(8 / 5)
SMALL_NMI = SMALL_MI / (0.5 * (entropy(1 / 2, 1 / 2) + entropy(3 / 8, 5 / 8)))
# Pairs within cells 3 + 6 = 9, expected 12 * 13 / 28, maximum (12 + 13) / 2.
SMALL_ARI = 48 / 97

HAND_TABLES = [
    # table, purity, nmi, ari
    ([[10, 0], [0, 10]], 1.0, 1.0, 1.0),
    ([[0, 7, 0], [5, 0, 0], [0, 0, 3]], 1.0, 1.0, 1.0),
    ([[5, 5], [5, 5]], 0.5, 0.0, -1 / 18),
    ([[4, 4, 4]], 4 / 12, 0.0, 0.0),
    (SMALL, 7 / 8, SMALL_NMI, SMALL_ARI),
]


@pytest.mark.parametrize("table, expected_purity, expected_nmi, expected_ari", HAND_TABLES)
def test_hand_tables(table, expected_purity, expected_nmi, expected_ari):
    labels, experts = expand(table)
    assert metrics.purity(labels, experts) == pytest.approx(expected_purity, abs=1e-12)
    assert metrics.nmi(labels, experts) == pytest.approx(expected_nmi, abs=1e-12)
    assert metrics.ari(labels, experts) == pytest.approx(expected_ari, abs=1e-12)


@pytest.mark.parametrize("table, expected_purity, expected_nmi, expected_ari", HAND_TABLES)
def test_scores_from_contingency(table, expected_purity, expected_nmi, expected_ari):
    scores = metrics.scores_from_contingency(table)
    assert scores["purity"] == pytest.approx(expected_purity, abs=1e-12)
    assert scores["nmi"] == pytest.approx(expected_nmi, abs=1e-12)
    assert scores["ari"] == pytest.approx(expected_ari, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(2, 200))
    labels = rng.integers(0, 5, size)
    experts = rng.integers(0, 1 + seed * 3, size)
    assert metrics.nmi(labels, experts) == pytest.approx(normalized_mutual_info_score(labels, experts), abs=1e-12)
    assert metrics.ari(labels, experts) == pytest.approx(adjusted_rand_score(labels, experts), abs=1e-12)


def test_single_cluster_single_class():
    assert metrics.nmi([2, 2, 2], [0, 0, 0]) == 1.0
    assert metrics.ari([2, 2, 2], [0, 0, 0]) == 1.0
    assert metrics.ari([1], [0]) == 1.0


def test_contingency_counts():
    labels, experts = expand(SMALL)
    table = metrics.contingency(labels, experts, num_categories=3, num_experts=4)
    assert table.tolist() == [[3, 1, 0], [0, 4, 0], [0, 0, 0], [0, 0, 0]]


def test_accepts_tensors_and_lists():
    assert metrics.purity(torch.tensor([0, 1, 1]), [1, 0, 0]) == 1.0


@pytest.mark.parametrize(
    "labels, experts, message",
    [
        ([0, 1], [0], "labels and experts must have the same length, got 2 and 1"),
        ([[0, 1]], [0, 1], r"labels must be a 1-D array, got shape \(1, 2\)"),
        ([0.0, 1.0], [0, 1], "labels must contain integer indices, got dtype float64"),
        ([0, 1], [True, False], "experts must contain integer indices, got dtype bool"),
        ([0, -1], [0, 1], "labels must be >= 0, got -1"),
        ([], [], "labels must not be empty"),
    ],
)
def test_check_assignments_rejects(labels, experts, message):
    with pytest.raises(ValueError, match=message):
        metrics.purity(labels, experts)


def test_contingency_rejects_out_of_range():
    with pytest.raises(ValueError, match="experts must be < num_experts = 2, got 3"):
        metrics.contingency([0, 1], [0, 3], num_categories=2, num_experts=2)


@pytest.mark.parametrize(
    "table, message",
    [
        ([1, 2], r"table must be a 2-D array .*got shape \(2,\)"),
        ([[1, -1]], "non-negative integer counts"),
        ([[0.5, 1]], "non-negative integer counts"),
        ([[0, 0]], "at least one count"),
    ],
)
def test_check_contingency_rejects(table, message):
    with pytest.raises(ValueError, match=message):
        metrics.scores_from_contingency(table)


def test_expert_usage_fractions():
    usage = metrics.expert_usage([0, 0, 2, 0], num_experts=4)
    assert usage.tolist() == [0.75, 0.0, 0.25, 0.0]


def test_active_experts_threshold():
    usage = [0.01, 0.009, 0.981, 0.0]
    assert metrics.active_experts(usage) == 2
    assert metrics.active_experts(usage, threshold=0.5) == 1


def test_usage_entropy():
    assert metrics.usage_entropy([0.25] * 4) == pytest.approx(math.log(4))
    assert metrics.usage_entropy([1.0, 0.0]) == 0.0


def test_usage_rejects_non_distribution():
    with pytest.raises(ValueError, match=r"usage must contain non-negative fractions summing to 1, got \[0.5, 0.6\]"):
        metrics.usage_entropy([0.5, 0.6])


def test_routing_confidence():
    probs = np.array([[0.9, 0.1], [0.4, 0.6]])
    assert metrics.routing_confidence(probs) == pytest.approx(0.75)


def test_routing_confidence_rejects():
    with pytest.raises(ValueError, match="gate_probs must contain probabilities in \\[0, 1\\], got 1.5"):
        metrics.routing_confidence([[1.5, -0.5]])


def test_specialization_metrics():
    labels, experts = expand(SMALL)
    probs = np.full((len(labels), 3), 1 / 3)
    result = metrics.specialization_metrics(labels, experts, probs, num_experts=3, num_categories=2)
    assert result["purity"] == pytest.approx(7 / 8)
    assert result["nmi"] == pytest.approx(SMALL_NMI)
    assert result["ari"] == pytest.approx(SMALL_ARI)
    assert result["counts"] == [[3, 1], [0, 4], [0, 0]]
    assert result["expert_usage"] == [0.5, 0.5, 0.0]
    assert result["active_experts"] == 2
    assert result["usage_entropy"] == pytest.approx(math.log(2))
    assert result["routing_confidence"] == pytest.approx(1 / 3)


def test_specialization_metrics_rejects_probs_shape():
    with pytest.raises(ValueError, match=r"gate_probs must have shape \(2, 3\), got \(2, 2\)"):
        metrics.specialization_metrics([0, 1], [0, 1], np.eye(2), num_experts=3, num_categories=2)
