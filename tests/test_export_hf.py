"""tel export --format hf: GPT-2 and Llama directories that transformers loads as they are."""

from __future__ import annotations

import pytest
import torch

from tel_core.errors import TelError
from tel_core.model.sampling import generate
from tel_core.registry.registry import Registry
from tel_core.use.export import export_run
from tel_core.use.load_run import load_run

from .trained import one_thread, train_run  # noqa: F401 - a fixture

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

GPT2 = {
    "model": {
        "d_model": 64,
        "bias": True,
        "positional": "learned",
        "norm": {"name": "layernorm", "eps": 1e-5},
        "ffn": {"name": "mlp", "activation": "gelu"},
    }
}
LLAMA = {
    "model": {
        "d_model": 64,
        "bias": False,
        "tie_embeddings": False,
        "attention": {"name": "causal", "n_kv_heads": 2},
        "positional": {"name": "rope", "theta": 500.0},
        "norm": "rmsnorm",
        "ffn": {"name": "swiglu", "multiple_of": 16},
    }
}


@pytest.fixture(scope="module")
def registry_once():
    registry = Registry()
    registry.load_entry_points()
    return registry


@pytest.mark.parametrize(
    ("changes", "architecture"), [(GPT2, "GPT2LMHeadModel"), (LLAMA, "LlamaForCausalLM")]
)
def test_transformers_loads_the_export_with_tels_logits(
    tmp_path, registry_once, changes, architecture
):
    run_dir = train_run(tmp_path, registry_once, changes)
    loaded = load_run(run_dir, registry=registry_once, device="cpu")
    result = export_run(loaded, "hf", tmp_path / "hf")
    assert result.architecture == architecture
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(result.files)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == architecture
    ids = torch.randint(
        loaded.model.vocab_size, (3, 16), generator=torch.Generator().manual_seed(4)
    )
    with torch.no_grad():
        difference = (hf(ids).logits - loaded.model(ids)).abs().max().item()
    assert difference <= 1e-5
    assert result.max_logit_difference <= 1e-5
    # The tokenizer files give tel's ids, and greedy decoding gives tel's tokens.
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "12: the lazy dog\n"
    assert tokenizer(text)["input_ids"] == loaded.encode(text)
    prompt = torch.tensor([loaded.encode("3: the")])
    ours = generate(loaded.model, prompt, 10, temperature=0)
    theirs = hf.generate(
        prompt, max_new_tokens=10, do_sample=False, attention_mask=torch.ones_like(prompt)
    )
    assert theirs.tolist() == ours.tolist()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"model": {"positional": "alibi"}}, "positional 'alibi' has no counterpart"),
        ({"model": {"positional": "rope"}}, "norm 'layernorm' has no Llama counterpart"),
        (
            {"model": {"attention": {"name": "causal", "n_kv_heads": 2}}},
            "n_kv_heads = 2 (grouped-query) has no GPT-2 counterpart",
        ),
        ({"model": {"norm_placement": "post"}}, "norm_placement 'post' has no GPT-2"),
    ],
)
def test_a_model_without_a_counterpart_is_one_line(tmp_path, registry_once, changes, fragment):
    config = {"train": {"max_steps": 1, "eval_every": 1, "eval_batches": 1}, **changes}
    run_dir = train_run(tmp_path, registry_once, config)
    with pytest.raises(TelError) as error:
        export_run(load_run(run_dir, registry=registry_once), "hf", tmp_path / "hf")
    assert fragment in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "hf").exists()


def test_a_run_with_a_bpe_tokenizer_exports_it(tmp_path, registry_once):
    bpe = {"data": {"tokenizer": {"name": "bpe", "vocab_size": 300}}}
    config = {"train": {"max_steps": 1, "eval_every": 1, "eval_batches": 1}, **GPT2, **bpe}
    run_dir = train_run(tmp_path, registry_once, config)
    loaded = load_run(run_dir, registry=registry_once, device="cpu")
    export_run(loaded, "hf", tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "12: the lazy dog jumps\n"
    assert len(loaded.encode(text)) < len(text.encode())  # merges, not bytes
    assert tokenizer(text)["input_ids"] == loaded.encode(text)
    assert tokenizer.eos_token_id == loaded.tokenizer.eos_id
