"""``tel export --format safetensors``: tel's own portable format, read by ``load_run``."""

from __future__ import annotations

import json
from pathlib import Path

from tel_core.config.serialise import to_dict
from tel_core.errors import require
from tel_core.use.export.result import ExportResult
from tel_core.use.load_run import EXPORT_FILE, EXPORT_WEIGHTS, LoadedRun

FORMAT_VERSION = 1


def export_safetensors(loaded: LoadedRun, out_dir: Path) -> ExportResult:
    require("safetensors", "tel export --format safetensors")
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()}
    if loaded.experiment.model.tie_embeddings:  # one tensor under two names: store it once
        weights.pop("lm_head.weight", None)
    save_file(weights, str(out_dir / EXPORT_WEIGHTS), metadata={"format": "tel"})
    info = {
        "format": "tel-safetensors",
        "version": FORMAT_VERSION,
        "config": to_dict(loaded.experiment),
        "tokenizer": {
            "name": loaded.experiment.data.tokenizer.name,
            "state": loaded.tokenizer.state_dict(),
        },
        "plugins": loaded.manifest.get("plugins", []),
        "checkpoint": {
            "run_dir": str(loaded.run_dir),
            "label": loaded.checkpoint,
            "step": loaded.step,
            "val_loss": loaded.val_loss,
        },
        "vocab_size": loaded.model.vocab_size,
        "block_size": loaded.model.block_size,
    }
    (out_dir / EXPORT_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return ExportResult(out_dir, "safetensors", "tel", (EXPORT_WEIGHTS, EXPORT_FILE))
