#!/usr/bin/env bash
# Run HERE, on a machine with PyPI, before a GPU call: puts into .gpu-check/carry/ what an
# offline GPU machine lacks for benchmarks/gpu_check.sh, so that one folder travels with it.
#
#   bash benchmarks/gpu_prepare.sh        # then carry .gpu-check/carry (it is git-ignored)
#
# - wheels/: tel itself (built from this checkout, no dependencies) and the pure-Python
#   packages that a machine with only torch and the scientific stack lacks: cattrs and
#   tomli-w (every tel command imports them), with attrs, pluggy, rich, typing-extensions
#   at the versions they need. Pure-Python wheels: any Python 3.10+ on any platform.
# - bpe-50257.json: a byte-level BPE of 50,257 tokens (GPT-2's vocabulary size) trained
#   on this Python's standard library, so that GPT-2 small's shape has GPT-2's 38.6M
#   output-layer parameters and its MFU means what nanoGPT's means (the GPT-2 BPE itself
#   cannot be downloaded here).
#
# Environment: PYTHON (default .venv/bin/python, the project's venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CARRY="$ROOT/.gpu-check/carry"
rm -rf "$CARRY.new"
mkdir -p "$CARRY.new/wheels"

"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation -w "$CARRY.new/wheels" .
# The versions this venv runs with, so that the GPU machine runs what the tests ran.
mapfile -t PINS < <("$PYTHON" - <<'EOF'
from importlib.metadata import version
for name in ("cattrs", "tomli-w", "attrs", "pluggy", "rich", "typing-extensions",
             "markdown-it-py", "mdurl", "pygments"):
    print(f"{name}=={version(name)}")
EOF
)
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$CARRY.new/wheels" "${PINS[@]}"

"$PYTHON" - "$CARRY.new/bpe-50257.json" <<'EOF'
import sys, sysconfig
from pathlib import Path
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

root = Path(sysconfig.get_paths()["stdlib"])
skip = {"site-packages", "dist-packages", "__pycache__"}
files = sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))
tokenizer = Tokenizer(models.BPE())
tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tokenizer.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=50257, min_frequency=2, special_tokens=["<|endoftext|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
)
tokenizer.train_from_iterator((p.read_text(errors="replace") for p in files), trainer)
if tokenizer.get_vocab_size() != 50257:
    sys.exit(f"gpu_prepare: the BPE learned {tokenizer.get_vocab_size()} tokens, not 50,257")
tokenizer.save(sys.argv[1])
print(f"bpe-50257.json: 50,257 tokens from {len(files):,} files of {root}")
EOF
rm -rf "$CARRY"
mv "$CARRY.new" "$CARRY"
ls -l "$CARRY" "$CARRY/wheels"
du -sh "$CARRY"
