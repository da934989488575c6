"""load_study and the report command on a small real study made by tune/run_study.py.

The study (3 Optuna trials, 1 epoch, 200 drawings per category) is made once for this
module, in about a minute. Tests that need failed, diverged, running or early-stopped
trials edit a copy of its folder the way those trials leave it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

from analysis import compare_routings, load_study, summarize
from analysis.importances import param_importances
from analysis.load import COMPLETED, DIVERGED, EARLY_STOPPED, ERROR, RUNNING, StudyError
from analysis.report import main as report_main

REPO = Path(__file__).resolve().parents[1]
TRIAL_COLUMNS = (
    "trial_id", "status", "beta", "lambda_balance", "lambda_entropy", "num_experts", "data_fraction", "routing",
    "seed", "recon_error", "recon_error_mu", "kl", "purity", "nmi", "ari", "active_experts", "usage_entropy",
    "routing_confidence", "best_recon_error", "epochs_run", "wall_time_s",
)


def run_report(study, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analysis.report", str(study), "--out", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    storage = tmp_path_factory.mktemp("studies")
    result = subprocess.run(
        [sys.executable, "tune/run_study.py", "--num-samples", "3", "--max-concurrent", "2", "--epochs", "1",
         "--per-category", "200", "--storage-path", str(storage), "--name", "tiny", "--num-cpus", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return storage / "tiny"


@pytest.fixture(scope="module")
def report_dir(study_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = run_report(study_dir, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def trial_folders(study: Path) -> list[Path]:
    return sorted(path for path in study.iterdir() if (path / "params.json").is_file())


def set_ray_status(study: Path, folder_name: str, status: str) -> None:
    """Rewrite the trial's status in Ray's experiment_state file."""
    state_path = sorted(study.glob("experiment_state-*.json"))[-1]
    state = json.loads(state_path.read_text())
    for item in state["trial_data"]:
        trial = json.loads(item[0])
        if trial["relative_logdir"] == folder_name:
            trial["status"] = status
            item[0] = json.dumps(trial)
    state_path.write_text(json.dumps(state))


def set_configured_epochs(folder: Path, epochs: int) -> None:
    params = json.loads((folder / "params.json").read_text())
    params["epochs"] = epochs
    (folder / "params.json").write_text(json.dumps(params))


def rewrite_last_result(folder: Path, **changes) -> None:
    lines = (folder / "result.json").read_text().splitlines()
    last = json.loads(lines[-1])
    last.update(changes)
    lines[-1] = json.dumps(last)
    (folder / "result.json").write_text("\n".join(lines) + "\n")


def html_text(path: Path) -> str:
    """The report's HTML with embedded images removed, so base64 cannot match a search."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", path.read_text())


# load_study


def test_load_study_trials(study_dir):
    trials, epochs = load_study(study_dir)
    assert len(trials) == 3
    assert trials["trial_id"].is_unique
    assert set(trials["status"]) == {COMPLETED}
    for column in TRIAL_COLUMNS:
        assert column in trials.columns, column


def test_load_study_epochs(study_dir):
    study = load_study(study_dir)
    assert len(study.epochs) == 3
    assert study.epochs["epoch"].tolist() == [1, 1, 1]
    assert set(study.epochs["trial_id"]) == set(study.trials["trial_id"])
    assert all(len(usage) == experts for usage, experts in zip(study.epochs["expert_usage"], study.epochs["num_experts"]))


def test_load_study_metadata(study_dir):
    study = load_study(study_dir)
    assert study.name == "tiny"
    assert study.has_optuna
    assert study.trials["categories"].iloc[0] == "face,eye,cat,snowflake,pencil"
    assert study.trials["last_checkpoint"].notna().all()


def test_load_study_file_uri(study_dir):
    study = load_study(f"file://{study_dir}")
    assert len(study.trials) == 3


def test_load_study_missing(tmp_path):
    with pytest.raises(StudyError, match="not found"):
        load_study(tmp_path / "absent")


def test_load_study_not_a_study(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StudyError, match="not a Ray Tune study"):
        load_study(tmp_path)


def test_load_study_statuses(study_dir, tmp_path):
    copy = tmp_path / "faulty"
    shutil.copytree(study_dir, copy)
    errored, diverged, running = trial_folders(copy)

    (errored / "error.txt").write_text("Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n")
    set_ray_status(copy, errored.name, "ERROR")
    rewrite_last_result(diverged, status="diverged")
    set_configured_epochs(running, 3)
    rewrite_last_result(running, status="running")
    set_ray_status(copy, running.name, "RUNNING")
    with open(running / "result.json", "a") as stream:
        stream.write('{"epoch": 2, "recon_er')  # a line still being written

    trials = load_study(copy).trials.set_index("trial_dir")
    assert trials.loc[errored.name, "status"] == ERROR
    assert trials.loc[errored.name, "error"] == "RuntimeError: CUDA out of memory"
    assert trials.loc[diverged.name, "status"] == DIVERGED
    assert trials.loc[running.name, "status"] == RUNNING
    assert trials.loc[running.name, "epochs_run"] == 1


def test_load_study_early_stopped(study_dir, tmp_path):
    copy = tmp_path / "asha"
    shutil.copytree(study_dir, copy)
    stopped = trial_folders(copy)[0]
    set_configured_epochs(stopped, 4)
    rewrite_last_result(stopped, status="running")
    set_ray_status(copy, stopped.name, "TERMINATED")

    trials = load_study(copy).trials.set_index("trial_dir")
    assert trials.loc[stopped.name, "status"] == EARLY_STOPPED
    assert summarize(trials)["n"].sum() == 2


def test_load_study_pending_trials(study_dir, tmp_path):
    copy = tmp_path / "pending"
    shutil.copytree(study_dir, copy)
    for folder in trial_folders(copy):
        set_ray_status(copy, folder.name, "PENDING")
        shutil.rmtree(folder)

    trials = load_study(copy).trials
    assert trials["status"].tolist() == ["pending"] * 3
    assert trials["num_experts"].notna().all()
    assert trials["epochs_run"].tolist() == [0, 0, 0]


def replace_optuna_db(study: Path, trials: int, directions: list[str]) -> None:
    """Replace optuna.db by a real Optuna study with ``trials`` completed trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (study / "optuna.db").unlink()
    optuna_study = optuna.create_study(directions=directions, storage=f"sqlite:///{study / 'optuna.db'}",
                                       study_name="smoe", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        beta = trial.suggest_float("beta", 0.01, 1.0, log=True)
        experts = trial.suggest_int("num_experts", 2, 10)
        values = (beta * 100 + experts, 1.0 / experts)
        return values[: len(directions)] if len(directions) > 1 else values[0]

    optuna_study.optimize(objective, n_trials=trials)


def test_importances_too_few_trials(study_dir, tmp_path):
    copy = tmp_path / "few"
    shutil.copytree(study_dir, copy)
    replace_optuna_db(copy, trials=1, directions=["minimize"])
    importances = param_importances(load_study(copy))
    assert importances.values == {}
    assert "at least 2" in importances.reason


def test_importances_multi_objective(study_dir, tmp_path):
    copy = tmp_path / "pareto"
    shutil.copytree(study_dir, copy)
    replace_optuna_db(copy, trials=6, directions=["minimize", "maximize"])
    importances = param_importances(load_study(copy))
    assert set(importances.values) == {"beta", "num_experts"}
    assert sum(importances.values.values()) == pytest.approx(1.0)


# report


def test_report_html_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]*)"', html)
    assert len(images) >= 3
    assert all(source.startswith("data:image/png;base64,") for source in images)
    assert "http://" not in html_text(report_dir / "report.html")
    assert "https://" not in html_text(report_dir / "report.html")
    assert "<link" not in html
    assert "<script" not in html


def test_report_trials_csv(report_dir):
    trials = pd.read_csv(report_dir / "trials.csv")
    assert len(trials) == 3
    for column in TRIAL_COLUMNS:
        assert column in trials.columns, column
    assert len(pd.read_parquet(report_dir / "trials.parquet")) == 3


def test_report_tables_written(report_dir):
    for name in ("epochs", "summary", "summary_by_active_experts", "comparison", "correlations", "pareto"):
        assert (report_dir / f"{name}.csv").is_file(), name
    assert len(pd.read_csv(report_dir / "epochs.csv")) == 3


def test_report_figures(report_dir):
    svgs = {path.stem for path in (report_dir / "figures").glob("*.svg")}
    expected = {"recon_vs_active_experts", "specialization_vs_recon", "epoch_curves", "expert_category_heatmap",
                "tsne", "reconstructions_by_expert", "param_importances"}
    assert expected <= svgs


def test_report_findings_without_baseline(report_dir):
    text = html_text(report_dir / "report.html")
    assert "no completed supervised trials" in text


def test_report_single_trial_no_nan(study_dir, tmp_path):
    copy = tmp_path / "single"
    shutil.copytree(study_dir, copy)
    for folder in trial_folders(copy)[1:]:
        shutil.rmtree(folder)
    for state in copy.glob("experiment_state-*.json"):
        state.unlink()
    result = run_report(copy, tmp_path / "out", "--no-checkpoint-figures")
    text = html_text(tmp_path / "out" / "report.html")
    assert result.returncode == 0, result.stderr
    assert "n/a" in text
    assert re.search(r">\s*nan\s*<", text, flags=re.IGNORECASE) is None
    assert len(pd.read_csv(tmp_path / "out" / "trials.csv")) == 1


def test_report_faulty_trials(study_dir, tmp_path):
    copy = tmp_path / "faulty"
    shutil.copytree(study_dir, copy)
    errored, diverged, _ = trial_folders(copy)
    (errored / "error.txt").write_text("ValueError: bad config\n")
    rewrite_last_result(diverged, status="diverged")
    result = run_report(copy, tmp_path / "out", "--no-checkpoint-figures")
    text = html_text(tmp_path / "out" / "report.html")
    statuses = pd.read_csv(tmp_path / "out" / "trials.csv")["status"].value_counts().to_dict()
    assert result.returncode == 0, result.stderr
    assert statuses == {COMPLETED: 1, ERROR: 1, DIVERGED: 1}
    assert "Failed trials" in text
    assert "Diverged trials" in text


def test_compare_routings_on_study(study_dir):
    trials = load_study(study_dir).trials
    supervised = trials.assign(routing="supervised", trial_id=trials["trial_id"] + "s")
    comparison = compare_routings(pd.concat([trials, supervised]), by=("study",))
    assert comparison.loc[comparison["metric"] == "recon_error", "difference"].iloc[0] == pytest.approx(0.0)


# bad input


def test_report_missing_study_subprocess(tmp_path):
    result = run_report(tmp_path / "absent", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: study folder not found: {tmp_path / 'absent'}"


@pytest.mark.parametrize("case", ["missing", "empty", "file", "not_a_study"])
def test_report_bad_study(case, tmp_path, capsys):
    target = tmp_path / "study"
    if case == "empty":
        target.mkdir()
    elif case == "file":
        target.write_text("not a folder")
    elif case == "not_a_study":
        target.mkdir()
        (target / "results.txt").write_text("1 2 3")
    status = report_main([str(target), "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1, lines
    assert str(target) in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any folder")
def test_report_unreadable_study(study_dir, tmp_path):
    copy = tmp_path / "locked"
    shutil.copytree(study_dir, copy)
    copy.chmod(0)
    try:
        result = run_report(copy, tmp_path / "out")
    finally:
        copy.chmod(0o755)
    assert result.returncode == 2
    assert str(copy) in result.stderr
    assert "Traceback" not in result.stderr


def test_report_unknown_best_trial(study_dir, tmp_path):
    result = run_report(study_dir, tmp_path / "out", "--best-trial", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr
    assert "Traceback" not in result.stderr
