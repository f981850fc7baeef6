#!/usr/bin/env bash
# tel's CUDA path, checked on one GPU in under 8 minutes, ending in one summary table.
#
#   bash benchmarks/gpu_check.sh              # on a GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu        # every step, tiny and on the CPU: tests this script
#
# 1. installs tel into a folder of its own (.gpu-check/site, put first on PYTHONPATH) with
#    `pip install --no-deps`, plus the few pure-Python packages the machine lacks: the
#    machine's torch (and everything else installed) is left as it is;
# 2. runs the test suite's CUDA-marked tests (tests/test_cuda.py);
# 3. trains GPT-2 small's shape (12 layers, 12 heads, width 768, block 1024; byte vocabulary)
#    for 50 steps in bf16 with torch.compile: tokens/s, MFU, peak memory;
# 4. the same in fp16 with the gradient scaler;
# 5. stops a run and resumes it on CUDA: the resumed steps must equal an unbroken run's;
# 6. a one-process torchrun run: the NCCL process group, DDP and its collectives.
#
# Environment: PYTHON (default python3, the one with the machine's torch), OUT (where runs
# and logs go; default .gpu-check/out), TEL_WHEELS (a folder of wheels for an offline
# machine: `pip download -d wheels pluggy attrs cattrs tomli-w rich pytest hypothesis`).
# The exit status is the number of failed checks.
set -uo pipefail

CPU=0
[[ "${1:-}" == "--cpu" ]] && CPU=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 99
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/.gpu-check/out}"
SITE="$ROOT/.gpu-check/site"
mkdir -p "$OUT" "$SITE"
export TEL_CACHE_DIR="$OUT/cache"
export CUBLAS_WORKSPACE_CONFIG=":4096:8"  # lets the resume test ask for deterministic kernels
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT/summary.tsv"
: >"$SUMMARY"
FAILED=0
STARTED=$SECONDS

say() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - STARTED))"; }
record() { # check, status, tokens/s, MFU, peak MB, note
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SUMMARY"
    [[ "$2" == FAIL ]] && FAILED=$((FAILED + 1))
    return 0
}

if [[ $CPU == 1 ]]; then
    DEVICE=cpu
    GPT2=(model.n_layers=2 model.n_heads=2 model.d_model=64 data.block_size=64
        train.batch_size=4 train.max_steps=6)
    SMALL=(model.n_layers=2 model.d_model=64 data.block_size=32 train.batch_size=4)
    LIMIT=600
else
    DEVICE=cuda
    GPT2=(model.n_layers=12 model.n_heads=12 model.d_model=768 data.block_size=1024
        train.batch_size=16 train.max_steps=50)
    SMALL=(data.block_size=128 train.batch_size=16)
    LIMIT=240
fi
COMMON=("train.device=$DEVICE" train.eval_batches=1 sample.max_new_tokens=0 'loggers=[]')
sets() { for kv in "$@"; do printf -- '--set\n%s\n' "$kv"; done; }

# -- 1. install -------------------------------------------------------------------------
say "install tel into $SITE (the machine's torch stays as it is)"
"$PYTHON" - <<'EOF' || { echo "gpu_check: $PYTHON has no torch"; exit 99; }
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}", end="")
print(f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
EOF
TORCH_BEFORE="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
if [[ $CPU == 0 ]] && ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_check: torch sees no GPU here (run with --cpu to test the script on a CPU)"
    exit 99
fi
PIP=("$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$SITE" --upgrade)
[[ -n "${TEL_WHEELS:-}" ]] && PIP+=(--no-index --find-links "$TEL_WHEELS")
# tel itself, without its dependencies; the machine's setuptools builds it if it can.
"${PIP[@]}" --no-deps --no-build-isolation . 2>"$OUT/pip.log" ||
    "${PIP[@]}" --no-deps . 2>>"$OUT/pip.log" || { cat "$OUT/pip.log"; exit 99; }
MISSING="$("$PYTHON" - <<'EOF'
import importlib.util, sys
wanted = {"pluggy": "pluggy", "attrs": "attrs", "cattrs": "cattrs", "tomli_w": "tomli-w",
          "rich": "rich", "pytest": "pytest", "hypothesis": "hypothesis"}
if sys.version_info < (3, 11):
    wanted["tomli"] = "tomli"
print(" ".join(pkg for mod, pkg in wanted.items() if importlib.util.find_spec(mod) is None))
EOF
)"
if [[ -n "$MISSING" ]]; then
    echo "installing what is missing: $MISSING"
    # shellcheck disable=SC2086  # one word per package
    "${PIP[@]}" $MISSING 2>>"$OUT/pip.log" || { cat "$OUT/pip.log"; exit 99; }
fi
TORCH_AFTER="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
if [[ "$TORCH_AFTER" != "$TORCH_BEFORE" ]]; then
    echo "gpu_check: torch changed ($TORCH_BEFORE -> $TORCH_AFTER); remove $SITE"
    exit 99
fi
"$PYTHON" -c 'import tel_core, tel_plugins; print("tel", tel_core.__version__, "from", tel_core.__file__)'
record install PASS - - - "torch $TORCH_AFTER untouched"

# -- 2. the CUDA-marked tests -----------------------------------------------------------
say "the CUDA-marked tests"
if timeout "$LIMIT" "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider -rs tests \
    >"$OUT/pytest.log" 2>&1; then
    STATUS=PASS
else
    STATUS=FAIL
fi
tail -n 15 "$OUT/pytest.log"
NOTE="$(grep -Eo '[0-9]+ (passed|failed|skipped|error)[a-z]*' "$OUT/pytest.log" | paste -sd, -)"
[[ $CPU == 1 && $STATUS == PASS ]] && STATUS=SKIP  # on a CPU they all skip
record "cuda tests" "$STATUS" - - - "${NOTE:-no result}"

# -- 3 and 4. GPT-2 small, bf16 and fp16, compiled ------------------------------------------
measure() { # run directory -> "tokens/s<TAB>MFU<TAB>peak MB<TAB>note" after the warm-up steps
    "$PYTHON" - "$1" <<'EOF'
import json, statistics, sys
from pathlib import Path
rows = [json.loads(l) for l in (Path(sys.argv[1]) / "metrics.jsonl").read_text().splitlines()]
train = [r for r in rows if "train/loss" in r]
steady = train[len(train) // 5 + 1:] or train  # the first steps compile
rate = statistics.median(r["train/tokens_per_s"] for r in steady)
mfu = statistics.median(r["train/mfu"] for r in steady)
skipped = sum(r["train/skipped"] for r in train)
peak = max(r["mem/peak_mb"] for r in train)
print(f"{rate:,.0f}\t{100 * mfu:.1f}%\t{peak:,.0f}\tloss {train[0]['train/loss']:.2f} -> "
      f"{train[-1]['train/loss']:.2f}, {skipped} skipped")
EOF
}
for PRECISION in bf16 fp16; do
    say "GPT-2 small shape, $PRECISION, compiled"
    RUN="$OUT/gpt2-$PRECISION"
    mapfile -t ARGS < <(sets "${GPT2[@]}" "${COMMON[@]}" train.precision=$PRECISION \
        train.compile=true train.eval_every=1000 train.log_every=1)
    if timeout "$LIMIT" "$PYTHON" -m tel_core run experiments/baseline.toml "${ARGS[@]}" \
        --run-dir "$RUN" --overwrite >"$RUN.log" 2>&1; then
        IFS=$'\t' read -r RATE MFU PEAK NOTE < <(measure "$RUN")
        record "gpt2 $PRECISION+compile" PASS "$RATE" "$MFU" "$PEAK" "$NOTE"
    elif [[ $CPU == 1 && $PRECISION == fp16 ]] && grep -q "needs a CUDA device" "$RUN.log"; then
        record "gpt2 fp16+compile" SKIP - - - "fp16 needs CUDA (one-line error, as it should)"
    else
        tail -n 20 "$RUN.log"
        record "gpt2 $PRECISION+compile" FAIL - - - "see $RUN.log"
    fi
done

# -- 5. resume on CUDA ------------------------------------------------------------------------
say "stop at step 10, resume to 20: the same losses as an unbroken run"
# A constant schedule (a cosine's depends on max_steps) and eager attention (no atomics in
# its backward pass), with dropout so that the CUDA random state matters.
RESUME=("${SMALL[@]}" "${COMMON[@]}" schedule.name=constant model.attention.name=eager
    model.dropout=0.1 train.eval_every=10)
mapfile -t WHOLE < <(sets "${RESUME[@]}" train.max_steps=20)
mapfile -t PART < <(sets "${RESUME[@]}" train.max_steps=10)
if timeout "$LIMIT" "$PYTHON" -m tel_core run experiments/baseline.toml "${WHOLE[@]}" \
    --run-dir "$OUT/whole" --overwrite >"$OUT/resume.log" 2>&1 &&
    timeout "$LIMIT" "$PYTHON" -m tel_core run experiments/baseline.toml "${PART[@]}" \
        --run-dir "$OUT/resumed" --overwrite >>"$OUT/resume.log" 2>&1 &&
    timeout "$LIMIT" "$PYTHON" -m tel_core run experiments/baseline.toml "${WHOLE[@]}" \
        --run-dir "$OUT/resumed" --resume >>"$OUT/resume.log" 2>&1; then
    NOTE="$("$PYTHON" - "$OUT/whole" "$OUT/resumed" <<'EOF'
import json, sys
from pathlib import Path
def losses(d):
    rows = map(json.loads, (Path(d) / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}
whole, resumed = losses(sys.argv[1]), losses(sys.argv[2])
diff = max(abs(whole[s] - resumed[s]) for s in range(11, 21))
print(("identical" if diff == 0 else f"DIFFERENT, max {diff:.3g}") + " over steps 11-20")
EOF
)"
    [[ "$NOTE" == identical* ]] && STATUS=PASS || STATUS=FAIL
    record "resume exact" "$STATUS" - - - "$NOTE"
else
    tail -n 20 "$OUT/resume.log"
    record "resume exact" FAIL - - - "see $OUT/resume.log"
fi

# -- 6. one process under torchrun: NCCL ---------------------------------------------------------
say "one process under torchrun (NCCL on a GPU, gloo on a CPU)"
mapfile -t ARGS < <(sets "${SMALL[@]}" "${COMMON[@]}" train.max_steps=20 train.eval_every=10)
if timeout "$LIMIT" "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 1 \
    -m tel_core run experiments/baseline.toml "${ARGS[@]}" --run-dir "$OUT/ddp" --overwrite \
    >"$OUT/ddp.log" 2>&1; then
    BACKEND="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["backend"])' \
        "$OUT/ddp/manifest.json")"
    IFS=$'\t' read -r RATE MFU PEAK NOTE < <(measure "$OUT/ddp")
    WANT=nccl
    [[ $CPU == 1 ]] && WANT=gloo
    [[ "$BACKEND" == "$WANT" ]] && STATUS=PASS || STATUS=FAIL
    record "torchrun x1" "$STATUS" "$RATE" "$MFU" "$PEAK" "backend $BACKEND; $NOTE"
else
    tail -n 20 "$OUT/ddp.log"
    record "torchrun x1" FAIL - - - "see $OUT/ddp.log"
fi

# -- the summary ------------------------------------------------------------------------------
say "summary ($DEVICE)"
"$PYTHON" - "$SUMMARY" <<'EOF'
import sys
rows = [("check", "status", "tokens/s", "MFU", "peak MB", "note")]
rows += [tuple(line.rstrip("\n").split("\t")) for line in open(sys.argv[1]) if line.strip()]
widths = [max(len(r[i]) for r in rows) for i in range(6)]
for r in rows:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
EOF
echo "runs and logs: $OUT; $FAILED check(s) failed; $((SECONDS - STARTED)) s"
exit "$FAILED"
