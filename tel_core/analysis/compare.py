"""A comparison: every arm's metric with its spread and interval, each against the
baseline arm (Welch's t-test), beside what each arm cost.

``compare(find_runs(paths))`` is what ``tel compare`` prints; a notebook can call it and
read the fields. Nothing here is made up to fill a gap: an arm of one run has no std, no
interval and no p-value (None), and arms scored on different validation sets are marked
and get no p-value on a ``val/*`` metric.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from typing import Any

import attrs

from tel_core.analysis import stats
from tel_core.analysis.arms import MISSING, Arm, Arms, group_arms
from tel_core.analysis.lr_batch import LrBatch, lr_batch
from tel_core.analysis.runs import Run, finite
from tel_core.errors import TelError

#: Metrics where more is better; for every other, less is.
HIGHER_IS_BETTER = re.compile(r"accuracy|tokens_per_s|tflops|mfu")


def higher_is_better(metric: str) -> bool:
    return bool(HIGHER_IS_BETTER.search(metric))


def parse_at(at: str) -> tuple[str, int | None]:
    """``final``, ``best`` or ``step:N``."""
    if at in ("final", "best"):
        return at, None
    if at.startswith("step:") and at[5:].isdigit():
        return "step", int(at[5:])
    raise TelError(f"--at {at}: expected final, best or step:N (e.g. step:500)")


def run_value(run: Run, metric: str, at: str = "final") -> float | None:
    """The run's ``metric`` at its last record holding it, its best, or at step N;
    None where the run has no such record (NaN where it diverged)."""
    kind, step = parse_at(at)
    values = run.values(metric)
    if kind == "step":
        return next((v for s, v in values if s == step), None)
    if not values:
        return None
    if kind == "final":
        return values[-1][1]
    good = [v for _, v in values if math.isfinite(v)]
    if not good:
        return math.nan
    return max(good) if higher_is_better(metric) else min(good)


@attrs.frozen(kw_only=True)
class ArmSummary:
    arm: Arm
    metric: str
    values: tuple[float, ...]  # the finite metric values, one per run
    diverged: int  # runs whose loss became non-finite
    missing: int  # runs without the metric at the requested point (not there yet)
    mean: float | None
    std: float | None
    ci95: tuple[float, float] | None
    difference: float | None = None  # mean - the baseline's mean
    difference_ci95: tuple[float, float] | None = None
    p_value: float | None = None
    verdict: str = ""
    comparable: bool = True  # scored on the baseline's validation set
    cost: dict[str, float | None] = attrs.field(factory=dict)

    @property
    def label(self) -> str:
        return self.arm.label

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def steps(self) -> str:
        """Where the arm's runs stand: ``300/300``, or ``3 done, 1 running 120/300``."""
        runs = self.arm.runs
        if all(r.status == "done" for r in runs):
            return runs[0].progress()
        counts: dict[str, list[str]] = {}
        for r in runs:
            counts.setdefault(r.status, []).append(r.progress())
        parts = []
        for status, where in counts.items():
            if status == "done":
                parts.append(f"{len(where)} done")
            else:
                parts.append(f"{len(where)} {status} {', '.join(where)}")
        return "; ".join(parts)


@attrs.frozen(kw_only=True)
class Comparison:
    metric: str
    at: str
    alpha: float
    arms: Arms
    summaries: tuple[ArmSummary, ...]
    notes: tuple[str, ...]
    lr_batch: LrBatch | None
    lr_key: str | None = None
    batch_key: str | None = None

    @property
    def baseline(self) -> ArmSummary:
        return self.summaries[0]


def _mean_of(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None and math.isfinite(v)]
    return stats.mean(found) if found else None


def run_cost(run: Run) -> dict[str, float | None]:
    """What a run cost and reached, from its records and manifest."""
    tokens = run.last("train/tokens")
    per_token = run.manifest.get("flops_per_token")
    speeds = [v for _, v in run.values("train/tokens_per_s") if math.isfinite(v)]
    clipped = [v for _, v in run.values("train/clipped")]
    val = [v for _, v in run.values("val/loss") if math.isfinite(v)]
    memory = [v for _, v in run.values("mem/peak_mb") if math.isfinite(v)]
    return {
        "params": run.manifest.get("parameters"),
        "tokens": tokens,
        "flops": tokens * per_token if tokens is not None and per_token else None,
        "tokens_per_s": statistics.median(speeds) if speeds else None,
        "wall_s": run.last("time/elapsed_s"),
        "peak_mem_mb": max(memory) if memory else None,
        "final_val_loss": run.last("val/loss"),
        "best_val_loss": min(val) if val else None,
        "bits_per_byte": run.last("val/bits_per_byte"),
        "clipped_fraction": stats.mean(clipped) if clipped else None,
    }


def arm_cost(arm: Arm) -> dict[str, float | None]:
    """The mean over the arm's runs of each run's cost (peak memory: the largest)."""
    costs = [run_cost(r) for r in arm.runs]
    merged = {key: _mean_of([c[key] for c in costs]) for key in costs[0]}
    peaks = [c["peak_mem_mb"] for c in costs if c["peak_mem_mb"] is not None]
    merged["peak_mem_mb"] = max(peaks) if peaks else None
    return merged


def _summarise(arm: Arm, metric: str, at: str) -> ArmSummary:
    # A diverged run's last finite value is from before it diverged: it has no final value.
    found = [math.nan if r.diverged else run_value(r, metric, at) for r in arm.runs]
    values = tuple(v for v in found if v is not None and math.isfinite(v))
    diverged = sum(
        1
        for r, v in zip(arm.runs, found, strict=True)
        if r.diverged or (v is not None and not math.isfinite(v))
    )
    return ArmSummary(
        arm=arm,
        metric=metric,
        values=values,
        diverged=diverged,
        missing=sum(1 for v in found if v is None),
        mean=stats.mean(values) if values else None,
        std=stats.std(values),
        ci95=stats.ci95(values),
        cost=arm_cost(arm),
    )


def _against(summary: ArmSummary, baseline: ArmSummary, alpha: float) -> ArmSummary:
    if summary is baseline:
        return attrs.evolve(summary, verdict="baseline")
    if not summary.comparable and summary.metric.startswith("val/"):
        return attrs.evolve(summary, verdict="NOT COMPARABLE: other validation set")
    if summary.mean is None or baseline.mean is None:
        return attrs.evolve(summary, verdict="no value yet")
    difference = summary.mean - baseline.mean
    test = stats.welch(summary.values, baseline.values)
    if test is None:
        return attrs.evolve(
            summary, difference=difference, verdict="one run: no interval can be given"
        )
    if test.p_value >= alpha:
        verdict = "within seed noise"
    else:
        lower = difference < 0
        verdict = "better" if lower != higher_is_better(summary.metric) else "worse"
    return attrs.evolve(
        summary,
        difference=test.difference,
        difference_ci95=test.ci95,
        p_value=test.p_value,
        verdict=verdict,
    )


def _pick_baseline(arms: Arms, baseline: str | None) -> int:
    if baseline is None:
        return 0
    labels = [a.label for a in arms.arms]
    if baseline in labels:
        return labels.index(baseline)
    for i, arm in enumerate(arms.arms):  # a run directory of the arm will do too
        if any(str(r.path) == baseline.rstrip("/") or r.name == baseline for r in arm.runs):
            return i
    raise TelError(f"--baseline {baseline}: no such arm; arms: {', '.join(labels)}")


def _lr_batch_keys(arms: Arms) -> tuple[str, str] | None:
    """The (lr, batch size) keys when exactly those two set the arms apart."""
    if len(arms.keys) != 2:
        return None
    lr = [k for k in arms.keys if k.split(".")[-1] == "lr"]
    batch = [k for k in arms.keys if k.split(".")[-1] == "batch_size"]
    return (lr[0], batch[0]) if lr and batch else None


def compare(
    runs: Sequence[Run],
    metric: str = "val/loss",
    at: str = "final",
    baseline: str | None = None,
    by: Sequence[str] = (),
    alpha: float = 0.05,
) -> Comparison:
    """Group ``runs`` into arms and compare each with the baseline arm (default: the
    first). ``at``: ``final``, ``best`` or ``step:N``."""
    parse_at(at)
    if not 0 < alpha < 1:
        raise TelError(f"--alpha {alpha}: expected a number between 0 and 1, e.g. 0.05")
    if not any(r.values(metric) for r in runs):
        known = sorted({k for r in runs for rec in r.records for k in rec if "/" in k})
        raise TelError(
            f"--metric {metric}: no run recorded it; recorded: {', '.join(known) or '(nothing)'}"
        )
    arms = group_arms(runs, by)
    order = _pick_baseline(arms, baseline)
    ordered = (arms.arms[order], *(a for i, a in enumerate(arms.arms) if i != order))
    arms = attrs.evolve(arms, arms=ordered)
    summaries = [_summarise(a, metric, at) for a in arms.arms]
    notes = _validation_notes(summaries)
    base = summaries[0]
    summaries = [_against(s, base, alpha) for s in summaries]
    notes += _run_notes(arms, summaries, at)
    keys = _lr_batch_keys(arms)
    analysis = None
    if keys is not None:
        lr_key, batch_key = keys
        points = [
            (s.arm.keys[lr_key], s.arm.keys[batch_key], math.inf if s.mean is None else s.mean)
            for s in summaries
            if finite(s.arm.keys[lr_key]) and finite(s.arm.keys[batch_key])
        ]
        analysis = lr_batch(points)
    return Comparison(
        metric=metric,
        at=at,
        alpha=alpha,
        arms=arms,
        summaries=tuple(summaries),
        notes=tuple(notes),
        lr_batch=analysis,
        lr_key=keys[0] if keys else None,
        batch_key=keys[1] if keys else None,
    )


def _validation_notes(summaries: list[ArmSummary]) -> list[str]:
    """Mark (in place) arms scored on another validation set than the baseline's."""
    notes = []
    reference = summaries[0].arm.runs[0]
    for i, summary in enumerate(summaries):
        runs = summary.arm.runs
        if not all(r.same_validation(runs[0]) for r in runs):
            notes.append(f"arm {summary.label}: its runs were scored on different validation sets")
        if not all(r.same_validation(reference) for r in runs):
            summaries[i] = attrs.evolve(summary, comparable=False)
            rows = sorted({str(r.validation.get("rows")) for r in runs})
            notes.append(
                f"VALIDATION SETS DIFFER: arm {summary.label} was scored on other validation "
                f"text ({'/'.join(rows)} rows) than the baseline; its val/* numbers do not "
                f"compare with the baseline's"
            )
    if any("recorded" in r.validation for s in summaries for r in s.arm.runs):
        notes.append(
            "some runs predate recorded validation sets: theirs were batch_size x "
            "eval_batches windows, which differ between batch sizes"
        )
    return notes


def _run_notes(arms: Arms, summaries: list[ArmSummary], at: str) -> list[str]:
    notes = []
    if arms.pooled:
        notes.append(f"arms pool runs that also differ in: {', '.join(arms.pooled)}")
    for s in summaries:
        if s.diverged:
            notes.append(f"arm {s.label}: {s.diverged} run(s) DIVERGED (left out of its mean)")
        if s.missing:
            notes.append(f"arm {s.label}: {s.missing} run(s) have no {s.metric} at {at} yet")
    if any(s.n == 1 for s in summaries):
        notes.append("an arm of one run has no interval and no p-value: run more seeds")
    return notes


def to_json(comparison: Comparison) -> list[dict[str, Any]]:
    """The arms as plain data (``tel compare --format json``)."""
    out = []
    for s in comparison.summaries:
        out.append(
            {
                "arm": s.label,
                "runs": [str(r.path) for r in s.arm.runs],
                "n": s.n,
                "keys": {k: (None if v is MISSING else v) for k, v in s.arm.keys.items()},
                "metric": s.metric,
                "at": comparison.at,
                "mean": s.mean,
                "std": s.std,
                "ci95": list(s.ci95) if s.ci95 else None,
                "difference": s.difference,
                "difference_ci95": list(s.difference_ci95) if s.difference_ci95 else None,
                "p_value": s.p_value,
                "verdict": s.verdict,
                "comparable": s.comparable,
                "diverged": s.diverged,
                "status": [r.status for r in s.arm.runs],
                "steps": [r.step for r in s.arm.runs],
                "max_steps": [r.max_steps for r in s.arm.runs],
                **s.cost,
            }
        )
    return out
