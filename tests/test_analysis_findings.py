"""Findings sentences of analysis.findings on hand-made trials frames."""

from analysis.findings import collapse_finding, comparison_findings, format_number, trial_notes
from analysis.tables import compare_routings
from test_analysis_tables import make_trials


def test_comparison_finding_beats():
    trials = make_trials()
    sentences = comparison_findings(compare_routings(trials), trials)
    # Learned 10, 11, 12 against supervised 13, 14, 15: difference 3, half width 2.776445 * sqrt(2/3).
    assert "learned routing beats supervised by 3 ± 2.3 in recon_error (lower is better) at 100 % of the data" in sentences[0]


def test_comparison_finding_missing_baseline():
    trials = make_trials()
    sentences = comparison_findings(compare_routings(trials), trials[trials["routing"] == "learned"])
    assert sentences == ["No comparison of learned with supervised routing: the study has no completed supervised trials."]


def test_comparison_finding_single_seed():
    trials = make_trials().groupby(["routing", "data_fraction"]).head(1)
    sentences = comparison_findings(compare_routings(trials), trials)
    assert "CI n/a" in sentences[0]
    assert "nan" not in " ".join(sentences).lower()


def test_trial_notes_counts():
    notes = trial_notes(make_trials())
    assert notes[0] == "11 trials: 9 completed, 1 diverged, 1 running. Statistics use the 9 completed trials."
    assert any(note.startswith("Diverged trials (bad)") for note in notes)
    assert any("still running (running: run)" in note for note in notes)


def test_format_number_nan():
    assert format_number(float("nan")) == "n/a"
    assert format_number(None) == "n/a"
    assert format_number(3) == "3"
    assert format_number(0.123456) == "0.1235"


def test_collapse_finding_counts_single_expert():
    trials = make_trials()
    trials.loc[trials["trial_id"].isin(["l1_0", "l5_2"]), "active_experts"] = 1

    sentences = collapse_finding(trials)

    assert len(sentences) == 1
    assert sentences[0].startswith("2 of 6 finished learned-routing trials")


def test_collapse_finding_none_collapsed():
    sentences = collapse_finding(make_trials())

    assert sentences[0].startswith("Every finished learned-routing trial")


def test_collapse_finding_ignores_one_expert_models():
    trials = make_trials()
    trials["num_experts"] = 1
    trials["active_experts"] = 1

    assert collapse_finding(trials) == []
