"""Rebuild one trial's model from its checkpoint and run it on the test split.

The trial's params.json records what it trained on (categories, per_category,
data_source, test_fraction, split_seed), so ``smoe.data.load_quickdraw`` rebuilds the same
test split, and ``smoe.train.load_model`` rebuilds the model from the last Ray checkpoint
folder (``checkpoint_<n>/checkpoint.pt``). Checkpoints on remote storage are copied to a
temporary folder first.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from analysis.load import COMPLETED, Study
from analysis.tables import finished

logger = logging.getLogger(__name__)

MAX_POINTS = 2000  # test images to embed; t-SNE is O(N log N) and slow beyond a few thousand


@dataclass
class TestSplitOutputs:
    """A trial's model run with hard gating on (a subsample of) the test split, N images."""

    trial_id: str
    categories: tuple[str, ...]
    images: np.ndarray           # (N, 28, 28) float in [0, 1]
    reconstructions: np.ndarray  # (N, 28, 28) float in [0, 1], decoded from z = mu by the image's expert
    latents: np.ndarray          # (N, latent_dim) encoder means mu
    experts: np.ndarray          # (N,) int: expert that decoded each image
    labels: np.ndarray           # (N,) int: category index
    expert_source: str           # "assignments.csv" (the trial's own routing) or "gate argmax on mu"


def choose_best_trial(trials: pd.DataFrame, metric: str = "recon_error") -> pd.Series | None:
    """Return the trial whose experts the report inspects, or None if no trial qualifies.

    That is the completed trial with a checkpoint and the lowest ``metric``, taken from
    the first non-empty pool of: learned routing with at least two active experts (where
    specialization can show), any learned routing, any routing.
    """
    data = finished(trials, (COMPLETED,))
    if "last_checkpoint" in data:
        data = data[data["last_checkpoint"].notna()]
    if data.empty or metric not in data:
        return None
    learned = data[data["routing"] == "learned"] if "routing" in data else data
    if "active_experts" in learned:
        several = learned[pd.to_numeric(learned["active_experts"], errors="coerce") >= 2]
    else:
        several = learned
    pool = next(candidates for candidates in (several, learned, data) if not candidates.empty)
    return pool.sort_values(metric, kind="stable").iloc[0]


def read_trial_params(study: Study, trial_id: str) -> dict:
    """Read the trial's params.json (its full config, lists intact)."""
    filesystem, _ = study.open_filesystem()
    with filesystem.open_input_stream(posixpath.join(study.trial_path(trial_id), "params.json")) as stream:
        return json.loads(stream.read().decode("utf-8"))


def read_assignments(study: Study, trial_id: str) -> pd.DataFrame | None:
    """Read the trial's final assignments.csv (index, label, expert per test image).

    Looks in the trial folder, then in its last checkpoint. Returns None when neither has one.
    """
    filesystem, _ = study.open_filesystem()
    folder = study.trial_path(trial_id)
    row = study.trials.loc[study.trials["trial_id"] == trial_id].iloc[0]
    candidates = [posixpath.join(folder, "assignments.csv")]
    if isinstance(row.get("last_checkpoint"), str):
        candidates.append(posixpath.join(folder, row["last_checkpoint"], "assignments.csv"))
    for path in candidates:
        try:
            with filesystem.open_input_stream(path) as stream:
                return pd.read_csv(io.BytesIO(stream.read()))
        except FileNotFoundError:
            continue
    return None


def run_test_split(study: Study, trial_id: str, max_points: int = MAX_POINTS, seed: int = 0) -> TestSplitOutputs:
    """Rebuild the trial's model and data and run the model on its test split.

    Each image keeps the expert that the trial itself reported in assignments.csv (hard
    gating on a sampled z during the trial's evaluation). Without a matching
    assignments.csv, the gate's argmax on z = mu is used instead, and ``expert_source``
    records which. Latents are the encoder means mu, and each reconstruction is decoded from
    mu by the image's expert, so the result is deterministic. When the test split has
    more than ``max_points`` images, a uniform random subsample drawn with ``seed`` is used.

    Raises
    ------
    FileNotFoundError
        When the trial has no checkpoint.
    """
    import torch

    from smoe.data import load_quickdraw
    from smoe.train import Checkpoint, load_model

    params = read_trial_params(study, trial_id)
    row = study.trials.loc[study.trials["trial_id"] == trial_id].iloc[0]
    checkpoint_name = row.get("last_checkpoint")
    if not isinstance(checkpoint_name, str):
        raise FileNotFoundError(f"trial {trial_id} has no checkpoint folder in {study.path}")

    checkpoint = _load_checkpoint(study, posixpath.join(study.trial_path(trial_id), checkpoint_name), Checkpoint)
    model = load_model(checkpoint)
    model.eval()

    data_kwargs = {
        key: params[name] for key, name in (
            ("source", "data_source"), ("test_fraction", "test_fraction"), ("split_seed", "split_seed"),
        ) if name in params
    }
    if "categories" in params:
        data_kwargs["categories"] = params["categories"]
    data = load_quickdraw(per_category=params.get("per_category"), **data_kwargs)

    count = len(data.test_labels)
    order = np.random.default_rng(seed).permutation(count)[:max_points] if count > max_points else np.arange(count)
    index = torch.as_tensor(order)
    images = data.test_images[index].float().div(255.0).unsqueeze(1)  # (N, 1, 28, 28)
    labels = data.test_labels[index]
    reported = _reported_experts(read_assignments(study, trial_id), data.test_labels.numpy(), trial_id)

    latents, experts, reconstructions = [], [], []
    with torch.no_grad():
        for start in range(0, len(order), 512):
            batch = slice(start, start + 512)
            out = model(images[batch], labels[batch], use_mean=True)
            expert = torch.as_tensor(reported[order[batch]]) if reported is not None else out.expert
            latents.append(out.mu)
            experts.append(expert)
            reconstructions.append(model.decoder.route(out.mu, expert, "loop"))  # (B, 1, 28, 28)
    logger.info("ran trial %s on %d test images", trial_id, len(order))
    return TestSplitOutputs(
        trial_id=trial_id,
        categories=tuple(data.categories),
        images=images.squeeze(1).numpy(),
        reconstructions=torch.cat(reconstructions).squeeze(1).numpy(),
        latents=torch.cat(latents).numpy(),
        experts=torch.cat(experts).numpy(),
        labels=labels.numpy(),
        expert_source="assignments.csv" if reported is not None else "gate argmax on mu",
    )


def _reported_experts(assignments: pd.DataFrame | None, test_labels: np.ndarray, trial_id: str) -> np.ndarray | None:
    """Return the reported expert of every test image, or None if assignments do not match the split."""
    if assignments is None or not {"index", "label", "expert"} <= set(assignments.columns):
        return None
    index = assignments["index"].to_numpy(dtype=int)
    if len(assignments) != len(test_labels) or sorted(index) != list(range(len(test_labels))):
        logger.warning("assignments.csv of trial %s has %d rows for a rebuilt test split of %d images; "
                       "routing by the gate instead", trial_id, len(assignments), len(test_labels))
        return None
    experts = np.empty(len(test_labels), dtype=np.int64)
    experts[index] = assignments["expert"].to_numpy(dtype=np.int64)
    labels = np.empty(len(test_labels), dtype=np.int64)
    labels[index] = assignments["label"].to_numpy(dtype=np.int64)
    if not np.array_equal(labels, test_labels):
        logger.warning("assignments.csv of trial %s does not match the rebuilt test split (labels differ); "
                       "routing by the gate instead", trial_id)
        return None
    return experts


def _load_checkpoint(study: Study, path: str, checkpoint_class):
    filesystem, _ = study.open_filesystem()
    if isinstance(filesystem, pafs.LocalFileSystem):
        return checkpoint_class.load(path)
    with tempfile.TemporaryDirectory(prefix="smoe-analysis-") as directory:
        pafs.copy_files(path, directory, source_filesystem=filesystem, destination_filesystem=pafs.LocalFileSystem())
        return checkpoint_class.load(directory)


def tsne_embedding(latents: np.ndarray, seed: int = 0, threads: int | None = 1) -> np.ndarray:
    """Embed latents in 2-D with scikit-learn's t-SNE (perplexity capped for small N).

    ``threads`` limits OpenMP threads during the fit (None: scikit-learn's default). The
    default of 1 is deliberate: each Barnes-Hut iteration does little work, and with
    spin-waiting OpenMP threads on a busy machine 100 latents took 24 s against 0.4 s
    single-threaded (scikit-learn 1.9, 2-core VM running other jobs).
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    count = len(latents)
    if count < 3:
        raise ValueError(f"t-SNE needs at least 3 latents, got {count}")
    perplexity = float(min(30.0, max(2.0, (count - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    with threadpool_limits(limits=threads, user_api="openmp"):
        return tsne.fit_transform(latents)
