#!/usr/bin/env bash
# tel's CUDA path, checked on one GPU inside a deadline, always ending in one summary table.
#
#   bash benchmarks/gpu_prepare.sh            # HERE, with PyPI: fills .gpu-check/carry
#   bash benchmarks/gpu_check.sh              # THERE, on the GPU machine (carry .gpu-check/carry)
#   bash benchmarks/gpu_check.sh --cpu        # every step, tiny, on a CPU: tests this script
#
# The steps, most valuable first; each runs under `timeout -k` with the smaller of its own
# limit and what is left of a global deadline, and a step that fails or runs out of time is
# a FAIL row, never the end of the script:
#
#  1. install: tel and the pure-Python packages the machine lacks, from the carried wheels
#     only (--no-index --no-deps), into a folder of its own put first on PYTHONPATH; the
#     machine's torch (and everything else installed) is left as it is. env.txt records
#     the machine: nvidia-smi, torch, CUDA, cuDNN, NCCL, Triton.
#  2. variants: every attention x positional plugin x {bf16, fp16}, two steps each, with
#     the attention probe recording and KV-cache logits equal to recomputing
#     (benchmarks/gpu_variants.py).
#  3. GPT-2 small's shape (12 layers, 12 heads, width 768, block 1024, a 50,257-token BPE
#     padded to 50,304 rows as nanoGPT pads it)
#     in bf16 with torch.compile: tokens/s, MFU, peak memory, recompiles after warm-up, and
#     the attention kernels the profiler saw (benchmarks/gpu_kernels.py).
#  4. resume in fp16 (the gradient scaler's state too): steps 11-20 of a run stopped at
#     step 10 equal an unbroken run's.
#  5. tests/test_cuda.py (a skip on a GPU is a failure).
#  6. one process under torchrun: NCCL, DDP and its collectives; a ten-line all_reduce
#     probe when it fails.
#
# What comes back: $OUT/summary.tsv, $OUT/env.txt and $OUT/logs.tar.gz, nothing else. Runs,
# caches and checkpoints live in a folder under /tmp (removed at the end).
#
# Environment: PYTHON (default python3, the one with the machine's torch); OUT (default
# .gpu-check/out); TEL_CARRY (default .gpu-check/carry: wheels/ and bpe-50257.json);
# GPU_CHECK_DEADLINE (seconds for everything, default 420); GPU_CHECK_HANG (a step's name:
# that step sleeps instead, to test the deadline). The exit status is the number of FAILs.
set -uo pipefail

CPU=0
DEVICE=cuda
[[ "${1:-}" == "--cpu" ]] && CPU=1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 99
PYTHON="${PYTHON:-python3}"
OUT="${OUT:-$ROOT/.gpu-check/out}"
CARRY="${TEL_CARRY:-$ROOT/.gpu-check/carry}"
DEADLINE="${GPU_CHECK_DEADLINE:-420}"
HANG="${GPU_CHECK_HANG:-}"
WORK="$(mktemp -d /tmp/tel-gpu-check.XXXXXX)"
SITE="$WORK/site"
LOGS="$WORK/logs"
mkdir -p "$OUT" "$SITE" "$LOGS"
SUMMARY="$OUT/summary.tsv"
: >"$SUMMARY"
rm -f "$OUT/env.txt" "$OUT/logs.tar.gz"
export TEL_CACHE_DIR="$WORK/cache"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
FAILED=0
STARTED=$SECONDS

say() { printf '\n== %s (%ds)\n' "$*" "$((SECONDS - STARTED))"; }
record() { # check, status, tokens/s, MFU, peak MB, note: a row of the table, echoed at once
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$SUMMARY"
    printf -- '-> %s: %s  %s\n' "$1" "$2" "$6"
    [[ "$2" == FAIL ]] && FAILED=$((FAILED + 1))
    return 0
}
table() {
    awk -F'\t' 'BEGIN { OFS = "  " }
        { for (i = 1; i <= 6; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } }
        END {
            split("check status tokens/s MFU peak_MB note", head, " ")
            for (i = 1; i <= 6; i++) if (length(head[i]) > w[i]) w[i] = length(head[i])
            for (r = 0; r <= NR; r++) {
                line = ""
                for (i = 1; i <= 6; i++) {
                    c = r ? cell[r, i] : head[i]
                    line = line sprintf("%-" w[i] "s", c) (i < 6 ? "  " : "")
                }
                sub(/ +$/, "", line); print line
            }
        }' "$SUMMARY"
}
finish() { # the exit trap: the table, the logs, and the work folder gone, whatever happened
    trap - EXIT INT TERM
    say "summary ($DEVICE)"
    table
    tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null
    [[ -n "${GPU_CHECK_KEEP:-}" ]] || rm -rf "$WORK"
    echo "$FAILED check(s) failed; $((SECONDS - STARTED)) s; summary.tsv, env.txt, logs.tar.gz in $OUT"
    exit "$FAILED"
}
trap finish EXIT
trap 'record interrupted FAIL - - - "a signal stopped the script"; exit' INT TERM

# run NAME LIMIT COMMAND...: COMMAND's output to logs/NAME.log, under `timeout -k`, given the
# smaller of LIMIT and the time left. Status 124 or 137: out of time; 125: none was left.
run() {
    local name=$1 limit=$2 left
    shift 2
    left=$((DEADLINE - (SECONDS - STARTED)))
    ((left < limit)) && limit=$left
    if ((limit < 5)); then
        echo "no time left for $name" >"$LOGS/$name.log"
        return 125
    fi
    [[ "$HANG" == "$name" ]] && set -- sleep 100000  # the deadline's test: a step that hangs
    timeout -k 10 "$limit" "$@" >>"$LOGS/$name.log" 2>&1
}
# why STATUS LOG: the note of a failed step
why() {
    case $1 in
    124 | 137) echo "out of time (deadline ${DEADLINE}s)" ;;
    125) echo "no time left (deadline ${DEADLINE}s)" ;;
    *) echo "exit $1: $(grep -E 'tel: error|Error|error:' "$2" | tail -n 1 | cut -c1-150)" ;;
    esac
}
sets() { for kv in "$@"; do printf -- '--set\n%s\n' "$kv"; done; }

if [[ $CPU == 1 ]]; then
    DEVICE=cpu
    GPT2=(model.n_layers=2 model.n_heads=2 model.d_model=64 data.block_size=64
        train.batch_size=4 train.max_steps=8)
    SMALL=(model.n_layers=2 model.d_model=64 data.block_size=32 train.batch_size=4)
    RESUME_PRECISION=fp32  # fp16 needs CUDA
    PRECISIONS=bf16
else
    DEVICE=cuda
    GPT2=(model.n_layers=12 model.n_heads=12 model.d_model=768 data.block_size=1024
        model.vocab_multiple=64 train.batch_size=16 train.max_steps=40)
    SMALL=(data.block_size=128 train.batch_size=16)
    RESUME_PRECISION=fp16
    PRECISIONS=bf16,fp16
fi
COMMON=("train.device=$DEVICE" train.eval_batches=1 sample.max_new_tokens=0 'loggers=[]')

# -- 1. install -------------------------------------------------------------------------
say "install tel into $SITE (the machine's torch stays as it is)"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    record install FAIL - - - "$PYTHON has no torch"
    exit
fi
TORCH_BEFORE="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
PIP=("$PYTHON" -m pip install --quiet --no-compile --target "$SITE" --upgrade --no-deps)
if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    run install 120 "${PIP[@]}" --no-index "$CARRY"/wheels/*.whl
else  # no carried wheels: tel from this checkout, the rest from the index (online machines)
    run install 120 "${PIP[@]}" . cattrs tomli-w
fi
STATUS=$?
if ((STATUS != 0 && STATUS != 124 && STATUS != 137)) && compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    # No pip in this Python? A pure-Python wheel is a zip file: unpacked, it is installed.
    echo "pip failed ($STATUS): unpacking the wheels instead" >>"$LOGS/install.log"
    for wheel in "$CARRY"/wheels/*.whl; do
        run install 60 "$PYTHON" -m zipfile -e "$wheel" "$SITE" || break
    done
    STATUS=$?
fi
"$PYTHON" - >"$OUT/env.txt" 2>&1 <<'EOF'
import importlib.metadata as md, platform, subprocess, sys
import torch
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
      torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "capability", torch.cuda.get_device_capability(),
          "bf16", torch.cuda.is_bf16_supported())
    print("nccl", ".".join(map(str, torch.cuda.nccl.version())))
for name in ("triton", "tel", "cattrs", "attrs", "pluggy", "numpy"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
try:
    print(subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=20).stdout)
except (OSError, subprocess.SubprocessError) as exc:
    print("nvidia-smi:", exc)
EOF
cat "$OUT/env.txt"
TORCH_AFTER="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
if ((STATUS != 0)); then
    record install FAIL - - - "$(why $STATUS "$LOGS/install.log")"
elif [[ "$TORCH_AFTER" != "$TORCH_BEFORE" ]]; then
    record install FAIL - - - "torch changed ($TORCH_BEFORE -> $TORCH_AFTER)"
elif ! "$PYTHON" -c 'import tel_core, tel_plugins' >>"$LOGS/install.log" 2>&1; then
    record install FAIL - - - "tel does not import: $(tail -n 1 "$LOGS/install.log")"
elif [[ $DEVICE == cuda ]] && ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    record install FAIL - - - "torch $TORCH_AFTER sees no GPU (--cpu tests the script on a CPU)"
else
    record install PASS - - - "torch $TORCH_AFTER untouched; tel from $(compgen -G "$CARRY/wheels/*.whl" >/dev/null && echo 'carried wheels' || echo 'the index')"
fi

# -- 2. every attention x positional x half precision ------------------------------------
say "variants: attention x positional x {$PRECISIONS}, two steps each"
run variants 150 "$PYTHON" benchmarks/gpu_variants.py --device "$DEVICE" \
    --precisions "$PRECISIONS" --out "$WORK/variants"
STATUS=$?
grep -E '^(FAIL|variants:)' "$LOGS/variants.log"
NOTE="$(grep -E '^variants:' "$LOGS/variants.log" | tail -n 1)"
if ((STATUS == 0)) && [[ -n "$NOTE" ]]; then
    record variants PASS - - - "${NOTE#variants: }"
else
    FIRST="$(grep -E '^FAIL' "$LOGS/variants.log" | head -n 1 | tr -s ' ' | cut -c1-120)"
    record variants FAIL - - - "${NOTE:-$(why $STATUS "$LOGS/variants.log")}${FIRST:+; first: $FIRST}"
fi

# -- 3. GPT-2 small, bf16, compiled ---------------------------------------------------------
# measure RUN_DIR LOG [gpt2]: "tokens/s<TAB>MFU<TAB>peak MB<TAB>verdict<TAB>note" after the warm-up
measure() {
    "$PYTHON" - "$1" "$2" "${3:-}" <<'EOF'
import json, math, statistics, sys
from pathlib import Path
rows = [json.loads(l) for l in (Path(sys.argv[1]) / "metrics.jsonl").read_text().splitlines() if l]
train = [r for r in rows if "train/loss" in r]
steady = train[len(train) // 5 + 1:] or train  # the first steps compile
rate = statistics.median(r["train/tokens_per_s"] for r in steady)
mfu = statistics.median(r["train/mfu"] for r in steady)
skipped = sum(r["train/skipped"] for r in train)
peak = max(r["mem/peak_mb"] for r in train)
first, last = train[0]["train/loss"], train[-1]["train/loss"]
log = Path(sys.argv[2]).read_text(errors="replace")
recompiles = log.count("Recompiling function")
problems = []
if not (math.isfinite(last) and last < first):
    problems.append("the loss did not fall")
if sys.argv[3] == "gpt2" and not 0.01 <= mfu <= 0.8:  # a tiny model's MFU is tiny
    problems.append(f"implausible MFU {mfu:.3f}")
if skipped and "bf16" in sys.argv[1]:
    problems.append(f"{skipped} step(s) skipped in bf16")
if recompiles:
    problems.append(f"{recompiles} recompile(s)")
note = (f"loss {first:.2f} -> {last:.2f}, {skipped} skipped, {recompiles} recompiles, "
        f"{len(train)} steps")
print(f"{rate:,.0f}\t{100 * mfu:.1f}%\t{peak:,.0f}\t{'FAIL' if problems else 'PASS'}\t"
      + "; ".join(problems + [note]))
EOF
}
say "GPT-2 small shape, bf16, compiled"
RUN="$WORK/gpt2-bf16"
BPE="$CARRY/bpe-50257.json"
TOKENIZER=()
VOCAB="byte vocabulary (MFU not comparable with nanoGPT's)"
if [[ $CPU == 0 && -f "$BPE" ]]; then
    TOKENIZER=("data.tokenizer={name = \"bpe\", path = \"$BPE\"}")
    VOCAB="50,257-token BPE"
fi
mapfile -t ARGS < <(sets "${GPT2[@]}" "${COMMON[@]}" "${TOKENIZER[@]}" train.precision=bf16 \
    train.compile=true train.eval_every=1000 train.log_every=1)
if TORCH_LOGS=recompiles run gpt2 270 "$PYTHON" -m tel_core run experiments/baseline.toml \
    "${ARGS[@]}" --run-dir "$RUN"; then
    IFS=$'\t' read -r RATE MFU PEAK STATUS NOTE < <(measure "$RUN" "$LOGS/gpt2.log" gpt2)
    record "gpt2 bf16+compile" "${STATUS:-FAIL}" "${RATE:--}" "${MFU:--}" "${PEAK:--}" \
        "${NOTE:-no measurement}; $VOCAB"
else
    STATUS=$?
    tail -n 15 "$LOGS/gpt2.log"
    record "gpt2 bf16+compile" FAIL - - - "$(why $STATUS "$LOGS/gpt2.log")"
fi
# The attention kernels: flash or memory-efficient (or cuDNN) SDPA must be what runs.
if run kernels 90 "$PYTHON" benchmarks/gpu_kernels.py experiments/baseline.toml "${ARGS[@]}" \
    --set train.compile=false; then
    NOTE="$(grep -E '^attention kernels:' "$LOGS/kernels.log" | tail -n 1)"
    if [[ $CPU == 1 || "$NOTE" =~ (flash|fmha|efficient|cudnn) ]]; then
        record "sdpa kernels" PASS - - - "${NOTE#attention kernels: }"
    else
        record "sdpa kernels" FAIL - - - "no fused attention kernel: ${NOTE#attention kernels: }"
    fi
else
    STATUS=$?
    record "sdpa kernels" FAIL - - - "$(why $STATUS "$LOGS/kernels.log")"
fi

# -- 4. resume in fp16 -------------------------------------------------------------------------
say "stop at step 10, resume to 20 in $RESUME_PRECISION: the same losses as an unbroken run"
# A constant schedule (a cosine's depends on max_steps) and eager attention (no atomics in
# its backward pass), with dropout so that the CUDA random state matters.
export CUBLAS_WORKSPACE_CONFIG=":4096:8"
RESUME=("${SMALL[@]}" "${COMMON[@]}" schedule.name=constant model.attention.name=eager
    model.dropout=0.1 train.eval_every=10 "train.precision=$RESUME_PRECISION")
mapfile -t WHOLE < <(sets "${RESUME[@]}" train.max_steps=20)
mapfile -t PART < <(sets "${RESUME[@]}" train.max_steps=10)
if run resume 150 "$PYTHON" -m tel_core run experiments/baseline.toml "${WHOLE[@]}" \
    --run-dir "$WORK/whole" &&
    run resume 150 "$PYTHON" -m tel_core run experiments/baseline.toml "${PART[@]}" \
        --run-dir "$WORK/resumed" &&
    run resume 150 "$PYTHON" -m tel_core run experiments/baseline.toml "${WHOLE[@]}" \
        --run-dir "$WORK/resumed" --resume; then
    NOTE="$("$PYTHON" - "$WORK/whole" "$WORK/resumed" <<'EOF'
import json, sys
from pathlib import Path
def losses(d):
    rows = map(json.loads, (Path(d) / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: (r["train/loss"], r.get("train/skipped", 0)) for r in rows if "train/loss" in r}
whole, resumed = losses(sys.argv[1]), losses(sys.argv[2])
diff = max(abs(whole[s][0] - resumed[s][0]) for s in range(11, 21))
skips = sum(whole[s][1] for s in whole)
verdict = "identical" if diff == 0 else f"DIFFERENT, max {diff:.3g}"
print(f"{verdict} over steps 11-20 ({skips} scaler skip(s) in 20 steps)")
EOF
)"
    [[ "$NOTE" == identical* ]] && STATUS=PASS || STATUS=FAIL
    record "resume $RESUME_PRECISION" "$STATUS" - - - "$NOTE"
else
    STATUS=$?
    tail -n 15 "$LOGS/resume.log"
    record "resume $RESUME_PRECISION" FAIL - - - "$(why $STATUS "$LOGS/resume.log")"
fi

# -- 5. the CUDA tests ---------------------------------------------------------------------
say "tests/test_cuda.py"
run cuda-tests 180 "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py
STATUS=$?
tail -n 15 "$LOGS/cuda-tests.log"
NOTE="$(grep -Eo '[0-9]+ (passed|failed|skipped|errors?)' "$LOGS/cuda-tests.log" | paste -sd, -)"
if [[ $CPU == 1 ]]; then
    [[ "$NOTE" =~ skipped && ! "$NOTE" =~ (failed|error) ]] && S=SKIP || S=FAIL
    record "cuda tests" "$S" - - - "${NOTE:-$(why $STATUS "$LOGS/cuda-tests.log")} (no GPU here)"
elif ((STATUS == 0)) && [[ ! "$NOTE" =~ skipped ]]; then
    record "cuda tests" PASS - - - "$NOTE"
else
    record "cuda tests" FAIL - - - "${NOTE:-$(why $STATUS "$LOGS/cuda-tests.log")}"
fi

# -- 6. one process under torchrun: NCCL ---------------------------------------------------------
say "one process under torchrun (NCCL on a GPU, gloo on a CPU)"
mapfile -t ARGS < <(sets "${SMALL[@]}" "${COMMON[@]}" train.max_steps=20 train.eval_every=10)
WANT=nccl
[[ $CPU == 1 ]] && WANT=gloo
# probe: is it tel, or the collective itself? Ten lines of all_reduce tell.
probe() {
    cat >"$WORK/allreduce.py" <<'EOF'
import os, torch, torch.distributed as dist
backend = os.environ["WANT"]
dist.init_process_group(backend)
device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
x = torch.ones(4, device=device)
dist.all_reduce(x)
print("all_reduce:", backend, x.tolist())
dist.destroy_process_group()
EOF
    WANT=$WANT NCCL_DEBUG=WARN run allreduce 30 "$PYTHON" -m torch.distributed.run --standalone \
        --nproc-per-node 1 "$WORK/allreduce.py"
    grep -E '^all_reduce:' "$LOGS/allreduce.log" || echo 'the all_reduce probe failed too'
}
if NCCL_DEBUG=WARN run torchrun 90 "$PYTHON" -m torch.distributed.run --standalone \
    --nproc-per-node 1 -m tel_core run experiments/baseline.toml "${ARGS[@]}" \
    --run-dir "$WORK/ddp"; then
    BACKEND="$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["backend"])' \
        "$WORK/ddp/manifest.json")"
    IFS=$'\t' read -r RATE MFU PEAK STATUS NOTE < <(measure "$WORK/ddp" "$LOGS/torchrun.log")
    [[ "$BACKEND" == "$WANT" && "$STATUS" == PASS ]] && STATUS=PASS || STATUS=FAIL
    record "torchrun x1" "$STATUS" "$RATE" "$MFU" "$PEAK" "backend $BACKEND; $NOTE"
else
    STATUS=$?
    tail -n 15 "$LOGS/torchrun.log"
    NOTE="$(why $STATUS "$LOGS/torchrun.log")"
    ((STATUS == 125)) || NOTE="$NOTE; $(probe)"
    record "torchrun x1" FAIL - - - "$NOTE"
fi
