"""Run a hyperparameter study of the SMoE-VAE on QuickDraw with Ray Tune and Optuna.

    python tune/run_study.py                                   # small study on this machine
    python tune/run_study.py --preset paper --dry-run          # the 475-trial grid of arXiv 2509.10025
    python tune/run_study.py --address auto --storage-path s3://bucket/studies   # on a Ray cluster
    python tune/run_study.py --resume --name NAME              # continue an interrupted study

The spec (``--config`` or ``--preset``, default ``tune/studies/default.yaml``) says what to train
and search; flags override it. Every value is checked before Ray starts; an invalid one ends the
command with one line on stderr and exit status 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

# Run as a script, Python puts tune/ first on sys.path. The repository root goes there instead, so
# that `import tune.spec` finds this package even without `pip install -e .`.
REPO_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO_ROOT)

from tune.spec import (  # noqa: E402
    DATA_SOURCES, ROUTINGS, StudySpec, SpecError, apply_overrides, count_trials, grid_configs, load_spec, preset_path, validate_spec,
)

logger = logging.getLogger("tune.run_study")

DEFAULT_STORAGE_ENV = "SMOE_STUDIES"

# CPU seconds per training image and epoch with one torch thread, test evaluation included. The cost
# grows as BASE + PER_EXPERT x num_experts because soft gating runs every expert on every image.
# Fitted by bench/bench_study.py (2 to 16 experts, bundled sample, torch 2.13 CPU) on a 2-core x86
# VM that other jobs shared, so a quiet machine may be faster. Over 16 experts it is extrapolated.
CPU_SECONDS_PER_IMAGE_BASE = 1.4e-3
CPU_SECONDS_PER_IMAGE_PER_EXPERT = 0.25e-3
# GPU speed-up over one CPU thread: an estimate for a recent datacenter GPU at batch 128, not measured.
GPU_SPEEDUP = 40.0
# Drawings per category assumed by --dry-run when data.per_category is null (all of a full file);
# most QuickDraw categories hold 100,000 to 300,000.
ASSUMED_FULL_PER_CATEGORY = 150_000


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line, like the spec errors."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def default_storage_path() -> str:
    return os.environ.get(DEFAULT_STORAGE_ENV) or str(Path.home() / "smoe-studies")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument

    spec_group = parser.add_mutually_exclusive_group()
    spec_group.add_argument("--config", metavar="FILE", help="study spec YAML (default: tune/studies/default.yaml)")
    spec_group.add_argument("--preset", choices=["default", "paper"], help="a spec shipped in tune/studies/")

    add("--num-samples", type=int, metavar="N", help="trials of an Optuna search")
    add("--max-concurrent", type=int, metavar="N", help="trials running at the same time")
    add("--epochs", type=int, metavar="N", help="training epochs per trial")
    add("--per-category", type=int, metavar="N", help="drawings per category, before the train/test split")
    add("--categories", nargs="+", metavar="NAME", help="QuickDraw categories")
    add("--data", choices=DATA_SOURCES, help="data source (auto: full files if cached, "
        "else the bundled sample)")
    add("--beta-range", nargs=2, type=float, metavar=("LOW", "HIGH"), help="KL weight, log-uniform")
    add("--lambda-balance-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
        help="load-balance loss weight, log-uniform")
    add("--lambda-entropy-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
        help="gate-entropy loss weight, log-uniform")
    add("--num-experts-range", nargs=2, type=int, metavar=("LOW", "HIGH"), help="experts, integers LOW..HIGH")
    add("--data-fractions", nargs="+", type=float, metavar="F", help="shares of the train split to choose from")
    add("--routing", choices=ROUTINGS, help="how the gate routes")
    add("--objective", choices=["recon", "recon_nmi"],
        help="recon: minimize test recon_error (TPE); recon_nmi: also maximize nmi (NSGA-II)")
    add("--asha", action=argparse.BooleanOptionalAction, default=None,
        help="ASHA early stopping on the per-epoch test recon_error")
    add("--cpus-per-trial", type=float, metavar="N", help="CPUs per trial (also its torch threads)")
    add("--gpus-per-trial", type=float, metavar="N", help="GPUs per trial; 0.25 puts 4 trials on one GPU")
    add("--seed", type=int, help="seed of the searcher and of training")

    add("--storage-path", metavar="PATH_OR_URI",
        help=f"folder or s3:// / gs:// URI that holds study folders (default: ${DEFAULT_STORAGE_ENV} "
             "or ~/smoe-studies)")
    add("--name", help="study folder name (default: the spec's name and the start time)")
    add("--address", metavar="ADDR", help="join a running Ray cluster (auto after `ray up`); "
        "without it a local Ray starts on 127.0.0.1")
    add("--num-cpus", type=int, metavar="N", help="CPUs of the local Ray (default: all)")
    add("--resume", action="store_true", help="continue the study --name in --storage-path")
    add("--dry-run", action="store_true", help="print trials, resources and compute, then stop")
    return parser.parse_args(argv)


# Flag -> dotted spec field, so an error names the flag the user typed.
OVERRIDES = {
    "num_samples": "search.num_samples",
    "max_concurrent": "search.max_concurrent",
    "epochs": "train.epochs",
    "per_category": "data.per_category",
    "categories": "data.categories",
    "data": "data.source",
    "beta_range": "search.space.beta",
    "lambda_balance_range": "search.space.lambda_balance",
    "lambda_entropy_range": "search.space.lambda_entropy",
    "num_experts_range": "search.space.num_experts",
    "data_fractions": "search.space.data_fraction",
    "routing": "train.routing",
    "objective": "search.objective",
    "asha": "scheduler.asha",
    "cpus_per_trial": "resources.cpus_per_trial",
    "gpus_per_trial": "resources.gpus_per_trial",
    "seed": "search.seed",
}


def build_spec(args: argparse.Namespace) -> StudySpec:
    """Read the spec, apply the flags and validate; raises SpecError."""
    if args.config:
        spec = load_spec(args.config)
    else:
        spec = load_spec(preset_path(args.preset or "default"))

    overrides = {OVERRIDES[flag]: getattr(args, flag) for flag in OVERRIDES}
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    if spec.search.algorithm == "grid":
        # A grid lists its num_experts and data_fraction values instead of a search space.
        for flag, grid_key in (("num_experts_range", "num_experts"), ("data_fractions", "data_fraction")):
            value = overrides.pop(OVERRIDES[flag])
            if value is not None and flag == "data_fractions":
                overrides[f"search.grid.{grid_key}"] = value
            elif value is not None:
                raise SpecError(f"--{flag.replace('_', '-')}", "a grid study lists num_experts in "
                                "search.grid.num_experts of its spec", value)
        for flag in ("beta_range", "lambda_balance_range", "lambda_entropy_range"):
            value = overrides.pop(OVERRIDES[flag])
            if value is not None:
                raise SpecError(f"--{flag.replace('_', '-')}", "a grid study has no search ranges", value)
    overrides = {key: list(value) if isinstance(value, (list, tuple)) else value
                 for key, value in overrides.items()}
    spec = apply_overrides(spec, overrides)

    try:
        validate_spec(spec)
    except SpecError as error:
        flags = {field: f"--{flag.replace('_', '-')}" for flag, field in OVERRIDES.items()
                 if getattr(args, flag) is not None}
        if error.field in flags:
            raise SpecError(f"{flags[error.field]} ({error.field})", error.problem, error.value) from None
        raise
    return spec


def plan_text(spec: StudySpec) -> str:
    """Format the --dry-run output: trial count, resources and an estimate of the compute."""
    trials = count_trials(spec)
    train_images = _train_images_per_category(spec) * len(spec.data.categories)
    test_images = _test_images(spec)

    if spec.search.algorithm == "grid":
        runs = [(c["data_fraction"], c["epochs"], c["num_experts"]) for c in grid_configs(spec)]
    else:
        # An Optuna search: the mean data_fraction and num_experts of its space stand for each trial.
        fractions = spec.search.space.get("data_fraction", [spec.train.data_fraction])
        experts = spec.search.space.get("num_experts", [spec.train.num_experts] * 2)
        runs = [(sum(fractions) / len(fractions), spec.train.epochs, sum(experts) / 2)] * trials
    image_epochs = sum(fraction * train_images * epochs for fraction, epochs, _ in runs)
    cpu_seconds = sum(
        fraction * train_images * epochs * (CPU_SECONDS_PER_IMAGE_BASE + CPU_SECONDS_PER_IMAGE_PER_EXPERT * experts)
        for fraction, epochs, experts in runs)
    cpu_hours = cpu_seconds / 3600
    gpu_hours = cpu_hours / GPU_SPEEDUP

    resources = f"{spec.resources.cpus_per_trial:g} CPU"
    if spec.resources.gpus_per_trial:
        resources += f" + {spec.resources.gpus_per_trial:g} GPU"
    asha = spec.scheduler.asha and spec.search.objective == "recon"
    lines = [
        f"Study {spec.name!r}: {trials} trials ({_trial_breakdown(spec)})",
        f"Search:    {spec.search.algorithm}, objective {spec.search.objective}, ASHA {'on' if asha else 'off'}",
        f"Data:      {spec.data.source}, {', '.join(spec.data.categories)}; "
        f"{train_images:,} train and {test_images:,} test drawings before data_fraction",
        f"Resources: {resources} per trial, at most {spec.search.max_concurrent} trials at a time",
        f"Compute:   {image_epochs:,.0f} training image-epochs (train images x data_fraction x epochs)"
        + (", an upper bound because ASHA stops trials early" if asha else ""),
        f"           {_hours(cpu_hours)} of one CPU core at {CPU_SECONDS_PER_IMAGE_BASE * 1e3:g} + "
        f"{CPU_SECONDS_PER_IMAGE_PER_EXPERT * 1e3:g} x num_experts ms per image (measured on a 2-core VM)",
        f"           {_hours(gpu_hours)} of one GPU if it is {GPU_SPEEDUP:g}x one CPU core (an estimate, "
        "not measured)",
    ]
    if not spec.resources.gpus_per_trial and spec.resources.cpus_per_trial == 1:
        concurrent = spec.search.max_concurrent
        lines.append(f"           {_hours(cpu_hours / concurrent)} of wall time with {concurrent} "
                     "trials at a time, one CPU each")
    return "\n".join(lines)


def _hours(hours: float) -> str:
    if hours >= 1:
        return f"about {hours:,.1f} hours"
    return f"about {hours * 60:.0f} minutes" if hours * 60 >= 1 else "under a minute"


def _train_images_per_category(spec: StudySpec) -> int:
    per_category = _images_per_category(spec)
    return round(per_category * (1 - spec.data.test_fraction))


def _test_images(spec: StudySpec) -> int:
    return round(_images_per_category(spec) * spec.data.test_fraction) * len(spec.data.categories)


def _images_per_category(spec: StudySpec) -> float:
    """Mean drawings per category the source provides, capped at data.per_category."""
    from smoe.data.categories import GOOGLE_CATEGORIES
    from smoe.data.sample import read_sample
    from tune.data import available_categories

    reads_full = spec.data.source == "full" or (
        spec.data.source == "auto"
        and available_categories("auto", spec.data.categories) is GOOGLE_CATEGORIES)
    if reads_full:
        return spec.data.per_category or ASSUMED_FULL_PER_CATEGORY

    counts = [len(read_sample(name)) for name in spec.data.categories]
    cap = spec.data.per_category or max(counts)
    return sum(min(count, cap) for count in counts) / len(counts)


def _trial_breakdown(spec: StudySpec) -> str:
    if spec.search.algorithm == "optuna":
        return f"Optuna {'NSGA-II' if spec.search.objective == 'recon_nmi' else 'TPE'}, seed {spec.search.seed}"
    grid = spec.search.grid
    axes = " x ".join(f"{len(values)} {name}" for name, values in grid.items())
    learned = 1
    for values in grid.values():
        learned *= len(values)
    parts = [f"{axes} = {learned}"]
    for baseline in spec.search.baselines:
        free = [len(values) for name, values in grid.items() if name not in baseline]
        count = 1
        for size in free:
            count *= size
        fixed = ", ".join(f"{key}={value}" for key, value in baseline.items())
        parts.append(f"{count} baseline ({fixed})")
    return " + ".join(parts)


class _Interrupt:
    """Turns the first Ctrl-C (or SIGTERM) into Ray Tune's graceful stop and remembers it.

    Ray Tune's own SIGINT handler stops the study and saves its state, but the driver cannot tell
    afterwards whether the study ended or was stopped. This handler replaces it (Ray skips its own
    when TUNE_DISABLE_SIGINT_HANDLER=1) and sends the process SIGUSR1, which Ray Tune 2.60 handles
    the same way as SIGINT. A second Ctrl-C stops the driver at once.
    """

    def __init__(self):
        self.event = threading.Event()

    def install(self) -> None:
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        # Before Ray Tune runs (or after it), nothing listens to SIGUSR1, whose default action
        # would kill the process: stop the driver directly.
        if self.event.is_set() or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            raise KeyboardInterrupt
        self.event.set()
        logger.warning("%s received: stopping the trials and saving the study so that --resume can "
                       "continue it; press Ctrl-C again to stop at once", signal.Signals(signum).name)
        os.kill(os.getpid(), signal.SIGUSR1)

    @property
    def happened(self) -> bool:
        return self.event.is_set()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from tune.storage import StudyLocation

    storage_path = args.storage_path or default_storage_path()
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).expanduser().resolve())

    try:
        if args.resume:
            spec = None
            if not args.name:
                raise SpecError("--name", "--resume needs the name of the study to continue", None)
            spec_flags = [f"--{flag.replace('_', '-')}" for flag in [*OVERRIDES, "config", "preset"]
                          if getattr(args, flag) is not None]
            if spec_flags:
                raise SpecError(spec_flags[0], "--resume continues the study with its stored study.yaml, "
                                "so spec flags are not accepted", getattr(args, spec_flags[0][2:].replace("-", "_")))
            location = StudyLocation(storage_path, args.name)
        else:
            spec = build_spec(args)
            name = args.name or f"{spec.name}-{datetime.now():%Y%m%d-%H%M%S}"
            if not args.dry_run and "/" in name:
                raise SpecError("--name", "expected a folder name without '/'", name)
            location = StudyLocation(storage_path, name)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.dry_run:
        if spec is None:
            print("error: --dry-run: plans a new study and cannot be combined with --resume", file=sys.stderr)
            return 2
        print(plan_text(spec))
        return 0

    # Before Ray is imported: a local Ray then uses 127.0.0.1 for every node (Ray 2.60 reads this
    # once, at import) and does not report usage statistics.
    if not args.address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from tune import storage, study

    interrupt = _Interrupt()
    interrupt.install()
    try:
        exists = storage.exists(location)
        if args.resume and not exists:
            raise SpecError("--name", f"no study folder {location.uri} to resume", args.name)
        if not args.resume and exists:
            raise SpecError("--name", f"study folder {location.uri} already exists; pass --resume to "
                            "continue it or choose another --name", args.name)
        if args.resume:
            spec, results = study.resume(location, address=args.address, num_cpus=args.num_cpus)
        else:
            results = study.run(spec, location, address=args.address, num_cpus=args.num_cpus)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; if trials had started, continue with: python tune/run_study.py --resume "
              f"--name {location.name} --storage-path {location.storage_path}", file=sys.stderr)
        return 130

    if interrupt.happened:
        print(study.summarize(spec, results, location, interrupted=True))
        return 130
    print(study.summarize(spec, results, location))
    return 0


if __name__ == "__main__":
    sys.exit(main())
