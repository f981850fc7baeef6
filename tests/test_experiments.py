"""The shipped experiments: every file trains, and each family varies only its ablation.

The GPU recipes (tinystories, wikipedia_gpt2) need the network: here they train on
local files that stand in for the Hub, through --set overrides, on a shrunk model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tel_core.config.loader import read_toml
from tel_core.config.serialise import to_dict
from tel_core.train.experiment import load_experiment
from tel_core.train.run import run

from .conftest import EXPERIMENTS

SWEEPS = sorted((EXPERIMENTS / "sweeps").glob("*.toml"))  # sweep files, not experiments
FILES = sorted(set(EXPERIMENTS.rglob("*.toml")) - set(SWEEPS))
#: Folders of experiments that are not ablation families of the baseline.
NOT_FAMILIES = {"synthetic", "sweeps"}
#: Each family, and the keys its members may change relative to the baseline.
FAMILIES: dict[str, tuple[str, ...]] = {
    "positional": ("model.positional",),
    "norm": ("model.norm_placement", "model.norm"),
    "grad_clip": ("train.grad_clip",),
    "depth": ("model.n_layers",),
    "width": ("model.d_model",),
    "heads": ("model.n_heads",),
    "attention": ("model.attention",),
    "ffn": ("model.ffn",),
    "weight_decay": ("optimizer.weight_decay",),
}
#: A few steps of a few short sequences: enough to run every code path of a file.
FAST = [
    "train.max_steps=2",
    "train.eval_every=2",
    "train.eval_batches=1",
    "train.batch_size=2",
    "sample.max_new_tokens=4",
    "loggers=[]",
]


def ident(path: Path) -> str:
    return path.relative_to(EXPERIMENTS).as_posix()


def leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested tables into dotted keys."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(leaves(value, f"{prefix}.{key}" if prefix else key))
    return out


def under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


#: A model small enough for the recipes' two CPU steps (their shapes are for a GPU).
SHRINK = [
    "model.n_layers=1",
    "model.d_model=64",
    "model.n_heads=2",
    "data.block_size=32",
    "train.compile=false",
    "train.micro_batch_size=2",
]


def local_stand_ins(tmp_path: Path) -> dict[str, list[str]]:
    """--set overrides that point each file needing the network at local files."""
    stories = [{"text": f"Once upon a time, story {i} had a fox and a crow."} for i in range(200)]
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(json.dumps(s) + "\n" for s in stories[:180]))
    val.write_text("".join(json.dumps(s) + "\n" for s in stories[180:]))
    # A GPT-2-shaped tokenizer.json (byte-level BPE, <|endoftext|>) in place of the Hub's.
    from tel_plugins.tokenizers.bpe import BpeOptions, BpeTokenizer

    gpt2 = BpeTokenizer(BpeOptions(vocab_size=300))
    gpt2.fit(iter(s["text"] for s in stories))
    (tmp_path / "tokenizer.json").write_text(json.dumps(gpt2.state_dict()["tokenizer"]))
    files = f'data.dataset.data_files=["{train.as_posix()}"]'
    return {
        "tinystories.toml": [
            *SHRINK,
            'data.dataset.path="json"',
            files,
            f'data.dataset.val_data_files=["{val.as_posix()}"]',
            "data.tokenizer.vocab_size=300",
        ],
        "wikipedia_gpt2.toml": [
            *SHRINK,
            'data.dataset.path="json"',
            'data.dataset.config=""',
            files,
            "data.val_fraction=0.1",
            'data.tokenizer.pretrained=""',
            f'data.tokenizer.path="{(tmp_path / "tokenizer.json").as_posix()}"',
        ],
        "markov.toml": ["data.dataset.train_symbols=20000", "data.dataset.val_symbols=5000"],
        "recall.toml": ["data.dataset.train_episodes=200", "data.dataset.val_episodes=50"],
    }


@pytest.mark.parametrize("path", FILES, ids=ident)
def test_every_experiment_file_trains(path, tmp_path, registry, corpus):
    overrides = list(FAST)
    if path.name == "shakespeare_char.toml":  # no download in the tests
        overrides.append(f'data.dataset.paths=["{corpus.as_posix()}"]')
    overrides += local_stand_ins(tmp_path).get(path.name, [])
    experiment = load_experiment(path, overrides, registry=registry)
    result = run(experiment, tmp_path / "run", registry)
    assert result.steps == 2 and result.final_val_loss > 0


def test_every_family_is_shipped_with_at_least_two_members():
    for family in FAMILIES:
        assert len(list((EXPERIMENTS / family).glob("*.toml"))) >= 2, family
    folders = {p.name for p in EXPERIMENTS.iterdir() if p.is_dir()} - NOT_FAMILIES
    assert folders == set(FAMILIES), "a family folder without its entry in FAMILIES"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_members_differ_from_the_baseline_only_in_the_ablated_keys(registry, family):
    ablated = FAMILIES[family]
    baseline = leaves(to_dict(load_experiment(EXPERIMENTS / "baseline.toml", registry=registry)))
    resolved = []
    for path in sorted((EXPERIMENTS / family).glob("*.toml")):
        written = read_toml(path)
        assert written.pop("extends") == "../baseline.toml", path
        assert written.pop("name").startswith(f"{family}-"), path  # runs/<family>-<member>
        extra = [key for key in leaves(written) if not under(key, ablated)]
        assert not extra, f"{ident(path)} sets {extra}, outside its family's {ablated}"
        member = leaves(to_dict(load_experiment(path, registry=registry)))
        member.pop("name")
        changed = {k for k in baseline.keys() | member.keys() if baseline.get(k) != member.get(k)}
        assert all(under(k, ablated) for k in changed - {"name"}), (path, changed)
        resolved.append(member)
    assert all(a != b for i, a in enumerate(resolved) for b in resolved[i + 1 :]), (
        "two members of one family are the same experiment"
    )
    baseline.pop("name")
    assert baseline in resolved, "no member of the family is the baseline itself"


def test_run_names_are_unique():
    names = [read_toml(path)["name"] for path in FILES]
    assert len(names) == len(set(names))


def test_the_experiments_readme_covers_every_family():
    readme = (EXPERIMENTS / "README.md").read_text()
    for family in FAMILIES:
        assert f"`{family}/`" in readme, family


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_shipped_sweep_plans_three_seeds_of_valid_members(path, registry, tmp_path):
    from tel_core.sweep import load_plan

    plan = load_plan(path, runs_root=tmp_path, registry=registry)
    assert plan.seeds == (1337, 1, 2) and len(plan.members) >= 3
    assert len(plan.runs) == 3 * len(plan.members)
    # Sized for two CPU cores: tokens trained, all runs together, at most the baseline's
    # 1500 steps x 16 sequences nine times over (about 25 minutes).
    tokens = sum(
        r.max_steps * int(dict(_sets(r.overrides)).get("train.batch_size", 16)) for r in plan.runs
    )
    assert tokens <= 9 * 1500 * 16


def _sets(overrides):
    return [item.split("=", 1) for item in overrides]


def test_the_probes_experiment_records_what_every_probe_measures(tmp_path, registry):
    """experiments/probes.toml: per-layer gradient norms, activation statistics, attention
    entropy, distance histograms and heatmaps, accuracy and stability, on its last step."""
    import json

    experiment = load_experiment(EXPERIMENTS / "probes.toml", FAST, registry=registry)
    run(experiment, tmp_path / "run", registry)
    probes = tmp_path / "run" / "probes"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    keys = set().union(*records)
    layers = experiment.model.n_layers
    for i in range(layers):
        assert {
            f"grad_norm/blocks.{i}.attn",
            f"grad_norm/blocks.{i}.ffn",
            f"update_ratio/blocks.{i}",
            f"act/rms/layer{i}",
            f"act/kurtosis/layer{i}",
            f"attn/entropy/layer{i}",
            f"attn/distance/layer{i}",
            f"attn/sink/layer{i}",
        } <= keys, i
        assert (probes / f"attn/heatmap/layer{i}" / "step_0000002.png").is_file()
    assert {"grad_norm/token_embedding", "time/probes_s", "val/accuracy"} <= keys
    assert {"stability/loss_spikes", "stability/grad_spikes", "stability/clip_rate"} <= keys
    histograms = {json.loads(line)["name"] for line in (probes / "histograms.jsonl").open()}
    assert {f"attn/distance_hist/layer{i}" for i in range(layers)} <= histograms
    assert any(name.startswith("grad_hist/") for name in histograms)
