"""Train one SMoE-VAE and measure how its experts specialize.

`fit` runs Adam on the training split (a nested, stratified `data_fraction` of it) and
evaluates the fixed test split with hard gating after every epoch. It hands each epoch's
metrics and checkpoint to a `report` callback, which is where Ray Tune plugs in. `python -m smoe.train`
is the command line for a single run (see smoe.cli).

Reproducibility: the seed fixes model initialization and three separate CPU generators for
batch order, training noise and evaluation noise. Their states are part of every checkpoint, so
a run resumed from the checkpoint of epoch k repeats the uninterrupted run bit for bit on the
same device and thread count. Evaluation reseeds its generator every epoch, so the same weights
always give the same metrics.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from smoe.checkpoint import Checkpoint, load_model, snapshot
from smoe.config import ConfigError, TrainConfig, resolve_device
from smoe.losses import smoe_loss
from smoe.metrics import specialization_metrics
from smoe.model import SMoEVAE

__all__ = ["Checkpoint", "ConfigError", "FitResult", "TrainConfig", "evaluate", "fit", "load_model", "main"]

logger = logging.getLogger(__name__)

SCALAR_METRICS = (
    "recon_error",
    "recon_error_mu",
    "kl",
    "purity",
    "nmi",
    "ari",
    "active_experts",
    "usage_entropy",
    "routing_confidence",
)
LOSS_TERMS = ("loss", "recon", "kl", "balance", "entropy", "supervised")

# On CUDA a finiteness check costs a host synchronization, so it runs every few steps there.
# A divergence is still caught within the epoch it happens in.
FINITE_CHECK_EVERY = {"cpu": 1, "default": 20}


@dataclass
class FitResult:
    """Outcome of fit: status "completed" or "diverged", final metrics, per-epoch history."""

    status: str
    metrics: dict
    history: list[dict] = field(default_factory=list)
    checkpoint: Checkpoint | None = None  # the last good epoch's checkpoint


ReportFn = Callable[[dict, "Checkpoint | None"], None]


def fit(
    config: TrainConfig | dict,
    data,
    report: ReportFn | None = None,
    resume_from: Checkpoint | None = None,
) -> FitResult:
    """Train an SMoEVAE on data and evaluate it on the test split after every epoch.

    Parameters
    ----------
    config : TrainConfig or dict
        A dict is read with TrainConfig.from_dict, which ignores keys that are not fields.
    data : smoe.data.QuickDrawData
    report : callable, optional
        Called as report(metrics, checkpoint) after every epoch. metrics["status"] is
        "running", or "completed" after the last epoch. On a NaN or infinite loss it is called
        once more with the last good metrics, status "diverged", the failed epoch and no
        checkpoint, and fit returns instead of raising.
    resume_from : Checkpoint, optional
        Continue a run from this checkpoint up to config.epochs. Every field except epochs,
        device, num_threads and eval_batch_size must match the checkpoint's config.

    Returns
    -------
    FitResult
        Each epoch's metrics hold epoch (1-based), status, the test metrics of `evaluate`,
        train_loss, train_recon, train_kl, train_balance, train_entropy (and train_supervised
        for routing="supervised"), epoch_time_s and num_train_images.

    Raises
    ------
    ConfigError
        For an invalid config, routing="supervised" or "label" with num_experts different from
        the number of categories, an unavailable device, or a checkpoint from another run.
    """
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    config.validate()
    _check_data(config, data)
    device = resolve_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)

    train_images, train_labels = data.train_subset(config.data_fraction, config.data_seed)
    if train_images.shape[0] == 0:
        raise ConfigError("data_fraction", config.data_fraction, "large enough to select at least one training image")
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    test_images, test_labels = data.test_images.to(device), data.test_labels.to(device)
    categories = list(data.categories)

    init_seed, shuffle_seed, noise_seed, eval_seed = np.random.SeedSequence(config.seed).generate_state(4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(init_seed))
        model = SMoEVAE(
            config.num_experts,
            latent_dim=config.latent_dim,
            routing=config.routing,
            expert_impl=config.expert_impl,
        )
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    shuffle_generator = torch.Generator().manual_seed(int(shuffle_seed))
    noise_generator = torch.Generator().manual_seed(int(noise_seed))

    history: list[dict] = []
    checkpoint = None
    if resume_from is not None:
        _check_resume(config, resume_from, categories)
        model.load_state_dict(resume_from.state["model"])
        optimizer.load_state_dict(resume_from.state["optimizer"])
        shuffle_generator.set_state(resume_from.state["rng"]["shuffle"])
        noise_generator.set_state(resume_from.state["rng"]["noise"])
        history = [dict(entry) for entry in resume_from.state["history"]]
        if len(history) < config.epochs:
            # The checkpoint's last epoch may be marked "completed"; in this longer run it is an intermediate one.
            for entry in history:
                entry["status"] = "running"
        checkpoint = resume_from
        logger.info("resuming after epoch %d of %d", resume_from.epoch, config.epochs)
    start_epoch = len(history) + 1

    logger.info(
        "training %d experts (routing %s) on %d images, testing on %d, device %s",
        config.num_experts, config.routing, train_images.shape[0], test_images.shape[0], device,
    )
    for epoch in range(start_epoch, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        train_stats = _train_epoch(model, optimizer, train_images, train_labels, config, shuffle_generator, noise_generator)

        if train_stats is not None:
            metrics, experts = evaluate(
                model, test_images, test_labels,
                batch_size=config.eval_batch_size, seed=int(eval_seed), num_categories=len(categories),
            )
        if train_stats is None or not _all_finite(metrics):
            return _diverged(epoch, history, checkpoint, config, report)

        status = "completed" if epoch == config.epochs else "running"
        metrics = {
            "epoch": epoch,
            "status": status,
            **metrics,
            **train_stats,
            "epoch_time_s": time.perf_counter() - started,
            "num_train_images": int(train_images.shape[0]),
        }
        history.append(metrics)
        checkpoint = Checkpoint(
            state={
                "format_version": 1,
                "model": snapshot(model.state_dict()),
                "optimizer": snapshot(optimizer.state_dict()),
                "epoch": epoch,
                "config": config.to_dict(),
                "rng": {"shuffle": shuffle_generator.get_state(), "noise": noise_generator.get_state()},
                "history": snapshot(history),
                "categories": categories,
            },
            assignments=_assignments(data.test_labels, experts, categories),
        )
        logger.info(
            "epoch %d/%d: train_loss %.1f, recon_error %.2f, purity %.3f, nmi %.3f, active_experts %d, %.1f s",
            epoch, config.epochs, metrics["train_loss"], metrics["recon_error"], metrics["purity"],
            metrics["nmi"], metrics["active_experts"], metrics["epoch_time_s"],
        )
        if report is not None:
            report(metrics, checkpoint)

    return FitResult(status="completed", metrics=history[-1], history=history, checkpoint=checkpoint)


def _train_epoch(model, optimizer, images, labels, config, shuffle_generator, noise_generator) -> dict | None:
    """Run one epoch of Adam steps; return per-epoch loss statistics, or None on a non-finite loss."""
    device = images.device
    check_every = FINITE_CHECK_EVERY.get(device.type, FINITE_CHECK_EVERY["default"])
    order = torch.randperm(images.shape[0], generator=shuffle_generator).to(device)
    num_images = images.shape[0]

    sums = {term: torch.zeros((), device=device) for term in LOSS_TERMS}
    finite = torch.ones((), dtype=torch.bool, device=device)
    num_batches = 0
    for step, start in enumerate(range(0, num_images, config.batch_size)):
        index = order[start : start + config.batch_size]
        x = images[index].float().div_(255).unsqueeze(1)  # (B, 1, 28, 28) in [0, 1]
        y = labels[index]

        out = model(x, labels=y, generator=noise_generator)
        losses = smoe_loss(
            x, out,
            beta=config.beta,
            lambda_balance=config.lambda_balance,
            lambda_entropy=config.lambda_entropy,
            labels=y,
            lambda_supervised=config.lambda_supervised,
        )
        total = losses["total"]
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

        finite &= torch.isfinite(total.detach())
        if (step + 1) % check_every == 0 and not finite.item():
            return None
        sums["loss"] += total.detach()
        for term in ("recon", "kl", "balance", "entropy", "supervised"):
            if term in losses:
                sums[term] += losses[term].detach()
        num_batches += 1
    if not finite.item():
        return None

    # recon, kl and supervised are batch sums, so dividing by images gives per-image values
    # comparable to the test metrics. loss, balance and entropy are averaged over batches.
    stats = {
        "train_loss": sums["loss"].item() / num_batches,
        "train_recon": sums["recon"].item() / num_images,
        "train_kl": sums["kl"].item() / num_images,
        "train_balance": sums["balance"].item() / num_batches,
        "train_entropy": sums["entropy"].item() / num_batches,
    }
    if model.routing == "supervised":
        stats["train_supervised"] = sums["supervised"].item() / num_images
    return stats


@torch.no_grad()
def evaluate(
    model: SMoEVAE,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1024,
    seed: int = 0,
    num_categories: int | None = None,
) -> tuple[dict, np.ndarray]:
    """Evaluate a model with hard gating on uint8 images (N, 28, 28) and their labels (N,).

    Each image is decoded by its argmax expert from a sampled z, drawn from a generator seeded
    with seed, so repeated calls give identical results. The model is left in eval mode.

    Returns
    -------
    metrics : dict
        recon_error (squared error summed over the 784 pixels, averaged over images),
        recon_error_mu (the same with z = mu), kl (per image, summed over latent dimensions) and
        the smoe.metrics.specialization_metrics of the assignments.
    experts : ndarray (N,) int64
        The expert each image was routed to.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    num_categories = num_categories or int(labels.max()) + 1

    sums = {"recon_error": 0.0, "recon_error_mu": 0.0, "kl": 0.0}
    experts, gate_probs = [], []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device).float().div_(255).unsqueeze(1)
        y = labels[start : start + batch_size].to(device)

        out = model(x, labels=y, generator=generator)
        out_mu = model(x, labels=y, use_mean=True)
        sums["recon_error"] += (out.recon - x).pow(2).sum().item()
        sums["recon_error_mu"] += (out_mu.recon - x).pow(2).sum().item()
        sums["kl"] += (-0.5 * (1 + out.logvar - out.mu.pow(2) - out.logvar.exp())).sum().item()
        experts.append(out.expert.cpu())
        gate_probs.append(out.gate_probs.cpu())

    num_images = images.shape[0]
    experts = torch.cat(experts).numpy()
    metrics = {name: total / num_images for name, total in sums.items()}
    metrics.update(
        specialization_metrics(
            labels.cpu(), experts, torch.cat(gate_probs), model.num_experts, num_categories
        )
    )
    return metrics, experts


def _check_data(config: TrainConfig, data) -> None:
    num_categories = len(data.categories)
    if config.routing in ("supervised", "label") and config.num_experts != num_categories:
        raise ConfigError(
            "num_experts",
            config.num_experts,
            f"{num_categories} (the number of categories) for routing={config.routing!r}",
        )
    if data.test_images.shape[0] == 0:
        raise ValueError("data has an empty test split; evaluation needs at least one test image")


def _check_resume(config: TrainConfig, checkpoint: Checkpoint, categories: list[str]) -> None:
    saved = checkpoint.state["config"]
    free = {"epochs", "device", "num_threads", "eval_batch_size"}
    for name, value in config.to_dict().items():
        if name not in free and saved.get(name) != value:
            raise ConfigError(name, value, f"{saved.get(name)!r} (the checkpoint's value) to resume from it")
    if list(checkpoint.state["categories"]) != categories:
        raise ConfigError("categories", categories, f"{checkpoint.state['categories']} (the checkpoint's categories)")


def _all_finite(metrics: dict) -> bool:
    return all(math.isfinite(metrics[name]) for name in ("recon_error", "recon_error_mu", "kl"))


def _diverged(epoch: int, history: list[dict], checkpoint, config: TrainConfig, report) -> FitResult:
    logger.warning(
        "loss became NaN or infinite in epoch %d (lr %g, beta %g, lambda_balance %g, lambda_entropy %g); %s",
        epoch, config.lr, config.beta, config.lambda_balance, config.lambda_entropy,
        f"stopping with the metrics of epoch {epoch - 1}" if history else "stopping before any good epoch",
    )
    # Before a first good epoch there are no metrics, so every scalar metric is NaN.
    last_good = history[-1] if history else {name: math.nan for name in SCALAR_METRICS}
    metrics = {**last_good, "status": "diverged", "epoch": epoch}
    if report is not None:
        report(metrics, None)
    return FitResult(status="diverged", metrics=metrics, history=history, checkpoint=checkpoint)


def _assignments(labels: torch.Tensor, experts: np.ndarray, categories: list[str]) -> pd.DataFrame:
    labels = labels.cpu().numpy()
    return pd.DataFrame(
        {
            "index": np.arange(labels.shape[0]),
            "label": labels,
            "category": np.asarray(categories, dtype=object)[labels],
            "expert": experts,
        }
    )


def main(argv: list[str] | None = None) -> int:
    """Command line for one training run; see `python -m smoe.train --help`."""
    from smoe.cli import main as cli_main  # smoe.cli imports this module

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
