"""Run, resume and summarize a study: the Tuner around ``tune.trainable.train_smoe``.

The study folder is Ray Tune's experiment folder ``<storage_path>/<name>`` (so that
``ray.tune.ExperimentAnalysis`` and ``Tuner.restore`` read it) plus ``study.yaml``, the resolved
spec, and ``optuna.db``, the Optuna study of an "optuna" search.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from tune import space
from tune.data import load_study_data
from tune.spec import SpecError, StudySpec, count_trials, dump_spec, load_spec
from tune.storage import OPTUNA_DB, StudyLocation, download, upload
from tune.trainable import train_smoe

logger = logging.getLogger(__name__)

SPEC_FILE = "study.yaml"
SUMMARY_METRICS = ["recon_error", "nmi", "purity", "active_experts", "epoch"]
SUMMARY_PARAMS = ["num_experts", "data_fraction", "beta", "lambda_balance", "lambda_entropy", "routing", "seed"]


def read_stored_spec(location: StudyLocation) -> StudySpec:
    if not download(location, SPEC_FILE):
        raise SpecError("--resume", f"no {SPEC_FILE} in the study folder, so it is not a study to resume",
                        location.uri)
    return load_spec(location.local_dir / SPEC_FILE)


# ----------------------------------------------------------------------------------------------
# Ray


def start_ray(address: str | None, num_cpus: int | None) -> None:
    """Join the cluster at ``address``, or start a local Ray that listens on 127.0.0.1 only.

    The local case relies on RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which the command line sets
    before Ray is imported: Ray 2.60 then uses 127.0.0.1 as every node's address instead of the
    machine's own, and the dashboard is not started.
    """
    if address:
        ray.init(address=address, log_to_driver=True)
        logger.info("joined Ray cluster at %s: %s", address, ray.cluster_resources())
        return
    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    logger.info("started local Ray: %s", ray.cluster_resources())


def trial_dirname(trial) -> str:
    """Short trial folder names: Ray's default repeats every parameter and its date."""
    config = trial.config
    return f"{trial.trial_id}_E{config.get('num_experts')}_f{config.get('data_fraction')}"


def build_trainable(spec: StudySpec, data):
    trainable = tune.with_parameters(train_smoe, data=data)
    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    return tune.with_resources(trainable, resources)


def build_tuner(spec: StudySpec, location: StudyLocation, data, callbacks=None) -> tune.Tuner:
    """Objective, search space, searcher, scheduler and storage of a new study.

    ``callbacks`` are extra ray.tune.Callback objects, e.g. the benchmark's timers.
    """
    metrics, modes = space.objectives(spec)
    single_objective = len(metrics) == 1
    db_path = str(location.optuna_db) if spec.search.algorithm == "optuna" else None

    tune_config = tune.TuneConfig(
        metric=metrics[0] if single_objective else None,
        mode=modes[0] if single_objective else None,
        search_alg=space.make_searcher(spec, db_path),
        scheduler=space.make_scheduler(spec),
        num_samples=count_trials(spec),
        # A function trainable starts afresh in a reused actor; this saves about 1.5 s per trial.
        reuse_actors=True,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=location.name,
        storage_path=location.storage_path,
        failure_config=tune.FailureConfig(max_failures=spec.faults.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.faults.checkpoints_to_keep),
        # Copies assignments.csv, written to the trial's working directory, into its trial folder.
        sync_config=tune.SyncConfig(sync_artifacts=True),
        callbacks=callbacks,
        verbose=1,  # the status table; 2 would add a box per trial start and end
    )
    param_space = space.param_space(spec)
    param_space["data_source"] = data.source  # what "auto" resolved to: "full" or "sample"
    return tune.Tuner(build_trainable(spec, data), param_space=param_space,
                      tune_config=tune_config, run_config=run_config)


def run(spec: StudySpec, location: StudyLocation, *, address: str | None = None,
        num_cpus: int | None = None) -> tune.ResultGrid:
    """Start a new study: write study.yaml, load the data once, run all trials."""
    location.local_dir.mkdir(parents=True, exist_ok=True)
    dump_spec(spec, location.local_dir / SPEC_FILE)
    upload(location, SPEC_FILE)

    data = load_study_data(spec.data)
    start_ray(address, num_cpus)
    _set_experiment_checkpoint_period(location)
    tuner = build_tuner(spec, location, data)
    try:
        return tuner.fit()
    finally:
        if spec.search.algorithm == "optuna":
            upload(location, OPTUNA_DB)


def resume(location: StudyLocation, *, address: str | None = None, num_cpus: int | None = None):
    """Continue an interrupted study with its stored spec and Optuna study."""
    spec = read_stored_spec(location)
    if spec.search.algorithm == "optuna":
        download(location, OPTUNA_DB)
        space.resume_db_path = str(location.optuna_db)

    data = load_study_data(spec.data)
    start_ray(address, num_cpus)
    _set_experiment_checkpoint_period(location)
    tuner = tune.Tuner.restore(
        location.uri if location.is_remote else str(location.local_dir.resolve()),
        trainable=build_trainable(spec, data),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=True,
    )
    try:
        return spec, tuner.fit()
    finally:
        if spec.search.algorithm == "optuna":
            upload(location, OPTUNA_DB)


def _set_experiment_checkpoint_period(location: StudyLocation) -> None:
    # Ray saves the experiment state (which trials finished, the searcher) every 10 s or more by
    # default. A driver killed in between restarts trials that had finished since, so local
    # studies, where a save is cheap, save every 2 s. Remote storage keeps Ray's adaptive period.
    if not location.is_remote:
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
        # Saving that often makes Ray warn that snapshots may become a bottleneck; locally they don't.
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


# ----------------------------------------------------------------------------------------------
# Summary


def results_table(results: tune.ResultGrid) -> pd.DataFrame:
    """Tabulate the trials: status, last metrics and searched parameters, one row each."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        config = result.config or {}
        row = {"trial_id": metrics.get("trial_id"), "status": _trial_status(result)}
        row.update({name: config.get(name) for name in SUMMARY_PARAMS})
        row.update({name: metrics.get(name) for name in SUMMARY_METRICS})
        row["path"] = result.path
        rows.append(row)
    return pd.DataFrame(rows)


def _trial_status(result) -> str:
    if result.error is not None:
        return "error"
    status = (result.metrics or {}).get("status")
    if status in ("completed", "diverged"):
        return status
    return "stopped early" if status == "running" else "no result"


def pareto_front(table: pd.DataFrame) -> pd.DataFrame:
    """Select the trials that no other trial beats on both lower recon_error and higher nmi."""
    finished = table[table["status"].isin(["completed", "stopped early"])].dropna(subset=["recon_error", "nmi"])
    keep = []
    for index, row in finished.iterrows():
        dominated = (
            (finished["recon_error"] <= row["recon_error"]) & (finished["nmi"] >= row["nmi"])
            & ((finished["recon_error"] < row["recon_error"]) | (finished["nmi"] > row["nmi"]))
        ).any()
        if not dominated:
            keep.append(index)
    return finished.loc[keep].sort_values("recon_error")


def summarize(spec: StudySpec, results: tune.ResultGrid, location: StudyLocation,
              interrupted: bool = False) -> str:
    """Format the end-of-study text: trial counts, the best trial or Pareto front, and the next step.

    For an interrupted study, trials whose last epoch was not their final one count as
    "interrupted" (not "stopped early"), and the text ends with the command that continues it.
    """
    table = results_table(results)
    if interrupted:
        table.loc[table["status"].isin(["stopped early", "no result"]), "status"] = "interrupted"
    lines = ["", f"Trials: {len(table)} ({_count_text(table)})"]

    pd.set_option("display.width", 160)
    columns = [c for c in SUMMARY_PARAMS + SUMMARY_METRICS if c in table] + ["trial_id"]
    ranked = table[table["status"].isin(["completed", "stopped early"])].dropna(subset=["recon_error"])
    if spec.search.objective == "recon_nmi":
        front = pareto_front(table)
        lines += ["Pareto front (minimize recon_error, maximize nmi):", front[columns].to_string(index=False)]
    elif not ranked.empty:
        best = ranked.sort_values("recon_error").iloc[0]
        lines += ["Best trial (lowest test recon_error):", best[columns].to_string()]
    else:
        lines.append("No trial completed.")

    if spec.search.algorithm == "optuna":
        lines.append(f"Optuna study:  optuna-dashboard sqlite:///{location.optuna_db.resolve()}")
    folder = location.uri if location.is_remote else str(location.local_dir.resolve())
    lines += [f"Study folder:  {folder}", f"Report:        python -m analysis.report {folder}"]
    if interrupted:
        lines += ["The study was interrupted. Continue it with:",
                  f"    python tune/run_study.py --resume --name {location.name} --storage-path {location.storage_path}"]
    return "\n".join(lines)


def _count_text(table: pd.DataFrame) -> str:
    counts = table["status"].value_counts()
    return ", ".join(f"{count} {status}" for status, count in counts.items())
