"""Tokenizing into the token cache: MB/s, tokens/s and peak memory, byte against bpe.

    python benchmarks/tokenization.py                       # a 1 GB generated corpus
    python benchmarks/tokenization.py --mb 100 --tokenizers byte,bpe --sources text,hf
    python benchmarks/tokenization.py --mb 1000 --json results.json

Generates an English-like corpus (Zipf-distributed words in sentences and paragraphs) in
a temporary folder, once as one big text file (read by the ``text`` dataset, documents
cut at blank lines) and once as JSON lines (read by the ``hf`` dataset, streamed), then
tokenizes it with each tokenizer through ``tel_core.data.token_cache.prepare_tokens``, exactly as
``tel run`` and ``tel data prepare`` do, each in a fresh process so that its peak
resident memory (``ru_maxrss``, which counts the interpreter, torch and the plugins too)
is its own. ``bpe`` is trained first on ``--train-mb`` of the corpus (reported apart).

"other s" is the rest of ``prepare_tokens``: fingerprints, opening the data, fitting the
tokenizer; "CPU s" adds up every thread (HF tokenizers encodes on every core).

Then a cache hit is timed in a fresh process, twice: with the file-digest memo (a stat of
each file), and with the memo deleted (the content hashed in full).

(Not ``tokenize.py``: a script of that name would shadow Python's own ``tokenize`` module,
which torch imports.)

This is a command that prints numbers, never a test: they depend on the machine and on
whatever else runs on it (compare rows of one run, not runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def generate(directory: Path, megabytes: float, seed: int = 0) -> dict[str, Path]:
    """A text file of paragraphs separated by blank lines, and the same as JSON lines.

    About 16 MB of paragraphs are drawn word by word; the corpus is that pool written
    again and again, the paragraphs in a new random order each time (drawing 1 GB word
    by word would take longer than tokenizing it).
    """
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1.0 / np.arange(1, 27) ** 0.8
    words = [
        "".join(rng.choice(letters, size=rng.integers(1, 11), p=weights / weights.sum()))
        for _ in range(50_000)
    ]
    zipf = 1.0 / np.arange(1, len(words) + 1)
    zipf /= zipf.sum()
    pool: list[str] = []
    while sum(map(len, pool)) < min(16e6, megabytes * 1e6):
        picks = rng.choice(len(words), size=200_000, p=zipf)
        sentence_ends = rng.random(len(picks)) < 0.08
        paragraph_ends = rng.random(len(picks)) < 0.006
        paragraph: list[str] = []
        for w, end, par in zip(picks.tolist(), sentence_ends, paragraph_ends, strict=True):
            paragraph.append(words[w] + (". " if end else " "))
            if par:
                pool.append("".join(paragraph).strip().capitalize())
                paragraph = []
    text_path, jsonl_path = directory / "corpus.txt", directory / "corpus.jsonl"
    target, written = int(megabytes * 1e6), 0
    with open(text_path, "w") as text, open(jsonl_path, "w") as jsonl:
        while written < target:
            order = rng.permutation(len(pool))
            pieces = [pool[i] for i in order]
            text.write("\n\n".join(pieces) + "\n\n")
            jsonl.write("".join(json.dumps({"text": p}) + "\n" for p in pieces))
            written += sum(len(p) + 2 for p in pieces)
    return {"text": text_path, "hf": jsonl_path}


def dataset_table(source: str, path: Path) -> dict[str, Any]:
    if source == "text":
        return {"name": "text", "paths": [str(path)], "separator": "\n\n"}
    return {"name": "hf", "path": "json", "data_files": [str(path)], "streaming": True}


def tokenizer_table(name: str, vocab_size: int, train_mb: float) -> dict[str, Any]:
    if name == "bpe":
        return {"name": "bpe", "vocab_size": vocab_size, "max_train_bytes": int(train_mb * 1e6)}
    return {"name": name}


def measure(dataset: dict[str, Any], tokenizer: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: prepare_tokens on the experiment; times, sizes and peak RSS."""
    from tel_core import ui
    from tel_core.data.token_cache import prepare_tokens
    from tel_core.registry.interfaces import DataContext
    from tel_core.registry.registry import default_registry
    from tel_core.train.experiment import experiment_from_dict

    ui.console.quiet = True
    registry = default_registry()
    experiment = experiment_from_dict(
        {"name": "bench", "data": {"dataset": dataset, "tokenizer": tokenizer}}, registry
    )
    data = experiment.data
    built = registry.build("dataset", data.dataset, DataContext(data.val_fraction, 0))
    tok = registry.build("tokenizer", data.tokenizer)
    started, cpu = time.perf_counter(), _cpu_seconds()
    splits = prepare_tokens(data, built, tok, registry, progress=False)
    total = time.perf_counter() - started
    stats = list(splits.stats.values())
    seconds = sum(s.seconds for s in stats)
    return {
        "from_cache": splits.from_cache,
        "seconds_total": total,
        "seconds_tokenizing": seconds,
        # Everything else: fingerprints, opening the data, and fitting the tokenizer.
        "seconds_other": total - seconds,
        "cpu_seconds": _cpu_seconds() - cpu,  # every thread of the process, both cores
        "bytes": sum(s.bytes for s in stats),
        "tokens": sum(s.tokens for s in stats),
        "documents": sum(s.documents for s in stats),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_process(dataset: dict[str, Any], tokenizer: dict[str, Any], env: dict[str, str]) -> dict:
    command = [sys.executable, __file__, "--measure", json.dumps([dataset, tokenizer])]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"measurement failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=1000.0, help="corpus size (default 1000)")
    parser.add_argument("--tokenizers", default="byte,bpe")
    parser.add_argument("--sources", default="text,hf")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--train-mb", type=float, default=20.0, help="MB the BPE trains on")
    parser.add_argument("--dir", type=Path, help="where to generate (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*json.loads(args.measure))))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        corpus = generate(tmp, args.mb)
        print(
            f"generated {corpus['text'].stat().st_size / 1e6:,.0f} MB of text in "
            f"{time.perf_counter() - started:.0f} s ({os.cpu_count()} CPUs)",
            flush=True,
        )
        env = {**os.environ, "TEL_CACHE_DIR": str(tmp / "cache")}
        rows = []
        for source in args.sources.split(","):
            for name in args.tokenizers.split(","):
                dataset = dataset_table(source, corpus[source])
                tokenizer = tokenizer_table(name, args.vocab_size, args.train_mb)
                row = {"source": source, "tokenizer": name, **in_process(dataset, tokenizer, env)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        text = dataset_table("text", corpus["text"])
        hit = in_process(text, {"name": "byte"}, env)
        (tmp / "cache" / "file-digests.json").unlink(missing_ok=True)
        cold = in_process(text, {"name": "byte"}, env)
    print_table(rows, hit, cold)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "hit": hit, "cold_hit": cold}, indent=2))


def print_table(rows: list[dict], hit: dict, cold: dict) -> None:
    header = ["source", "tokenizer", "MB", "other s", "tokenize s", "MB/s", "tokens/s", "tokens",
              "CPU s", "peak RSS MB", "MB/s vs byte"]  # fmt: skip
    byte_rate = {
        r["source"]: r["bytes"] / r["seconds_tokenizing"] for r in rows if r["tokenizer"] == "byte"
    }
    lines = [header]
    for r in rows:
        rate = r["bytes"] / r["seconds_tokenizing"]
        ratio = rate / byte_rate[r["source"]] if r["source"] in byte_rate else float("nan")
        lines.append([
            r["source"], r["tokenizer"], f"{r['bytes'] / 1e6:,.0f}", f"{r['seconds_other']:.1f}",
            f"{r['seconds_tokenizing']:.1f}", f"{rate / 1e6:,.2f}",
            f"{r['tokens'] / r['seconds_tokenizing']:,.0f}", f"{r['tokens']:,}",
            f"{r['cpu_seconds']:,.0f}", f"{r['peak_rss_mb']:,.0f}", f"{ratio:.3f}",
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)))
    print(
        f"cache hit (a fresh process, text source): {hit['seconds_total']:.2f} s with the "
        f"file-digest memo, {cold['seconds_total']:.2f} s hashing the content without it"
    )


if __name__ == "__main__":
    main()
