"""hf: the dataset contract on local JSONL, parquet, CSV and text files (the code that
reads the Hub); named and hashed validation splits; limits; a content fingerprint; one-line
errors; and a short run with a bpe tokenizer end to end."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from tel_core.config.loader import options_from_dict
from tel_core.errors import TelError
from tel_core.registry.interfaces import DataContext
from tel_core.testing import check_dataset
from tel_core.train.experiment import experiment_from_dict
from tel_core.train.run import run
from tel_plugins.datasets.hf import HfDataset, HfOptions, _in_val

from ..conftest import TINY

CTX = DataContext(val_fraction=0.1, seed=0)


def stories(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": i, "text": f"Story {i}: once upon a time a fox met a crow. The end."}
        for i in range(start, start + n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def jsonl(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", stories(400))


def docs(options: HfOptions, split: str, ctx: DataContext = CTX) -> list[str]:
    return list(HfDataset(options, ctx).documents(split))


def test_conforms_on_jsonl(registry, jsonl):
    check_dataset("hf", {"path": "json", "data_files": [str(jsonl)]}, registry=registry)


def test_conforms_on_parquet_csv_and_text(registry, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = stories(200)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    (tmp_path / "s.csv").write_text(
        "id,text\n" + "".join(f'{r["id"]},"{r["text"]}"\n' for r in rows)
    )
    (tmp_path / "s.txt").write_text("".join(r["text"] + "\n" for r in rows))
    for builder, name in (("parquet", "s.parquet"), ("csv", "s.csv"), ("text", "s.txt")):
        options = {"path": builder, "data_files": [str(tmp_path / name)]}
        check_dataset("hf", options, registry=registry)
        assert (
            docs(options_from_dict(registry.get("dataset", "hf"), options), "train")[0]
            == (rows[0]["text"])
        )


def test_a_named_validation_split(tmp_path, jsonl):
    val = write_jsonl(tmp_path / "val.jsonl", stories(30, start=1000))
    options = HfOptions(path="json", data_files=[str(jsonl)], val_data_files=[str(val)])
    assert len(docs(options, "train")) == 400
    assert docs(options, "val") == [r["text"] for r in stories(30, start=1000)]


def test_val_fraction_picks_documents_by_a_hash_of_their_index(jsonl):
    options = HfOptions(path="json", data_files=[str(jsonl)])
    train, val = docs(options, "train"), docs(options, "val")
    assert len(train) + len(val) == 400 and not set(train) & set(val)
    assert 20 <= len(val) <= 60  # about 10 %
    assert val == [r["text"] for r in stories(400) if _in_val(r["id"], 0.1)]
    assert docs(options, "val", DataContext(0.1, seed=99)) == val  # not the run's seed


def test_max_documents_and_the_token_budget(jsonl):
    capped = HfOptions(path="json", data_files=[str(jsonl)], max_documents=50)
    assert len(docs(capped, "train")) + len(docs(capped, "val")) == 50
    budget = HfDataset(HfOptions(path="json", data_files=[str(jsonl)], max_tokens=9000), CTX)
    assert budget.token_budget("train") == 9000 and budget.token_budget("val") == 1000
    assert HfDataset(capped, CTX).token_budget("train") is None


def test_the_fingerprint_is_the_files_content(tmp_path, jsonl):
    options = HfOptions(path="json", data_files=[str(jsonl)])
    before = HfDataset(options, CTX).fingerprint()
    assert HfDataset(options, CTX).fingerprint() == before
    stat = jsonl.stat()
    jsonl.write_text(jsonl.read_text().replace("fox", "cat"))  # the same size
    os.utime(jsonl, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime
    assert HfDataset(options, CTX).fingerprint() != before
    # datasets' own cache is keyed on mtime: reading the files as a stream sees the edit.
    assert "cat" in docs(options, "train")[0]
    assert HfDataset(options, DataContext(0.2, 0)).fingerprint() != before


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"text_field": "body"}, "has no column 'body'; set text_field to one of"),
        ({"text_field": "id"}, "column 'id' holds int, not text"),
    ],
)
def test_a_wrong_text_field_is_one_line(jsonl, options, error):
    with pytest.raises(TelError, match=error):
        docs(HfOptions(path="json", data_files=[str(jsonl)], **options), "train")


def test_missing_files_and_a_missing_path_are_one_line(tmp_path):
    with pytest.raises(TelError, match="hf dataset 'json' with data_files: Unable to find") as e:
        HfDataset(HfOptions(path="json", data_files=[str(tmp_path / "x.jsonl")]), CTX).fingerprint()
    assert len(str(e.value).splitlines()) == 1
    with pytest.raises(TelError, match='set path = "<hub id>"'):
        HfDataset(HfOptions(), CTX)


def test_offline_a_hub_dataset_is_one_line_naming_it_and_what_to_do(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    dataset = HfDataset(HfOptions(path="tel-tests/no-such-dataset"), CTX)
    with pytest.raises(TelError) as caught:
        dataset.fingerprint()
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("hf dataset 'tel-tests/no-such-dataset': cannot load it")
    assert "HF_HUB_OFFLINE=1" in message and 'path = "json"' in message


def test_a_bpe_tokenizer_and_a_short_run_on_jsonl_end_to_end(tmp_path, registry):
    train = write_jsonl(tmp_path / "train.jsonl", stories(300))
    val = write_jsonl(tmp_path / "val.jsonl", stories(40, start=5000))
    config = copy.deepcopy(TINY)
    config["data"] = {
        "dataset": {
            "name": "hf",
            "path": "json",
            "data_files": [str(train)],
            "val_data_files": [str(val)],
        },
        "tokenizer": {"name": "bpe", "vocab_size": 300},
        "block_size": 16,
    }
    result = run(experiment_from_dict(config, registry), tmp_path / "run", registry)
    assert result.steps == 6 and result.final_val_loss > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    train_tokens = manifest["tokens"]["train"]
    lines = [r for r in records if "train/loss" in r]
    assert len(lines) == 6
    for r in lines:  # train/epoch on every log line: the passes over the training tokens
        assert r["train/epoch"] == pytest.approx(r["train/tokens"] / train_tokens)
    saved = json.loads((tmp_path / "run" / "tokenizer.json").read_text())
    assert saved["name"] == "bpe" and saved["state"]["tokenizer"]["model"]["type"] == "BPE"
    # The run directory alone rebuilds the tokenizer (no data, no file, no network).
    from tel_plugins.tokenizers.bpe import BpeOptions, BpeTokenizer

    rebuilt = BpeTokenizer(BpeOptions())
    rebuilt.load_state_dict(saved["state"])
    assert rebuilt.vocab_size == manifest["vocab_size"] == 300
    assert rebuilt.decode(rebuilt.encode("Story 7: a fox")) == "Story 7: a fox"


def test_a_file_in_another_encoding_names_file_byte_line_and_the_option(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("first line\ncafé au lait\n".encode("latin-1"))
    options = HfOptions(path="text", data_files=[str(path)])
    with pytest.raises(TelError) as caught:
        docs(options, "train")
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert f"{path} is not valid utf-8 text at byte 14, line 2" in message
    assert 'set encoding = "..."' in message
    latin = HfOptions(path="text", data_files=[str(path)], encoding="latin-1")
    assert "café au lait" in docs(latin, "train") + docs(latin, "val")
