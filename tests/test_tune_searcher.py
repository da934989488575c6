"""StudyOptunaSearch without a Ray runtime: resuming keeps optuna.db one trial per Ray trial, and a
diverged trial is reported to Optuna as FAIL."""

import math

import optuna
import pytest
from ray import tune as ray_tune

from tune import space
from tune.space import StudyOptunaSearch

SPACE = {"beta": ray_tune.loguniform(0.01, 1.0), "num_experts": ray_tune.randint(2, 6)}


def make_searcher(db_path):
    searcher = StudyOptunaSearch(metric="recon_error", mode="min", seed=0, study_name="smoe", db_path=str(db_path))
    searcher.set_search_properties(None, None, SPACE)
    return searcher


def optuna_trials(db_path):
    study = optuna.load_study(study_name="smoe", storage=f"sqlite:///{db_path}")
    return study.get_trials(deepcopy=False)


def test_resume_adopts_orphaned_trial(tmp_path):
    db_path = tmp_path / "optuna.db"
    searcher = make_searcher(db_path)
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"recon_error": 150.0})
    searcher.suggest("b")
    state_file = tmp_path / "searcher.pkl"
    searcher.save(str(state_file))
    # Asked for after Ray's last save of the searcher, so a resumed Ray never hears of it.
    orphan_params = searcher.suggest("c")

    resumed = make_searcher(tmp_path / "unused.db")
    resumed.restore(str(state_file))
    adopted_params = resumed.suggest("d")
    resumed.on_trial_complete("b", {"recon_error": 140.0})
    resumed.on_trial_complete("d", {"recon_error": 130.0})

    assert adopted_params == orphan_params
    states = [trial.state for trial in optuna_trials(db_path)]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3


def test_restore_reads_resume_db_path(tmp_path, monkeypatch):
    moved = tmp_path / "moved"
    moved.mkdir()
    searcher = make_searcher(tmp_path / "optuna.db")
    searcher.suggest("a")
    searcher.save(str(tmp_path / "searcher.pkl"))
    (tmp_path / "optuna.db").rename(moved / "optuna.db")

    monkeypatch.setattr(space, "resume_db_path", str(moved / "optuna.db"))
    resumed = make_searcher(tmp_path / "fresh.db")
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.on_trial_complete("a", {"recon_error": 120.0})

    assert optuna_trials(moved / "optuna.db")[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize("recon_error", [math.nan, 160.0])
def test_diverged_trial_fails_in_optuna(tmp_path, recon_error):
    searcher = make_searcher(tmp_path / "optuna.db")
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"recon_error": recon_error, "status": "diverged"})

    trial = optuna_trials(tmp_path / "optuna.db")[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["status"] == "diverged"
