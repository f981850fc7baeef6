"""recall: the dataset contract; the episodes; the exact optimum; answers scored alone."""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter

import numpy as np
import pytest
import torch

from tel_core.data.batching import make_sampler
from tel_core.errors import TelError
from tel_core.registry.interfaces import DataContext, OptimumContext, Tokenizer
from tel_core.testing import check_dataset
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_core.train.scoring import metrics, score_sums
from tel_plugins.datasets.recall import RecallDataset, RecallOptions, episode_bits, episodes
from tel_plugins.tokenizers.bpe import BpeOptions, BpeTokenizer
from tel_plugins.tokenizers.byte import ByteOptions, ByteTokenizer

from ..conftest import TINY

CTX = DataContext(val_fraction=0.1, seed=0)
BYTE = ByteTokenizer(ByteOptions())


def test_conforms(registry):
    check_dataset("recall", {"train_episodes": 200, "val_episodes": 50}, registry=registry)


def test_each_query_is_answered_with_its_pairs_value():
    options = RecallOptions(n_pairs=6, n_queries=3)
    for episode in episodes(options, 200, np.random.default_rng(0)):
        pairs, queries = episode.rstrip("\n").split("|")
        assert len(episode) == options.episode_length
        table = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert len(table) == 6  # distinct keys
        asked = re.findall(r"(.)=(.)", queries)
        assert len(asked) == 3 and len({k for k, _ in asked}) == 3
        assert all(table[k] == v for k, v in asked)


def test_the_optimum_is_the_entropy_of_the_episodes_less_the_first_key():
    options = RecallOptions(n_pairs=2, n_queries=1, n_keys=3, n_values=2)
    seen = Counter(episodes(options, 20_000, np.random.default_rng(1)))
    assert len(seen) == 3 * 2 * 2 * 2 * 2  # ordered distinct keys, values, which query
    counts = np.array(list(seen.values()))
    assert counts.min() > 0.7 * counts.mean()  # uniform over them
    assert episode_bits(options) == pytest.approx(math.log2(len(seen)) - math.log2(3))
    dataset = RecallDataset(options, CTX)
    optimum = dataset.optimum(OptimumContext(BYTE, 16, "pad"))
    assert optimum.bits_per_token == pytest.approx(
        episode_bits(options) / (options.episode_length - 1)
    )


def test_rows_must_hold_whole_episodes_of_one_token_a_character():
    dataset = RecallDataset(RecallOptions(), CTX)
    with pytest.raises(TelError, match='batching = "pad" and block_size >= 29'):
        dataset.optimum(OptimumContext(BYTE, 16, "pad"))
    with pytest.raises(TelError, match='batching = "pad"'):
        dataset.optimum(OptimumContext(BYTE, 64, "windows"))
    with pytest.raises(TelError, match="one token per character"):
        dataset.optimum(OptimumContext(Pairs(), 64, "pad"))
    # Byte-level BPE's pre-tokenizer splits letters from digits: one token a character.
    bpe = BpeTokenizer(BpeOptions(vocab_size=300, eos_token="", special_tokens=[]))
    bpe.fit(dataset.documents("train"))
    assert dataset.optimum(OptimumContext(bpe, 64, "pad")).bits_per_token > 0


class Pairs(Tokenizer):
    """Two characters a token: what a task scored character by character cannot use."""

    vocab_size = 256 * 256

    def encode(self, text):
        data = text.encode()
        return [
            data[i] * 256 + (data[i + 1] if i + 1 < len(data) else 0)
            for i in range(0, len(data), 2)
        ]

    def decode(self, ids):
        return b"".join(bytes([i // 256, i % 256]) for i in ids).decode()


class Oracle(torch.nn.Module):
    """Reads each row back: after "=", it is sure of the queried key's value; elsewhere it
    knows nothing (uniform over the bytes)."""

    def forward(self, x):
        logits = torch.zeros(*x.shape, 256)
        for b, row in enumerate(x.tolist()):
            text = bytes(row).decode("latin-1")
            for t, char in enumerate(text):
                if char == "=":
                    key = text[t - 1]
                    value = text[: text.index("|")][::2].index(key) * 2 + 1
                    logits[b, t, ord(text[value])] = 50.0
        return logits


def test_answers_are_scored_on_their_own():
    options = RecallOptions(train_episodes=10, val_episodes=40)
    dataset = RecallDataset(options, CTX)
    tokens = np.frombuffer("".join(dataset.documents("val")).encode(), dtype=np.uint8)
    offsets = np.arange(0, len(tokens) + 1, options.episode_length)
    sampler = make_sampler("pad", tokens, offsets, 32, 8, "val")
    batches = [(b.inputs, b.targets) for b in (sampler.sample(8) for _ in range(4))]
    optimum = dataset.optimum(OptimumContext(BYTE, 32, "pad"))
    sums = score_sums(Oracle(), batches, torch.device("cpu"), answers=optimum.answers)
    values = metrics(sums, n_bytes=1, optimum_bits=optimum.bits_per_token)
    assert sums[5] == 4 * 8 * options.n_queries  # every answer of every row, once
    assert values["val/answer_accuracy"] == 1.0 and values["val/answer_loss"] < 1e-6
    assert values["val/accuracy"] < 0.2  # elsewhere it knows nothing
    assert values["val/excess_bits_per_token"] > 0


def test_a_run_logs_answer_accuracy(tmp_path, registry):
    config = copy.deepcopy(TINY)
    config["data"] = {
        "dataset": {"name": "recall", "train_episodes": 300, "val_episodes": 40},
        "tokenizer": "byte",
        "block_size": 32,
        "batching": "pad",
    }
    run(experiment_from_dict(config, registry), tmp_path / "run", registry)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in records if "val/loss" in r]
    assert evals and all(0 <= r["val/answer_accuracy"] <= 1 for r in evals)
    assert all(r["val/answer_loss"] > 0 and "val/excess_bits_per_token" in r for r in evals)
