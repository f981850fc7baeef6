"""The hooks a tel plugin implements: one per kind of component.

Each hook hands the plugin a ``register`` callback::

    @tel_core.hookimpl
    def register_positional(register):
        register("rope", RoPE, options=RoPEOptions)

``register(name, factory, options=None, check=None)`` adds one component. ``options`` is
an attrs class: tel structures the component's TOML table (minus ``name``) into it,
rejecting unknown keys, and passes the instance to the factory as its first argument. A
callback (rather than a return value) lets one plugin register many components and lets
these hooks grow new keyword arguments without breaking existing plugins.

``check(options, ctx: tel_core.plugin.ModelContext) -> None`` (model components:
attention, positional, norm, ffn; probes too, with a ``tel_core.plugin.ProbeSetup``)
rejects a combination that the options class alone cannot judge, because it depends on
the rest of the model (``n_kv_heads`` must divide ``n_heads``; RoPE must rotate an even
number of head dims). It raises
``ValueError`` (or ``ConfigError``) with one line naming the keys, e.g. ``"n_kv_heads
(3) must divide n_heads (4)"``. The config loader runs every selected component's check
right after reading the experiment, before any tensor is built, and puts the file and
table in front: ``x.toml [model.attention]: n_kv_heads (3) must divide n_heads (4)``.
Building a model runs the checks again, for models built without the loader.

The docstring of each hook states the factory's contract; ``tel_core.testing`` checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("tel")
#: Marks a function in a plugin module as an implementation of a tel hook.
hookimpl = pluggy.HookimplMarker("tel")


class Register(Protocol):
    def __call__(
        self,
        name: str,
        factory: Any,
        options: type | None = None,
        check: Callable[[Any, Any], None] | None = None,
    ) -> None: ...


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: sources of text documents.

    ``factory(options, ctx: tel_core.plugin.DataContext) -> tel_core.plugin.Dataset``.
    A dataset yields documents for the splits ``"train"`` and ``"val"``; the split must
    be deterministic (same documents in the same order on every call). A document is a
    str, or an iterable of str parts when it is too long to hold at once; parts are
    tokenized one by one, so cut them where the tokenizer cuts anyway. ``fingerprint()``
    (the content, for the token cache), ``token_budget(split)`` and ``optimum(ctx)`` (the
    best reachable loss of a synthetic task) are optional.
    """


@hookspec
def register_tokenizers(register: Register) -> None:
    """Register tokenizers: text to integer ids and back.

    ``factory(options) -> tel_core.plugin.Tokenizer``. ``decode(encode(text))`` must
    give ``text`` back for any text the tokenizer was fitted on, and every id must be below
    ``vocab_size``, a property. ``fit(documents)`` learns from the training split, unless
    ``load_state_dict(state)`` restores what ``state_dict()`` returned instead (a token
    cache hit, a loaded run). ``eos_id`` (an attribute, None for none) is appended by the
    core after every document, padded rows included; ``encode`` never adds it.
    ``encode_batch(texts)`` may encode many texts at once (in parallel); ``fingerprint()``
    names what decides the ids beyond the options and the training split.
    """


@hookspec
def register_attention(register: Register) -> None:
    """Register causal self-attention variants.

    ``factory(options, ctx: tel_core.plugin.ModelContext) -> torch.nn.Module`` whose
    ``forward(x, positional)`` maps ``x`` of shape (B, T, d_model) to the same shape.
    ``positional`` is the model's ``tel_core.plugin.Positional``: call its ``rotate`` on q and
    k and add its ``score_bias`` to the attention scores. Output at position t must not
    depend on any input after t.

    Attention probabilities: a variant that can compute them subclasses
    ``tel_core.plugin.Attention``, sets ``can_record = True`` and, in ``forward``, passes its
    (B, n_heads, T, T) probabilities to ``self.record(p)`` while ``self.recording`` is
    true (``tel_core.plugin.record_attention(model)`` switches that on). A fast path that never
    forms them may take slower maths while recording. Any other attention module makes
    ``record_attention`` raise an error that names it.

    KV cache (optional): ``forward_cached(x, positional, cache)`` computes only the new
    positions of ``x`` (at ``cache.offset ..``), keeping in ``cache.state`` what later ones
    need; see ``tel_core.plugin.LayerCache``. A module without it is recomputed in generation.
    """


@hookspec
def register_positional(register: Register) -> None:
    """Register positional encodings.

    ``factory(options, ctx: tel_core.plugin.ModelContext) -> tel_core.plugin.Positional``.
    A positional encoding acts in up to three places: ``embed`` (added to token
    embeddings), ``rotate`` (applied to q and k) and ``score_bias`` (added to scores).
    Each may take ``offset`` (the position of the first one handed in), for generation
    with a KV cache; without it, tel computes the longer sequence and keeps its end.
    """


@hookspec
def register_norms(register: Register) -> None:
    """Register normalisation layers.

    ``factory(options, dim: int) -> torch.nn.Module`` normalising the last dimension of
    its input, of size ``dim``, and returning the same shape. Norms are built at the
    model's width and, for QK-norm, at the head width. A ``check`` receives the
    ``ModelContext``.
    """


@hookspec
def register_ffn(register: Register) -> None:
    """Register position-wise feed-forward blocks.

    ``factory(options, ctx: tel_core.plugin.ModelContext) -> torch.nn.Module`` mapping
    (B, T, d_model) to (B, T, d_model) independently at each position.
    """


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizers.

    ``factory(options, params: tel_core.plugin.ParameterGroups, lr: float)
    -> torch.optim.Optimizer``. ``params`` sorts the model's parameters into weight
    matrices, embeddings and vectors (biases, norm gains) so that an optimizer can decide
    what to decay. Build every group with ``lr`` (or a multiple of it, for a group that
    should learn faster or slower): each step the loop sets each group's ``"lr"`` to the
    schedule's value times that group's ratio to ``lr``.
    """


@hookspec
def register_schedules(register: Register) -> None:
    """Register learning-rate schedules.

    ``factory(options, ctx: tel_core.plugin.ScheduleContext) -> Callable[[int], float]``
    giving the learning rate for a 0-based optimizer step in ``[0, ctx.max_steps)``.
    """


@hookspec
def register_loggers(register: Register) -> None:
    """Register loggers: where metrics and text go while a run trains.

    ``factory(options, ctx: tel_core.plugin.LoggerContext) -> tel_core.plugin.Logger``.
    ``log(step, metrics)`` receives a flat mapping of metric name to int or float;
    ``log_text``, ``log_histogram`` and ``log_image`` (probes' results) are optional and
    ignored by default; ``close()`` flushes everything. The run directory's
    ``metrics.jsonl`` (and ``probes/``) is written by the core whatever loggers are chosen.
    """


@hookspec
def register_probes(register: Register) -> None:
    """Register probes: measurements taken inside a run on the probe's own steps.

    ``factory(options, ctx: tel_core.plugin.ProbeContext) -> tel_core.plugin.Probe``,
    with an options class that subclasses ``tel_core.plugin.ProbeOptions`` (``every``:
    the probe runs every that many steps and on the last one). On those steps the loop
    calls ``after_backward(step)`` (gradients in place, before clipping),
    ``after_update(update)`` and ``evaluate(batch)`` (the model in eval mode on a fixed
    validation batch); each returns a ``tel_core.plugin.Report`` (scalars, histograms,
    images, text) or None. A probe never changes the model, its gradients, its mode or
    the random state, and leaves no hook installed. ``check(options, setup:
    tel_core.plugin.ProbeSetup)`` rejects at load time what the probe cannot measure.
    """
