"""prepare_tokens and its cache: a hit reads nothing, anything that decides the ids misses.

The cache key holds the dataset's and tokenizer's selections, their plugins'
distributions and versions, and fingerprints of the content (files, a tokenizer file).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest

from tel_core.data.token_cache import cache_root, prepare_tokens
from tel_core.registry.interfaces import DataContext
from tel_core.registry.registry import Registry, Source
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.loop import Trainer

from .conftest import TINY


def data_config(registry, dataset, tokenizer="byte", **data):
    config = copy.deepcopy(TINY)
    config["data"].update(dataset=dataset, tokenizer=tokenizer, **data)
    return experiment_from_dict(config, registry).data


def build(registry, cfg):
    dataset = registry.build("dataset", cfg.dataset, DataContext(cfg.val_fraction, 0))
    return dataset, registry.build("tokenizer", cfg.tokenizer)


def prepare(registry, cfg, **kwargs):
    dataset, tokenizer = build(registry, cfg)
    return prepare_tokens(cfg, dataset, tokenizer, **kwargs), dataset, tokenizer


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """A token cache of this test's own, so that hits and misses are this test's."""
    monkeypatch.setenv("TEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def text_of(ids) -> bytes:
    """The bytes behind byte-tokenizer ids."""
    return np.asarray(ids).astype(np.uint8).tobytes()


def cache_dirs(root: Path) -> list[Path]:
    tokens = root / "tokens"
    return sorted(p for p in tokens.iterdir()) if tokens.is_dir() else []


def stdlib_root(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(30):
        (root / f"m{i:02d}.py").write_text(f"def f{i}(x):\n    return x * {i} + 1\n" * 5)
    return root


def test_a_second_run_hits_the_cache_and_reads_no_document(registry, own_cache, corpus):
    cfg = data_config(registry, {"name": "text", "paths": [str(corpus)]})
    first, _, _ = prepare(registry, cfg)
    dataset, tokenizer = build(registry, cfg)

    def unread(split):
        raise AssertionError("a cache hit read the documents")

    dataset.documents = unread
    second = prepare_tokens(cfg, dataset, tokenizer)
    assert second.cache_dir == first.cache_dir and len(cache_dirs(own_cache)) == 1
    assert np.array_equal(second.train, first.train) and np.array_equal(second.val, first.val)


def test_tokenizing_is_announced_only_when_it_happens(registry, own_cache, tiny, capsys):
    """A cache hit says where the tokens come from; it does not claim to tokenize."""
    experiment = experiment_from_dict(tiny, registry)
    said = []
    for name in ("first", "second"):
        (run_dir := own_cache.parent / name).mkdir()
        Trainer(experiment, run_dir, registry).close()
        said.append(capsys.readouterr().out)
    first, second = said
    assert "tiny: tokenizing text with char" in first and "from the cache" not in first
    assert not [line for line in second.splitlines() if "tokenizing" in line.split(" /")[0]]
    assert f"tiny: the tokens of text with char come from the cache {own_cache}" in second


def test_an_edit_to_the_same_size_and_time_misses_the_cache(registry, own_cache, corpus):
    cfg = data_config(registry, {"name": "text", "paths": [str(corpus)]})
    before, _, _ = prepare(registry, cfg)
    stat = corpus.stat()
    corpus.write_text(corpus.read_text().replace("fox", "cat"))
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert corpus.stat().st_size == stat.st_size
    after, _, _ = prepare(registry, cfg)
    assert after.cache_dir != before.cache_dir
    assert b"cat" in text_of(after.train[:200]) and b"fox" not in text_of(after.train[:200])


def test_stdlib_fingerprints_the_content_not_the_sizes(registry, own_cache, tmp_path):
    root = stdlib_root(tmp_path)
    cfg = data_config(registry, {"name": "stdlib", "root": str(root)})
    dataset, _ = build(registry, cfg)
    before = dataset.fingerprint()
    path = root / "m07.py"
    path.write_text(path.read_text().replace("x * 7", "y * 7"))  # the same size
    assert dataset.fingerprint() != before
    assert build(registry, cfg)[0].fingerprint() != before


def test_options_of_either_component_decide_the_cache(registry, own_cache, corpus):
    text = {"name": "text", "paths": [str(corpus)]}
    dirs = {
        prepare(registry, data_config(registry, text))[0].cache_dir,
        prepare(registry, data_config(registry, text, tokenizer="char"))[0].cache_dir,
        prepare(registry, data_config(registry, {**text, "separator": "\n"}))[0].cache_dir,
        prepare(registry, data_config(registry, text, val_fraction=0.2))[0].cache_dir,
    }
    assert len(dirs) == 4


def plugin_registry(version: str) -> Registry:
    """The built-in text dataset and byte tokenizer, as if from a distribution at ``version``."""
    import tel_plugins.datasets.text
    import tel_plugins.tokenizers.byte

    registry = Registry()
    for module in (tel_plugins.datasets.text, tel_plugins.tokenizers.byte):
        source = Source(module.__name__, module.__name__, "tel-plugin-under-test", version)
        registry.add_plugin(module, name=module.__name__, source=source)
    return registry


def test_a_new_version_of_a_plugin_misses_the_cache(registry, own_cache, corpus):
    old, new = plugin_registry("1.0"), plugin_registry("1.1")
    cfg = data_config(registry, {"name": "text", "paths": [str(corpus)]})
    first = prepare_tokens(cfg, *build(old, cfg), old)
    again = prepare_tokens(cfg, *build(old, cfg), old)
    upgraded = prepare_tokens(cfg, *build(new, cfg), new)
    assert again.from_cache and again.cache_dir == first.cache_dir
    assert not upgraded.from_cache and upgraded.cache_dir != first.cache_dir


def test_a_tokenizer_file_with_other_content_misses_the_cache(
    registry, own_cache, corpus, tmp_path
):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def save(vocab_size: int, path: Path) -> None:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator([corpus.read_text()], trainer)
        tok.save(str(path))

    path = tmp_path / "tokenizer.json"
    save(280, path)
    cfg = data_config(
        registry, {"name": "text", "paths": [str(corpus)]}, {"name": "bpe", "path": str(path)}
    )
    first, _, _ = prepare(registry, cfg)
    assert prepare(registry, cfg)[0].from_cache
    save(300, path)
    second, _, tokenizer = prepare(registry, cfg)
    assert not second.from_cache and second.cache_dir != first.cache_dir
    assert tokenizer.vocab_size == 300 and len(second.train) < len(first.train)


def test_a_failed_tokenization_leaves_no_cache_behind(registry, own_cache, corpus):
    cfg = data_config(registry, {"name": "text", "paths": [str(corpus)]})
    dataset, tokenizer = build(registry, cfg)

    def broken(split):
        yield "a first document"
        raise RuntimeError("the disk went away")

    dataset.documents = broken
    with pytest.raises(RuntimeError, match="disk went away"):
        prepare_tokens(cfg, dataset, tokenizer)
    assert cache_dirs(own_cache) == []
    assert prepare(registry, cfg)[0].cache_dir is not None  # and the next run builds it


def test_without_a_fingerprint_nothing_is_cached_or_left_behind(registry, own_cache, corpus):
    cfg = data_config(registry, {"name": "text", "paths": [str(corpus)]})
    dataset, tokenizer = build(registry, cfg)
    dataset.fingerprint = lambda: None
    splits = prepare_tokens(cfg, dataset, tokenizer)
    assert splits.cache_dir is None and not splits.from_cache
    assert text_of(splits.train[:3]) == corpus.read_bytes()[:3]
    assert cache_dirs(own_cache) == []


def test_the_cache_lives_under_tel_cache_dir(registry, own_cache, corpus):
    cfg = data_config(registry, {"name": "text", "paths": [str(corpus)]})
    splits, _, _ = prepare(registry, cfg)
    assert cache_root() == own_cache and splits.cache_dir.parent == own_cache / "tokens"
    assert {p.name for p in splits.cache_dir.iterdir()} >= {"key.json", "tokenizer.json"}
