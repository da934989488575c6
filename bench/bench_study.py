"""Benchmark: study wall time with 2 concurrent trials against 1, and Ray's per-trial overhead.

Runs the same small grid of trials (bundled sample, 1 CPU and 1 torch thread per trial) on a local
Ray with 2 CPUs, with max_concurrent 1 and with max_concurrent 2, alternating for ``--repeats``
rounds. It prints the median wall times and their ratio (target: at least 1.6).

Per-trial overhead is the time from Ray starting a trial (Callback.on_trial_start, on the driver)
to its first epoch result arriving on the driver, minus that epoch's own epoch_time_s: actor
start or reuse, fetching the data from the object store, building the model, and reporting.

    python bench/bench_study.py [--repeats 3] [--experts 2 4 8 16] [--epochs 2] [--per-category 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local Ray on 127.0.0.1 only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy  # noqa: E402
import ray  # noqa: E402
from ray.tune import Callback  # noqa: E402

from tune.data import load_study_data  # noqa: E402
from tune.spec import spec_from_dict, validate_spec  # noqa: E402
from tune.storage import StudyLocation  # noqa: E402
from tune.study import build_tuner  # noqa: E402


class TrialTimer(Callback):
    """Driver-side time from each trial's start to its first result."""

    def __init__(self):
        self.started: dict[str, float] = {}
        self.overheads: list[float] = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("training_iteration") == 1 and trial.trial_id in self.started:
            elapsed = time.perf_counter() - self.started.pop(trial.trial_id)
            self.overheads.append(elapsed - result["epoch_time_s"])


def bench_spec(args, max_concurrent: int):
    spec = spec_from_dict({
        "name": "bench",
        "data": {"source": "sample", "per_category": args.per_category},
        "train": {"epochs": args.epochs},
        "search": {
            "algorithm": "grid",
            "max_concurrent": max_concurrent,
            "grid": {"num_experts": args.experts, "data_fraction": [1.0], "seed": [0]},
        },
        "scheduler": {"asha": False},
    })
    validate_spec(spec)
    return spec


def run_once(args, data, storage: str, max_concurrent: int, round_index: int, timer: TrialTimer,
             costs: list) -> float:
    spec = bench_spec(args, max_concurrent)
    location = StudyLocation(storage, f"concurrent{max_concurrent}-round{round_index}")
    tuner = build_tuner(spec, location, data, callbacks=[timer])
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    errors = [result.error for result in results if result.error is not None]
    if errors:
        raise RuntimeError(f"benchmark trial failed: {errors[0]}")
    if max_concurrent == 1:  # one trial at a time: each epoch has a core to itself
        for result in results:
            costs.append((result.config["num_experts"], result.metrics["epoch_time_s"] / result.metrics["num_train_images"]))
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of (1 concurrent, 2 concurrent)")
    parser.add_argument("--experts", type=int, nargs="+", default=[2, 4, 8, 16],
                        help="num_experts of the trials, one trial each")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--per-category", type=int, default=300, help="drawings per category")
    args = parser.parse_args()

    spec = bench_spec(args, 1)
    data = load_study_data(spec.data)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)

    walls = {1: [], 2: []}
    timer = TrialTimer()
    costs: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory(prefix="smoe-bench-") as storage:
        for round_index in range(args.repeats):
            for max_concurrent in (1, 2):
                walls[max_concurrent].append(run_once(args, data, storage, max_concurrent, round_index, timer, costs))
    ray.shutdown()

    serial, parallel = statistics.median(walls[1]), statistics.median(walls[2])
    print(f"{len(args.experts)} trials (num_experts {args.experts}) x {args.epochs} epochs, "
          f"{len(data.train_labels)} train drawings, 2 CPUs, {args.repeats} rounds")
    print(f"max_concurrent 1: median wall {serial:.1f} s  ({', '.join(f'{w:.1f}' for w in walls[1])})")
    print(f"max_concurrent 2: median wall {parallel:.1f} s  ({', '.join(f'{w:.1f}' for w in walls[2])})")
    print(f"speed-up (wall 1 / wall 2): {serial / parallel:.2f}x  (target >= 1.6x)")
    print(f"per-trial overhead (start to first epoch result, minus the epoch): median "
          f"{statistics.median(timer.overheads):.2f} s, max {max(timer.overheads):.2f} s "
          f"over {len(timer.overheads)} trials")

    # Least-squares line through (num_experts, seconds per image), the cost model of --dry-run.
    experts, seconds = numpy.array(costs, dtype=float).T
    per_expert, base = numpy.polyfit(experts, seconds, 1)
    print(f"CPU cost per training image and epoch, 1 thread, test evaluation included: "
          f"{base * 1e3:.2f} + {per_expert * 1e3:.2f} x num_experts ms")


if __name__ == "__main__":
    main()
