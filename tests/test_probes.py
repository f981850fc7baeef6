"""The probe seam: probes run on their steps only, see what they claim, cost nothing else,
and what they report reaches metrics.jsonl, probes/ and every logger."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping
from typing import ClassVar

import attrs
import numpy as np
import pytest
import torch

import tel_core.probes.runner
import tel_core.train.loop
from tel_core import hookimpl
from tel_core.errors import ConfigError, PluginError
from tel_core.probes.contract import Probe, ProbeOptions, Report
from tel_core.probes.runner import sanity_line
from tel_core.registry.interfaces import Logger
from tel_core.registry.media import Histogram
from tel_core.testing.loggers import TRAIN_METRICS
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run

ALL_BUILTINS = [
    {"name": "grad_norms", "every": 2, "histograms": True},
    {"name": "activations", "every": 2},
    {"name": "attention", "every": 3, "rows": 2},
    {"name": "stability"},
]


@attrs.frozen(kw_only=True)
class SpyOptions(ProbeOptions):
    #: Seconds the probe pretends to spend (on the fake clock of one test).
    pretend_s: float = 0.0
    #: Hand back something that is not a Report.
    broken: bool = False


class Spy(Probe):
    """Records what it was shown, when, and reports one of everything."""

    calls: ClassVar[list[tuple[str, int, dict]]] = []

    def __init__(self, options: SpyOptions, ctx) -> None:
        self.options = options
        self.model = ctx.model

    def after_backward(self, step: int) -> Report:
        grads = [p.grad for p in self.model.parameters()]
        Spy.calls.append(("after_backward", step, {"grads": all(g is not None for g in grads)}))
        _FakeClock.offset += self.options.pretend_s
        return Report(scalars={"spy/grad_sum": sum(g.abs().sum().item() for g in grads)})

    def after_update(self, update) -> Report:
        Spy.calls.append(("after_update", update.step, {"last": update.last}))
        if self.options.broken:
            return Report(scalars={"spy/oops": torch.tensor(1.0)})
        return Report(texts={"spy/event": f"updated at {update.step}"})

    def evaluate(self, batch) -> Report:
        seen = {
            "training": self.model.training,
            "grad": torch.is_grad_enabled(),
            "inputs": batch.inputs.tolist(),
        }
        Spy.calls.append(("evaluate", batch.step, seen))
        image = np.full((4, 6, 3), batch.step, dtype=np.uint8)
        return Report(
            histograms={"spy/hist": Histogram((0, 1, 2), (batch.step, 1))},
            images={"spy/image": image},
        )


class SpyPlugin:
    @hookimpl
    def register_probes(self, register):
        register("spy", Spy, options=SpyOptions)

    @hookimpl
    def register_loggers(self, register):
        register("recorder", Recorder)


class Recorder(Logger):
    """Every call a logger receives."""

    last: Recorder | None = None

    def __init__(self, options, ctx) -> None:
        self.calls: list[tuple] = []
        Recorder.last = self

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.calls.append(("log", step, dict(metrics)))

    def log_text(self, step, name, text):
        self.calls.append(("text", step, name, text))

    def log_histogram(self, step, name, histogram):
        self.calls.append(("histogram", step, name, histogram))

    def log_image(self, step, name, image):
        self.calls.append(("image", step, name, image.copy()))


@pytest.fixture
def spy(tel_register):
    Spy.calls = []
    tel_register(SpyPlugin())


def test_probes_run_on_their_steps_and_reach_every_record(spy, tel_train):
    run_ = tel_train(steps=7, probes=[{"name": "spy", "every": 3}], loggers=[{"name": "recorder"}])
    # Steps 3 and 6, and the last; each moment in order.
    moments = ["after_backward", "after_update", "evaluate"]
    assert [(m, s) for m, s, _ in Spy.calls] == [(m, s) for s in (3, 6, 7) for m in moments]
    seen = {(m, s): what for m, s, what in Spy.calls}
    assert all(seen["after_backward", s]["grads"] for s in (3, 6, 7))
    assert [seen["after_update", s]["last"] for s in (3, 6, 7)] == [False, False, True]
    evaluations = [seen["evaluate", s] for s in (3, 6, 7)]
    assert not any(e["training"] or e["grad"] for e in evaluations)
    assert evaluations[0]["inputs"] == evaluations[1]["inputs"] == evaluations[2]["inputs"]

    probe_lines = [r for r in run_.records if "spy/grad_sum" in r]
    assert [r["step"] for r in probe_lines] == [3, 6, 7]
    train_lines = [r for r in run_.records if "train/loss" in r]
    assert all(r["time/probes_s"] >= 0 for r in train_lines)
    assert [r["time/probes_s"] > 0 for r in train_lines] == [s in (3, 6, 7) for s in range(1, 8)]

    calls = Recorder.last.calls
    logged = [c for c in calls if c[0] == "log" and "spy/grad_sum" in c[2]]
    assert [(c[1], c[2]) for c in logged] == [(r["step"], _without_step(r)) for r in probe_lines]
    texts = [c[1:] for c in calls if c[0] == "text" and c[2] == "spy/event"]
    assert texts == [(s, "spy/event", f"updated at {s}") for s in (3, 6, 7)]
    histograms = [(c[1], c[3].counts) for c in calls if c[0] == "histogram"]
    assert histograms == [(s, (s, 1.0)) for s in (3, 6, 7)]

    probes = run_.run_dir / "probes"
    written = [json.loads(line) for line in (probes / "histograms.jsonl").read_text().splitlines()]
    assert written == [
        {"step": s, "name": "spy/hist", "edges": [0.0, 1.0, 2.0], "counts": [s, 1.0]}
        for s in (3, 6, 7)
    ]
    text = [json.loads(line) for line in (probes / "text.jsonl").read_text().splitlines()]
    assert [t["step"] for t in text] == [3, 6, 7]
    import matplotlib.image

    for c in (c for c in calls if c[0] == "image"):
        png = probes / "spy" / "image" / f"step_{c[1]:07d}.png"
        decoded = (matplotlib.image.imread(png) * 255).round().astype(np.uint8)
        assert np.array_equal(decoded, c[3])


def _without_step(record):
    return {k: v for k, v in record.items() if k != "step"}


def test_probes_change_nothing_in_training(tel_train):
    plain = tel_train(steps=6)
    probed = tel_train(steps=6, probes=ALL_BUILTINS)
    assert probed.losses == plain.losses
    assert probed.result.final_val_loss == plain.result.final_val_loss
    assert probed.result.sample == plain.result.sample
    # Without probes: not a key more, not a file more.
    assert not any("time/probes_s" in r for r in plain.records)
    train_keys = {"step", *TRAIN_METRICS}  # what the kit says the loop logs, and no more
    assert all(set(r) == train_keys for r in plain.records if "train/loss" in r)
    assert not (plain.run_dir / "probes").exists()
    names = {k for r in probed.records for k in r}
    for expected in (
        "grad_norm/blocks.1.attn",
        "update_ratio/token_embedding",
        "act/kurtosis/layer1",
        "attn/entropy/layer0/head3",
        "attn/sink/layer1",
        "stability/clip_rate",
        "time/probes_s",
    ):
        assert expected in names, expected


class _FakeClock:
    """time.perf_counter, plus whatever the spy pretends to spend."""

    offset = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        return time.perf_counter() + cls.offset


def test_time_in_probes_is_measured_and_kept_out_of_tokens_per_s(spy, tel_train, monkeypatch):
    _FakeClock.offset = 0.0
    for module in (tel_core.train.loop, tel_core.probes.runner):
        monkeypatch.setattr(module, "time", _FakeClock)
    run_ = tel_train(steps=4, probes=[{"name": "spy", "every": 2, "pretend_s": 1000.0}])
    lines = {r["step"]: r for r in run_.records if "train/loss" in r}
    assert lines[2]["time/probes_s"] >= 1000 and lines[4]["time/probes_s"] >= 1000
    assert lines[1]["time/probes_s"] < 1000 and lines[3]["time/probes_s"] < 1000
    assert all(r["time/step_s"] < 1000 for r in lines.values())  # a tiny step, probes aside
    assert lines[4]["time/elapsed_s"] >= 2000  # the run's wall time includes them


def test_a_probe_that_reports_nonsense_is_named(spy, tel_train):
    with pytest.raises(PluginError, match=r"probe 'spy': scalar 'spy/oops' is a Tensor"):
        tel_train(steps=2, probes=[{"name": "spy", "every": 2, "broken": True}])


def test_a_resumed_run_continues_every_probe_and_its_records(tiny, tmp_path, registry):
    tiny["probes"] = ALL_BUILTINS
    tiny["train"].update(max_steps=6, eval_every=6, checkpoint_every=3, grad_clip=1e-3)
    experiment = experiment_from_dict(tiny, registry)
    run(experiment, tmp_path / "run", registry)
    straight = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("**/*.jsonl")}
    images = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run" / "probes").glob("**/*.png"))
    # As if it had been killed after step 6 with its last checkpoint at step 3:
    checkpoints = tmp_path / "run" / "checkpoints"
    shutil.copy(checkpoints / "step_0000003.pt", checkpoints / "latest.pt")
    run(experiment, tmp_path / "run", registry, resume=True)
    resumed = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("**/*.jsonl")}
    assert resumed.keys() == straight.keys() == {"metrics.jsonl", "histograms.jsonl"}
    assert resumed["histograms.jsonl"] == straight["histograms.jsonl"]
    probe_keys = ("grad_norm/", "update_ratio/", "act/", "attn/", "stability/")

    def probe_records(text: bytes):
        records = [json.loads(line) for line in text.decode().splitlines()]
        return [
            {k: v for k, v in r.items() if k == "step" or k.startswith(probe_keys)}
            for r in records
            if any(k.startswith(probe_keys) for k in r)
        ]

    assert probe_records(resumed["metrics.jsonl"]) == probe_records(straight["metrics.jsonl"])
    last = probe_records(resumed["metrics.jsonl"])[-1]
    assert last["stability/clipped"] == 6  # counted across the stop
    assert images == sorted(
        p.relative_to(tmp_path) for p in (tmp_path / "run" / "probes").glob("**/*.png")
    )


@pytest.mark.parametrize(
    ("loss", "vocab", "verdict"),
    [
        (math.log(65) + 0.02, 65, "as expected of a fresh initialisation"),
        (3 * math.log(65), 65, "far above a uniform guess"),
        (0.1, 65, "far below a uniform guess"),
        (math.nan, 65, "far above a uniform guess"),
    ],
)
def test_the_sanity_line_compares_the_first_loss_with_a_uniform_guess(loss, vocab, verdict):
    line = sanity_line(loss, vocab)
    assert verdict in line and f"ln(vocab_size {vocab}) = {math.log(vocab):.4f}" in line
    assert line.startswith("warning: ") == (verdict != "as expected of a fresh initialisation")


def test_every_fresh_run_starts_with_the_sanity_line(tel_train, capsys):
    run_ = tel_train(steps=2)
    first = run_.losses[0]
    out = capsys.readouterr().out
    assert f"tiny: first loss {first:.4f} against ln(vocab_size " in out
    assert "as expected of a fresh initialisation" in out


@pytest.mark.parametrize(
    ("probes", "error"),
    [
        ([{"name": "grad_norm"}], "unknown probe 'grad_norm' in <dict> [probes.0]; did you mean"),
        (
            [{"name": "stability", "every": 0}],
            "<dict> [probes.0] every (probe 'stability'): 'every'",
        ),
        (
            [{"name": "stability"}, {"name": "attention", "rows": 0}],
            "<dict> [probes.1] rows (probe 'attention'): 'rows' must be >= 1",
        ),
        (
            [{"name": "activations", "row": 2}],
            "<dict> [probes.0] row: unknown key for probe 'activations'; did you mean 'rows'?",
        ),
        ({"name": "stability"}, "<dict> (top level) probes: expected an array of tables"),
    ],
)
def test_probe_tables_are_checked_at_load_time(tiny, registry, probes, error):
    tiny["probes"] = probes
    with pytest.raises(ConfigError) as excinfo:
        experiment_from_dict(tiny, registry)
    assert error in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_probes_see_the_same_under_activation_checkpointing(tel_train):
    plain = tel_train(steps=2, probes=ALL_BUILTINS[:3])
    checkpointed = tel_train(
        steps=2, probes=ALL_BUILTINS[:3], config={"train": {"activation_checkpointing": True}}
    )
    assert _probe_values(checkpointed) == pytest.approx(_probe_values(plain), rel=1e-5)


@pytest.mark.slow
def test_probes_see_the_same_through_torch_compile(tel_train):
    """Dynamo skips forward hooks added to a compiled module's submodules after it was
    compiled; the probes hook the plain model, which training shares its weights with."""
    plain = tel_train(steps=2, probes=ALL_BUILTINS[:3])
    compiled = tel_train(steps=2, probes=ALL_BUILTINS[:3], config={"train": {"compile": True}})
    values = _probe_values(compiled)
    assert values.keys() == _probe_values(plain).keys()
    assert values == pytest.approx(_probe_values(plain), rel=1e-3, abs=1e-6)


def _probe_values(run_) -> dict[str, float]:
    keys = ("grad_norm/", "update_ratio/", "act/", "attn/")
    return {f"{r['step']}:{k}": v for r in run_.records for k, v in r.items() if k.startswith(keys)}


def test_dynamo_skips_hooks_added_to_a_compiled_modules_parts():
    """Why probes hook the plain model: on a compiled module, a forward hook added to a
    submodule after compilation never fires (torch 2.13; dynamo's guards skip hooks)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    compiled = torch.compile(model, backend="eager")  # dynamo alone: no C++ to build
    x = torch.randn(3, 4)
    compiled(x)
    seen = []
    hook = model[0].register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        compiled(x)
        assert seen == [], "dynamo now honours late hooks: the README's note needs updating"
        model(x)  # the plain model, sharing the weights: the hook fires
        assert len(seen) == 1
    finally:
        hook.remove()
