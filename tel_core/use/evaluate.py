"""``tel eval``: a trained run's checkpoint scored on a split, and its loss by position.

By default every target of the split is scored exactly once, in consecutive windows
(``tel_core.data.batching.split_rows``): deterministic, and independent of the run's seed and
batch size. ``batches=N`` scores the run's own validation rows instead, drawn as the
training loop draws them (``tel_core.data.batching.validation_rows``), so ``N =
train.eval_batches`` reproduces the run's last ``val/loss`` exactly. Either way the
numbers come from ``tel_core.train.scoring``, the loop's own scoring.

The mean loss at each position of the context (1..T) shows how much the model gains
from a longer context; at a ``block_size`` beyond the trained one, how well its
positional encoding extrapolates.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import attrs
import torch

from tel_core.data.batching import plan_batches, split_rows, validation_rows
from tel_core.data.token_cache import check_length, prepare_tokens, tokenize_documents
from tel_core.errors import TelError
from tel_core.registry.interfaces import DataContext
from tel_core.train.scoring import metrics, score_sums, target_bytes
from tel_core.use.load_run import LoadedRun

#: The metrics of a result, in the order the table shows them, with their labels.
LABELS = {
    "loss": "loss (nats/token)",
    "ppl": "perplexity",
    "bits_per_token": "bits/token",
    "bits_per_byte": "bits/byte",
    "accuracy": "top-1 accuracy",
    "accuracy_top5": "top-5 accuracy",
}


@attrs.frozen
class EvalResult:
    """What ``evaluate_run`` measured, as written to ``RUN_DIR/eval/<name>.json``."""

    name: str  # <checkpoint>-<split>[-T<block>][-batches<N>][-data<hash>]
    run_dir: Path
    checkpoint: str
    step: int | None
    split: str
    block_size: int
    trained_block_size: int
    batches: int | None  # None: the whole split
    data_overrides: tuple[str, ...]
    rows: int
    tokens: int  # real targets scored
    bytes: int
    metrics: dict[str, float]  # loss, ppl, bits_per_token, bits_per_byte, accuracy, ...
    loss_by_position: list[float | None]  # mean loss at positions 1..T (None: no target)

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["data_overrides"] = list(self.data_overrides)
        # JSON has no NaN: a metric without targets to average over is null.
        data["metrics"] = {k: None if math.isnan(v) else v for k, v in self.metrics.items()}
        return data


def evaluate_run(
    loaded: LoadedRun,
    split: str = "val",
    batches: int | None = None,
    block_size: int | None = None,
    data_overrides: tuple[str, ...] | list[str] = (),
) -> EvalResult:
    """Score ``loaded`` (from ``load_run``, with the same ``data_overrides``) on ``split``.

    ``batches``: None for the whole split, or N of the run's validation draws.
    ``block_size``: the window length (default: the trained one); beyond the trained
    one, ``loaded`` must have been loaded with ``block_size`` at least as large.
    """
    if split not in ("train", "val"):
        raise TelError(f"--split {split!r}: choose train or val")
    exp = loaded.experiment
    block = block_size or loaded.trained_block_size
    if block > loaded.block_size:
        raise TelError(
            f"block_size {block} is longer than the loaded model's {loaded.block_size}: "
            f"load the run with block_size={block}"
        )
    if batches is not None and batches < 1:
        raise TelError(f"--batches must be at least 1 (or all), got {batches}")
    tokens, offsets = split_tokens(loaded, split, bool(data_overrides))
    check_length(tokens, block, split, exp.data.dataset.name)
    micro = _micro_batch_size(loaded)
    if batches is None:
        rows = split_rows(exp.data.batching, tokens, offsets, block, micro)
    else:
        rows = validation_rows(exp, tokens, offsets, batches, block)
    model = loaded.model.eval()
    by_position = torch.zeros(2, block, dtype=torch.float64, device=loaded.device)
    sums = score_sums(
        model, rows, loaded.device, loaded.precision.autocast, by_position=by_position
    )
    n_bytes = target_bytes(loaded.tokenizer, rows)
    values = {k.removeprefix("val/"): v for k, v in metrics(sums.tolist(), n_bytes).items()}
    losses, counts = by_position.tolist()
    curve = [loss / n if n else None for loss, n in zip(losses, counts, strict=True)]
    return EvalResult(
        name=result_name(loaded, split, block, batches, tuple(data_overrides)),
        run_dir=loaded.run_dir,
        checkpoint=loaded.checkpoint,
        step=loaded.step,
        split=split,
        block_size=block,
        trained_block_size=loaded.trained_block_size,
        batches=batches,
        data_overrides=tuple(data_overrides),
        rows=sum(len(x) for x, _ in rows),
        tokens=int(sums[1].item()),
        bytes=n_bytes,
        metrics=values | _beyond_trained(curve, counts, loaded.trained_block_size),
        loss_by_position=curve,
    )


def split_tokens(loaded: LoadedRun, split: str, other_data: bool) -> tuple[Any, Any]:
    """The split's tokens and document offsets, tokenized by the run's own tokenizer.

    The run's own data goes through the token cache, as in training (so the rows are the
    ones training saw); another dataset is tokenized as it is, never fitted on.
    """
    exp = loaded.experiment
    dataset = loaded.registry.build(
        "dataset", exp.data.dataset, DataContext(exp.data.val_fraction, exp.seed)
    )
    if other_data:
        return tokenize_documents(dataset.documents(split), loaded.tokenizer)
    fresh = loaded.registry.build("tokenizer", exp.data.tokenizer)
    splits = prepare_tokens(exp.data, dataset, fresh, loaded.registry)
    if fresh.state_dict() != loaded.tokenizer.state_dict():
        raise TelError(
            f"the tokenizer fitted on {exp.data.dataset.name!r} now differs from the run's "
            f"tokenizer.json (has the data changed since training?); evaluate on it with "
            f"--set data.KEY=VALUE to tokenize it with the run's tokenizer as it is"
        )
    if split == "train":
        return splits.train, splits.train_offsets
    return splits.val, splits.val_offsets


def _micro_batch_size(loaded: LoadedRun) -> int:
    """Rows per forward pass: what each process took in training (the same pieces give
    the same sums as the loop's evaluation, to the last bit)."""
    recorded = loaded.manifest.get("micro_batch_size")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    return plan_batches(loaded.experiment.train, 1).micro_size


def _beyond_trained(
    curve: list[float | None], counts: list[float], trained: int
) -> dict[str, float]:
    """At a longer block than trained: the loss within the trained length and beyond it."""
    if len(curve) <= trained:
        return {}

    def mean(lo: int, hi: int) -> float:
        total = sum(
            c * n for c, n in zip(curve[lo:hi], counts[lo:hi], strict=True) if c is not None
        )
        n = sum(counts[lo:hi])
        return total / n if n else math.nan

    return {"loss_within_trained": mean(0, trained), "loss_beyond_trained": mean(trained, None)}


def result_name(
    loaded: LoadedRun, split: str, block: int, batches: int | None, overrides: tuple[str, ...]
) -> str:
    """``<checkpoint>-<split>``, and what differs from the default evaluation."""
    name = f"{loaded.checkpoint}-{split}"
    if block != loaded.trained_block_size:
        name += f"-T{block}"
    if batches is not None:
        name += f"-batches{batches}"
    if overrides:
        name += "-data" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    return name


def save_result(result: EvalResult, plot: bool = True) -> tuple[Path, Path | None]:
    """Write ``RUN_DIR/eval/<name>.json`` and, if matplotlib is there, the loss-by-position
    plot ``<name>-positions.png``; returns both paths (the plot's None if not drawn)."""
    directory = result.run_dir / "eval"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.name}.json"
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    image = None
    if plot:
        image = plot_loss_by_position(result, directory / f"{result.name}-positions.png")
    return path, image


def plot_loss_by_position(result: EvalResult, path: Path) -> Path | None:
    """Draw the loss by position (headless); None if matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no display, no global state
    except ImportError:
        return None
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    points = [(t + 1, v) for t, v in enumerate(result.loss_by_position) if v is not None]
    ax.plot([p for p, _ in points], [v for _, v in points], linewidth=1.2)
    if result.block_size > result.trained_block_size:
        ax.axvline(result.trained_block_size, color="grey", linestyle="--", linewidth=1)
        top = ax.get_ylim()[1]
        ax.annotate("trained block_size ", (result.trained_block_size, top), va="top", ha="right")
    ax.set_xlabel("position in the context")
    ax.set_ylabel("mean loss (nats/token)")
    ax.set_xscale("log")
    ax.set_title(
        f"{result.run_dir.name}: checkpoint {result.checkpoint}, {result.split} split, "
        f"block_size {result.block_size}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    figure.savefig(path, dpi=120)
    return path


def format_table(result: EvalResult) -> str:
    """The result as the plain table ``tel eval`` prints."""
    what = "whole split" if result.batches is None else f"{result.batches} validation batches"
    step = f", step {result.step}" if result.step is not None else ""
    lines = [
        f"{result.run_dir}: checkpoint {result.checkpoint}{step}; {result.split} split "
        f"({what}), block_size {result.block_size}; {result.rows:,} rows, "
        f"{result.tokens:,} tokens",
    ]
    if result.data_overrides:
        lines.append(f"data: {' '.join(result.data_overrides)}")
    rows = [(LABELS[k], result.metrics[k]) for k in LABELS]
    if "loss_beyond_trained" in result.metrics:
        trained = result.trained_block_size
        rows += [
            (f"loss at positions 1-{trained}", result.metrics["loss_within_trained"]),
            (
                f"loss at positions {trained + 1}-{result.block_size}",
                result.metrics["loss_beyond_trained"],
            ),
        ]
    width = max(len(label) for label, _ in rows)
    lines.append(f"{'metric':<{width}}  value")
    lines += [f"{label:<{width}}  {value:.4f}" for label, value in rows]
    return "\n".join(lines)
