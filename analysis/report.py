"""Turn a study folder into tables, figures and one self-contained report.html.

Usage::

    python -m analysis.report STUDY [--out DIR]

STUDY is a Ray Tune study folder (a local path or a storage URI such as s3://bucket/name),
finished or still running. DIR defaults to STUDY/report for a local study and to
./<name>-report for a URI. Written files:

    trials.csv, trials.parquet   one row per trial: status, parameters, final and best metrics
    epochs.csv                   one row per trial and epoch
    summary.csv                  routing x num_experts x data_fraction: mean, std, 95 % CI over seeds
    summary_by_active_experts.csv  the same, grouped by the number of experts actually used
    comparison.csv               learned against supervised routing per data fraction (Welch)
    correlations.csv             Spearman rho of specialization metrics with recon_error
    pareto.csv                   trials on the recon_error x nmi Pareto front
    pooled_specialization.csv    purity, nmi and ari of the counts summed over seeds
    figures/*.svg                every figure of the report
    report.html                  findings, figures (embedded PNG) and tables

A missing, empty or unreadable folder, or one that is not a study, prints one line on
stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import posixpath
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import figures
from analysis.checkpoints import MAX_POINTS, choose_best_trial, read_assignments, run_test_split, tsne_embedding
from analysis.findings import (
    best_trial_finding,
    collapse_finding,
    comparison_findings,
    correlation_findings,
    format_number,
    pareto_finding,
    pooled_parameter_note,
    trial_notes,
)
from analysis.html import HtmlReport
from analysis.importances import param_importances
from analysis.load import Study, StudyError, load_study
from analysis.tables import (
    compare_routings,
    correlate,
    expert_category_table,
    pareto_front,
    pooled_specialization,
    summarize,
)

logger = logging.getLogger(__name__)

# Columns of the trials table shown in report.html; trials.csv has them all.
TRIAL_COLUMNS = (
    "trial_id", "status", "routing", "num_experts", "data_fraction", "seed", "beta", "lambda_balance",
    "lambda_entropy", "recon_error", "purity", "nmi", "ari", "active_experts", "best_recon_error",
    "epochs_run", "wall_time_s",
)


@dataclass
class Report:
    """Output folder, report path, computed tables, figure names and notes of one :func:`build_report` run."""

    out_dir: Path
    html_path: Path
    tables: dict[str, pd.DataFrame]
    figure_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_out_dir(study_path: str) -> Path:
    """Return STUDY/report for a local study and ./<name>-report for a storage URI."""
    if "://" in study_path:
        return Path.cwd() / f"{posixpath.basename(study_path.rstrip('/'))}-report"
    return Path(study_path).expanduser() / "report"


def build_tables(study: Study) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Compute every table of the report; a table whose columns are missing is skipped with a note."""
    trials, epochs = study.trials, study.epochs
    builders: dict[str, Callable[[], pd.DataFrame]] = {
        "summary": lambda: summarize(trials),
        "summary_by_active_experts": lambda: summarize(trials, by=("routing", "active_experts", "data_fraction")),
        "comparison": lambda: compare_routings(trials),
        "correlations": lambda: correlate(trials),
        "pareto": lambda: pareto_front(trials),
        "pooled_specialization": lambda: pooled_specialization(trials, epochs),
    }
    tables = {"trials": trials, "epochs": epochs}
    notes = []
    for name, build in builders.items():
        try:
            tables[name] = build()
        except KeyError as error:
            notes.append(f"{name} not computed: {error.args[0]}")
            tables[name] = pd.DataFrame()
    return tables, notes


def write_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Write each table as CSV, and the trials table as Parquet too.

    List-valued cells (expert_usage, counts) are written as JSON in the CSV files.
    """
    for name, frame in tables.items():
        _to_csv_ready(frame).to_csv(out_dir / f"{name}.csv", index=False)
    _to_parquet_ready(tables["trials"]).to_parquet(out_dir / "trials.parquet", index=False)


def _to_csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return frame


def _to_parquet_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Make object columns of mixed types (e.g. None and str, int and str) Parquet-safe strings."""
    frame = _to_csv_ready(frame)
    for column in frame.columns:
        if frame[column].dtype == object:
            kinds = {type(value) for value in frame[column] if value is not None and not _is_nan(value)}
            if len(kinds) > 1:
                frame[column] = frame[column].map(lambda v: None if v is None or _is_nan(v) else str(v))
    return frame


def _is_nan(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


class _FigureWriter:
    """Saves each figure as SVG under figures/ and embeds it as PNG in the HTML report."""

    def __init__(self, page: HtmlReport, directory: Path):
        self.page = page
        self.directory = directory
        self.names: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, figure, caption: str) -> None:
        figure.savefig(self.directory / f"{name}.svg", format="svg", bbox_inches="tight")
        self.page.figure(figure, caption, alt=name)
        self.names.append(name)


def build_report(study_path, out_dir=None, *, checkpoint_figures: bool = True, max_points: int = MAX_POINTS,
                 best_trial_id: str | None = None) -> Report:
    """Load the study, write its tables, figures and report.html, and return what was written.

    Parameters
    ----------
    study_path : str or path
        Study folder or storage URI.
    out_dir : str or path, optional
        Output folder (created if needed); see :func:`default_out_dir`.
    checkpoint_figures : bool, default True
        Rebuild the best trial's model for the t-SNE and reconstruction figures.
    max_points : int
        Maximum test images in the t-SNE and the reconstruction grid's pool.
    best_trial_id : str, optional
        Inspect this trial instead of the one with the lowest recon_error.

    Raises
    ------
    StudyError
        When the study folder cannot be read.
    """
    study = load_study(study_path)
    notes = trial_notes(study.trials)
    best = _select_best(study.trials, best_trial_id)
    out = Path(out_dir) if out_dir is not None else default_out_dir(os.fspath(study_path))
    out.mkdir(parents=True, exist_ok=True)

    tables, table_notes = build_tables(study)
    write_tables(tables, out)
    trials = study.trials

    page = HtmlReport(f"SMoE-VAE study report: {study.name}")
    writer = _FigureWriter(page, out / "figures")
    notes += table_notes
    if "routing" in trials and {"num_experts", "data_fraction"} <= set(trials.columns):
        notes += pooled_parameter_note(trials, ("routing", "num_experts", "data_fraction"))

    findings = _findings(tables, trials, best)

    page.heading("Findings")
    page.bullet_list(findings)
    page.heading("Notes on the trials")
    page.bullet_list(notes, css_class="note")

    # Figures that cannot be drawn add a note here; these are listed at the end of the page.
    figure_notes: list[str] = []
    page.heading("Reconstruction and specialization")
    _add_study_figures(writer, study, figure_notes)

    if best is not None:
        reason = ("chosen with --best-trial" if best_trial_id
                  else "the completed learned-routing trial with the lowest recon_error among those with "
                       "at least two active experts (or, failing that, among all completed trials)")
        page.heading(f"Inspected trial: {best['trial_id']}")
        page.paragraph(f"Trial {best['trial_id']} is {reason}.")
        _add_best_trial_figures(writer, study, best, figure_notes, checkpoint_figures, max_points)

    importances = _add_importances(writer, study, figure_notes)

    _add_tables(page, tables, importances)

    page.heading("Files")
    page.paragraph("Beside this report: trials.csv, trials.parquet, epochs.csv, summary.csv, "
                   "summary_by_active_experts.csv, comparison.csv, correlations.csv, pareto.csv, "
                   "pooled_specialization.csv, and every figure as SVG in figures/.")
    if figure_notes:
        page.heading("Figures not drawn")
        page.bullet_list(figure_notes, css_class="note")

    generated = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    html_path = out / "report.html"
    html_path.write_text(page.render(f"Study {study.path} · {len(trials)} trials · generated {generated}"),
                         encoding="utf-8")
    logger.info("wrote %s with %d figures", html_path, len(writer.names))
    return Report(out, html_path, tables, writer.names, notes + figure_notes)


def _select_best(trials: pd.DataFrame, best_trial_id: str | None) -> pd.Series | None:
    if best_trial_id is None:
        return choose_best_trial(trials)
    match = trials[trials["trial_id"] == best_trial_id]
    if match.empty:
        raise StudyError(best_trial_id, "no trial with this id in the study (--best-trial)")
    return match.iloc[0]


def _findings(tables: dict[str, pd.DataFrame], trials: pd.DataFrame, best: pd.Series | None) -> list[str]:
    if trials.empty:
        return ["The study has no trials yet."]
    findings = []
    if "routing" in trials:
        findings += comparison_findings(tables["comparison"], trials)
    findings += collapse_finding(trials)
    findings += best_trial_finding(best)
    if not tables["pareto"].empty or "recon_error" in trials:
        findings += pareto_finding(tables["pareto"])
    findings += correlation_findings(tables["correlations"])
    return findings


def _add_study_figures(writer: _FigureWriter, study: Study, notes: list[str]) -> None:
    trials, epochs = study.trials, study.epochs
    drawings = [
        ("recon_vs_active_experts", lambda: figures.plot_recon_vs_active_experts(trials),
         "Test recon_error against the number of active experts, one line per data fraction (learned "
         "routing, mean and 95 % CI over trials); supervised routing as horizontal bands (mean, 95 % CI)."),
        ("specialization_vs_recon", lambda: figures.plot_specialization_vs_recon(trials),
         "Purity and NMI against test recon_error, coloured by data fraction; black rings mark the "
         "recon_error x nmi Pareto front."),
        ("epoch_curves", lambda: figures.plot_epoch_curves(epochs, trials),
         "Per-epoch test recon_error of every trial; early-stopped trials are dashed and shorter."),
    ]
    for name, draw, caption in drawings:
        _draw(writer, name, draw, caption, notes)


def _draw(writer: _FigureWriter, name: str, draw: Callable, caption: str, notes: list[str]) -> bool:
    try:
        figure = draw()
    except (KeyError, ValueError, TypeError) as error:
        logger.warning("figure %s not drawn: %s", name, error, exc_info=logger.isEnabledFor(logging.DEBUG))
        notes.append(f"Figure {name} not drawn: {error}")
        return False
    writer.add(name, figure, caption)
    return True


def _add_best_trial_figures(writer: _FigureWriter, study: Study, best: pd.Series, notes: list[str],
                            checkpoint_figures: bool, max_points: int) -> None:
    trial_id = best["trial_id"]
    categories = str(best.get("categories", "")).split(",") if isinstance(best.get("categories"), str) else None
    assignments = read_assignments(study, trial_id)
    if assignments is not None and categories:
        table = expert_category_table(assignments, categories, num_experts=int(best.get("num_experts", 0) or 0),
                                      normalize=False)
        images = table.sum(axis=1).astype(int)
        table = table.div(images.replace(0, 1), axis=0)
        table.attrs["images"] = images.to_dict()
        _draw(writer, "expert_category_heatmap",
              lambda: figures.plot_expert_category_heatmap(table, f"Category mix of each expert, trial {trial_id}"),
              f"Expert x category shares of trial {trial_id}'s test images (rows sum to 1; from assignments.csv).",
              notes)
    else:
        notes.append(f"No assignments.csv (or no categories in params.json) for trial {trial_id}: "
                     "heatmap not drawn.")

    if not checkpoint_figures:
        notes.append("t-SNE and reconstruction figures skipped (--no-checkpoint-figures).")
        return
    try:
        outputs = run_test_split(study, trial_id, max_points=max_points)
    except (ImportError, FileNotFoundError, OSError, ValueError, KeyError, RuntimeError) as error:
        logger.warning("cannot rebuild trial %s from its checkpoint: %s", trial_id, error,
                       exc_info=logger.isEnabledFor(logging.DEBUG))
        notes.append(f"t-SNE and reconstructions of trial {trial_id} not drawn: {error}")
        return

    _draw(writer, "tsne", lambda: figures.plot_tsne(
        tsne_embedding(outputs.latents), outputs.labels, outputs.experts, outputs.categories,
        f"t-SNE of {len(outputs.labels)} test latents (mu), trial {trial_id}"),
        f"t-SNE of the encoder means of trial {trial_id}'s test images, coloured by category (left) and by "
        f"expert (right; experts from {outputs.expert_source}).", notes)
    _draw(writer, "reconstructions_by_expert", lambda: figures.plot_reconstructions_by_expert(
        outputs.images, outputs.reconstructions, outputs.experts, outputs.labels, outputs.categories,
        title=f"Test drawings and reconstructions (framed) by expert, trial {trial_id}"),
        "Test drawings and their reconstructions from mu, one row per expert (experts from "
        f"{outputs.expert_source}), labelled with the expert's most frequent category and its share.", notes)


def _add_importances(writer: _FigureWriter, study: Study, notes: list[str]):
    try:
        importances = param_importances(study)
    except (ImportError, OSError, ValueError, RuntimeError) as error:
        logger.warning("Optuna importances not computed: %s", error)
        notes.append(f"Optuna importances not computed: {error}")
        return None
    if importances is None:
        return None
    writer.page.heading("Hyperparameter importances")
    if not importances.values:
        notes.append(f"Optuna importances not shown: {importances.reason}.")
        writer.page.paragraph(f"Not available: {importances.reason}.")
        return importances
    _draw(writer, "param_importances", lambda: figures.plot_param_importances(
        importances.values, f"Optuna importances ({importances.evaluator}, {importances.completed_trials} trials)"),
        f"Hyperparameter importances of Optuna study {importances.study_name} for its objective, "
        "normalized to sum to 1.", notes)
    return importances


def _add_tables(page: HtmlReport, tables: dict[str, pd.DataFrame], importances) -> None:
    page.heading("Tables")
    captions = {
        "summary": "summary.csv: completed trials grouped by routing x num_experts x data_fraction; mean, std "
                   "and 95 % t interval over seeds (n/a with one trial).",
        "summary_by_active_experts": "summary_by_active_experts.csv: the same, grouped by the number of experts "
                                     "actually used on the test split.",
        "comparison": "comparison.csv: learned minus supervised routing at each data fraction, Welch 95 % CI.",
        "correlations": "correlations.csv: Spearman rho of each specialization metric with recon_error, per "
                        "routing, over all data fractions (data_fraction n/a) and per fraction.",
        "pareto": "pareto.csv: trials on the recon_error (lower) x nmi (higher) Pareto front.",
        "pooled_specialization": "pooled_specialization.csv: scores of the expert x category counts summed over "
                                 "each group's seeds (meaningful where expert e means the same in every seed, "
                                 "as in supervised routing).",
    }
    for name, caption in captions.items():
        page.heading(name, level=3)
        frame = tables.get(name, pd.DataFrame())
        if name.startswith("summary"):
            frame = _summary_display(frame)
        elif name == "pareto":
            frame = frame[[column for column in TRIAL_COLUMNS if column in frame]]
        page.table(frame, caption)
    if importances is not None and importances.values:
        page.heading("param_importances", level=3)
        page.table(pd.DataFrame({"parameter": list(importances.values), "importance": list(importances.values.values())}))
    page.heading("trials", level=3)
    trials = tables["trials"]
    page.table(trials[[column for column in TRIAL_COLUMNS if column in trials]],
               "trials.csv (selected columns; the CSV has every parameter and metric).", max_rows=500)


def _summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Collapse each metric's mean and CI columns into one "mean [low, high]" column."""
    metrics = [column[: -len("_mean")] for column in summary.columns if column.endswith("_mean")]
    display = summary[[column for column in summary.columns
                       if not any(column.startswith(f"{metric}_") for metric in metrics)]].copy()
    for metric in metrics:
        display[f"{metric} mean [95 % CI]"] = [
            f"{format_number(mean)} [{format_number(low)}, {format_number(high)}]" if np.isfinite(low)
            else f"{format_number(mean)} [n/a]"
            for mean, low, high in zip(summary[f"{metric}_mean"], summary[f"{metric}_ci_low"],
                                       summary[f"{metric}_ci_high"])
        ]
    return display


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Write tables, figures and a self-contained report.html for a smoe-study Ray Tune study.",
    )
    parser.add_argument("study", help="study folder (local path or storage URI such as s3://bucket/name)")
    parser.add_argument("--out", help="output folder (default: STUDY/report, or ./NAME-report for a URI)")
    parser.add_argument("--best-trial", metavar="TRIAL_ID",
                        help="trial to inspect in the heatmap, t-SNE and reconstructions (default: the "
                             "completed learned-routing trial with >= 2 active experts and the lowest recon_error)")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS,
                        help=f"maximum test images in the t-SNE (default {MAX_POINTS})")
    parser.add_argument("--no-checkpoint-figures", action="store_true",
                        help="skip the figures that rebuild the best trial's model (t-SNE, reconstructions)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and tracebacks")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.max_points < 3:
        print(f"error: --max-points must be at least 3, got {args.max_points}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out_dir(args.study)
    if out.exists() and not out.is_dir():
        print(f"error: output path exists and is not a folder: {out}", file=sys.stderr)
        return 2
    try:
        report = build_report(args.study, out, checkpoint_figures=not args.no_checkpoint_figures,
                              max_points=args.max_points, best_trial_id=args.best_trial)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(f"error: cannot write to {error.filename or out}: {error.strerror}", file=sys.stderr)
        return 2
    trials = report.tables["trials"]
    print(f"wrote {report.html_path} ({len(trials)} trials, {len(report.figure_names)} figures) "
          f"and tables in {report.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
