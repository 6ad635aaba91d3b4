"""HFChoiceModel against a naive unbatched computation on a tiny in-process model."""

from __future__ import annotations

import itertools
from unittest.mock import Mock

import pytest
import torch

pytest.importorskip("transformers")

from cascadekit import CascadeInputError, HFChoiceModel
from cascadekit.datasets import mmlu_exemplars
from cascadekit.models.hf import resolve_dtype
from cascadekit.prompts import mmlu_prompts
from cascadekit.testing import check_model
from tiny_hf import make_items, naive_log_probs, tiny_setup

ITEMS = make_items(13)
EXEMPLARS = mmlu_exemplars(make_items(9, seed=5, prefix="dev"))
MODEL, TOKENIZER = tiny_setup(ITEMS, EXEMPLARS)


@pytest.mark.parametrize("n_shots", [0, 2])
@pytest.mark.parametrize("batch_size", [1, 2, 5, 16])
@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("min_prefix_tokens", [1, 10**6])  # every prefix cached / none
def test_batched_equals_naive(n_shots: int, batch_size: int, padding_side: str, min_prefix_tokens: int) -> None:
    prefixes, suffixes = mmlu_prompts(ITEMS, n_shots, EXEMPLARS)
    reference = naive_log_probs(MODEL, TOKENIZER, [p + s for p, s in zip(prefixes, suffixes, strict=True)], 4)
    # The reference must discriminate between items, or the comparison below proves nothing.
    assert reference.std(dim=0).min() > 1e-3
    model = HFChoiceModel(
        MODEL,
        TOKENIZER,
        batch_size=batch_size,
        padding_side=padding_side,
        n_shots=n_shots,
        exemplars=EXEMPLARS,
        min_prefix_tokens=min_prefix_tokens,
    )
    out = model.score(ITEMS)
    torch.testing.assert_close(out.log_probs, reference, atol=1e-5, rtol=0)
    lengths = [len(TOKENIZER(p + s)["input_ids"]) for p, s in zip(prefixes, suffixes, strict=True)]
    assert out.n_tokens.tolist() == lengths


def test_contract() -> None:
    check_model(HFChoiceModel(MODEL, TOKENIZER, batch_size=4), ITEMS)


def test_iter_scores_covers_every_item_once() -> None:
    seen: list[int] = []
    for positions, out in HFChoiceModel(MODEL, TOKENIZER, batch_size=4).iter_scores(ITEMS):
        assert out.log_probs.shape == (len(positions), 4)
        seen += positions
    assert sorted(seen) == list(range(len(ITEMS)))


def test_from_pretrained_local_folder(tmp_path) -> None:
    MODEL.save_pretrained(tmp_path)
    TOKENIZER.save_pretrained(tmp_path)
    loaded = HFChoiceModel.from_pretrained(tmp_path, dtype="float32", batch_size=3)
    # transformers picks the tokenizer class from the model type, so compare with the same tokenizer:
    # this checks that the weights round-trip and the loaded model scores like the in-memory one.
    expected = HFChoiceModel(MODEL, loaded.tokenizer).score(ITEMS).log_probs
    torch.testing.assert_close(loaded.score(ITEMS).log_probs, expected, atol=1e-5, rtol=0)
    assert loaded.name == str(tmp_path)


@pytest.mark.parametrize(
    ("dtype", "layout", "timings", "column"),
    [
        ("float32", "column", None, True),
        ("float32", "row", None, False),
        ("float32", "auto", (1.0, 0.5), True),  # the probe found column-major twice as fast
        ("bfloat16", "auto", (1.0, 0.98), False),  # within the 5% margin: PyTorch's layout stays
        ("bfloat16", "auto", (1.0, 0.5), True),
        ("bfloat16", "row", None, False),
    ],
)
def test_from_pretrained_weight_layout(monkeypatch, tmp_path, dtype: str, layout: str, timings, column: bool) -> None:
    import cascadekit.models._loading as loading

    probed = []
    monkeypatch.setattr(loading, "layout_timings", lambda w: probed.append(w.shape) or timings)
    MODEL.save_pretrained(tmp_path)
    TOKENIZER.save_pretrained(tmp_path)
    loaded = HFChoiceModel.from_pretrained(tmp_path, dtype=dtype, weight_layout=layout)  # type: ignore[arg-type]
    linears = [m for m in loaded.model.model.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert linears
    assert all(m.weight.t().is_contiguous() == column for m in linears)
    # A tied output head shares the embedding table, which must stay row-major for fast lookups.
    assert loaded.model.get_input_embeddings().weight.is_contiguous()
    if dtype == "float32":
        expected = HFChoiceModel(MODEL, loaded.tokenizer).score(ITEMS).log_probs
        torch.testing.assert_close(loaded.score(ITEMS).log_probs, expected, atol=1e-5, rtol=0)
    # only "auto" probes, and it probes the widest linear layer
    table = MODEL.get_input_embeddings().weight
    linear = [m.weight for m in MODEL.modules() if isinstance(m, torch.nn.Linear) and m.weight is not table]
    widest = max(linear, key=lambda w: w.numel())
    assert probed == ([widest.shape] if layout == "auto" else [])


def test_layout_probe_times_both_layouts() -> None:
    from cascadekit.models._layout import layout_timings

    row, col = layout_timings(torch.randn(64, 32), rows=8, repeats=2)
    assert row > 0
    assert col > 0


def test_column_major_linears_keeps_values_and_skips_tied_heads() -> None:
    from cascadekit.models import column_major_linears

    emb = torch.nn.Embedding(7, 3)
    head = torch.nn.Linear(3, 7, bias=False)
    head.weight = emb.weight
    net = torch.nn.ModuleDict({"emb": emb, "proj": torch.nn.Linear(3, 3), "head": head})
    before = net["proj"].weight.detach().clone()
    assert column_major_linears(net) == 1
    assert net["proj"].weight.stride() == (1, 3)
    assert torch.equal(net["proj"].weight, before)
    assert net["head"].weight is net["emb"].weight
    assert emb.weight.is_contiguous()
    assert column_major_linears(net) == 0  # already column-major
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        column_major_linears("not a model")


def test_bad_weight_layout(tmp_path) -> None:
    with pytest.raises(CascadeInputError, match="weight_layout"):
        HFChoiceModel.from_pretrained(tmp_path, weight_layout="diagonal")  # type: ignore[arg-type]


def test_missing_gguf_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(CascadeInputError, match=r"no such folder or file: .*nope\.gguf"):
        HFChoiceModel.from_pretrained(tmp_path / "nope.gguf")
    with pytest.raises(CascadeInputError, match=r"no such folder or file: .*nope\.gguf"):
        HFChoiceModel.from_pretrained(str(tmp_path / "nope.gguf"))
    # an existing folder without the named GGUF file inside it
    with pytest.raises(CascadeInputError, match=r"no such folder or file: .*inside\.gguf"):
        HFChoiceModel.from_pretrained(tmp_path, gguf_file="inside.gguf")


@pytest.mark.parametrize(
    "source",
    ["/no/such/dir", "./no-such-dir", "../no-such-dir", "~/no-such-cascadekit-model", "no-such.gguf", "a/b/c"],
)
def test_missing_local_path_is_a_clear_error(monkeypatch, tmp_path, source: str) -> None:
    import transformers

    def unreachable(*args, **kwargs):
        raise AssertionError("transformers must not be asked to load a missing local path")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unreachable)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CascadeInputError, match="no such folder or file: ") as err:
        HFChoiceModel.from_pretrained(source)
    assert source.lstrip("~./").split("/")[-1] in str(err.value)
    assert "Repo id" not in str(err.value)
    with pytest.raises(CascadeInputError, match="no such folder or file: "):
        HFChoiceModel.from_pretrained(tmp_path / "no-such-dir")  # a Path is always local


@pytest.mark.parametrize("hub_id", ["Qwen/Qwen2.5-1.5B-Instruct", "gpt2"])
def test_hub_ids_still_go_to_transformers(monkeypatch, tmp_path, hub_id: str) -> None:
    import transformers

    asked: list[str] = []

    def fake(source, *args, **kwargs):
        asked.append(source)
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="offline"):
        HFChoiceModel.from_pretrained(hub_id)
    assert asked == [hub_id]


def test_existing_relative_folder_loads(monkeypatch, tmp_path) -> None:
    MODEL.save_pretrained(tmp_path / "tiny")
    TOKENIZER.save_pretrained(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)
    for source in ("tiny", "./tiny"):
        assert HFChoiceModel.from_pretrained(source, dtype="float32").name == source


def test_cache_keyword_follows_the_forward_signature() -> None:
    from cascadekit.models._prefix import cache_keyword

    class New(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
            return input_ids

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
            return input_ids

    assert cache_keyword(New()) == "cache"
    assert cache_keyword(Old()) == "past_key_values"
    import inspect

    expected = "cache" if "cache" in inspect.signature(MODEL.get_decoder().forward).parameters else "past_key_values"
    assert cache_keyword(MODEL.get_decoder()) == expected


def test_cache_layers_reads_every_cache_form() -> None:
    from types import SimpleNamespace

    from cascadekit.models._prefix import cache_layers

    k, v = torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 3, 4)
    new = SimpleNamespace(cache=SimpleNamespace(layers=[SimpleNamespace(keys=k, values=v)]))
    lists = SimpleNamespace(past_key_values=SimpleNamespace(key_cache=[k], value_cache=[v]))
    legacy = SimpleNamespace(past_key_values=((k, v),))
    for out in (new, lists, legacy):
        [(keys, values)] = cache_layers(out)
        assert keys is k
        assert values is v


def test_scoring_uses_no_deprecated_transformers_api() -> None:
    import warnings

    model = HFChoiceModel(MODEL, TOKENIZER, batch_size=3, n_shots=2, exemplars=EXEMPLARS, min_prefix_tokens=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.score(ITEMS)
        model.early_hidden_states(ITEMS, [1])
    deprecations = [w for w in caught if issubclass(w.category, FutureWarning | DeprecationWarning)]
    assert not [str(w.message) for w in deprecations if "past_key_values" in str(w.message)]
    assert not [w for w in deprecations if issubclass(w.category, FutureWarning)]


def test_bad_settings() -> None:
    with pytest.raises(CascadeInputError, match="batch_size"):
        HFChoiceModel(MODEL, TOKENIZER, batch_size=0).score(ITEMS)
    with pytest.raises(CascadeInputError, match="padding_side"):
        HFChoiceModel(MODEL, TOKENIZER, padding_side="middle").score(ITEMS)  # type: ignore[arg-type]
    with pytest.raises(CascadeInputError, match="exemplars"):
        HFChoiceModel(MODEL, TOKENIZER, n_shots=2).score(ITEMS)
    with pytest.raises(CascadeInputError, match="n_shots=9"):
        HFChoiceModel(MODEL, TOKENIZER, n_shots=9, exemplars=EXEMPLARS).score(ITEMS)


def test_option_letter_must_be_one_token() -> None:
    class SplittingTokenizer:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [1, 2]

    with pytest.raises(CascadeInputError, match="one token per option letter"):
        HFChoiceModel(MODEL, SplittingTokenizer()).option_token_ids(4)


def test_resolve_dtype() -> None:
    assert resolve_dtype("float32", "cpu") == torch.float32
    assert resolve_dtype(torch.float16, "cpu") == torch.float16
    assert resolve_dtype("auto", "cpu") in (torch.float32, torch.bfloat16)
    with pytest.raises(CascadeInputError, match="dtype"):
        resolve_dtype("float8", "cpu")


@torch.inference_mode()
def test_early_hidden_states_match_full_forward() -> None:
    decoder = MODEL.get_decoder()
    for side in ("left", "right"):
        model = HFChoiceModel(MODEL, TOKENIZER, batch_size=4, padding_side=side)
        states = model.early_hidden_states(ITEMS, [0, 1, 2])
        truncated = model.early_hidden_states(ITEMS, [1])  # runs 1 of the 2 layers
        torch.testing.assert_close(truncated[1], states[1], atol=1e-5, rtol=0)
        prefixes, suffixes = mmlu_prompts(ITEMS)
        for i, (p, s) in enumerate(zip(prefixes, suffixes, strict=True)):
            ids = torch.tensor([TOKENIZER(p + s)["input_ids"]])
            torch.testing.assert_close(states[0][i], decoder.embed_tokens(ids)[0, -1], atol=1e-5, rtol=0)
            final = decoder(input_ids=ids).last_hidden_state[0, -1]
            torch.testing.assert_close(decoder.norm(states[2][i]), final, atol=1e-5, rtol=0)
    assert len(decoder.layers) == 2  # restored
    assert not decoder.layers[0]._forward_hooks  # hooks removed
    with pytest.raises(CascadeInputError, match="layers"):
        HFChoiceModel(MODEL, TOKENIZER).early_hidden_states(ITEMS, [3])


def test_early_exit_gate(tmp_path) -> None:
    from cascadekit import EarlyExitGate
    from cascadekit.testing import check_gate

    correct = torch.tensor([i % 3 != 0 for i in range(len(ITEMS))])
    gate = EarlyExitGate(HFChoiceModel(MODEL, TOKENIZER), layer=1, c_infer=2.0, cache_file=tmp_path / "h.npz")
    assert gate.cost == pytest.approx(1.0)
    check_gate(gate, ITEMS, correct=correct)
    fitted = EarlyExitGate(HFChoiceModel(MODEL, TOKENIZER), layer=1, cache_file=tmp_path / "h.npz").fit(ITEMS, correct)
    fitted.save_cache()
    reloaded = EarlyExitGate(HFChoiceModel(MODEL, TOKENIZER), layer=1, cache_file=tmp_path / "h.npz")
    torch.testing.assert_close(reloaded._features(ITEMS, None), fitted._features(ITEMS, None))
    with pytest.raises(CascadeInputError, match="layer"):
        EarlyExitGate(HFChoiceModel(MODEL, TOKENIZER), layer=5).fit(ITEMS, correct)


@pytest.mark.parametrize(("n_shots", "min_prefix_tokens"), [(0, 10**6), (2, 1)])  # plain and prefix-cache paths
def test_captured_states_equal_a_separate_truncated_pass(n_shots, min_prefix_tokens) -> None:
    # states kept from the scoring pass are those of running the first layers on the full prompt
    kw = {"n_shots": n_shots, "exemplars": EXEMPLARS, "min_prefix_tokens": min_prefix_tokens, "batch_size": 4}
    model = HFChoiceModel(MODEL, TOKENIZER, capture_layers=(1, 2), **kw)
    scored = model.score(ITEMS)
    calls: list[int] = []
    original = model.early_hidden_states
    model.early_hidden_states = lambda items, layers: calls.append(len(items)) or original(items, layers)  # type: ignore[method-assign]
    for layer in (1, 2):
        kept = model.hidden_states(ITEMS, layer)
        separate = HFChoiceModel(MODEL, TOKENIZER, **kw).early_hidden_states(ITEMS, [layer])[layer]
        torch.testing.assert_close(kept, separate, atol=1e-5, rtol=0)
    assert calls == []  # nothing recomputed
    torch.testing.assert_close(scored.log_probs, HFChoiceModel(MODEL, TOKENIZER, **kw).score(ITEMS).log_probs)
    # items never scored are computed on demand
    other = make_items(3, seed=11, prefix="other")
    assert model.hidden_states(other, 1).shape == (3, MODEL.config.hidden_size)
    assert calls == [3]
    assert not any(layer._forward_hooks for layer in MODEL.get_decoder().layers)  # hooks removed
    with pytest.raises(CascadeInputError, match=r"`capture_layers` must hold ints in \[1, 2\], got \[3\]"):
        HFChoiceModel(MODEL, TOKENIZER, capture_layers=(3,)).score(ITEMS)


def test_hidden_state_gate() -> None:
    from cascadekit import HiddenStateGate
    from cascadekit.testing import check_gate

    correct = torch.tensor([i % 3 != 0 for i in range(len(ITEMS))])
    model = HFChoiceModel(MODEL, TOKENIZER, capture_layers=(2,))
    log_probs = model.score(ITEMS).log_probs
    gate = HiddenStateGate(model, layer=2)
    assert gate.cost == 0.0
    assert gate.stage == "post"
    check_gate(gate, ITEMS, log_probs=log_probs, correct=correct)
    fitted = HiddenStateGate(model, layer=2).fit(ITEMS, correct, log_probs)
    assert fitted.n_features_ == MODEL.config.hidden_size + 11  # state + option features of 4 options
    assert HiddenStateGate(model, 2, with_options=False).fit(ITEMS, correct, log_probs).n_features_ == 32
    with pytest.raises(CascadeInputError, match="needs the model's `log_probs`"):
        fitted.score(ITEMS)
    with pytest.raises(CascadeInputError, match=r"does not keep layer 1 .* `capture_layers=\(1,\)`"):
        HiddenStateGate(model, layer=1).fit(ITEMS, correct, log_probs)


def test_prefix_caches_kept_across_calls_give_the_same_scores() -> None:
    prefixes, suffixes = mmlu_prompts(ITEMS, 2, EXEMPLARS)
    reference = naive_log_probs(MODEL, TOKENIZER, [p + s for p, s in zip(prefixes, suffixes, strict=True)], 4)
    kw = {"n_shots": 2, "exemplars": EXEMPLARS, "min_prefix_tokens": 1, "batch_size": 4}
    model = HFChoiceModel(MODEL, TOKENIZER, prefix_cache_mb=64, **kw)
    n_subjects = len(set(ITEMS.subjects))
    assert model.warm_prefixes(ITEMS) == n_subjects
    assert model.warm_prefixes(ITEMS) == 0  # all kept
    for _ in range(2):
        torch.testing.assert_close(model.score(ITEMS).log_probs, reference, atol=1e-5, rtol=0)
    assert model._prefixes.misses == n_subjects  # computed once, over three calls
    # without a budget every call computes its prefixes again
    cold = HFChoiceModel(MODEL, TOKENIZER, **kw)
    cold.score(ITEMS)
    cold.score(ITEMS)
    assert cold._prefixes.misses == 2 * n_subjects
    assert len(cold._prefixes) == 0
    with pytest.raises(CascadeInputError, match="set `prefix_cache_mb` > 0"):
        cold.warm_prefixes(ITEMS)
    with pytest.raises(CascadeInputError, match="`prefix_cache_mb` must be a number >= 0, got -1"):
        HFChoiceModel(MODEL, TOKENIZER, prefix_cache_mb=-1).score(ITEMS)


def test_prefix_store_evicts_least_recently_used() -> None:
    from cascadekit.models._prefix import PrefixStore

    def kv(n: int):
        return [(torch.zeros(n, dtype=torch.float32), torch.zeros(n, dtype=torch.float32))]  # 8n bytes

    store = PrefixStore(budget_mb=(8 * 1000 * 2) / 2**20)  # room for two prefixes of 1,000 values

    def use(ids: tuple[int, ...], n: int) -> None:  # as scoring does: a kept prefix, else computed and offered
        if store.lookup(ids) is None:
            store.put(ids, kv(n))

    use((1,), 1000)
    use((2,), 1000)
    use((1,), 1000)  # 1 is now the most recently used
    use((3,), 1000)  # evicts 2
    assert (1,) in store
    assert (3,) in store
    assert (2,) not in store
    assert (store.hits, store.misses) == (1, 3)
    use((4,), 5000)  # larger than the budget: used, not kept
    assert len(store) == 2
    assert (4,) not in store
    store.clear()
    assert len(store) == 0


class BoundaryTokenizer:
    """Delegates to a tokenizer but changes how a text ending in a blank line (a bare prefix) tokenizes.

    ``mode="merge"``: one extra token at the end, as if the trailing blank line merged (the last
    prefix token differs from the prompt's). ``mode="disjoint"``: one extra token at the start, so a
    bare prefix shares no leading token with any prompt.
    """

    def __init__(self, inner, mode: str) -> None:
        self.inner = inner
        self.mode = mode
        self.pad_token_id = inner.pad_token_id
        self.eos_token_id = inner.eos_token_id

    def __call__(self, texts):
        single = isinstance(texts, str)
        texts_list = [texts] if single else texts
        enc = self.inner(texts_list)
        ids = []
        for x, t in zip(enc["input_ids"], texts_list, strict=True):
            if not t.endswith("\n\n"):
                ids.append(x)
            else:
                ids.append([*x, 1] if self.mode == "merge" else [1, *x])
        return {"input_ids": ids[0] if single else ids}

    def encode(self, text, add_special_tokens=False):
        return self.inner.encode(text, add_special_tokens=add_special_tokens)


@pytest.mark.parametrize("n_shots", [0, 2])
def test_prefix_cache_is_used_and_changes_nothing(monkeypatch, n_shots) -> None:
    calls = []
    model = HFChoiceModel(MODEL, TOKENIZER, batch_size=3, n_shots=n_shots, exemplars=EXEMPLARS, min_prefix_tokens=1)
    original = model._prefix_kvs
    monkeypatch.setattr(model, "_prefix_kvs", lambda seqs: calls.append(len(seqs)) or original(seqs))
    cached = model.score(ITEMS).log_probs
    assert sum(calls) == len(set(ITEMS.subjects))  # one prefix computation per subject, shared by its batches
    plain = HFChoiceModel(MODEL, TOKENIZER, batch_size=3, n_shots=n_shots, exemplars=EXEMPLARS, prefix_cache=False)
    torch.testing.assert_close(cached, plain.score(ITEMS).log_probs, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("mode", "reused"), [("merge", True), ("disjoint", False)])
def test_prefix_cache_survives_boundary_merges(monkeypatch, mode, reused) -> None:
    model = HFChoiceModel(MODEL, BoundaryTokenizer(TOKENIZER, mode), batch_size=4, min_prefix_tokens=1)
    calls = []
    original = model._prefix_kvs
    monkeypatch.setattr(model, "_prefix_kvs", lambda seqs: calls.append(len(seqs)) or original(seqs))
    out = model.score(ITEMS).log_probs
    prefixes, suffixes = mmlu_prompts(ITEMS)
    reference = naive_log_probs(MODEL, TOKENIZER, [p + s for p, s in zip(prefixes, suffixes, strict=True)], 4)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
    assert bool(calls) == reused  # a merged boundary only shortens the reused part; nothing shared: none


def test_token_budget_batches() -> None:
    model = HFChoiceModel(MODEL, TOKENIZER, batch_size=4, max_batch_tokens=30)
    lengths = [3, 9, 4, 10, 40, 5, 6]
    batches = list(model._batches(lengths))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 4
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 30
    assert [4] in batches  # longer than the budget: alone


def _brute_force_partition_cost(lengths: list[int], most_items: int, most_tokens: int | None, per_pass: int) -> float:
    """Least cost over every way of cutting the sorted lengths into contiguous batches."""
    n = len(lengths)
    best = float("inf")
    for mask in range(2 ** (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        cost = 0.0
        for a, b in itertools.pairwise(cuts):
            rows, width = b - a, lengths[b - 1]
            if rows > most_items or (rows > 1 and most_tokens is not None and rows * width > most_tokens):
                cost = float("inf")
                break
            cost += rows * width + per_pass
        best = min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(40))
def test_partition_is_optimal_against_brute_force(seed: int) -> None:
    from cascadekit.models._batching import partition_sorted

    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 11, (1,), generator=g))
    lengths = sorted(torch.randint(1, 60, (n,), generator=g).tolist())
    most_items = int(torch.randint(1, 6, (1,), generator=g))
    most_tokens = None if seed % 2 else int(torch.randint(20, 150, (1,), generator=g))
    # the default charge per pass (the median length) in half the cases, a given one otherwise
    given = None if seed % 4 < 2 else int(torch.randint(0, 80, (1,), generator=g))
    per_pass = lengths[n // 2] if given is None else given
    cuts = partition_sorted(lengths, most_items, most_tokens, given)
    assert cuts[0] == 0
    assert cuts[-1] == n
    cost = 0.0
    for a, b in itertools.pairwise(cuts):
        rows, width = b - a, lengths[b - 1]
        assert 1 <= rows <= most_items
        assert rows == 1 or most_tokens is None or rows * width <= most_tokens
        cost += rows * width + per_pass
    assert cost == _brute_force_partition_cost(lengths, most_items, most_tokens, per_pass)


def test_batches_cut_where_lengths_jump() -> None:
    model = HFChoiceModel(MODEL, TOKENIZER, batch_size=4)
    lengths = [10, 10, 11, 90, 10]  # fixed runs of 4 would pad three short rows to 90
    assert list(model._batches(lengths)) == [[0, 1, 4, 2], [3]]
    # a small charge per pass (long prefixes): rows of unequal length are not padded to each other
    assert list(model._batches([100, 160, 100, 230], per_pass=10)) == [[0, 2], [1], [3]]


def test_auto_batch_size_matches_naive() -> None:
    auto = HFChoiceModel(MODEL, TOKENIZER, batch_size="auto", memory_budget_mb=0.05)
    most_items, most_tokens = auto._limits()
    assert most_items == 64
    assert most_tokens == int(0.05 * 2**20 / auto.bytes_per_token())
    torch.testing.assert_close(
        auto.score(ITEMS).log_probs,
        HFChoiceModel(MODEL, TOKENIZER, batch_size=1).score(ITEMS).log_probs,
        atol=1e-5,
        rtol=0,
    )
    with pytest.raises(CascadeInputError, match="max_batch_tokens"):
        HFChoiceModel(MODEL, TOKENIZER, max_batch_tokens=0).score(ITEMS)


def test_batches_mix_subjects_and_short_prefixes_are_not_cached(monkeypatch) -> None:
    prefixes, suffixes = mmlu_prompts(ITEMS, 2, EXEMPLARS)
    assert len(set(ITEMS.subjects)) > 1
    shared = HFChoiceModel(MODEL, TOKENIZER, n_shots=2, exemplars=EXEMPLARS, min_prefix_tokens=1, batch_size=64)
    seen: list[tuple[int, int]] = []  # (rows, distinct prefix caches) per forward pass
    original = shared._forward_suffix
    monkeypatch.setattr(
        shared,
        "_forward_suffix",
        lambda kvs, seqs, ids: seen.append((len(seqs), len({id(kv) for kv in kvs}))) or original(kvs, seqs, ids),
    )
    reference = naive_log_probs(MODEL, TOKENIZER, [p + s for p, s in zip(prefixes, suffixes, strict=True)], 4)
    torch.testing.assert_close(shared.score(ITEMS).log_probs, reference, atol=1e-5, rtol=0)
    assert sum(rows for rows, _ in seen) == len(ITEMS)
    # fewer passes than subjects, and a pass holding several subjects' prefix caches
    assert len(seen) < len(set(ITEMS.subjects))
    assert max(caches for _, caches in seen) > 1
    longest = max(len(TOKENIZER(p)["input_ids"]) for p in prefixes)
    short = HFChoiceModel(MODEL, TOKENIZER, n_shots=2, exemplars=EXEMPLARS, min_prefix_tokens=longest + 1)
    monkeypatch.setattr(short, "_prefix_kvs", lambda seqs: pytest.fail("a prefix below min_prefix_tokens was cached"))
    torch.testing.assert_close(short.score(ITEMS).log_probs, reference, atol=1e-5, rtol=0)
    with pytest.raises(CascadeInputError, match="min_prefix_tokens"):
        HFChoiceModel(MODEL, TOKENIZER, min_prefix_tokens=0).score(ITEMS)


def test_prefixes_are_computed_together_and_only_when_shared(monkeypatch) -> None:
    # all items of two subjects and a single one of the third, whose prefix would serve no other item
    solo = ITEMS.subjects[0]
    keep = [i for i, x in enumerate(ITEMS.subjects) if x != solo] + [ITEMS.subjects.index(solo)]
    items = ITEMS.take(keep)
    prefixes, suffixes = mmlu_prompts(items, 2, EXEMPLARS)
    reference = naive_log_probs(MODEL, TOKENIZER, [p + s for p, s in zip(prefixes, suffixes, strict=True)], 4)
    model = HFChoiceModel(MODEL, TOKENIZER, n_shots=2, exemplars=EXEMPLARS, min_prefix_tokens=1, batch_size=64)
    passes: list[int] = []
    original = model._prefix_kvs
    monkeypatch.setattr(model, "_prefix_kvs", lambda seqs: passes.append(len(seqs)) or original(seqs))
    torch.testing.assert_close(model.score(items).log_probs, reference, atol=1e-5, rtol=0)
    assert passes == [2]  # the two shared prefixes in one call, the solo one not at all
    # a kept prefix is reused even by a single item
    kept = HFChoiceModel(
        MODEL, TOKENIZER, n_shots=2, exemplars=EXEMPLARS, min_prefix_tokens=1, batch_size=64, prefix_cache_mb=64
    )
    assert kept.warm_prefixes(items) == len(set(items.subjects))
    monkeypatch.setattr(kept, "_prefix_kvs", lambda seqs: pytest.fail(f"{len(seqs)} kept prefixes recomputed"))
    torch.testing.assert_close(kept.score(items).log_probs, reference, atol=1e-5, rtol=0)
    assert kept._prefixes.hits == len(set(items.subjects))


def test_tokens_computed_counts_padded_positions() -> None:
    plain = HFChoiceModel(MODEL, TOKENIZER, batch_size=4, n_shots=2, exemplars=EXEMPLARS, prefix_cache=False)
    lengths = [len(x) for x in plain.tokenize(ITEMS)]
    expected = sum(len(b) * max(lengths[i] for i in b) for b in plain._batches(lengths))
    plain.score(ITEMS)
    assert plain.tokens_computed == expected
    plain.score(ITEMS)
    assert plain.tokens_computed == 2 * expected  # a running total
    shared = HFChoiceModel(MODEL, TOKENIZER, batch_size=4, n_shots=2, exemplars=EXEMPLARS, min_prefix_tokens=1)
    shared.score(ITEMS)
    # each subject's prefix once plus every item's suffix: less than the whole prompts
    assert 0 < shared.tokens_computed < sum(lengths)


def test_compiled_decoder_gives_the_same_scores() -> None:
    # the plain path (0-shot, no prefix cached) and the prefix path (2-shot): one compiled decoder each
    for n_shots, min_prefix_tokens in [(0, 10**6), (2, 1)]:
        kw = {"n_shots": n_shots, "exemplars": EXEMPLARS, "min_prefix_tokens": min_prefix_tokens, "batch_size": 4}
        eager = HFChoiceModel(MODEL, TOKENIZER, **kw).score(ITEMS).log_probs
        model = HFChoiceModel(MODEL, TOKENIZER, compile=True, **kw)
        torch.testing.assert_close(model.score(ITEMS).log_probs, eager, atol=1e-5, rtol=0)
        compiled = model._compiled
        assert compiled is not None
        assert compiled[1] is not compiled[0]  # the passes went through torch.compile's wrapper
        # a lone item runs eagerly (a compiled graph would specialise on one row): same scores,
        # one row of work, and the compiled decoder is not called
        spy = Mock(wraps=compiled[1])
        model._compiled = (compiled[0], spy)
        before = model.tokens_computed
        one = ITEMS.take([0])
        torch.testing.assert_close(model.score(one).log_probs, eager[:1], atol=1e-5, rtol=0)
        assert model.tokens_computed - before == len(model.tokenize(one)[0])
        spy.assert_not_called()
        model.score(ITEMS.take([0, 1]))
        assert spy.called  # two rows: compiled
    # hooks (captured layers) need the eager decoder
    hooked = HFChoiceModel(MODEL, TOKENIZER, compile=True, capture_layers=(1,), batch_size=4)
    hooked.score(ITEMS)
    assert hooked._compiled is None
    torch.testing.assert_close(
        hooked.hidden_states(ITEMS, 1), HFChoiceModel(MODEL, TOKENIZER).early_hidden_states(ITEMS, [1])[1]
    )
    with pytest.raises(CascadeInputError, match="`compile` must be True or False, got 'yes'"):
        HFChoiceModel(MODEL, TOKENIZER, compile="yes").score(ITEMS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    on_gpu = HFChoiceModel(MODEL.to("cuda"), TOKENIZER, batch_size=4, n_shots=2, exemplars=EXEMPLARS)
    try:
        gpu = on_gpu.score(ITEMS).log_probs
    finally:
        MODEL.to("cpu")
    cpu = HFChoiceModel(MODEL, TOKENIZER, batch_size=4, n_shots=2, exemplars=EXEMPLARS).score(ITEMS).log_probs
    assert gpu.device.type == "cpu"  # results always come back on the CPU
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)
    assert resolve_dtype("auto", "cuda") in (torch.bfloat16, torch.float16)
