"""Read a Ray Tune study folder into pandas: one row per trial and one row per epoch.

The folder is the experiment directory that ``ray.tune.Tuner(run_config=RunConfig(name,
storage_path))`` writes: ``experiment_state-*.json`` with each trial's Ray status, and one
folder per trial holding ``params.json`` (the trial config) and ``result.json`` (one JSON
object per reported epoch). The files are read directly, without Ray, so a study can be
read while it is still running and from any storage that ``pyarrow.fs.FileSystem.from_uri``
opens (local paths, ``file://``, ``s3://``, ``gs://``, ``hdfs://``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
from dataclasses import dataclass, field

import pandas as pd
import pyarrow.fs as pafs

logger = logging.getLogger(__name__)

# Trial status, derived in `_trial_status`.
COMPLETED = "completed"          # trained all configured epochs
EARLY_STOPPED = "early-stopped"  # stopped by the scheduler (ASHA) before its last epoch
DIVERGED = "diverged"            # loss became NaN or inf; metrics are the last good epoch's
ERROR = "error"                  # raised an exception (error.txt in the trial folder)
RUNNING = "running"
PENDING = "pending"
PAUSED = "paused"
UNKNOWN = "unknown"              # stopped short with no Ray state to say why
STATUSES = (COMPLETED, EARLY_STOPPED, DIVERGED, ERROR, RUNNING, PENDING, PAUSED, UNKNOWN)

# Parameters listed first in the trials table, in this order; the others follow sorted.
PARAM_ORDER = (
    "routing", "num_experts", "data_fraction", "seed", "beta", "lambda_balance",
    "lambda_entropy", "epochs", "lr", "batch_size", "per_category",
)
# Scalar test metrics that every epoch reports (smoe.train.fit), in table order.
METRICS = (
    "recon_error", "recon_error_mu", "kl", "purity", "nmi", "ari", "active_experts",
    "usage_entropy", "routing_confidence",
)
# Best value over epochs: recon_error is minimized, specialization maximized.
BEST_MINIMIZED = ("recon_error", "recon_error_mu")
BEST_MAXIMIZED = ("purity", "nmi", "ari")
# Ray bookkeeping keys in result.json that are not trial results.
_DROPPED_RESULT_KEYS = {
    "config", "done", "should_checkpoint", "pid", "date", "iterations_since_restore",
    "time_since_restore", "timestamp",
}
# Last-epoch keys that the trials table already has under another name.
_DUPLICATE_TRIAL_KEYS = {"epoch", "training_iteration", "time_total_s", "checkpoint_dir_name", "time_this_iter_s"}
_RAY_STATUS = {"RUNNING": RUNNING, "PENDING": PENDING, "PAUSED": PAUSED, "ERROR": ERROR}


class StudyError(ValueError):
    """A study folder that is missing, unreadable or not a Ray Tune experiment folder."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{message}: {path}")
        self.path = path


@dataclass
class Study:
    """A loaded study: its trials and epochs tables and where they came from.

    ``trials`` has one row per trial with its status, its parameters as plain columns,
    its final metrics, ``best_*`` metrics over epochs, ``epochs_run`` and ``wall_time_s``.
    ``epochs`` is the long form: one row per trial and reported epoch, with the trial's
    routing, num_experts, data_fraction and seed repeated for plotting. Both have a
    ``study`` column, so frames of several studies can be concatenated.

    Unpacking gives the two frames: ``trials, epochs = load_study(path)``.
    """

    path: str
    name: str
    trials: pd.DataFrame
    epochs: pd.DataFrame
    has_optuna: bool = False
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        yield self.trials
        yield self.epochs

    def open_filesystem(self) -> tuple[pafs.FileSystem, str]:
        """Return the pyarrow filesystem and root path of the study folder."""
        return resolve_path(self.path)

    def trial_path(self, trial_id: str) -> str:
        """Return the folder of one trial on the study's filesystem."""
        rows = self.trials.loc[self.trials["trial_id"] == trial_id, "trial_dir"]
        if rows.empty or not isinstance(rows.iloc[0], str):
            raise KeyError(f"trial {trial_id!r} has no folder in study {self.path}")
        _, root = self.open_filesystem()
        return posixpath.join(root, rows.iloc[0])


def resolve_path(path) -> tuple[pafs.FileSystem, str]:
    """Open ``path`` (a local path or a storage URI) as a pyarrow filesystem and path."""
    text = os.fspath(path)
    if "://" in text:
        try:
            filesystem, root = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise StudyError(text, f"cannot open storage URI ({error})") from error
        return filesystem, root.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))


def load_study(path) -> Study:
    """Read the study folder at ``path`` into a :class:`Study`.

    Works on a finished study and on one that is still running. Each trial's status is
    one of ``STATUSES``. A trial whose result.json ends in a half-written line loses only
    that line.

    Raises
    ------
    StudyError
        When the folder is missing, unreadable, empty, or contains no Ray Tune experiment.
    """
    filesystem, root = resolve_path(path)
    text = os.fspath(path)
    entries = _list_study_folder(filesystem, root, text)

    state = _read_experiment_state(filesystem, entries, text)
    trial_dirs = [
        entry.base_name for entry in entries
        if entry.type == pafs.FileType.Directory and _is_trial_folder(filesystem, entry.path)
    ]
    if not trial_dirs and not state:
        raise StudyError(
            text, "not a Ray Tune study folder (no experiment_state-*.json and no trial folders with params.json)"
        )

    name = posixpath.basename(root.rstrip("/")) or text
    rows: list[dict] = []
    epoch_frames: list[pd.DataFrame] = []
    seen_dirs: set[str] = set()
    param_names: set[str] = set()
    for dir_name in sorted(trial_dirs):
        ray_state = state.get(dir_name, {})
        try:
            row, epochs, params = _load_trial(filesystem, posixpath.join(root, dir_name), dir_name, ray_state)
        except OSError as error:
            # One unreadable trial folder should not hide the others.
            logger.warning("cannot read trial folder %s: %s", dir_name, error)
            row, epochs, params = {"trial_id": ray_state.get("trial_id") or dir_name, "trial_dir": dir_name,
                                   "status": UNKNOWN, "error": f"unreadable trial folder: {error}"}, pd.DataFrame(), {}
        rows.append(row)
        param_names.update(params)
        seen_dirs.add(dir_name)
        if not epochs.empty:
            epoch_frames.append(epochs)

    # Trials listed in Ray's state that have no folder yet (pending ones).
    for dir_name, ray_state in state.items():
        if dir_name in seen_dirs:
            continue
        row = {"trial_id": ray_state.get("trial_id"), "trial_dir": None, "epochs_run": 0}
        params = _flatten_params(ray_state.get("config", {}))
        row.update(params)
        param_names.update(params)
        ray_status = ray_state.get("status")
        row["status"] = _RAY_STATUS.get(ray_status, UNKNOWN if ray_status == "TERMINATED" else PENDING)
        rows.append(row)

    trials = _order_trial_columns(pd.DataFrame(rows), param_names)
    trials.insert(0, "study", name)
    trials = trials.sort_values("trial_id", kind="stable", ignore_index=True)

    epochs = pd.concat(epoch_frames, ignore_index=True) if epoch_frames else pd.DataFrame(
        columns=["trial_id", "epoch"]
    )
    epochs.insert(0, "study", name)

    has_optuna = any(entry.base_name == "optuna.db" for entry in entries)
    study = Study(path=text, name=name, trials=trials, epochs=epochs, has_optuna=has_optuna)
    logger.info("loaded study %s: %d trials, %d epochs", text, len(trials), len(epochs))
    return study


def _list_study_folder(filesystem: pafs.FileSystem, root: str, text: str) -> list[pafs.FileInfo]:
    try:
        info = filesystem.get_file_info(root)
    except OSError as error:
        raise StudyError(text, f"cannot read study folder ({error})") from error
    if info.type == pafs.FileType.NotFound:
        raise StudyError(text, "study folder not found")
    if info.type != pafs.FileType.Directory:
        raise StudyError(text, "study path is not a folder")
    try:
        entries = filesystem.get_file_info(pafs.FileSelector(root, recursive=False))
    except OSError as error:
        raise StudyError(text, f"cannot read study folder ({error})") from error
    if not entries:
        raise StudyError(text, "study folder is empty")
    return entries


def _is_trial_folder(filesystem: pafs.FileSystem, folder: str) -> bool:
    infos = filesystem.get_file_info([posixpath.join(folder, "params.json"), posixpath.join(folder, "result.json")])
    return any(info.type == pafs.FileType.File for info in infos)


def _read_text(filesystem: pafs.FileSystem, path: str) -> str | None:
    """Return the file's text, or None when it does not exist."""
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _read_experiment_state(filesystem: pafs.FileSystem, entries, text: str) -> dict[str, dict]:
    """Map each trial folder name to its Ray state (trial_id, status, config).

    Ray rewrites ``experiment_state-<session>.json`` during the run and starts a new one
    on each restore, so the newest session's file is read. A state that cannot be
    parsed is logged and ignored; statuses then come from the trial folders alone.
    """
    names = sorted(
        entry.base_name for entry in entries
        if entry.base_name.startswith("experiment_state") and entry.base_name.endswith(".json")
    )
    if not names:
        return {}
    state_path = posixpath.join(posixpath.dirname(entries[0].path), names[-1])
    try:
        content = json.loads(_read_text(filesystem, state_path) or "{}")
        trial_data = content.get("trial_data", [])
    except (json.JSONDecodeError, OSError, AttributeError) as error:
        logger.warning("ignoring unreadable Ray state %s (%s)", state_path, error)
        return {}

    state: dict[str, dict] = {}
    for item in trial_data:
        try:
            trial_json = item[0] if isinstance(item, (list, tuple)) else item
            trial = json.loads(trial_json) if isinstance(trial_json, str) else dict(trial_json)
        except (json.JSONDecodeError, TypeError, ValueError, IndexError) as error:
            logger.warning("ignoring unreadable trial entry in %s (%s)", state_path, error)
            continue
        dir_name = trial.get("relative_logdir")
        if not isinstance(dir_name, str):
            continue
        config = trial.get("config")
        state[dir_name] = {
            "trial_id": trial.get("trial_id"),
            "status": trial.get("status"),
            "config": _plain_config(config if isinstance(config, dict) else {}),
        }
    return state


def _plain_config(config: dict) -> dict:
    """Drop values that Ray could not serialize to JSON (stored as cloudpickle hex)."""
    return {
        key: value for key, value in config.items()
        if not (isinstance(value, dict) and value.get("_type") == "CLOUDPICKLE_FALLBACK")
    }


def _read_results(filesystem: pafs.FileSystem, path: str, dir_name: str) -> list[dict]:
    text = _read_text(filesystem, path)
    if not text:
        return []
    results = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            # The last line of a running trial may be half written.
            level = logging.DEBUG if number == len(lines) else logging.WARNING
            logger.log(level, "skipping unparsable line %d of %s/result.json", number, dir_name)
    return results


def _read_error(filesystem: pafs.FileSystem, folder: str) -> str | None:
    """Return the last line of the trial's error.txt (the exception), or None."""
    text = _read_text(filesystem, posixpath.join(folder, "error.txt"))
    if text is None:
        info = filesystem.get_file_info(posixpath.join(folder, "error.pkl"))
        return "error.pkl present" if info.type == pafs.FileType.File else None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "error.txt is empty"


def _flatten_params(config: dict, prefix: str = "") -> dict:
    """Flatten nested config dicts with '/' (as Ray does) and join lists with ','."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_params(value, prefix=f"{name}/"))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(item) for item in value)
        else:
            flat[name] = value
    return flat


def _scalar(value) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def _load_trial(filesystem, folder: str, dir_name: str, ray_state: dict) -> tuple[dict, pd.DataFrame, dict]:
    """Read one trial folder into its trials row, its epochs frame and its flat params."""
    params_text = _read_text(filesystem, posixpath.join(folder, "params.json"))
    try:
        params = json.loads(params_text) if params_text else dict(ray_state.get("config", {}))
    except json.JSONDecodeError as error:
        logger.warning("unreadable params.json in %s (%s); using Ray's state", dir_name, error)
        params = dict(ray_state.get("config", {}))
    results = _read_results(filesystem, posixpath.join(folder, "result.json"), dir_name)
    error = _read_error(filesystem, folder)

    trial_id = ray_state.get("trial_id")
    if trial_id is None and results:
        trial_id = results[-1].get("trial_id")
    row: dict = {"trial_id": trial_id or dir_name, "trial_dir": dir_name}
    flat_params = _flatten_params(params)
    row.update(flat_params)

    last = results[-1] if results else {}
    epochs_run = int(last.get("epoch", last.get("training_iteration", len(results)))) if results else 0
    row["epochs_run"] = epochs_run
    row["wall_time_s"] = last.get("time_total_s", math.nan)
    for key, value in last.items():
        if key in _DROPPED_RESULT_KEYS or key in _DUPLICATE_TRIAL_KEYS or key in row or key == "status":
            continue
        if not _scalar(value):
            continue
        row[key] = value

    frame = pd.DataFrame(
        [{key: value for key, value in result.items() if key not in _DROPPED_RESULT_KEYS} for result in results]
    )
    if not frame.empty:
        if "epoch" not in frame:
            frame["epoch"] = frame.get("training_iteration", pd.Series(range(1, len(frame) + 1)))
        frame = frame.rename(columns={"status": "epoch_status"})
        frame["trial_id"] = row["trial_id"]
        for key in ("routing", "num_experts", "data_fraction", "seed"):
            if key in params:
                frame[key] = params[key]
        leading = ["trial_id", "epoch"] + [key for key in ("routing", "num_experts", "data_fraction", "seed") if key in frame]
        frame = frame[leading + [column for column in frame.columns if column not in leading]]
        for metric in BEST_MINIMIZED + BEST_MAXIMIZED:
            if metric in frame and frame[metric].notna().any():
                values = pd.to_numeric(frame[metric], errors="coerce")
                best = values.idxmin() if metric in BEST_MINIMIZED else values.idxmax()
                row[f"best_{metric}"] = values[best]
                if metric == "recon_error":
                    row["best_epoch"] = frame.loc[best, "epoch"]

    checkpoints = _list_checkpoints(filesystem, folder)
    row["last_checkpoint"] = checkpoints[-1] if checkpoints else None
    row["error"] = error
    row["status"] = _trial_status(params, results, epochs_run, error, ray_state.get("status"))
    return row, frame, flat_params


def _list_checkpoints(filesystem, folder: str) -> list[str]:
    entries = filesystem.get_file_info(pafs.FileSelector(folder, recursive=False))
    return sorted(
        entry.base_name for entry in entries
        if entry.type == pafs.FileType.Directory and entry.base_name.startswith("checkpoint_")
    )


def _trial_status(params: dict, results: list[dict], epochs_run: int, error: str | None, ray_status) -> str:
    """Derive a trial's status from its files, using Ray's status where they are silent.

    Order matters: an error file or a diverged epoch wins over Ray's status, and a last
    epoch reported as completed wins over a Ray state written before it arrived.
    """
    last_status = results[-1].get("status") if results else None
    if error is not None or ray_status == "ERROR":
        return ERROR
    if last_status == DIVERGED:
        return DIVERGED
    configured = params.get("epochs")
    if last_status == COMPLETED or (isinstance(configured, int) and results and epochs_run >= configured):
        return COMPLETED
    if ray_status in _RAY_STATUS:
        return _RAY_STATUS[ray_status]
    if ray_status == "TERMINATED":
        return EARLY_STOPPED if results else ERROR
    if not results:
        return PENDING
    return UNKNOWN


def _order_trial_columns(trials: pd.DataFrame, param_names: set[str]) -> pd.DataFrame:
    """Order columns: ids, parameters, final metrics, best metrics, other results, bookkeeping."""
    if trials.empty:
        return pd.DataFrame(columns=["trial_id", "status"])
    leading = ["trial_id", "status"]
    params = [name for name in PARAM_ORDER if name in trials]
    params += sorted(name for name in param_names if name in trials and name not in params)
    metrics = [name for name in METRICS if name in trials and name not in params]
    best = [name for name in trials if name.startswith("best_") and name not in params]
    middle = ["epochs_run", "wall_time_s"]
    tail = ["error", "trial_dir", "last_checkpoint"]
    placed = set(leading + params + metrics + best + middle + tail)
    other = [name for name in trials if name not in placed]
    ordered = leading + params + metrics + best + middle + other + tail
    return trials[[name for name in ordered if name in trials]]
