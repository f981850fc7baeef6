"""`tel compare`: runs into arms, statistics against the baseline, and the formats."""

from __future__ import annotations

import csv
import io
import json

import pytest
from scipy import stats as scipy_stats

from tel_core.analysis.arms import group_arms
from tel_core.analysis.compare import compare, run_value
from tel_core.analysis.runs import find_runs, load_run
from tel_core.analysis.tables import render
from tel_core.errors import TelError

from .analysis_runs import write_run
from .test_cli import assert_one_line_error, tel

ROPE = {"model": {"positional": {"name": "rope", "theta": 10000.0}}}
ALIBI = {"model": {"positional": {"name": "alibi"}}}
LEARNED_FINALS = [1.45, 1.44, 1.46]
ROPE_FINALS = [1.34, 1.33, 1.35]
ALIBI_FINALS = [1.445, 1.455, 1.46]


@pytest.fixture
def family(tmp_path):
    """Three arms of three seeds: learned (the first), rope (clearly better), alibi (noise)."""
    root = tmp_path / "family"
    for name, config, finals in (
        ("learned", None, LEARNED_FINALS),
        ("rope", ROPE, ROPE_FINALS),
        ("alibi", ALIBI, ALIBI_FINALS),
    ):
        for seed, final in zip((1337, 1, 2), finals, strict=True):
            write_run(root / name / f"seed-{seed}", final, seed=seed, config=config)
    return root


def test_runs_differing_only_in_seed_are_one_arm_and_the_diff_names_the_component(family):
    runs = find_runs([family / "learned", family / "rope", family / "alibi"])
    arms = group_arms(runs)
    assert [a.label for a in arms.arms] == [
        "positional=learned",
        "positional=rope",
        "positional=alibi",
    ]
    assert [len(a.runs) for a in arms.arms] == [3, 3, 3]
    # rope's theta comes with choosing rope: not a difference of its own.
    assert arms.keys == ("model.positional.name",)
    assert "model.positional.theta" in arms.diff


def test_an_option_that_varies_within_one_component_is_a_difference(tmp_path):
    write_run(tmp_path / "a", 1.0, config=ROPE)
    write_run(
        tmp_path / "b", 1.0, config={"model": {"positional": {"name": "rope", "theta": 500.0}}}
    )
    write_run(tmp_path / "c", 1.0, config=ALIBI)
    arms = group_arms(find_runs([tmp_path]))
    assert set(arms.keys) == {"model.positional.name", "model.positional.theta"}


def test_the_statistics_are_scipys(family):
    c = compare(find_runs([family / "learned", family / "rope", family / "alibi"]))
    base, rope, alibi = c.summaries
    assert base.verdict == "baseline" and base.p_value is None
    assert base.mean == pytest.approx(sum(LEARNED_FINALS) / 3)
    assert base.std == pytest.approx(scipy_stats.tstd(LEARNED_FINALS))
    welch = scipy_stats.ttest_ind(ROPE_FINALS, LEARNED_FINALS, equal_var=False)
    assert rope.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    assert rope.difference_ci95 == pytest.approx(tuple(welch.confidence_interval()), rel=1e-9)
    assert rope.verdict == "better"
    assert alibi.verdict == "within seed noise" and alibi.p_value > 0.05
    assert base.cost["params"] == 1000 and base.cost["tokens"] == 4 * 16 * 16
    assert base.cost["flops"] == 4 * 16 * 16 * 6000
    assert base.cost["clipped_fraction"] == pytest.approx(0.25)


def test_the_baseline_can_be_named_and_alpha_decides_the_verdict(family):
    runs = find_runs([family])  # a folder of runs: sorted, so alibi comes first
    assert compare(runs).baseline.label == "positional=alibi"
    c = compare(runs, baseline="positional=learned")
    assert c.baseline.label == "positional=learned"
    assert {s.label: s.verdict for s in c.summaries}["positional=rope"] == "better"
    strict = compare(runs, baseline="positional=learned", alpha=1e-5)
    assert {s.label: s.verdict for s in strict.summaries}["positional=rope"] == "within seed noise"
    with pytest.raises(TelError, match="no such arm; arms: positional=alibi"):
        compare(runs, baseline="positional=nope")


def test_one_run_per_arm_gives_no_interval_never_an_invented_one(tmp_path):
    write_run(tmp_path / "a", 1.5)
    write_run(tmp_path / "b", 1.4, config=ROPE)
    c = compare(find_runs([tmp_path / "a", tmp_path / "b"]))
    for s in c.summaries:
        assert s.n == 1 and s.std is None and s.ci95 is None and s.p_value is None
    assert c.summaries[1].verdict == "one run: no interval can be given"
    assert c.summaries[1].difference == pytest.approx(-0.1)
    assert any("no interval" in n for n in c.notes)
    arms = json.loads(render(c, "json"))
    assert arms[1]["ci95"] is None and arms[1]["p_value"] is None and arms[1]["std"] is None


def test_runs_still_training_show_their_step_and_diverged_runs_are_marked(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "base" / f"s{seed}", 1.5, seed=seed)
    write_run(tmp_path / "new" / "s1", 1.4, seed=1, config=ROPE)
    write_run(tmp_path / "new" / "s2", 1.4, seed=2, config=ROPE, steps=2)  # still training
    write_run(tmp_path / "new" / "s3", 1.4, seed=3, config=ROPE, steps=3, diverged=True)
    c = compare(find_runs([tmp_path / "base", tmp_path / "new"]))
    new = c.summaries[1]
    assert [r.status for r in new.arm.runs] == ["done", "partial", "diverged"]
    assert new.steps == "1 done; 1 partial 2/4; 1 diverged 4/4"
    assert new.diverged == 1 and new.n == 2  # the partial run's last evaluation counts
    assert any("DIVERGED" in n for n in c.notes)
    table = render(c, "table")
    assert "partial 2/4" in table and "(+1 diverged)" in table


def test_arms_on_different_validation_sets_are_marked_and_get_no_p_value(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "a" / f"s{seed}", 1.5, seed=seed)
        write_run(tmp_path / "b" / f"s{seed}", 1.0, seed=seed, config=ROPE, digest="other")
    c = compare(find_runs([tmp_path / "a", tmp_path / "b"]))
    other = c.summaries[1]
    assert not other.comparable and other.p_value is None
    assert other.verdict == "NOT COMPARABLE: other validation set"
    assert any(n.startswith("VALIDATION SETS DIFFER") for n in c.notes)
    assert "(!)" in render(c, "markdown")
    # A train/* metric does not depend on the validation set.
    assert (
        compare(find_runs([tmp_path / "a", tmp_path / "b"]), "train/loss").summaries[1].p_value
        is not None
    )


def test_runs_from_before_validation_sets_were_recorded_are_told_apart_by_batch_size(tmp_path):
    write_run(tmp_path / "a", 1.5, manifest=False)
    write_run(tmp_path / "b", 1.5, manifest=False, config={"train": {"batch_size": 32}})
    c = compare(find_runs([tmp_path / "a", tmp_path / "b"]))
    assert not c.summaries[1].comparable
    assert any("predate" in n for n in c.notes)


def test_at_best_and_at_a_step(tmp_path):
    run = load_run(write_run(tmp_path / "a", 1.0))
    assert run_value(run, "val/loss", "final") == 1.0
    assert run_value(run, "val/loss", "best") == 1.0
    assert run_value(run, "val/loss", "step:2") == 2.0
    assert run_value(run, "val/loss", "step:3") is None
    with pytest.raises(TelError, match="--at step:x"):
        run_value(run, "val/loss", "step:x")


def test_by_pools_runs_into_arms_of_the_named_keys(tmp_path):
    for lr in (0.001, 0.01):
        for batch in (8, 16):
            config = {"optimizer": {"lr": lr}, "train": {"batch_size": batch}}
            write_run(tmp_path / f"lr{lr}-b{batch}", 1 + lr, config=config)
    c = compare(find_runs([tmp_path]), by=["batch_size"])
    assert [s.label for s in c.summaries] == ["batch_size=16", "batch_size=8"]
    assert [s.n for s in c.summaries] == [2, 2]
    assert c.arms.pooled == ("optimizer.lr", "optimizer.lr") or "optimizer.lr" in c.arms.pooled
    with pytest.raises(TelError, match="--by bogus: no such config key"):
        compare(find_runs([tmp_path]), by=["bogus"])


def test_a_learning_rate_against_batch_size_grid_reports_the_best_lr_and_alpha(tmp_path):
    # The best lr doubles as the batch size quadruples: alpha = 0.5.
    import math

    for batch, optimum in ((8, 1e-3), (32, 2e-3), (128, 4e-3)):
        for lr in (optimum / 2, optimum, optimum * 2):
            loss = 1.0 + math.log(lr / optimum) ** 2
            for seed in (1, 2):
                write_run(
                    tmp_path / f"lr{lr:g}-b{batch}" / f"s{seed}",
                    loss + 0.001 * seed,
                    seed=seed,
                    config={"optimizer": {"lr": lr}, "train": {"batch_size": batch}},
                )
    c = compare(find_runs([tmp_path]))
    assert (c.lr_key, c.batch_key) == ("optimizer.lr", "train.batch_size")
    best = {b.batch_size: b for b in c.lr_batch.best}
    assert best[8].lr == pytest.approx(1e-3) and best[128].lr == pytest.approx(4e-3)
    assert best[32].fitted_lr == pytest.approx(2e-3, rel=1e-6)
    assert c.lr_batch.alpha.slope == pytest.approx(0.5, abs=1e-6)
    assert "alpha = 0.50" in render(c, "table")


def test_the_formats(family):
    c = compare(find_runs([family / "learned", family / "rope"]))
    arms = json.loads(render(c, "json"))
    required = {"arm", "runs", "n", "keys", "metric", "mean", "std", "ci95", "p_value"}
    required |= {"params", "tokens", "flops", "tokens_per_s", "wall_s"}
    assert required <= set(arms[0])
    assert arms[1]["keys"] == {"model.positional.name": "rope"}
    assert arms[0]["p_value"] is None and 0 < arms[1]["p_value"] < 0.05
    assert len(arms[0]["ci95"]) == 2 and arms[0]["n"] == 3
    markdown = render(c, "markdown")
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| arm | positional"))
    assert lines[lines.index(header) + 1].startswith("| --- |")
    assert "| positional=rope | rope | 3 |" in markdown
    rows = list(csv.DictReader(io.StringIO(render(c, "csv"))))
    assert rows[1]["arm"] == "positional=rope" and rows[1]["key:model.positional.name"] == "rope"
    assert float(rows[1]["ci95_low"]) < float(rows[1]["mean"]) < float(rows[1]["ci95_high"])


def test_tel_compare_on_the_command_line(family):
    result = tel("compare", str(family / "learned"), str(family / "rope"), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [a["arm"] for a in json.loads(result.stdout)] == [
        "positional=learned",
        "positional=rope",
    ]
    table = tel("compare", str(family / "learned"), str(family / "rope"))
    assert "better" in table.stdout and "95% CI" in table.stdout
    assert_one_line_error(tel("compare", str(family / "nowhere")), "no such run or sweep")
    assert_one_line_error(tel("compare", str(family), "--at", "last"), "--at last")
    assert_one_line_error(tel("compare", str(family), "--metric", "val/los"), "recorded: ")
    assert_one_line_error(tel("compare", str(family), "--by", "zz"), "--by zz")
