"""Study specs: the shipped presets, validation in-process, and the command line rejecting bad values
with one line before Ray starts."""

import subprocess
import sys
from pathlib import Path

import pytest

from tune.spec import (
    SpecError, apply_overrides, count_trials, grid_configs, load_spec, preset_path, validate_spec,
)

REPO = Path(__file__).resolve().parent.parent
RUN_STUDY = REPO / "tune" / "run_study.py"


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(RUN_STUDY), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_default_preset_validates():
    spec = load_spec(preset_path("default"))
    validate_spec(spec)
    assert spec.search.algorithm == "optuna"
    assert set(spec.search.space) == {"beta", "lambda_balance", "lambda_entropy", "num_experts", "data_fraction"}


def test_paper_preset_counts_475_trials():
    spec = load_spec(preset_path("paper"))
    validate_spec(spec)
    configs = grid_configs(spec)
    learned = [c for c in configs if c["routing"] == "learned"]
    supervised = [c for c in configs if c["routing"] == "supervised"]

    assert count_trials(spec) == 475
    assert len(learned) == 450
    assert len(supervised) == 25
    assert sorted({c["num_experts"] for c in learned}) == [*range(1, 11), *range(15, 51, 5)]
    assert {c["num_experts"] for c in supervised} == {5}
    assert sorted({c["data_fraction"] for c in supervised}) == [0.05, 0.1, 0.2, 0.4, 1.0]
    assert sorted({c["seed"] for c in configs}) == [0, 1, 2, 3, 4]
    assert {(c["beta"], c["lambda_balance"], c["lambda_entropy"], c["epochs"]) for c in configs} == {(0.1, 200.0, 400.0, 20)}
    assert spec.data.per_category == 70000
    assert spec.scheduler.asha is False


def test_trial_config_records_data_fields():
    spec = load_spec(preset_path("paper"))
    config = grid_configs(spec)[0]
    for key in ("categories", "per_category", "routing", "seed", "epochs", "lr", "batch_size"):
        assert key in config, key


@pytest.mark.parametrize("field, value, problem", [
    ("search.space.beta", [0.0, -1.0], "must not be negative"),
    ("search.space.beta", [1.0, 0.5], "empty range"),
    ("search.space.beta", [0.0, 1.0], "low > 0"),
    ("search.space.lambda_entropy", [5.0], "expected a range"),
    ("search.space.num_experts", [0, 4], "at least 1 expert"),
    ("search.space.num_experts", [2.5, 4], "expected an integer"),
    ("search.space.data_fraction", [0.5, 1.5], "(0, 1]"),
    ("train.beta", -0.1, "at least 0"),
    ("train.epochs", 0, "at least 1"),
    ("scheduler.reduction_factor", 1, "greater than 1"),
    ("data.source", "web", "expected one of"),
])
def test_validate_rejects(field, value, problem):
    spec = apply_overrides(load_spec(preset_path("default")), {field: value})
    with pytest.raises(SpecError) as caught:
        validate_spec(spec)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_validate_rejects_supervised_expert_mismatch():
    spec = apply_overrides(load_spec(preset_path("default")), {"train.routing": "supervised"})
    with pytest.raises(SpecError) as caught:
        validate_spec(spec)
    assert caught.value.field == "search.space.num_experts"
    assert "--num-experts-range 5 5" in caught.value.problem


def test_validate_canonicalizes_categories():
    spec = apply_overrides(load_spec(preset_path("default")), {"data.categories": ["Face", "alarm_clock"]})
    validate_spec(spec)
    assert spec.data.categories == ["face", "alarm clock"]


def test_load_rejects_unknown_key(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("search:\n  num_sample: 3\n")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.field == "search.num_sample"


@pytest.mark.parametrize("args, field", [
    (["--beta-range", "0", "-1"], "--beta-range"),
    (["--num-experts-range", "0", "3"], "--num-experts-range"),
    (["--data-fractions", "0.5", "1.5"], "--data-fractions"),
    (["--categories", "face", "unicorn"], "--categories"),
    (["--epochs", "0"], "--epochs"),
    (["--beta-range", "a", "1"], "--beta-range"),
    (["--config", "missing.yaml"], "--config"),
])
def test_cli_rejects_in_one_line(tmp_path, args, field):
    storage = tmp_path / "studies"
    completed = run_cli(*args, "--storage-path", str(storage), "--name", "x", cwd=tmp_path)
    lines = completed.stderr.strip().splitlines()

    assert completed.returncode == 2
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"error: {field}") or lines[0].startswith(f"error: argument {field}")
    assert "Traceback" not in completed.stderr
    assert not storage.exists()


@pytest.mark.parametrize("text, shown", [
    ("search:\n  bogus: 1\n", "search.bogus"),
    ("search: [1, 2\n", "invalid YAML"),
])
def test_cli_rejects_bad_config_file(tmp_path, text, shown):
    config = tmp_path / "spec.yaml"
    config.write_text(text)
    completed = run_cli("--config", str(config), "--storage-path", str(tmp_path / "studies"))
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1
    assert shown in completed.stderr


def test_cli_dry_run_paper(tmp_path):
    completed = run_cli("--preset", "paper", "--dry-run", "--storage-path", str(tmp_path / "studies"))
    assert completed.returncode == 0, completed.stderr
    assert "475 trials" in completed.stdout
    assert "0.25 GPU per trial" in completed.stdout
    assert "of one GPU" in completed.stdout
    assert not (tmp_path / "studies").exists()


def test_cli_resume_needs_existing_study(tmp_path):
    completed = run_cli("--resume", "--name", "absent", "--storage-path", str(tmp_path))
    assert completed.returncode == 2
    assert "no study folder" in completed.stderr
