"""End-to-end studies through `python tune/run_study.py` on the bundled sample: results in Ray's
layout, the Optuna study, a study killed and resumed, a grid with a baseline, two objectives, and a
local Ray that listens on 127.0.0.1 only."""

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from ray.tune import ExperimentAnalysis

REPO = Path(__file__).resolve().parent.parent
RUN_STUDY = REPO / "tune" / "run_study.py"
SMALL = ["--epochs", "1", "--per-category", "200", "--num-experts-range", "2", "4"]


def study_command(storage, name, *args):
    return [sys.executable, str(RUN_STUDY), "--storage-path", str(storage), "--name", name, "--num-cpus", "2", *args]


def run_study(storage, name, *args, timeout=240):
    completed = subprocess.run(study_command(storage, name, *args), capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def optuna_states(study_dir):
    study = optuna.load_study(study_name="smoe", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    return [trial.state.name for trial in study.get_trials(deepcopy=False)]


def first_trial_complete(study_dir):
    if not (study_dir / "optuna.db").exists():
        return False
    try:
        return "COMPLETE" in optuna_states(study_dir)
    except KeyError:  # the driver has not created the Optuna study yet
        return False


def descendants(pid):
    """Process ids below ``pid``, read from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def listening_addresses(pids):
    """Local addresses of the TCP sockets that processes ``pids`` listen on, from `ss -ltnp`."""
    output = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    addresses = []
    for line in output.splitlines():
        owners = {int(pid) for pid in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            addresses.append(line.split()[3])
    return addresses


def host_of(address):
    """The IPv4 host of an `ss` address such as 127.0.0.1:6379 or [::ffff:127.0.0.1]:6379."""
    host = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    return str(getattr(host, "ipv4_mapped", None) or host)


def test_study_three_trials(tmp_path):
    if shutil.which("ss") is None:
        pytest.skip("needs `ss` (iproute2) to list listening sockets")

    # Output goes to a file, because a pipe left unread while polling could fill up and block the study.
    log_path = tmp_path / "study.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            study_command(tmp_path, "three", "--num-samples", "3", "--max-concurrent", "2", *SMALL),
            stdout=log, stderr=subprocess.STDOUT, text=True)
        addresses = set()
        while process.poll() is None:
            addresses.update(listening_addresses(descendants(process.pid) | {process.pid}))
            time.sleep(1)
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]

    study_dir = tmp_path / "three"
    table = ExperimentAnalysis(str(study_dir)).dataframe()
    assert len(table) == 3
    for name in ("beta", "lambda_balance", "lambda_entropy", "num_experts", "data_fraction"):
        assert table[f"config/{name}"].notna().all(), name
    for name in ("recon_error", "purity", "nmi", "active_experts", "node_id"):
        assert table[name].notna().all(), name
    assert set(table["status"]) == {"completed"}
    assert optuna_states(study_dir) == ["COMPLETE"] * 3
    assert (study_dir / "study.yaml").is_file()

    trial_dirs = sorted(path.parent for path in study_dir.glob("*/params.json"))
    assert len(trial_dirs) == 3
    trial_dir = trial_dirs[0]
    params = json.loads((trial_dir / "params.json").read_text())
    for key in ("routing", "seed", "categories", "per_category", "epochs"):
        assert key in params, key
    assignments = pd.read_csv(trial_dir / "assignments.csv")
    assert {"index", "label", "expert"} <= set(assignments.columns)
    assert len(assignments) == 100  # 10 % of 200 drawings in each of 5 categories
    assert sorted(path.name for path in trial_dir.glob("checkpoint_*/*")) == ["assignments.csv", "checkpoint.pt"]

    assert "Best trial" in output
    assert f"python -m analysis.report {study_dir}" in output
    assert addresses, "no listening socket seen during the study"
    assert {host_of(address) for address in addresses} == {"127.0.0.1"}, addresses


def test_study_killed_then_resumed(tmp_path):
    study_dir = tmp_path / "killed"
    process = subprocess.Popen(
        study_command(tmp_path, "killed", "--num-samples", "4", "--max-concurrent", "2", *SMALL),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if first_trial_complete(study_dir):
            break
        assert process.poll() is None, "the study ended before it could be killed"
        time.sleep(0.3)
    else:
        pytest.fail("no trial completed within 180 s")
    # SIGKILL the driver and the Ray processes it started, as a lost machine would.
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    completed = run_study(tmp_path, "killed", "--resume")

    table = ExperimentAnalysis(str(study_dir)).dataframe()
    assert len(table) == 4
    assert set(table["status"]) == {"completed"}
    assert optuna_states(study_dir) == ["COMPLETE"] * 4
    assert "Trials: 4 (4 completed)" in completed.stdout


def test_grid_study_with_baseline(tmp_path):
    spec = tmp_path / "grid.yaml"
    spec.write_text(
        "name: small-grid\n"
        "data: {categories: [face, eye, cat], per_category: 100}\n"
        "train: {epochs: 1}\n"
        "search:\n"
        "  algorithm: grid\n"
        "  max_concurrent: 2\n"
        "  grid: {num_experts: [2, 4], data_fraction: [1.0], seed: [0]}\n"
        "  baselines: [{routing: supervised, num_experts: 3}]\n"
    )
    completed = run_study(tmp_path, "grid", "--config", str(spec))

    table = ExperimentAnalysis(str(tmp_path / "grid")).dataframe()
    assert sorted(zip(table["config/routing"], table["config/num_experts"])) == [
        ("learned", 2), ("learned", 4), ("supervised", 3)]
    assert not (tmp_path / "grid" / "optuna.db").exists()
    assert "Trials: 3 (3 completed)" in completed.stdout


def test_two_objective_study(tmp_path):
    completed = run_study(tmp_path, "pareto", "--objective", "recon_nmi", "--num-samples", "3", *SMALL)

    study = optuna.load_study(study_name="smoe", storage=f"sqlite:///{tmp_path / 'pareto' / 'optuna.db'}")
    assert [direction.name for direction in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert all(len(trial.values) == 2 for trial in study.trials)
    assert "Pareto front" in completed.stdout


def test_existing_study_name_rejected(tmp_path):
    (tmp_path / "taken").mkdir()
    completed = subprocess.run(study_command(tmp_path, "taken"), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert "already exists" in completed.stderr


def epoch_reported(study_dir):
    return any(path.stat().st_size > 0 for path in study_dir.glob("*/result.json"))


def test_study_interrupted_by_ctrl_c(tmp_path):
    study_dir = tmp_path / "stopped"
    log_path = tmp_path / "stopped.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            study_command(tmp_path, "stopped", "--num-samples", "2", "--max-concurrent", "2", "--no-asha",
                          "--epochs", "30", "--per-category", "100", "--num-experts-range", "2", "3"),
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while not epoch_reported(study_dir):
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "no epoch reported within 180 s"
            time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    output = log_path.read_text()

    assert process.returncode == 130, output[-3000:]
    assert "interrupted" in output
    assert f"--resume --name stopped --storage-path {tmp_path}" in output
