"""Study figures with matplotlib: each function returns a Figure and draws nothing else.

The report saves them as PNG (embedded in report.html) and SVG. Data fractions get
colours from one viridis scale in every figure, and routings get markers (circle learned,
square supervised, triangle label).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display: figures are only saved to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from analysis.load import COMPLETED, DIVERGED, EARLY_STOPPED  # noqa: E402
from analysis.stats import mean_ci, pareto_mask  # noqa: E402
from analysis.tables import finished  # noqa: E402

ROUTING_MARKERS = {"learned": "o", "supervised": "s", "label": "^"}
BASELINE_STYLES = {"supervised": "--", "label": ":"}


def fraction_colors(fractions) -> dict[float, tuple]:
    """Map each data fraction to a colour, smallest fraction darkest."""
    values = sorted({float(value) for value in fractions if pd.notna(value)})
    cmap = plt.get_cmap("viridis")
    if len(values) == 1:
        return {values[0]: cmap(0.35)}
    return {value: cmap(0.9 * i / (len(values) - 1)) for i, value in enumerate(values)}


def _fraction_label(fraction: float) -> str:
    return f"{fraction:.0%} of data" if fraction >= 0.01 else f"{fraction:.2%} of data"


def _empty_figure(message: str, size=(6, 3)) -> Figure:
    figure, ax = plt.subplots(figsize=size)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return figure


def plot_recon_vs_active_experts(trials: pd.DataFrame) -> Figure:
    """Plot test recon_error against active experts, one line per data fraction.

    Lines are learned-routing trials: the mean over trials with the same number of active
    experts, with 95 % t intervals as error bars where there are two or more. Supervised
    (and oracle label) routing appear as horizontal bands: mean and 95 % interval of their
    trials at each data fraction.
    """
    data = finished(trials)
    if data.empty or "active_experts" not in data or "recon_error" not in data:
        return _empty_figure("No completed trials with recon_error and active_experts yet.")
    colors = fraction_colors(data["data_fraction"])
    figure, ax = plt.subplots(figsize=(7, 4.5))

    learned = data[data["routing"] == "learned"]
    for fraction, group in learned.groupby("data_fraction", sort=True):
        points = [(experts, mean_ci(values["recon_error"])) for experts, values in group.groupby("active_experts")]
        x = np.array([experts for experts, _ in points], dtype=float)
        y = np.array([ci.mean for _, ci in points])
        low = np.array([ci.mean - ci.ci_low if np.isfinite(ci.ci_low) else 0.0 for _, ci in points])
        high = np.array([ci.ci_high - ci.mean if np.isfinite(ci.ci_high) else 0.0 for _, ci in points])
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, color=colors[float(fraction)],
                    label=f"learned, {_fraction_label(fraction)}")

    for routing, style in BASELINE_STYLES.items():
        for fraction, group in data[data["routing"] == routing].groupby("data_fraction", sort=True):
            ci = mean_ci(group["recon_error"])
            color = colors[float(fraction)]
            ax.axhline(ci.mean, linestyle=style, color=color, linewidth=1.2,
                       label=f"{routing} (n={ci.n}), {_fraction_label(fraction)}")
            if np.isfinite(ci.ci_low):
                ax.axhspan(ci.ci_low, ci.ci_high, color=color, alpha=0.15, linewidth=0)

    baselines = [routing for routing in BASELINE_STYLES if (data["routing"] == routing).any()]
    if not baselines:
        ax.text(0.99, 0.01, "no supervised baseline in this study", transform=ax.transAxes,
                ha="right", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("active experts (hard gating on the test split)")
    ax.set_ylabel("test recon_error")
    ax.set_title("Reconstruction against experts used")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def plot_specialization_vs_recon(trials: pd.DataFrame) -> Figure:
    """Scatter purity and nmi against recon_error, coloured by data fraction.

    Trials on the recon_error x nmi Pareto front get a black outline in both panels, and a
    step line joins them in the nmi panel.
    """
    data = finished(trials)
    needed = {"recon_error", "purity", "nmi"}
    if data.empty or not needed <= set(data.columns):
        return _empty_figure("No completed trials with recon_error, purity and nmi yet.")
    colors = fraction_colors(data["data_fraction"])
    on_front = pareto_mask(data["recon_error"].astype(float), data["nmi"].astype(float))
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True)

    for ax, metric in zip(axes, ("purity", "nmi")):
        for (routing, fraction), group in data.groupby(["routing", "data_fraction"], sort=True):
            ax.scatter(group["recon_error"], group[metric], color=colors[float(fraction)],
                       marker=ROUTING_MARKERS.get(routing, "D"), s=36, alpha=0.85,
                       label=f"{routing}, {_fraction_label(fraction)}")
        front = data[on_front]
        ax.scatter(front["recon_error"], front[metric], facecolors="none", edgecolors="black", s=110,
                   linewidths=1.3, label="Pareto front (recon_error x nmi)")
        ax.set_xlabel("test recon_error")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)

    front = data[on_front].sort_values("recon_error")
    axes[1].step(front["recon_error"], front["nmi"], where="post", color="black", linewidth=1, alpha=0.7)
    axes[0].set_title("Purity against reconstruction")
    axes[1].set_title("NMI against reconstruction")
    axes[1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure


def plot_epoch_curves(epochs: pd.DataFrame, trials: pd.DataFrame) -> Figure:
    """Plot per-epoch test recon_error of every trial, coloured by data fraction.

    Completed trials are solid, early-stopped ones dashed (and shorter), and the last
    epoch of a diverged trial is marked with a cross.
    """
    if epochs.empty or "recon_error" not in epochs:
        return _empty_figure("No epochs reported yet.")
    status = trials.set_index("trial_id")["status"] if "status" in trials else pd.Series(dtype=str)
    colors = fraction_colors(epochs["data_fraction"]) if "data_fraction" in epochs else {}
    figure, ax = plt.subplots(figsize=(7, 4.2))

    labelled = set()
    for trial_id, group in epochs.groupby("trial_id", sort=True):
        group = group.sort_values("epoch")
        fraction = float(group["data_fraction"].iloc[0]) if "data_fraction" in group else np.nan
        color = colors.get(fraction, "grey")
        trial_status = status.get(trial_id, COMPLETED)
        style = "--" if trial_status == EARLY_STOPPED else "-"
        label = _fraction_label(fraction) if fraction not in labelled and np.isfinite(fraction) else None
        labelled.add(fraction)
        ax.plot(group["epoch"], group["recon_error"], linestyle=style, color=color, alpha=0.75,
                marker="." if len(group) < 3 else None, label=label)
        if trial_status == DIVERGED:
            ax.plot(group["epoch"].iloc[-1], group["recon_error"].iloc[-1], "x", color="red", markersize=9)

    ax.set_xlabel("epoch")
    ax.set_ylabel("test recon_error")
    ax.set_title("Test recon_error per epoch (dashed: early-stopped, x: diverged)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if labelled:
        ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_expert_category_heatmap(table: pd.DataFrame, title: str = "") -> Figure:
    """Draw a row-normalized expert x category table (from ``tables.expert_category_table``).

    ``table`` may carry an ``images`` Series in ``table.attrs`` to label rows with counts.
    """
    figure, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.45 * table.shape[0] + 1.6))
    image = ax.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(table.shape[1]), labels=list(table.columns), rotation=30, ha="right")
    counts = table.attrs.get("images")
    labels = [f"expert {e}" + (f" (n={counts[e]})" if counts is not None else "") for e in table.index]
    ax.set_yticks(range(table.shape[0]), labels=labels)
    for (row, column), value in np.ndenumerate(table.to_numpy()):
        if value > 0:
            ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 0.6 else "black")
    figure.colorbar(image, ax=ax, label="share of the expert's test images")
    ax.set_title(title or "Category mix of each expert")
    figure.tight_layout()
    return figure


def plot_tsne(embedding: np.ndarray, labels: np.ndarray, experts: np.ndarray,
              categories: Sequence[str], title: str = "") -> Figure:
    """Show a 2-D embedding of test latents twice: coloured by category and by expert."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    category_cmap = plt.get_cmap("tab10" if len(categories) <= 10 else "tab20")
    for index, name in enumerate(categories):
        mask = labels == index
        axes[0].scatter(embedding[mask, 0], embedding[mask, 1], s=6, color=category_cmap(index % 20), label=name)
    axes[0].set_title("coloured by category")
    axes[0].legend(fontsize=7, markerscale=2, loc="best")

    expert_ids = np.unique(experts)
    expert_cmap = plt.get_cmap("tab10" if len(expert_ids) <= 10 else "tab20")
    for rank, expert in enumerate(expert_ids):
        mask = experts == expert
        axes[1].scatter(embedding[mask, 0], embedding[mask, 1], s=6, color=expert_cmap(rank % 20),
                        label=f"expert {expert}")
    axes[1].set_title("coloured by expert")
    axes[1].legend(fontsize=7, markerscale=2, loc="best")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title or "t-SNE of test latents (mu)")
    figure.tight_layout()
    return figure


def plot_reconstructions_by_expert(images: np.ndarray, reconstructions: np.ndarray, experts: np.ndarray,
                                   labels: np.ndarray, categories: Sequence[str], per_expert: int = 6,
                                   title: str = "", seed: int = 0) -> Figure:
    """Show test drawings (left of each pair) and reconstructions (right), one row per expert.

    Each row shows up to ``per_expert`` images of that expert, drawn at random with ``seed``
    so that the row's category mix resembles the expert's, and sorted by category. The row
    label names the expert's most frequent category with its share.

    Parameters
    ----------
    images, reconstructions : ndarray (N, 28, 28), values in [0, 1]
    experts, labels : ndarray (N,) int
    """
    used = [int(e) for e in np.unique(experts)]
    if not used:
        return _empty_figure("No test images to show.")
    rng = np.random.default_rng(seed)
    figure, axes = plt.subplots(len(used), 2 * per_expert, figsize=(1.0 * 2 * per_expert, 1.1 * len(used) + 0.6),
                                squeeze=False)
    for row, expert in enumerate(used):
        members = np.flatnonzero(experts == expert)
        chosen = rng.choice(members, size=min(per_expert, len(members)), replace=False)
        displayed = chosen[np.argsort(labels[chosen], kind="stable")]
        top = np.bincount(labels[members], minlength=len(categories))
        label = f"expert {expert}\n{categories[top.argmax()]} {top.max() / len(members):.0%}"
        for slot in range(per_expert):
            for offset, source in enumerate((images, reconstructions)):
                ax = axes[row, 2 * slot + offset]
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(offset == 1 and slot < len(displayed))
                if slot < len(displayed):
                    ax.imshow(1 - source[displayed[slot]], cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    figure.suptitle(title or "Test drawings and reconstructions (framed) by expert")
    figure.tight_layout()
    return figure


def plot_param_importances(importances: dict[str, float], title: str = "") -> Figure:
    """Draw Optuna hyperparameter importances as horizontal bars, largest on top."""
    if not importances:
        return _empty_figure("No hyperparameter importances available.")
    names = list(importances)[::-1]
    values = [importances[name] for name in names]
    figure, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1.4))
    ax.barh(names, values, color="tab:blue")
    ax.set_xlabel("importance (fANOVA, share of objective variance)")
    ax.set_title(title or "Optuna hyperparameter importances")
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure
