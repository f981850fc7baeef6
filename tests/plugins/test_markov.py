"""markov: the dataset contract; its stationary distribution and entropies against scipy
and against the text it generates; the optimum the loop subtracts."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
from scipy import linalg, stats

from tel_core.registry.interfaces import DataContext, OptimumContext, document_text
from tel_core.testing import check_dataset
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_plugins.datasets.markov import SYMBOLS, MarkovChain, MarkovDataset, MarkovOptions
from tel_plugins.tokenizers.bpe import BpeOptions, BpeTokenizer
from tel_plugins.tokenizers.byte import ByteOptions, ByteTokenizer

from ..conftest import TINY

CTX = DataContext(val_fraction=0.1, seed=0)
SMALL = {"train_symbols": 20_000, "val_symbols": 5_000}


@pytest.mark.parametrize("options", [SMALL, {**SMALL, "order": 0}, {**SMALL, "order": 3}])
def test_conforms(registry, options):
    check_dataset("markov", options, registry=registry)


def dense_transition(chain: MarkovChain) -> np.ndarray:
    matrix = np.zeros((chain.n_states, chain.n_states))
    np.add.at(matrix, (np.arange(chain.n_states)[:, None], chain.next_states()), chain.transitions)
    return matrix


@pytest.mark.parametrize(("n", "order", "concentration"), [(4, 1, 1.0), (3, 2, 0.3), (5, 0, 2.0)])
def test_stationary_distribution_and_entropy_rate_against_scipy(n, order, concentration):
    chain = MarkovChain.random(n, order, concentration, seed=3)
    values, vectors = linalg.eig(dense_transition(chain).T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    pi /= pi.sum()
    np.testing.assert_allclose(chain.stationary, pi, atol=1e-12)
    rate = sum(pi[s] * stats.entropy(chain.transitions[s], base=2) for s in range(len(pi)))
    assert chain.entropy_rate == pytest.approx(rate, abs=1e-12)


def block_entropy(chain: MarkovChain, length: int) -> float:
    """H of ``length`` consecutive symbols, enumerated from the stationary start (scipy)."""
    probabilities = []
    k = chain.order
    for state in range(chain.n_states):
        for tail in itertools.product(range(chain.n), repeat=max(0, length - k)):
            p, s = chain.stationary[state], state
            for x in tail:
                p *= chain.transitions[s, x]
                s = (s * chain.n + x) % chain.n_states
            probabilities.append(p)
    # The joint of the first k symbols and the tail; marginalise when length < k.
    joint = np.array(probabilities).reshape(chain.n**k, -1).sum(axis=1)
    if length < k:
        joint = joint.reshape(-1, chain.n**length).sum(axis=0)
    else:
        joint = np.array(probabilities)
    return float(stats.entropy(joint, base=2))


def test_conditional_entropies_are_differences_of_block_entropies():
    chain = MarkovChain.random(3, 2, 0.5, seed=1)
    for m in range(4):
        expected = block_entropy(chain, m + 1) - block_entropy(chain, m) if m else None
        if expected is not None:
            assert chain.conditional_entropy(m) == pytest.approx(expected, abs=1e-10), m
    assert chain.conditional_entropy(5) == chain.entropy_rate


def test_the_generated_text_has_the_computed_entropy_rate():
    options = MarkovOptions(alphabet_size=4, order=2, concentration=0.7, train_symbols=300_000)
    dataset = MarkovDataset(options, CTX)
    [document] = dataset.documents("train")
    text = document_text(document)
    assert len(text) == 300_000 and set(text) <= set(SYMBOLS[:4])
    x = np.frombuffer(text.encode(), dtype=np.uint8) - ord("a")
    context = x[:-2] * 4 + x[1:-1]
    counts = np.zeros((16, 4))
    np.add.at(counts, (context, x[2:]), 1)
    weights = counts.sum(axis=1) / counts.sum()
    plug_in = sum(w * stats.entropy(c, base=2) for w, c in zip(weights, counts, strict=True))
    assert plug_in == pytest.approx(dataset.chain.entropy_rate, abs=0.01)


def test_the_splits_are_different_stretches_and_deterministic():
    dataset = MarkovDataset(MarkovOptions(**SMALL), CTX)
    train = document_text(next(iter(dataset.documents("train"))))
    val = document_text(next(iter(dataset.documents("val"))))
    assert len(train) == 20_000 and len(val) == 5_000 and val not in train
    assert (
        document_text(next(iter(MarkovDataset(MarkovOptions(**SMALL), CTX).documents("val"))))
        == val
    )


def test_the_fingerprint_follows_the_options():
    one = MarkovDataset(MarkovOptions(**SMALL), CTX).fingerprint()
    assert MarkovDataset(MarkovOptions(**SMALL), CTX).fingerprint() == one
    assert MarkovDataset(MarkovOptions(**SMALL, seed=1), CTX).fingerprint() != one


def test_the_optimum_averages_what_each_target_can_know():
    dataset = MarkovDataset(MarkovOptions(order=2, **SMALL), CTX)
    optimum = dataset.optimum(OptimumContext(ByteTokenizer(ByteOptions()), 8, "windows"))
    h = dataset.chain.conditional_entropy
    assert optimum.bits_per_token == pytest.approx((h(1) + 7 * h(2)) / 8)
    assert h(1) > h(2) == dataset.chain.entropy_rate
    bpe = BpeTokenizer(BpeOptions(vocab_size=300))
    bpe.fit(iter([document_text(next(iter(dataset.documents("train"))))]))
    assert dataset.optimum(OptimumContext(bpe, 8, "windows")) is None  # not a token a symbol


def test_a_run_reports_its_excess_over_the_optimum(tmp_path, registry):
    config = copy.deepcopy(TINY)
    config["data"] = {
        "dataset": {"name": "markov", "train_symbols": 20_000, "val_symbols": 4_000},
        "tokenizer": "byte",
        "block_size": 16,
    }
    run(experiment_from_dict(config, registry), tmp_path / "run", registry)
    dataset = MarkovDataset(MarkovOptions(train_symbols=20_000, val_symbols=4_000), CTX)
    optimum = dataset.optimum(OptimumContext(ByteTokenizer(ByteOptions()), 16, "windows"))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    evals = [r for r in records if "val/loss" in r]
    assert evals and all(
        r["val/excess_bits_per_token"]
        == pytest.approx(r["val/bits_per_token"] - optimum.bits_per_token)
        for r in evals
    )
    assert evals[-1]["val/excess_bits_per_token"] > 0  # a tiny model six steps in
