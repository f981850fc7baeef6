"""What an export wrote: shared by every format."""

from __future__ import annotations

from pathlib import Path

import attrs


@attrs.frozen
class ExportResult:
    out_dir: Path
    format: str
    architecture: str  # "tel", "GPT2LMHeadModel", "LlamaForCausalLM"
    files: tuple[str, ...]
    #: The largest difference between the exported model's logits and tel's on a check
    #: batch (hf only: the export is loaded back with transformers and run).
    max_logit_difference: float | None = None
