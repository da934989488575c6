"""Hyperparameter importances from the Optuna study that searched a Tune study (optuna.db).

``optuna.importance.get_param_importances`` uses Optuna's default evaluator (PED-ANOVA in
Optuna 5.x) on the completed Optuna trials. Importances need at least two completed trials
and at least one parameter that varies. Without them the result has no values and a
``reason``.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
import warnings
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from analysis.load import Study

logger = logging.getLogger(__name__)

OPTUNA_DB = "optuna.db"


@dataclass
class Importances:
    """Importances of one Optuna study, largest first, or the reason there are none."""

    study_name: str | None
    evaluator: str
    values: dict[str, float] = field(default_factory=dict)
    completed_trials: int = 0
    reason: str | None = None  # set when ``values`` is empty


def param_importances(study: Study) -> Importances | None:
    """Compute hyperparameter importances from the study's optuna.db.

    Returns None when the study has no optuna.db (a grid study). With several Optuna
    studies in the database, the one with the most completed trials is used.
    """
    if not study.has_optuna:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    filesystem, root = study.open_filesystem()
    with tempfile.TemporaryDirectory(prefix="smoe-optuna-") as directory:
        database = posixpath.join(root, OPTUNA_DB)
        if not isinstance(filesystem, pafs.LocalFileSystem):
            local = posixpath.join(directory, OPTUNA_DB)
            pafs.copy_files(database, local, source_filesystem=filesystem,
                            destination_filesystem=pafs.LocalFileSystem())
            database = local
        storage = optuna.storages.RDBStorage(f"sqlite:///{database}")
        try:
            return _importances_from_storage(optuna, storage)
        finally:
            storage.remove_session()
            storage.engine.dispose()


def _importances_from_storage(optuna, storage) -> Importances:
    evaluator = "PedAnovaImportanceEvaluator" if hasattr(optuna.importance, "PedAnovaImportanceEvaluator") else "default"
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return Importances(None, evaluator, reason="optuna.db holds no Optuna study")
    study_name = max(summaries, key=lambda summary: summary.n_trials).study_name
    optuna_study = optuna.load_study(study_name=study_name, storage=storage)

    completed = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(completed) < 2:
        return Importances(study_name, evaluator, completed_trials=len(completed),
                           reason=f"{len(completed)} completed Optuna trial(s); importances need at least 2")
    varying = {name for trial in completed for name in trial.params
               if len({repr(other.params.get(name)) for other in completed}) > 1}
    if not varying:
        return Importances(study_name, evaluator, completed_trials=len(completed),
                           reason="no searched parameter varies across the completed Optuna trials")
    # A multi-objective study needs a target. Take the first objective, which is the minimized
    # recon_error in the recon_nmi objective (tune/space.py). Optuna warns that a custom
    # target is minimized, which is intended here.
    target = (lambda trial: trial.values[0]) if len(optuna_study.directions) > 1 else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*computes the importances of params to achieve low")
            values = optuna.importance.get_param_importances(optuna_study, target=target)
    except (RuntimeError, ValueError) as error:
        logger.warning("Optuna importances failed for study %s: %s", study_name, error)
        return Importances(study_name, evaluator, completed_trials=len(completed),
                           reason=f"Optuna could not compute importances ({error})")
    return Importances(study_name, evaluator, dict(values), completed_trials=len(completed))
