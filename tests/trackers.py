"""Reading back what the tracker loggers wrote: W&B's offline run files and TensorBoard's
event files, with the trackers' own formats and readers (nothing mocked)."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768  # W&B's run file is a LevelDB-style log: 32 KiB blocks of records
HEADER = 7  # ":W&B", a 2-byte magic number, a version byte


def wandb_runs(run_dir: Path) -> list[Path]:
    """The offline W&B runs in a run directory, oldest first (their folders are named to
    the second; the first history row's time breaks ties)."""

    def started(run: Path) -> tuple[str, float]:
        times = [row.get("_timestamp", 0.0) for row in wandb_history(run)[:1]]
        return run.name.split("-")[2], times[0] if times else 0.0

    return sorted((run_dir / "wandb").glob("offline-run-*"), key=started)


def wandb_records(offline_run: Path) -> Iterator[Any]:
    """Every record (a ``wandb_internal_pb2.Record``) of an offline run's .wandb file."""
    from wandb.proto import wandb_internal_pb2

    (path,) = offline_run.glob("run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    position, pending = HEADER, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header: padding
            position += BLOCK - position % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 2):  # a whole record, or its first piece
            pending = chunk
        elif kind in (3, 4):  # a middle or last piece
            pending += chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_history(offline_run: Path) -> list[dict[str, Any]]:
    """The offline run's history rows ("_step" and every key logged at that step)."""
    return [
        {_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in wandb_records(offline_run)
        if record.WhichOneof("record_type") == "history"
    ]


def wandb_config(offline_run: Path) -> dict[str, Any]:
    """The config the run was started with."""
    for record in wandb_records(offline_run):
        if record.WhichOneof("record_type") == "run":
            return {u.key: json.loads(u.value_json) for u in record.run.config.update}
    raise AssertionError(f"no run record in {offline_run}")


def wandb_run(offline_run: Path) -> Any:
    """The run record: id, display name, project, tags, notes, group."""
    for record in wandb_records(offline_run):
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise AssertionError(f"no run record in {offline_run}")


def wandb_summary(offline_run: Path) -> dict[str, Any]:
    """The run's summary: the last value of every key."""
    summary: dict[str, Any] = {}
    for record in wandb_records(offline_run):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[_key(item)] = json.loads(item.value_json)
    return summary


def tensorboard_events(directory: Path) -> Any:
    """TensorBoard's own EventAccumulator over ``directory``, everything loaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(directory), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0}
    )
    events.Reload()
    return events


def tensorboard_scalars(directory: Path, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in tensorboard_events(directory).Scalars(tag)}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def metric(records: list[dict[str, Any]], key: str) -> dict[int, float]:
    """``key``'s value at each step it was logged."""
    return {r["step"]: r[key] for r in records if key in r}
