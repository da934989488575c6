"""Studies on a two-node Ray cluster (ray.cluster_utils.Cluster, both nodes on 127.0.0.1): trials
spread over both nodes, and a study that loses a node mid-way still completes."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster
from ray.tune import ExperimentAnalysis

REPO = Path(__file__).resolve().parent.parent
RUN_STUDY = REPO / "tune" / "run_study.py"

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    # tests/conftest.py sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so both nodes use 127.0.0.1.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


def study_command(cluster, storage, name, *args):
    return [sys.executable, str(RUN_STUDY), "--address", cluster.address, "--storage-path", str(storage),
            "--name", name, "--per-category", "200", "--num-experts-range", "2", "3", *args]


def reported_node_ids(study_dir):
    node_ids = set()
    for result_file in study_dir.glob("*/result.json"):
        for line in result_file.read_text().splitlines():
            node_ids.add(json.loads(line)["node_id"])
    return node_ids


def test_trials_run_on_both_nodes(cluster, tmp_path):
    cluster, worker = cluster
    completed = subprocess.run(
        study_command(cluster, tmp_path, "spread", "--num-samples", "4", "--max-concurrent", "2", "--epochs", "1"),
        capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    table = ExperimentAnalysis(str(tmp_path / "spread")).dataframe()
    assert len(table) == 4
    assert set(table["node_id"]) == {cluster.head_node.node_id, worker.node_id}


def test_study_survives_node_loss(cluster, tmp_path):
    cluster, worker = cluster
    study_dir = tmp_path / "lossy"
    process = subprocess.Popen(
        study_command(cluster, tmp_path, "lossy", "--num-samples", "2", "--max-concurrent", "2", "--epochs", "3",
                      "--no-asha"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    deadline = time.monotonic() + 180
    while worker.node_id not in reported_node_ids(study_dir):
        assert process.poll() is None, "the study ended before the worker node reported an epoch"
        assert time.monotonic() < deadline, "no epoch reported from the worker node within 180 s"
        time.sleep(0.3)
    cluster.remove_node(worker)
    output, _ = process.communicate(timeout=300)

    assert process.returncode == 0, output[-3000:]
    table = ExperimentAnalysis(str(study_dir)).dataframe()
    assert len(table) == 2
    assert set(table["status"]) == {"completed"}
    assert set(table["epoch"]) == {3}
    assert set(table["node_id"]) == {cluster.head_node.node_id}
