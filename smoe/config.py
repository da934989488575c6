"""Training configuration of one SMoE-VAE run, with validation that names the bad field.

Defaults are the paper's setup (Nikolic, Oguz, Psaltis, arXiv:2509.10025): Adam at lr 1e-4,
batch 128, 20 epochs, beta 0.1, lambda_balance 200, lambda_entropy 400, latent size 32.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from smoe.model import EXPERT_IMPLS, ROUTINGS

DEVICE_TYPES = ("cpu", "cuda", "mps")


class ConfigError(ValueError):
    """An invalid configuration value; str() is one line naming the field and the bad value."""

    def __init__(self, field: str, value, requirement: str):
        self.field = field
        self.value = value
        self.requirement = requirement
        super().__init__(f"{field} must be {requirement}, got {value!r}")


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; see smoe.train.fit."""

    num_experts: int = 5
    latent_dim: int = 32
    routing: str = "learned"  # "learned" | "supervised" | "label"
    beta: float = 0.1
    lambda_balance: float = 200.0
    lambda_entropy: float = 400.0
    lambda_supervised: float = 1.0  # weight of the gate cross-entropy, routing="supervised" only
    lr: float = 1e-4
    batch_size: int = 128
    epochs: int = 20
    data_fraction: float = 1.0  # share of the training split, a nested stratified subsample
    seed: int = 0  # model initialization, shuffling, sampling noise and evaluation noise
    data_seed: int = 0  # which training images data_fraction selects
    device: str = "auto"  # "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", "mps"
    num_threads: int | None = None  # torch.set_num_threads for this process, when given
    eval_batch_size: int = 1024
    expert_impl: str = "auto"  # see smoe.model: "auto" | "loop" | "grouped"

    def __post_init__(self):
        # Values from numpy, pandas or Optuna arrive as numpy scalars; store plain Python ones
        # so the config serializes to JSON and into checkpoints.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.generic):
                setattr(self, f.name, value.item())

    def validate(self) -> None:
        """Raise ConfigError for the first invalid field."""
        _check_int(self, "num_experts", minimum=1)
        _check_int(self, "latent_dim", minimum=1)
        _check_choice(self, "routing", ROUTINGS)
        for name in ("beta", "lambda_balance", "lambda_entropy", "lambda_supervised"):
            _check_real(self, name, minimum=0.0)
        _check_real(self, "lr", minimum=0.0, inclusive=False)
        _check_int(self, "batch_size", minimum=1)
        _check_int(self, "epochs", minimum=1)

        fraction = self.data_fraction
        if not _is_real(fraction) or not 0.0 < fraction <= 1.0:
            raise ConfigError("data_fraction", fraction, "in (0, 1]")

        _check_int(self, "seed", minimum=0, maximum=2**63 - 1)
        _check_int(self, "data_seed", minimum=0, maximum=2**63 - 1)
        _check_device(self.device)
        if self.num_threads is not None:
            _check_int(self, "num_threads", minimum=1)
        _check_int(self, "eval_batch_size", minimum=1)
        _check_choice(self, "expert_impl", EXPERT_IMPLS)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build and validate a config from a mapping, ignoring keys that are not fields."""
        names = {f.name for f in fields(cls)}
        config = cls(**{key: value for key, value in values.items() if key in names})
        config.validate()
        return config


def resolve_device(device: str) -> torch.device:
    """Turn a validated device string into a torch.device that exists on this machine."""
    _check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device", device, "'auto' or 'cpu' on this machine, where CUDA is not available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError("device", device, f"a CUDA device index below {torch.cuda.device_count()}")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", device, "'auto' or 'cpu' on this machine, where MPS is not available")
    return resolved


def _check_device(device) -> None:
    requirement = "'auto' or a torch device string such as 'cpu', 'cuda', 'cuda:1' or 'mps'"
    if not isinstance(device, str):
        raise ConfigError("device", device, requirement)
    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError("device", device, requirement) from None
    if parsed.type not in DEVICE_TYPES:
        raise ConfigError("device", device, requirement)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_real(config: TrainConfig, name: str, minimum: float, inclusive: bool = True) -> None:
    value = getattr(config, name)
    if not _is_real(value) or value < minimum or (not inclusive and value == minimum):
        bound = ">=" if inclusive else ">"
        raise ConfigError(name, value, f"a finite number {bound} {minimum:g}")


def _check_int(config: TrainConfig, name: str, minimum: int, maximum: int | None = None) -> None:
    value = getattr(config, name)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ConfigError(name, value, f"an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(name, value, f">= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, value, f"<= {maximum}")


def _check_choice(config: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ConfigError(name, value, "one of " + ", ".join(repr(c) for c in choices))
