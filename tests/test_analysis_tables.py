"""Study tables of analysis.tables on hand-made trials frames with hand-computed results."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.tables import (
    compare_routings,
    correlate,
    expert_category_table,
    pareto_front,
    pooled_specialization,
    summarize,
)


def make_trials() -> pd.DataFrame:
    """Learned (5 experts) and supervised trials at two data fractions, three seeds each.

    At fraction 1.0 learned recon_error is 10, 11, 12 and supervised 13, 14, 15. At 0.5
    only learned trials exist. One diverged and one running trial must be ignored.
    """
    rows = []
    for seed, recon, nmi in zip(range(3), (10.0, 11.0, 12.0), (0.6, 0.5, 0.4)):
        rows.append(dict(trial_id=f"l1_{seed}", status="completed", routing="learned", num_experts=5,
                         data_fraction=1.0, seed=seed, recon_error=recon, purity=0.7, nmi=nmi, active_experts=4))
    for seed, recon in zip(range(3), (13.0, 14.0, 15.0)):
        rows.append(dict(trial_id=f"s1_{seed}", status="completed", routing="supervised", num_experts=5,
                         data_fraction=1.0, seed=seed, recon_error=recon, purity=0.9, nmi=0.8, active_experts=5))
    for seed, recon in zip(range(3), (20.0, 22.0, 24.0)):
        rows.append(dict(trial_id=f"l5_{seed}", status="completed", routing="learned", num_experts=5,
                         data_fraction=0.5, seed=seed, recon_error=recon, purity=0.6, nmi=0.3, active_experts=3))
    rows.append(dict(trial_id="bad", status="diverged", routing="learned", num_experts=5, data_fraction=1.0,
                     seed=9, recon_error=1.0, purity=1.0, nmi=1.0, active_experts=5))
    rows.append(dict(trial_id="run", status="running", routing="supervised", num_experts=5, data_fraction=1.0,
                     seed=8, recon_error=0.5, purity=1.0, nmi=1.0, active_experts=5))
    return pd.DataFrame(rows)


def test_summarize_groups_and_ci():
    summary = summarize(make_trials())
    learned = summary[(summary["routing"] == "learned") & (summary["data_fraction"] == 1.0)].iloc[0]
    half_width = 4.302653 / math.sqrt(3)
    assert len(summary) == 3
    assert learned["n"] == 3
    assert learned["n_seeds"] == 3
    assert learned["recon_error_mean"] == pytest.approx(11.0)
    assert learned["recon_error_std"] == pytest.approx(1.0)
    assert learned["recon_error_ci_low"] == pytest.approx(11.0 - half_width, abs=1e-5)
    assert learned["nmi_mean"] == pytest.approx(0.5)


def test_summarize_excludes_unfinished():
    summary = summarize(make_trials())
    supervised = summary[summary["routing"] == "supervised"].iloc[0]
    assert supervised["n"] == 3
    assert supervised["recon_error_mean"] == pytest.approx(14.0)


def test_summarize_by_active_experts():
    summary = summarize(make_trials(), by=("routing", "active_experts", "data_fraction"))
    assert sorted(summary["active_experts"].tolist()) == [3, 4, 5]


def test_summarize_single_seed_ci_nan():
    trials = make_trials().iloc[[0]]
    summary = summarize(trials)
    assert summary["n"].tolist() == [1]
    assert math.isnan(summary["recon_error_ci_low"].iloc[0])


def test_summarize_missing_column():
    with pytest.raises(KeyError, match="num_experts"):
        summarize(make_trials().drop(columns="num_experts"))


def test_compare_routings_welch():
    comparison = compare_routings(make_trials())
    recon = comparison[comparison["metric"] == "recon_error"].iloc[0]
    # Learned 10, 11, 12 against supervised 13, 14, 15: Welch df = 4, t(0.975, 4) = 2.776445.
    half_width = 2.776445 * math.sqrt(2 / 3)
    assert comparison["data_fraction"].unique().tolist() == [1.0]
    assert recon["n_learned"] == 3
    assert recon["n_supervised"] == 3
    assert recon["difference"] == pytest.approx(-3.0)
    assert recon["ci_low"] == pytest.approx(-3.0 - half_width, abs=1e-5)
    assert recon["ci_high"] == pytest.approx(-3.0 + half_width, abs=1e-5)
    assert recon["better"] == "learned"


def test_compare_routings_higher_is_better():
    comparison = compare_routings(make_trials())
    purity = comparison[comparison["metric"] == "purity"].iloc[0]
    nmi = comparison[comparison["metric"] == "nmi"].iloc[0]
    assert purity["difference"] == pytest.approx(-0.2)
    # Both purity samples are constant, so the interval has zero width at -0.2.
    assert purity["better"] == "supervised"
    assert nmi["better"] == "supervised"


def test_compare_routings_without_baseline():
    trials = make_trials()
    comparison = compare_routings(trials[trials["routing"] == "learned"])
    assert comparison.empty


def test_correlate_known_rank_order():
    correlations = correlate(make_trials())
    overall = correlations[
        (correlations["routing"] == "learned") & correlations["data_fraction"].isna() & (correlations["metric"] == "nmi")
    ].iloc[0]
    per_fraction = correlations[
        (correlations["routing"] == "learned") & (correlations["data_fraction"] == 1.0) & (correlations["metric"] == "nmi")
    ].iloc[0]
    # Ranks of recon_error 1..6 against nmi ranks 6, 5, 4, 2, 2, 2 (three ties at 0.3).
    assert overall["n"] == 6
    assert overall["spearman_rho"] == pytest.approx(-0.941124, abs=1e-6)
    assert per_fraction["spearman_rho"] == pytest.approx(-1.0)
    assert per_fraction["p_value"] == pytest.approx(0.0, abs=1e-9)


def test_correlate_constant_metric_nan():
    correlations = correlate(make_trials())
    purity = correlations[
        (correlations["routing"] == "supervised") & (correlations["metric"] == "purity")
    ]
    assert purity["spearman_rho"].isna().all()


def test_pareto_front_rows():
    front = pareto_front(make_trials())
    # Learned fraction 1.0 trials trade recon_error against nmi; supervised (13, 0.8) is
    # beaten by none of them in nmi. Diverged and running trials are ignored.
    assert front["trial_id"].tolist() == ["l1_0", "s1_0"]


def test_pooled_specialization_sums_counts():
    trials = pd.DataFrame([
        dict(trial_id="a", status="completed", routing="supervised", num_experts=2, data_fraction=1.0),
        dict(trial_id="b", status="completed", routing="supervised", num_experts=2, data_fraction=1.0),
    ])
    epochs = pd.DataFrame([
        dict(trial_id="a", epoch=1, counts=[[1, 1], [1, 1]]),
        dict(trial_id="a", epoch=2, counts=[[10, 0], [0, 10]]),
        dict(trial_id="b", epoch=1, counts=[[8, 2], [0, 10]]),
    ])
    pooled = pooled_specialization(trials, epochs).iloc[0]
    assert pooled["n"] == 2
    assert pooled["images"] == 40
    assert pooled["pooled_purity"] == pytest.approx(0.95)


def test_expert_category_table_row_normalized():
    assignments = pd.DataFrame({"label": [0, 0, 1, 1, 1], "expert": [0, 0, 0, 2, 2]})
    table = expert_category_table(assignments, ["cat", "eye"], num_experts=3)
    assert table.shape == (3, 2)
    assert table.loc[0].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert table.loc[1].tolist() == [0.0, 0.0]
    assert table.loc[2].tolist() == [0.0, 1.0]


def test_expert_category_table_bad_label():
    assignments = pd.DataFrame({"label": [0, 5], "expert": [0, 1]})
    with pytest.raises(ValueError, match="label"):
        expert_category_table(assignments, ["cat", "eye"])


def test_summary_of_concatenated_studies():
    first = make_trials().assign(study="a")
    second = make_trials().assign(study="b")
    summary = summarize(pd.concat([first, second]), by=("study", "routing", "data_fraction"))
    assert len(summary) == 6
    assert np.all(summary["n"] == 3)
