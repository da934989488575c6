"""The study spec: a YAML file that describes what a study trains, searches and schedules.

A spec has these sections (``tune/studies/default.yaml`` documents every key)::

    name        study name; the study folder is <storage_path>/<name>
    data        QuickDraw source, categories, drawings per category, test split
    train       fixed smoe.train.TrainConfig fields of every trial (epochs, lr, beta, ...)
    search      "optuna": a TPE (or NSGA-II) search over the ranges in search.space
                "grid": the cross product in search.grid plus its baselines (no Optuna)
    scheduler   ASHA early stopping on the per-epoch test recon_error
    resources   CPUs and GPUs per trial
    faults      retries per trial and checkpoints kept per trial

``load_spec`` reads a file, ``apply_overrides`` applies command-line flags, and ``validate_spec``
checks every value before Ray starts. All three raise ``SpecError``, whose message is one line
naming the field and showing the bad value.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smoe.config import TrainConfig
from smoe.data import PAPER_CATEGORIES
from smoe.data.dataset import SOURCES as DATA_SOURCES
from smoe.model import ROUTINGS

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
PRESETS = ("default", "paper")

OBJECTIVES = ("recon", "recon_nmi")
ALGORITHMS = ("optuna", "grid")

# Parameters the Optuna search may vary; each is searched on the scale named here.
SEARCHABLE = {
    "beta": "log-uniform",
    "lambda_balance": "log-uniform",
    "lambda_entropy": "log-uniform",
    "num_experts": "integer",
    "data_fraction": "categorical",
}

# Parameters a grid may list values for.
GRIDDABLE = ("num_experts", "data_fraction", "seed", "beta", "lambda_balance", "lambda_entropy")


class SpecError(ValueError):
    """Invalid study spec value; ``str(error)`` is one line naming the field and the bad value."""

    def __init__(self, field: str, problem: str, value: Any):
        self.field = field
        self.problem = problem
        self.value = value
        super().__init__(f"{field}: {problem}, got {value!r}")


@dataclass
class DataSpec:
    source: str = "auto"
    categories: list[str] = field(default_factory=lambda: list(PAPER_CATEGORIES))
    per_category: int | None = 1000
    test_fraction: float = 0.1
    split_seed: int = 0


# The train section: every smoe.train.TrainConfig field with TrainConfig's default, so the two
# cannot drift apart. num_threads is left out because each trial's torch threads come from
# resources.cpus_per_trial. Searched or gridded parameters override these fields per trial.
TrainSpec = dataclasses.make_dataclass(
    "TrainSpec",
    [(f.name, f.type, field(default=f.default)) for f in dataclasses.fields(TrainConfig) if f.name != "num_threads"],
)
TrainSpec.__module__ = __name__  # make_dataclass in Python 3.11 cannot set it, and pickling needs it


@dataclass
class SearchSpec:
    algorithm: str = "optuna"
    objective: str = "recon"
    num_samples: int = 8
    max_concurrent: int = 2
    seed: int = 0
    # NSGA-II population per generation (multi-objective only); null picks num_samples // 3, 2..50.
    population_size: int | None = None
    # optuna: name -> [low, high] (beta, lambdas, num_experts) or a list of choices (data_fraction).
    space: dict[str, list] = field(default_factory=dict)
    # grid: name -> list of values, crossed; each baseline fixes some names and is crossed with the rest.
    grid: dict[str, list] = field(default_factory=dict)
    baselines: list[dict] = field(default_factory=list)


@dataclass
class SchedulerSpec:
    asha: bool = True
    grace_period: int = 1
    reduction_factor: float = 2.0


@dataclass
class ResourceSpec:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


@dataclass
class FaultSpec:
    max_failures: int = 2
    checkpoints_to_keep: int = 2


@dataclass
class StudySpec:
    name: str = "smoe"
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    search: SearchSpec = field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    faults: FaultSpec = field(default_factory=FaultSpec)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {
    "data": DataSpec,
    "train": TrainSpec,
    "search": SearchSpec,
    "scheduler": SchedulerSpec,
    "resources": ResourceSpec,
    "faults": FaultSpec,
}


# ----------------------------------------------------------------------------------------------
# Reading


def preset_path(preset: str) -> Path:
    if preset not in PRESETS:
        raise SpecError("--preset", f"unknown preset, expected one of {', '.join(PRESETS)}", preset)
    return STUDIES_DIR / f"{preset}.yaml"


def load_spec(path: str | Path) -> StudySpec:
    """Read a spec file; keys it leaves out keep the defaults of the dataclasses above."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("--config", "file not found", str(path)) from None
    except OSError as error:
        raise SpecError("--config", f"cannot read file ({error.strerror})", str(path)) from None

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise SpecError("--config", f"invalid YAML at {where} ({problem})", str(path)) from None

    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise SpecError("--config", "expected a mapping of sections at the top level", type(document).__name__)
    return spec_from_dict(document)


def spec_from_dict(document: dict) -> StudySpec:
    """Build a spec from a parsed YAML mapping, rejecting unknown sections and keys."""
    spec = StudySpec()
    for key, value in document.items():
        if key == "name":
            spec.name = value
            continue
        if key not in _SECTIONS:
            known = ", ".join(["name", *_SECTIONS])
            raise SpecError(str(key), f"unknown section, expected one of {known}", value)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise SpecError(key, "expected a mapping of keys", value)

        section_type = _SECTIONS[key]
        known_keys = {f.name for f in dataclasses.fields(section_type)}
        for sub_key in value:
            if sub_key not in known_keys:
                raise SpecError(f"{key}.{sub_key}", f"unknown key, expected one of {', '.join(sorted(known_keys))}",
                                value[sub_key])
        setattr(spec, key, section_type(**{**dataclasses.asdict(getattr(spec, key)), **value}))
    return spec


def apply_overrides(spec: StudySpec, overrides: dict[str, Any]) -> StudySpec:
    """Return a copy of ``spec`` with dotted keys ("search.space.beta") set; None values are skipped."""
    spec = copy.deepcopy(spec)
    for dotted, value in overrides.items():
        if value is None:
            continue
        target: Any = spec
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[part] if isinstance(target, dict) else getattr(target, part)
        if isinstance(target, dict):
            target[last] = value
        else:
            setattr(target, last, value)
    return spec


# ----------------------------------------------------------------------------------------------
# Validation


def _check_int(field_name: str, value: Any, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field_name, "expected an integer", value)
    if minimum is not None and value < minimum:
        raise SpecError(field_name, f"must be at least {minimum}", value)


def _check_number(field_name: str, value: Any, minimum: float | None = None, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(field_name, "expected a number", value)
    if value != value:
        raise SpecError(field_name, "must not be NaN", value)
    if positive and value <= 0:
        raise SpecError(field_name, "must be positive", value)
    if minimum is not None and value < minimum:
        raise SpecError(field_name, f"must be at least {minimum}", value)


def _check_choice(field_name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(field_name, f"expected one of {', '.join(choices)}", value)


def _check_fraction(field_name: str, value: Any) -> None:
    _check_number(field_name, value)
    if not 0 < value <= 1:
        raise SpecError(field_name, "must lie in (0, 1]", value)


def _check_range(field_name: str, value: Any, integer: bool) -> None:
    """Check a [low, high] search range; log-uniform ranges need 0 < low < high."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SpecError(field_name, "expected a range [low, high]", value)
    low, high = value
    for bound in (low, high):
        if integer:
            _check_int(field_name, bound)
        else:
            _check_number(field_name, bound)
    if integer:
        if low < 1:
            raise SpecError(field_name, "needs at least 1 expert", value)
        if low > high:
            raise SpecError(field_name, "empty range, low must not exceed high", value)
        return
    if low < 0 or high < 0:
        raise SpecError(field_name, "must not be negative", value)
    if low == 0:
        raise SpecError(field_name, "a log-uniform range needs low > 0", value)
    if low >= high:
        raise SpecError(field_name, "empty range, low must be below high", value)


def _check_categories(spec: StudySpec) -> None:
    """Check the names against what the data source offers and store Google's spelling."""
    from tune.data import available_categories, canonical_categories

    categories = spec.data.categories
    if isinstance(categories, str):
        categories = [categories]
    if not isinstance(categories, (list, tuple)) or not categories:
        raise SpecError("data.categories", "expected a non-empty list of category names", categories)

    names = canonical_categories(spec.data.source, list(categories))
    if isinstance(names, str):
        available = available_categories(spec.data.source, list(categories))
        shown = ", ".join(available) if len(available) <= 30 else f"{len(available)} QuickDraw categories"
        raise SpecError("data.categories", f"unknown category for source {spec.data.source!r} "
                        f"(available: {shown})", names)
    if len(set(names)) != len(names):
        raise SpecError("data.categories", "lists a category twice", categories)
    spec.data.categories = names


def _check_train_config(field_name: str, config: dict) -> None:
    """Validate one trial config with smoe.train's own checks."""
    from smoe.train import ConfigError, TrainConfig

    try:
        TrainConfig.from_dict(config)
    except ConfigError as error:
        raise SpecError(f"{field_name}.{error.field}", f"must be {error.requirement}", error.value) from None


def validate_spec(spec: StudySpec) -> None:
    """Raise SpecError for the first invalid value; nothing is started or written here."""
    if not isinstance(spec.name, str) or not spec.name or "/" in spec.name or spec.name.startswith("."):
        raise SpecError("name", "expected a folder name without '/'", spec.name)

    data = spec.data
    _check_choice("data.source", data.source, DATA_SOURCES)
    if data.per_category is not None:
        _check_int("data.per_category", data.per_category, minimum=10)
    _check_number("data.test_fraction", data.test_fraction)
    if not 0 < data.test_fraction < 1:
        raise SpecError("data.test_fraction", "must lie in (0, 1)", data.test_fraction)
    _check_int("data.split_seed", data.split_seed, minimum=0)
    _check_categories(spec)

    train = spec.train
    _check_int("train.epochs", train.epochs, minimum=1)
    _check_int("train.num_experts", train.num_experts, minimum=1)
    _check_choice("train.routing", train.routing, ROUTINGS)
    for name in ("beta", "lambda_balance", "lambda_entropy", "lambda_supervised"):
        _check_number(f"train.{name}", getattr(train, name), minimum=0)
    _check_number("train.lr", train.lr, positive=True)
    _check_fraction("train.data_fraction", train.data_fraction)

    search = spec.search
    _check_choice("search.algorithm", search.algorithm, ALGORITHMS)
    _check_choice("search.objective", search.objective, OBJECTIVES)
    _check_int("search.num_samples", search.num_samples, minimum=1)
    _check_int("search.max_concurrent", search.max_concurrent, minimum=1)
    _check_int("search.seed", search.seed, minimum=0)
    if search.population_size is not None:
        _check_int("search.population_size", search.population_size, minimum=2)
    if search.algorithm == "optuna":
        _validate_space(search.space)
    else:
        _validate_grid(search)

    scheduler = spec.scheduler
    if not isinstance(scheduler.asha, bool):
        raise SpecError("scheduler.asha", "expected true or false", scheduler.asha)
    _check_int("scheduler.grace_period", scheduler.grace_period, minimum=1)
    _check_number("scheduler.reduction_factor", scheduler.reduction_factor)
    if scheduler.reduction_factor <= 1:
        raise SpecError("scheduler.reduction_factor", "must be greater than 1", scheduler.reduction_factor)

    _check_number("resources.cpus_per_trial", spec.resources.cpus_per_trial, positive=True)
    _check_number("resources.gpus_per_trial", spec.resources.gpus_per_trial, minimum=0)
    _check_int("faults.max_failures", spec.faults.max_failures, minimum=0)
    _check_int("faults.checkpoints_to_keep", spec.faults.checkpoints_to_keep, minimum=1)

    # smoe.train has the last word on every trial config (routing, lr, batch size, ...).
    for index, config in enumerate(trial_configs_for_validation(spec)):
        where = "train" if index == 0 else "search"
        _check_train_config(where, config)
        if config["routing"] in ("supervised", "label") and config["num_experts"] != len(spec.data.categories):
            categories = len(spec.data.categories)
            if spec.search.algorithm == "optuna" and "num_experts" in spec.search.space:
                raise SpecError("search.space.num_experts",
                                f"must be [{categories}, {categories}] for routing {config['routing']!r}, which "
                                f"needs one expert per category (flag: --num-experts-range {categories} "
                                f"{categories})", spec.search.space["num_experts"])
            raise SpecError(f"{where}.num_experts", f"must equal the {categories} categories "
                            f"for routing {config['routing']!r}", config["num_experts"])


def _validate_space(space: dict) -> None:
    if not isinstance(space, dict) or not space:
        raise SpecError("search.space", "expected a mapping of at least one searched parameter", space)
    for name, value in space.items():
        field_name = f"search.space.{name}"
        if name not in SEARCHABLE:
            raise SpecError(field_name, f"not searchable, expected one of {', '.join(SEARCHABLE)}", value)
        if SEARCHABLE[name] == "categorical":
            if not isinstance(value, (list, tuple)) or not value:
                raise SpecError(field_name, "expected a non-empty list of fractions", value)
            for fraction in value:
                _check_fraction(field_name, fraction)
            if len(set(value)) != len(value):
                raise SpecError(field_name, "lists a value twice", value)
        else:
            _check_range(field_name, value, integer=SEARCHABLE[name] == "integer")


def _validate_grid(search: SearchSpec) -> None:
    if not isinstance(search.grid, dict) or not search.grid:
        raise SpecError("search.grid", "expected a mapping of gridded parameters to value lists", search.grid)
    for name, values in search.grid.items():
        field_name = f"search.grid.{name}"
        if name not in GRIDDABLE:
            raise SpecError(field_name, f"not griddable, expected one of {', '.join(GRIDDABLE)}", values)
        if not isinstance(values, (list, tuple)) or not values:
            raise SpecError(field_name, "expected a non-empty list of values", values)
        for value in values:
            if name in ("num_experts",):
                _check_int(field_name, value, minimum=1)
            elif name == "seed":
                _check_int(field_name, value, minimum=0)
            elif name == "data_fraction":
                _check_fraction(field_name, value)
            else:
                _check_number(field_name, value, minimum=0)
    if not isinstance(search.baselines, list):
        raise SpecError("search.baselines", "expected a list of mappings", search.baselines)
    trainable_fields = {f.name for f in dataclasses.fields(TrainSpec)}
    for index, baseline in enumerate(search.baselines):
        if not isinstance(baseline, dict) or not baseline:
            raise SpecError(f"search.baselines[{index}]", "expected a mapping of fixed train fields", baseline)
        for key in baseline:
            if key not in trainable_fields:
                raise SpecError(f"search.baselines[{index}].{key}", "unknown train field", baseline[key])


# ----------------------------------------------------------------------------------------------
# Trial configs


def data_config(spec: StudySpec) -> dict:
    """Return the data fields every trial config records, so params.json shows what the trial trained on."""
    return {
        "categories": list(spec.data.categories),
        "per_category": spec.data.per_category,
        "data_source": spec.data.source,
        "test_fraction": spec.data.test_fraction,
        "split_seed": spec.data.split_seed,
    }


def base_config(spec: StudySpec) -> dict:
    """Fixed part of every trial config: the train section, the data fields and the CPU threads."""
    config = dataclasses.asdict(spec.train)
    config.update(data_config(spec))
    config["num_threads"] = max(1, int(spec.resources.cpus_per_trial))
    return config


def grid_configs(spec: StudySpec) -> list[dict]:
    """All trial configs of a grid study: the cross product of search.grid, then each baseline.

    A baseline fixes some fields (e.g. routing: supervised, num_experts: 5) and is crossed with the
    grid axes it does not fix, so the supervised baseline runs at every data fraction and seed.
    """
    base = base_config(spec)
    grid = spec.search.grid
    configs = []
    names = list(grid)
    for values in itertools.product(*(grid[name] for name in names)):
        configs.append({**base, **dict(zip(names, values))})

    for baseline in spec.search.baselines:
        free = [name for name in names if name not in baseline]
        for values in itertools.product(*(grid[name] for name in free)):
            configs.append({**base, **baseline, **dict(zip(free, values))})
    return configs


def trial_configs_for_validation(spec: StudySpec) -> list[dict]:
    """Configs that cover every value a study can produce: the grid itself, or the search space's ends."""
    if spec.search.algorithm == "grid":
        return grid_configs(spec)

    base = base_config(spec)
    low, high = dict(base), dict(base)
    for name, value in spec.search.space.items():
        if SEARCHABLE[name] == "categorical":
            low[name], high[name] = min(value), max(value)
        else:
            low[name], high[name] = value[0], value[1]
    return [base, low, high]


def count_trials(spec: StudySpec) -> int:
    if spec.search.algorithm == "grid":
        return len(grid_configs(spec))
    return spec.search.num_samples


def dump_spec(spec: StudySpec, path: Path) -> None:
    """Write the resolved spec as YAML (study.yaml), readable by ``load_spec``."""
    text = yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None)
    path.write_text(text, encoding="utf-8")
