"""Search space, searcher and scheduler of a study, built from its spec.

An "optuna" study samples beta and the two lambdas log-uniformly, num_experts as an integer and
data_fraction from a list, with Ray's OptunaSearch (TPE, or NSGA-II for two objectives) over a
SQLite Optuna study in the study folder. A "grid" study runs a fixed list of configs through Ray's
BasicVariantGenerator. References: Ray Tune's optuna_example.py; Akiba et al., "Optuna" (KDD 2019).
"""

from __future__ import annotations

import logging
import math
import threading

import optuna
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from tune.spec import SEARCHABLE, StudySpec, base_config, grid_configs

logger = logging.getLogger(__name__)

OPTUNA_STUDY_NAME = "smoe"
PRIMARY_METRIC = "recon_error"

# optuna.db of the study being resumed, set by the driver before Tuner.restore unpickles the
# searcher, because the study folder may have moved since the searcher was pickled.
resume_db_path: str | None = None


def objectives(spec: StudySpec) -> tuple[list[str], list[str]]:
    """Return the metrics and modes the study optimizes."""
    if spec.search.objective == "recon_nmi":
        return [PRIMARY_METRIC, "nmi"], ["min", "max"]
    return [PRIMARY_METRIC], ["min"]


def param_space(spec: StudySpec) -> dict:
    """Build the Tuner's param_space: fixed train and data fields, Ray domains for searched ones."""
    space = base_config(spec)
    if spec.search.algorithm == "grid":
        # The grid's points replace these fields; a categorical domain over the values they take keeps
        # Ray from warning, once per point, that a point differs from a fixed value.
        configs = grid_configs(spec)
        for name, value in space.items():
            values = [config[name] for config in configs]
            if any(other != value for other in values):
                space[name] = tune.choice(list(dict.fromkeys(values)))
        return space

    for name, value in spec.search.space.items():
        scale = SEARCHABLE[name]
        if scale == "log-uniform":
            space[name] = tune.loguniform(float(value[0]), float(value[1]))
        elif scale == "integer":
            space[name] = tune.randint(int(value[0]), int(value[1]) + 1)  # upper bound is exclusive
        else:
            space[name] = tune.choice([float(fraction) for fraction in value])
    return space


class StudyOptunaSearch(OptunaSearch):
    """OptunaSearch whose Optuna study stays consistent when a killed study is resumed.

    Ray pickles the searcher with the experiment state every few seconds, so a driver killed in
    between leaves Optuna trials that were asked for but that Ray never recorded: they stay RUNNING in
    optuna.db. On restore, the searcher reopens optuna.db in the study folder, which may have moved.
    It hands those orphaned trials to the next new Ray trials instead of asking for new ones, so
    optuna.db ends with one Optuna trial per Ray trial.

    A diverged trial (status "diverged", non-finite objective) is reported to Optuna as FAIL with the
    user attribute ``status: diverged``, because TPE cannot rank a NaN objective.
    """

    def __init__(self, *args, db_path: str, **kwargs):
        self._db_path = db_path
        self._orphans: list[int] = []
        super().__init__(*args, storage=_sqlite_storage(db_path), **kwargs)

    def reopen(self, db_path: str) -> None:
        """Reconnect to optuna.db at ``db_path`` and collect the trials to adopt."""
        self._db_path = db_path
        self._storage = _sqlite_storage(db_path)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                           sampler=self._ot_study.sampler if self._ot_study else None)
        self._ot_trials = {
            trial_id: optuna.trial.Trial(self._ot_study, ot_trial._trial_id)
            for trial_id, ot_trial in self._ot_trials.items()
        }

        known = {ot_trial._trial_id for ot_trial in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        self._orphans = [trial._trial_id for trial in running if trial._trial_id not in known]
        if self._orphans:
            logger.info("resuming Optuna study %s: %d trial(s) asked for before the interruption "
                        "will be run by the next new Ray trials", db_path, len(self._orphans))

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.reopen(resume_db_path or self._db_path)

    def suggest(self, trial_id: str):
        if trial_id not in self._ot_trials and self._orphans:
            self._ot_trials[trial_id] = optuna.trial.Trial(self._ot_study, self._orphans.pop(0))
        return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or not result:
            return super().on_trial_complete(trial_id, result, error)

        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        values = [result.get(metric) for metric in metrics]
        diverged = result.get("status") == "diverged" or any(
            value is None or not math.isfinite(value) for value in values)
        if not diverged:
            return super().on_trial_complete(trial_id, result, error)

        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr("status", "diverged")
        try:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        except RuntimeError as exc:  # already finished in optuna.db before an interruption
            logger.warning("Optuna trial %d of Ray trial %s: %s", ot_trial.number, trial_id, exc)
        self._completed_trials.add(trial_id)


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II sampler that Ray can pickle with the searcher state.

    Optuna 5.1's genetic-algorithm samplers hold a threading.Lock, which pickle rejects; the lock
    guards only in-process calls, so a fresh one after unpickling is equivalent.
    """

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def _sqlite_storage(db_path: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url=f"sqlite:///{db_path}")


def make_searcher(spec: StudySpec, db_path: str | None):
    """Return the search algorithm, limited to ``search.max_concurrent`` running trials."""
    if spec.search.algorithm == "grid":
        # Every config is a point to evaluate: the grid plus baselines is not one cross product.
        return BasicVariantGenerator(points_to_evaluate=grid_configs(spec),
                                     max_concurrent=spec.search.max_concurrent)

    metrics, modes = objectives(spec)
    if len(metrics) == 1:
        searcher = StudyOptunaSearch(metric=metrics[0], mode=modes[0], seed=spec.search.seed,
                                     study_name=OPTUNA_STUDY_NAME, db_path=db_path)
    else:
        # NSGA-II's first generation is random; a population of about a third of the trials leaves
        # two more generations for selection in small studies.
        population = spec.search.population_size or min(50, max(2, spec.search.num_samples // 3))
        sampler = PicklableNSGAIISampler(population_size=population, seed=spec.search.seed)
        searcher = StudyOptunaSearch(metric=metrics, mode=modes, sampler=sampler,
                                     study_name=OPTUNA_STUDY_NAME, db_path=db_path)
    return ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent)


def make_scheduler(spec: StudySpec):
    """ASHA on the per-epoch test recon_error, or None (FIFO) where it is off or cannot apply."""
    if not spec.scheduler.asha:
        return None
    if spec.search.objective == "recon_nmi":
        logger.warning("ASHA is off: it stops trials on one metric, and this study has two objectives")
        return None
    if spec.train.epochs <= spec.scheduler.grace_period:
        logger.info("ASHA is off: %d epoch(s) leave nothing to stop after the grace period of %d",
                    spec.train.epochs, spec.scheduler.grace_period)
        return None
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=spec.train.epochs,
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )
