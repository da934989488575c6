"""fit, TrainConfig, Checkpoint and the `python -m smoe.train` command line, on real sample drawings."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from smoe import metrics
from smoe.data import load_quickdraw
from smoe.checkpoint import snapshot
from smoe.train import Checkpoint, ConfigError, TrainConfig, evaluate, fit, load_model, main

RUN = {"num_experts": 3, "epochs": 3, "batch_size": 32, "lr": 1e-3}


@pytest.fixture(scope="module")
def tiny_data():
    """5 categories x 40 real drawings: 36 train and 4 test images each."""
    return load_quickdraw(source="sample", per_category=40)


def without_timing(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if key != "epoch_time_s"}


# TrainConfig


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_experts", 0),
        ("num_experts", 2.0),
        ("num_experts", True),
        ("latent_dim", 0),
        ("routing", "oracle"),
        ("beta", -1.0),
        ("beta", math.inf),
        ("lambda_balance", -0.1),
        ("lambda_entropy", math.nan),
        ("lambda_supervised", -1),
        ("lr", 0.0),
        ("lr", -1e-4),
        ("batch_size", 0),
        ("epochs", 0),
        ("data_fraction", 0.0),
        ("data_fraction", 1.5),
        ("seed", -1),
        ("data_seed", 1.5),
        ("device", "tpu"),
        ("device", "cuda:x"),
        ("num_threads", 0),
        ("eval_batch_size", 0),
        ("expert_impl", "vmap"),
    ],
)
def test_config_rejects(field, value):
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict({field: value})
    assert error.value.field == field
    assert str(error.value).startswith(f"{field} must be ")
    assert str(error.value).endswith(f"got {value!r}")


def test_config_from_dict_ignores_extra_keys():
    config = TrainConfig.from_dict({"num_experts": np.int64(7), "categories": ["cat"], "per_category": 10})
    assert config.num_experts == 7
    assert type(config.num_experts) is int


def test_config_defaults_are_paper_setup():
    config = TrainConfig()
    assert (config.lr, config.batch_size, config.epochs) == (1e-4, 128, 20)
    assert (config.beta, config.lambda_balance, config.lambda_entropy) == (0.1, 200.0, 400.0)


# fit


@pytest.fixture(scope="module")
def run(tiny_data):
    """A three-epoch run with every report it made: the run most fit tests inspect."""
    reports = []
    result = fit(RUN, tiny_data, report=lambda m, c: reports.append((m, c)))
    return result, reports


def test_fit_reports_every_epoch(run):
    result, reports = run
    assert result.status == "completed"
    assert [m["status"] for m, _ in reports] == ["running", "running", "completed"]
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3]
    assert all(isinstance(c, Checkpoint) for _, c in reports)
    assert [c.epoch for _, c in reports] == [1, 2, 3]
    assert result.history == [m for m, _ in reports]


def test_fit_metrics_keys(run):
    metrics_ = run[0].metrics
    expected = {
        "epoch", "status", "recon_error", "recon_error_mu", "kl", "purity", "nmi", "ari", "active_experts",
        "usage_entropy", "routing_confidence", "expert_usage", "counts", "train_loss", "train_recon",
        "train_kl", "train_balance", "train_entropy", "epoch_time_s", "num_train_images",
    }
    assert set(metrics_) == expected
    assert len(metrics_["expert_usage"]) == 3
    assert np.array(metrics_["counts"]).shape == (3, 5)
    assert metrics_["num_train_images"] == 180


def test_fit_assignments_match_metrics(run, tiny_data):
    result, _ = run
    table = result.checkpoint.assignments
    assert list(table.columns) == ["index", "label", "category", "expert"]
    assert len(table) == tiny_data.test_images.shape[0]
    assert result.metrics["purity"] == metrics.purity(table["label"], table["expert"])
    assert result.metrics["nmi"] == metrics.nmi(table["label"], table["expert"])
    assert metrics.contingency(table["label"], table["expert"], 5, 3).tolist() == result.metrics["counts"]


def test_fit_recon_error_falls(run):
    history = run[0].history
    assert history[-1]["recon_error"] < history[0]["recon_error"]
    assert history[-1]["train_recon"] < history[0]["train_recon"]


def test_fit_same_seed_same_result(run, tiny_data):
    again = fit({**RUN, "epochs": 1}, tiny_data)
    first_epoch = {**run[0].history[0], "status": "completed"}
    assert without_timing(again.metrics) == without_timing(first_epoch)


def test_fit_data_fraction(tiny_data):
    result = fit({**RUN, "epochs": 1, "data_fraction": 0.5}, tiny_data)
    assert result.metrics["num_train_images"] == 90


def test_resume_is_exact(run, tiny_data, tmp_path):
    straight, reports = run
    reports[1][1].save(tmp_path)  # the checkpoint after epoch 2
    resumed = fit(RUN, tiny_data, resume_from=Checkpoint.load(tmp_path))

    assert [without_timing(h) for h in resumed.history] == [without_timing(h) for h in straight.history]
    for name, tensor in straight.checkpoint.state["model"].items():
        assert torch.equal(resumed.checkpoint.state["model"][name], tensor), name
    for name in ("shuffle", "noise"):
        assert torch.equal(resumed.checkpoint.state["rng"][name], straight.checkpoint.state["rng"][name]), name


def test_resume_rejects_other_config(run, tiny_data):
    checkpoint = run[1][0][1]
    with pytest.raises(ConfigError, match="beta must be 0.1 .*checkpoint.*got 0.5") as error:
        fit({**RUN, "beta": 0.5}, tiny_data, resume_from=checkpoint)
    assert error.value.field == "beta"


def test_diverged_first_epoch(tiny_data):
    reports = []
    result = fit({**RUN, "lr": 1e30}, tiny_data, report=lambda m, c: reports.append((m, c)))
    assert result.status == "diverged"
    assert len(reports) == 1
    assert reports[0][0]["status"] == "diverged"
    assert reports[0][0]["epoch"] == 1
    assert reports[0][1] is None
    assert math.isnan(result.metrics["recon_error"])


def test_diverged_keeps_last_good_metrics(run, tiny_data):
    good = run[1][0][1]
    broken = Checkpoint(state=snapshot(good.state))
    # A logvar bias of 1e38 makes exp(logvar / 2) infinite, so the first step of epoch 2 has a NaN loss.
    broken.state["model"]["encoder.logvar.bias"].fill_(1e38)
    reports = []
    result = fit(RUN, tiny_data, report=lambda m, c: reports.append((m, c)), resume_from=broken)
    assert result.status == "diverged"
    assert reports == [(result.metrics, None)]
    assert result.metrics["epoch"] == 2
    assert result.metrics["recon_error"] == good.metrics["recon_error"]
    assert result.checkpoint is broken


@pytest.mark.parametrize("routing", ["supervised", "label"])
def test_routing_needs_one_expert_per_category(tiny_data, routing):
    with pytest.raises(ConfigError, match=r"num_experts must be 5 \(the number of categories\)") as error:
        fit({**RUN, "routing": routing}, tiny_data)
    assert error.value.field == "num_experts"


def test_supervised_routing_reports_cross_entropy(tiny_data):
    # The gate beats chance (log 5) only once the encoder's z carries class information, after
    # about a hundred steps. This short run only has to train with the term and report it.
    result = fit({**RUN, "num_experts": 5, "routing": "supervised", "epochs": 1}, tiny_data)
    assert result.status == "completed"
    assert result.metrics["train_supervised"] == pytest.approx(math.log(5), rel=0.1)


def test_label_routing_is_pure(tiny_data):
    result = fit({**RUN, "num_experts": 5, "routing": "label", "epochs": 1}, tiny_data)
    assert result.metrics["purity"] == 1.0
    assert result.metrics["nmi"] == pytest.approx(1.0)


def test_evaluate_repeats(run, tiny_data):
    model = load_model(run[0].checkpoint)
    first, _ = evaluate(model, tiny_data.test_images, tiny_data.test_labels, seed=3)
    second, _ = evaluate(model, tiny_data.test_images, tiny_data.test_labels, seed=3)
    assert first == second


def test_load_model_reproduces_metrics(run, tiny_data, tmp_path):
    result = run[0]
    result.checkpoint.save(tmp_path)
    model = load_model(Checkpoint.load(tmp_path))
    eval_seed = int(np.random.SeedSequence(0).generate_state(4)[3])  # fit's evaluation seed for seed 0
    again, _ = evaluate(model, tiny_data.test_images, tiny_data.test_labels, seed=eval_seed, num_categories=5)
    assert again["recon_error"] == result.metrics["recon_error"]
    assert again["counts"] == result.metrics["counts"]


def test_checkpoint_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        Checkpoint.load(tmp_path)


def test_checkpoint_load_corrupt(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable smoe checkpoint"):
        Checkpoint.load(tmp_path)


# Command line


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "smoe.train", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_writes_results(tmp_path):
    out = tmp_path / "run"
    done = run_cli("--num-experts", "3", "--epochs", "1", "--data-fraction", "0.2", "--per-category", "60", "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert {"final", "history", "config", "status"} <= set(summary)
    assert summary["status"] == "completed"
    assert len(summary["history"]) == 1

    table = pd.read_csv(out / "assignments.csv")
    assert list(table.columns) == ["index", "label", "category", "expert"]
    assert summary["final"]["purity"] == pytest.approx(metrics.purity(table["label"], table["expert"]), abs=1e-12)
    assert summary["final"]["nmi"] == pytest.approx(metrics.nmi(table["label"], table["expert"]), abs=1e-12)
    assert (out / "checkpoint.pt").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--num-experts", "0"], "error: --num-experts must be >= 1, got 0"),
        (["--data-fraction", "1.5"], "error: --data-fraction must be in (0, 1], got 1.5"),
        (["--beta", "-1"], "error: --beta must be a finite number >= 0, got -1.0"),
        (["--categories", "unicorn"], "error: unknown category 'unicorn'"),
    ],
)
def test_cli_rejects_subprocess(tmp_path, args, message):
    done = run_cli(*args, "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "error: --epochs must be >= 1, got 0"),
        (["--lr", "0"], "error: --lr must be a finite number > 0, got 0.0"),
        (["--threads", "0"], "error: --threads must be >= 1, got 0"),
        (["--per-category", "1"], "error: --per-category must be >= 2"),
        (["--routing", "label", "--num-experts", "3"], "error: --num-experts must be 5 (the number of categories)"),
        (["--num-experts", "three"], "error: argument --num-experts: invalid int value: 'three'"),
        (["--device", "tpu"], "error: --device must be 'auto' or a torch device string"),
    ],
)
def test_cli_rejects(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(message)


def test_cli_keeps_existing_results(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    assert "already contains results" in capsys.readouterr().err
    assert (tmp_path / "metrics.json").read_text() == "{}"


def test_cli_resume_extends_run(tmp_path):
    common = ["--num-experts", "2", "--per-category", "20", "--batch-size", "64", "--out", str(tmp_path), "--data", "sample"]
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert [entry["epoch"] for entry in summary["history"]] == [1, 2]
    assert summary["final"]["status"] == "completed"
