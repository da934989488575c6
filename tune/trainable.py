"""The Ray Tune trainable: one trial is one ``smoe.train.fit`` run, reported to Tune every epoch.

Nothing about the model lives here. ``fit`` calls ``report(metrics, checkpoint)`` after every epoch,
and this module forwards both to Tune: the metrics (plus the node that ran the trial) become one
line of the trial's result.json, and the checkpoint becomes a Ray checkpoint folder in the
smoe.train.Checkpoint layout (checkpoint.pt, assignments.csv). A restarted trial resumes from its
latest Ray checkpoint.
"""

from __future__ import annotations

import logging
import os
import tempfile

import ray
import torch
from ray import tune

from smoe.data import QuickDrawData
from smoe.train import Checkpoint, TrainConfig, fit

logger = logging.getLogger(__name__)

ASSIGNMENTS_FILE = "assignments.csv"


def train_smoe(config: dict, data: QuickDrawData) -> None:
    """Train one SMoE-VAE on ``data`` with the trial ``config`` and report every epoch to Tune.

    Parameters
    ----------
    config : dict
        The trial config: smoe.train.TrainConfig fields plus the data fields the study records
        (categories, per_category, ...), which TrainConfig.from_dict ignores.
    data : QuickDrawData
        The study's drawings, put into Ray's object store once by ``tune.with_parameters``.
    """
    # Each trial gets its own CPUs; torch would otherwise start one thread per core of the node
    # in every trial and the concurrent trials would slow each other down.
    num_threads = int(config.get("num_threads") or 1)
    torch.set_num_threads(num_threads)

    train_config = TrainConfig.from_dict(config)
    resume_from = _load_latest_checkpoint()
    node_id = ray.get_runtime_context().get_node_id()

    # The working directory is the trial's own folder (Ray's RAY_CHDIR_TO_TRIAL_DIR, on by default);
    # with SyncConfig(sync_artifacts=True) its files are copied into the trial folder in storage.
    artifact_dir = os.getcwd()

    def report(metrics: dict, checkpoint: Checkpoint | None) -> None:
        metrics = {**metrics, "node_id": node_id}
        if checkpoint is None:
            tune.report(metrics)
            return

        if checkpoint.assignments is not None:
            checkpoint.assignments.to_csv(os.path.join(artifact_dir, ASSIGNMENTS_FILE), index=False)
        with tempfile.TemporaryDirectory(prefix="smoe-checkpoint-") as directory:
            checkpoint.save(directory)
            # Ray copies the folder into the trial's storage before report returns.
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    result = fit(train_config, data, report=report, resume_from=resume_from)
    logger.info("trial %s ended %s", tune.get_context().get_trial_id(), result.status)


def _load_latest_checkpoint() -> Checkpoint | None:
    ray_checkpoint = tune.get_checkpoint()
    if ray_checkpoint is None:
        return None
    with ray_checkpoint.as_directory() as directory:
        checkpoint = Checkpoint.load(directory)
    logger.info("trial %s resumes from %s", tune.get_context().get_trial_id(), ray_checkpoint.path)
    return checkpoint
