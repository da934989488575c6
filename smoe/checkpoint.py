"""Checkpoints of a training run: everything needed to resume it exactly, plus test assignments.

On disk a checkpoint is a folder with
    checkpoint.pt     torch.save of Checkpoint.state (CPU tensors only; loads with weights_only=True)
    assignments.csv   one row per test image: index, label, category, expert
Both are written to a temporary file first and renamed, so an interrupted save never leaves a
truncated file in place of a good one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from smoe.config import TrainConfig
from smoe.fileio import make_temporary
from smoe.model import SMoEVAE

CHECKPOINT_FILE = "checkpoint.pt"
ASSIGNMENTS_FILE = "assignments.csv"
FORMAT_VERSION = 1
ASSIGNMENT_COLUMNS = ("index", "label", "category", "expert")
STATE_KEYS = ("format_version", "model", "optimizer", "epoch", "config", "rng", "history", "categories")


@dataclass
class Checkpoint:
    """A training state after some epoch and the hard-gated test assignments of that epoch.

    state keys: format_version, model (state dict), optimizer (state dict), epoch (1-based, the
    last completed epoch), config (TrainConfig as a dict), rng (generator states for shuffling,
    sampling noise), history (metrics of every completed epoch), categories (list of names).
    """

    state: dict
    assignments: pd.DataFrame | None = None

    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.state["config"])

    @property
    def metrics(self) -> dict:
        """Metrics of the last completed epoch."""
        return self.state["history"][-1]

    def save(self, directory) -> None:
        """Write DIR/checkpoint.pt and, when assignments are present, DIR/assignments.csv."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / CHECKPOINT_FILE, lambda path: torch.save(self.state, path))
        if self.assignments is not None:
            _write_atomic(directory / ASSIGNMENTS_FILE, lambda path: self.assignments.to_csv(path, index=False))

    @classmethod
    def load(cls, directory) -> Checkpoint:
        """Read a checkpoint folder written by save; assignments are None when the CSV is absent."""
        directory = Path(directory)
        path = directory / CHECKPOINT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for corrupt or foreign files
            raise ValueError(f"{path}: not a readable smoe checkpoint ({type(error).__name__}: {error})") from None

        missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
        if missing:
            raise ValueError(f"{path}: not an smoe checkpoint, missing keys {missing}")
        if state["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{path}: checkpoint format {state['format_version']} is not supported, expected {FORMAT_VERSION}")

        assignments = None
        csv_path = directory / ASSIGNMENTS_FILE
        if csv_path.is_file():
            assignments = pd.read_csv(csv_path)
            absent = [c for c in ("index", "label", "expert") if c not in assignments.columns]
            if absent:
                raise ValueError(f"{csv_path}: missing columns {absent}")
        return cls(state=state, assignments=assignments)


def load_model(checkpoint: Checkpoint, device="cpu") -> SMoEVAE:
    """Rebuild the trained SMoEVAE of a checkpoint, in eval mode."""
    config = checkpoint.config
    model = SMoEVAE(
        config.num_experts,
        latent_dim=config.latent_dim,
        routing=config.routing,
        expert_impl=config.expert_impl,
    )
    model.load_state_dict(checkpoint.state["model"])
    return model.to(device).eval()


def snapshot(value):
    """Deep-copy a nested state (dicts, lists, tensors) with every tensor cloned onto the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: snapshot(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(item) for item in value)
    return value


def _write_atomic(path: Path, write) -> None:
    handle, temporary = make_temporary(path)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
