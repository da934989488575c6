"""Command line for one SMoE-VAE training run: `python -m smoe.train ... --out DIR`.

Every value is validated before data is loaded or DIR is touched. A bad value ends the program
with one line on stderr (`error: --num-experts must be >= 1, got 0`) and exit status 2.

DIR receives, after every epoch (so an interrupted run can be resumed with --resume):
    metrics.json      {"status", "final", "history", "config", "data"}
    assignments.csv   index, label, category, expert: one row per test image, hard gating
    checkpoint.pt     smoe.train.Checkpoint state
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from smoe.config import ConfigError, TrainConfig, resolve_device
from smoe.data import PAPER_CATEGORIES, DataError, load_quickdraw
from smoe.data.dataset import SOURCES
from smoe.fileio import make_temporary
from smoe.model import EXPERT_IMPLS, ROUTINGS

logger = logging.getLogger("smoe.train")

METRICS_FILE = "metrics.json"
EXIT_USAGE = 2  # invalid arguments, as argparse uses
EXIT_DIVERGED = 1
EXIT_INTERRUPTED = 130  # the shell's status for SIGINT

# TrainConfig fields whose command-line option is not --<field with dashes>.
OPTION_NAMES = {"num_threads": "--threads"}


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, without the usage block."""

    def error(self, message: str):
        _fail(message)


def _fail(message: str, status: int = EXIT_USAGE):
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(status)


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = _ArgumentParser(
        prog="python -m smoe.train",
        description="Train one SMoE-VAE on QuickDraw drawings and write its metrics, test-set expert "
        "assignments and checkpoint to --out.",
        epilog="Exit status: 0 when training completed, 1 when the loss diverged (metrics.json then has "
        'status "diverged" and the last good epoch), 2 for invalid arguments or data.',
    )
    model = parser.add_argument_group("model and loss")
    model.add_argument("--num-experts", type=int, default=defaults.num_experts, help="number of expert decoders E (default %(default)s)")
    model.add_argument("--latent-dim", type=int, default=defaults.latent_dim, help="size of the latent z (default %(default)s)")
    model.add_argument("--routing", default=defaults.routing, choices=ROUTINGS, help="how samples reach experts (default %(default)s)")
    model.add_argument("--beta", type=float, default=defaults.beta, help="weight of the KL term (default %(default)s)")
    model.add_argument("--lambda-balance", type=float, default=defaults.lambda_balance, help="weight of the load-balance term (default %(default)s)")
    model.add_argument("--lambda-entropy", type=float, default=defaults.lambda_entropy, help="weight of the gate-entropy term (default %(default)s)")
    model.add_argument("--lambda-supervised", type=float, default=defaults.lambda_supervised, help="weight of the gate cross-entropy for --routing supervised (default %(default)s)")
    model.add_argument("--expert-impl", default=defaults.expert_impl, choices=EXPERT_IMPLS, help="how experts execute: a loop or grouped kernels; auto picks per device (default %(default)s)")

    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs (default %(default)s)")
    training.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default %(default)s)")
    training.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training batch size (default %(default)s)")
    training.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size, help="test batch size, memory only (default %(default)s)")
    training.add_argument("--seed", type=int, default=defaults.seed, help="seed of initialization, batch order and sampling (default %(default)s)")
    training.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N or mps (default %(default)s: CUDA when available)")
    training.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")

    data = parser.add_argument_group("data")
    data.add_argument("--data", default="auto", choices=SOURCES, help="auto: full data when cached, else the bundled sample; sample: bundled drawings only; full: cached or downloaded (default %(default)s)")
    data.add_argument("--categories", nargs="+", default=list(PAPER_CATEGORIES), metavar="NAME", help="QuickDraw categories (default: %(default)s)")
    data.add_argument("--per-category", type=int, default=None, metavar="N", help="use at most N images per category, before the train/test split (default: all)")
    data.add_argument("--data-fraction", type=float, default=defaults.data_fraction, help="share of the training split to train on, in (0, 1] (default %(default)s)")
    data.add_argument("--data-seed", type=int, default=defaults.data_seed, help="seed of the data-fraction subsample (default %(default)s)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for metrics.json, assignments.csv and checkpoint.pt")
    exclusive = output.add_mutually_exclusive_group()
    exclusive.add_argument("--resume", action="store_true", help="continue the run in DIR from its checkpoint.pt up to --epochs")
    exclusive.add_argument("--overwrite", action="store_true", help="replace results already in DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config = _config_from_args(args)
    _check_data_args(args, config)
    resume_from = _check_out(args)

    try:
        data = load_quickdraw(args.categories, per_category=args.per_category, source=args.data)
    except DataError as error:
        _fail(error)

    return _run(args, config, data, resume_from)


def _config_from_args(args) -> TrainConfig:
    values = {
        "num_experts": args.num_experts,
        "latent_dim": args.latent_dim,
        "routing": args.routing,
        "beta": args.beta,
        "lambda_balance": args.lambda_balance,
        "lambda_entropy": args.lambda_entropy,
        "lambda_supervised": args.lambda_supervised,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "data_fraction": args.data_fraction,
        "seed": args.seed,
        "data_seed": args.data_seed,
        "device": args.device,
        "num_threads": args.threads,
        "eval_batch_size": args.eval_batch_size,
        "expert_impl": args.expert_impl,
    }
    try:
        config = TrainConfig.from_dict(values)
        resolve_device(config.device)
    except ConfigError as error:
        _fail(_as_option_error(error))
    return config


def _as_option_error(error: ConfigError) -> str:
    option = OPTION_NAMES.get(error.field, "--" + error.field.replace("_", "-"))
    return f"{option} must be {error.requirement}, got {error.value!r}"


def _check_data_args(args, config: TrainConfig) -> None:
    if args.per_category is not None and args.per_category < 2:
        _fail(f"--per-category must be >= 2 (one train and one test image), got {args.per_category}")
    if len(set(args.categories)) != len(args.categories):
        _fail(f"--categories must not repeat a name, got {args.categories}")
    if config.routing in ("supervised", "label") and config.num_experts != len(args.categories):
        _fail(
            f"--num-experts must be {len(args.categories)} (the number of categories) for "
            f"--routing {config.routing}, got {config.num_experts}"
        )


def _check_out(args):
    """Check --out against --resume and --overwrite; return the checkpoint to resume from, if any."""
    from smoe.checkpoint import CHECKPOINT_FILE, Checkpoint

    out: Path = args.out
    if out.exists() and not out.is_dir():
        _fail(f"--out must be a folder, got the file {str(out)!r}")

    has_results = (out / METRICS_FILE).exists() or (out / CHECKPOINT_FILE).exists()
    if args.resume:
        try:
            return Checkpoint.load(out)
        except (FileNotFoundError, ValueError) as error:
            _fail(f"--resume: {error}")
    if has_results and not args.overwrite:
        _fail(f"--out {str(out)!r} already contains results; pass --resume to continue them or --overwrite to replace them")

    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        _fail(f"--out {str(out)!r} is not writable")
    return None


def _run(args, config: TrainConfig, data, resume_from) -> int:
    from smoe.train import fit

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "config": {**config.to_dict(), "categories": list(data.categories), "per_category": args.per_category},
        "data": {"source": data.source, "categories": list(data.categories), "counts": data.counts()},
    }
    history = list(resume_from.state["history"]) if resume_from is not None else []

    def write_epoch(metrics: dict, checkpoint) -> None:
        if checkpoint is not None:
            checkpoint.save(out)
            history.append(metrics)
        _write_json(out / METRICS_FILE, {"status": metrics["status"], "final": metrics, "history": history, **summary})

    try:
        result = fit(config, data, report=write_epoch, resume_from=resume_from)
    except ConfigError as error:
        _fail(_as_option_error(error))
    except KeyboardInterrupt:
        print(f"interrupted; {out} keeps the last completed epoch, continue it with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED

    if resume_from is not None and not result.history[len(resume_from.state["history"]):]:
        logger.info("the checkpoint in %s already covers %d epochs; nothing to train", out, config.epochs)
        write_epoch(result.metrics, None)

    final = result.metrics
    if result.status == "diverged":
        print(f"diverged in epoch {final['epoch']}; last good metrics in {out / METRICS_FILE}", file=sys.stderr)
        return EXIT_DIVERGED
    print(
        f"{out}: recon_error {final['recon_error']:.2f}, purity {final['purity']:.3f}, nmi {final['nmi']:.3f}, "
        f"ari {final['ari']:.3f}, active_experts {final['active_experts']}/{config.num_experts}"
    )
    return 0


def _write_json(path: Path, payload: dict) -> None:
    handle, temporary = make_temporary(path)
    with os.fdopen(handle, "w") as file:
        json.dump(payload, file, indent=2, allow_nan=True)
    os.replace(temporary, path)
