"""Specialization metrics: how well hard-gated expert assignments match the true categories.

All functions are pure and take 1-D integer arrays (numpy arrays, torch tensors or lists):
labels are category indices in [0, C), experts are expert indices in [0, E). Every public
function validates its inputs through one helper, `check_assignments`, whose errors name the
argument and show the bad value, in the manner of scikit-learn's metrics/cluster/_supervised.py.

purity, nmi and ari are computed from the expert x category contingency table, so they can
also be recomputed from stored count tables with `scores_from_contingency`. nmi uses
arithmetic normalization and ari is the Hubert-Arabie adjusted Rand index, both as in
scikit-learn (sklearn.metrics.normalized_mutual_info_score, adjusted_rand_score).
"""

from __future__ import annotations

import numpy as np
import torch

USAGE_THRESHOLD = 0.01  # an expert is active when it receives at least 1 % of the images


def check_assignments(
    labels,
    experts,
    num_categories: int | None = None,
    num_experts: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and experts and return them as 1-D int64 numpy arrays.

    Raises
    ------
    ValueError
        If either is not a non-empty 1-D integer array, their lengths differ, or a value lies
        outside [0, num_categories) or [0, num_experts).
    """
    labels = _as_index_array(labels, "labels", num_categories, "num_categories")
    experts = _as_index_array(experts, "experts", num_experts, "num_experts")
    if labels.shape[0] != experts.shape[0]:
        raise ValueError(
            f"labels and experts must have the same length, got {labels.shape[0]} and {experts.shape[0]}"
        )
    return labels, experts


def _as_index_array(values, name: str, upper: int | None, upper_name: str) -> np.ndarray:
    array = _to_numpy(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} must not be empty")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must contain integer indices, got dtype {array.dtype}")
    if upper is not None and (isinstance(upper, bool) or not isinstance(upper, (int, np.integer)) or upper < 1):
        raise ValueError(f"{upper_name} must be an int >= 1, got {upper!r}")

    low = array.min()
    if low < 0:
        raise ValueError(f"{name} must be >= 0, got {low}")
    high = array.max()
    if upper is not None and high >= upper:
        raise ValueError(f"{name} must be < {upper_name} = {upper}, got {high}")
    return array.astype(np.int64, copy=False)


def _to_numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def contingency(labels, experts, num_categories: int | None = None, num_experts: int | None = None) -> np.ndarray:
    """Count images per expert and category.

    Returns
    -------
    ndarray (E, C) int64
        Entry [e, c] is the number of images of category c routed to expert e. E and C default
        to one more than the largest index present.
    """
    labels, experts = check_assignments(labels, experts, num_categories, num_experts)
    num_categories = num_categories or int(labels.max()) + 1
    num_experts = num_experts or int(experts.max()) + 1
    flat = np.bincount(experts * num_categories + labels, minlength=num_experts * num_categories)
    return flat.reshape(num_experts, num_categories)


def check_contingency(table) -> np.ndarray:
    """Validate an (E, C) table of non-negative integer counts with a positive total."""
    table = _to_numpy(table)
    if table.ndim != 2:
        raise ValueError(f"table must be a 2-D array (experts x categories), got shape {table.shape}")
    if table.dtype == bool or not np.issubdtype(table.dtype, np.number):
        raise ValueError(f"table must contain counts, got dtype {table.dtype}")
    if not np.all(np.isfinite(table)) or np.any(table < 0) or np.any(table != np.round(table)):
        raise ValueError(f"table must contain non-negative integer counts, got {table.tolist()}")
    if table.sum() == 0:
        raise ValueError("table must contain at least one count, got all zeros")
    return table.astype(np.int64)


def scores_from_contingency(table) -> dict[str, float]:
    """Compute purity, nmi and ari from an (E, C) count table (rows experts, columns categories)."""
    table = check_contingency(table)
    return {"purity": _purity(table), "nmi": _nmi(table), "ari": _ari(table)}


def purity(labels, experts) -> float:
    """Return sum_e max_c n(e, c) / N: the accuracy of labelling each expert with its majority category."""
    return _purity(contingency(labels, experts))


def nmi(labels, experts) -> float:
    """Return the normalized mutual information between labels and experts (arithmetic mean of the entropies)."""
    return _nmi(contingency(labels, experts))


def ari(labels, experts) -> float:
    """Return the adjusted Rand index between labels and experts (1 for identical partitions, about 0 for chance)."""
    return _ari(contingency(labels, experts))


def _purity(table: np.ndarray) -> float:
    return float(table.max(axis=1).sum() / table.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _nmi(table: np.ndarray) -> float:
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]  # drop unused experts and absent categories
    num_experts, num_categories = table.shape

    # A single cluster against a single class is a perfect match, as in scikit-learn.
    if num_experts == num_categories == 1:
        return 1.0

    n = table.sum()
    row, col = table.sum(axis=1), table.sum(axis=0)
    nonzero = table > 0
    joint = table[nonzero] / n
    outer = np.outer(row, col)[nonzero] / n**2
    mutual_info = float(np.sum(joint * np.log(joint / outer)))
    normalizer = 0.5 * (_entropy(row) + _entropy(col))
    if mutual_info <= 0.0 or normalizer == 0.0:
        return 0.0
    return float(min(mutual_info / normalizer, 1.0))


def _ari(table: np.ndarray) -> float:
    n = int(table.sum())

    def pairs(counts):
        counts = np.asarray(counts, dtype=np.float64)
        return float(np.sum(counts * (counts - 1) / 2))

    total_pairs = n * (n - 1) / 2
    index = pairs(table)
    row_pairs, col_pairs = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    if total_pairs == 0:
        return 1.0
    expected = row_pairs * col_pairs / total_pairs
    maximum = 0.5 * (row_pairs + col_pairs)

    # Identical trivial partitions (all in one group, or all singletons): a perfect match.
    if maximum == expected:
        return 1.0
    return float((index - expected) / (maximum - expected))


def expert_usage(experts, num_experts: int) -> np.ndarray:
    """Return the fraction of images routed to each expert, shape (E,), summing to 1."""
    experts = _as_index_array(experts, "experts", num_experts, "num_experts")
    return np.bincount(experts, minlength=num_experts) / experts.shape[0]


def _check_usage(usage) -> np.ndarray:
    usage = _to_numpy(usage).astype(np.float64)
    if usage.ndim != 1 or usage.shape[0] == 0:
        raise ValueError(f"usage must be a non-empty 1-D array, got shape {usage.shape}")
    if not np.all(np.isfinite(usage)) or np.any(usage < 0) or not np.isclose(usage.sum(), 1.0, atol=1e-6):
        raise ValueError(f"usage must contain non-negative fractions summing to 1, got {usage.tolist()}")
    return usage


def active_experts(usage, threshold: float = USAGE_THRESHOLD) -> int:
    """Count experts whose usage fraction is at least threshold."""
    usage = _check_usage(usage)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")
    return int(np.sum(usage >= threshold))


def usage_entropy(usage) -> float:
    """Return the entropy of the expert usage distribution in nats (log E when all experts are used equally)."""
    usage = _check_usage(usage)
    used = usage[usage > 0]
    return float(-(used * np.log(used)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def routing_confidence(gate_probs) -> float:
    """Return the mean over images of the largest gate probability."""
    probs = _to_numpy(gate_probs).astype(np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"gate_probs must be a non-empty 2-D array (images x experts), got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or np.any(probs > 1):
        bad = probs[~np.isfinite(probs) | (probs < 0) | (probs > 1)][0]
        raise ValueError(f"gate_probs must contain probabilities in [0, 1], got {bad}")
    return float(probs.max(axis=1).mean())


def specialization_metrics(labels, experts, gate_probs, num_experts: int, num_categories: int) -> dict:
    """Compute every specialization metric of one hard-gated evaluation.

    Returns
    -------
    dict
        purity, nmi, ari, active_experts, usage_entropy, routing_confidence (floats and ints),
        expert_usage (list of E floats) and counts (E x C nested list of ints).
    """
    labels, experts = check_assignments(labels, experts, num_categories, num_experts)
    probs = _to_numpy(gate_probs)
    if probs.ndim != 2 or probs.shape != (labels.shape[0], num_experts):
        raise ValueError(f"gate_probs must have shape ({labels.shape[0]}, {num_experts}), got {probs.shape}")

    table = contingency(labels, experts, num_categories, num_experts)
    usage = table.sum(axis=1) / table.sum()
    return {
        **scores_from_contingency(table),
        "active_experts": active_experts(usage),
        "usage_entropy": usage_entropy(usage),
        "routing_confidence": routing_confidence(probs),
        "expert_usage": usage.tolist(),
        "counts": table.tolist(),
    }
