"""``tel export``: a trained run's checkpoint in a form other tools read.

- ``safetensors``: ``model.safetensors`` (the weights) and ``tel.json`` (the resolved
  experiment, the tokenizer's state, the plugins' sources, the checkpoint's step and
  val loss). ``tel_core.load_run`` (and so ``tel eval``, ``generate``, ``chat``) reads it
  back exactly.
- ``hf``: a Hugging Face ``transformers`` model directory (``config.json``, safetensors
  weights, tokenizer files) for the architectures that map exactly: learned positions +
  LayerNorm + GELU MLP + pre-LN is GPT-2; RoPE + RMSNorm + SwiGLU + pre-LN (with or
  without GQA) is Llama. Anything else is one line naming the component without a
  counterpart.

Both need the ``hf`` extra (``safetensors``; ``transformers`` and ``tokenizers`` for hf).
"""

from __future__ import annotations

from pathlib import Path

from tel_core.errors import TelError
from tel_core.use.export.result import ExportResult
from tel_core.use.load_run import LoadedRun

FORMATS = ("safetensors", "hf")


def export_run(loaded: LoadedRun, fmt: str, out_dir: str | Path) -> ExportResult:
    """Write ``loaded``'s model (and tokenizer) to ``out_dir`` in format ``fmt``."""
    if fmt not in FORMATS:
        raise TelError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TelError(f"-o {out_dir}: exists and is not a directory")
    if fmt == "safetensors":
        from tel_core.use.export.tel_format import export_safetensors

        return export_safetensors(loaded, out_dir)
    from tel_core.use.export.huggingface import export_hf

    return export_hf(loaded, out_dir)
