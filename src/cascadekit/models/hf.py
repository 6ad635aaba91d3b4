"""Score multiple-choice items with a Hugging Face ``transformers`` causal language model."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems
from cascadekit.models._batching import PREFIX_PASS_TOKENS, pad_batch, partition_sorted
from cascadekit.models._device import cpu_supports_bf16, resolve_dtype
from cascadekit.models._hidden import at_last, capturing, option_logits
from cascadekit.models._layout import WeightLayout, column_major_linears
from cascadekit.models._loading import load_causal_lm
from cascadekit.models._prefix import (
    LayerKV,
    PrefixStore,
    cache_keyword,
    cache_layers,
    left_padded_caches,
    plan_prefixes,
    shared_prefix_ids,
)
from cascadekit.models._progress import check_progress, progress_bar, short_name
from cascadekit.prompts import LETTERS, mmlu_prompts
from cascadekit.protocols import ModelOutput

__all__ = ["HFChoiceModel", "column_major_linears", "cpu_supports_bf16", "resolve_dtype"]

PaddingSide = Literal["left", "right"]


class HFChoiceModel:
    """A causal LM that answers multiple-choice items in one forward pass per item.

    The prompt is the standard MMLU one (subject header, optional solved exemplars, question,
    lettered options, ``"Answer:"``). The score of option j is the log-softmax, over the k option
    letters only, of the next-token logits of ``" A"``, ``" B"``, ... at the last prompt position.
    Only that position's hidden state is projected, and only onto the k letter rows of the output
    embedding. Items are sorted by length and batched to minimise padding; output rows follow
    the input order.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A loaded causal LM (``AutoModelForCausalLM``), in eval mode.
    tokenizer : transformers.PreTrainedTokenizerBase
        Its tokenizer; every option letter with a leading space must be a single token.
    name : str, optional
        Label used in results and recordings (default: the model's ``name_or_path``).
    n_shots : int, default 0
        Solved exemplars per prompt, taken from ``exemplars``.
    exemplars : mapping subject -> ChoiceItems, optional
        Labelled exemplars (MMLU dev), see :func:`cascadekit.datasets.mmlu_exemplars`.
    batch_size : int or "auto", default 8
        Most items per forward pass. ``"auto"``: up to 64, limited by ``memory_budget_mb``.
    max_batch_tokens : int, optional
        Most padded tokens per forward pass (rows times the longest row); batches of short
        prompts then hold more items than batches of long ones.
    memory_budget_mb : float, default 2048
        With ``batch_size="auto"``: activation memory allowed per forward pass, turned into
        ``max_batch_tokens`` from the model's sizes (see :meth:`bytes_per_token`).
    padding_side : {"right", "left"}, default "right"
        Where padding goes inside a batch; both give the same scores.
    prefix_cache : bool, default True
        Compute the key/value cache of each subject's shared prefix (header and exemplars) once
        per call and reuse it for every question of that subject, broadcast over the batch. What
        is shared is the longest run of tokens all those prompts start with in their own
        tokenization, so a merge across the prefix/question boundary shortens the reused part
        and never changes a score; with nothing shared the full prompts are scored. Items with
        different prefixes share a forward pass: their caches are left-padded to a common length
        and masked, so batches are filled across subjects.
    min_prefix_tokens : int, default 8
        Shorter shared prefixes are not cached: their items are scored as full prompts in
        batches across subjects. A prefix is also cached only when more than one item of the
        call continues it (or it is kept from an earlier call). Prefix caches are computed in
        batched passes, so even a 0-shot MMLU subject header is worth sharing.
    prefix_cache_mb : float, default 0
        Keep prefix key/value caches *across calls*, up to this many MB, least recently used out
        first: a serving process whose requests keep coming from the same subjects then computes
        each few-shot prefix once, not once per call. 0 frees them at the end of every call.
        :meth:`warm_prefixes` computes them ahead of time.
    capture_layers : sequence of int, default ()
        Keep each scored item's last-prompt-token hidden state after these decoder layers (1 to
        ``n_layers``), taken by hooks from the scoring pass itself at no extra compute, for
        post-inference gates that read them (:class:`~cascadekit.gates.HiddenStateGate`); see
        :meth:`hidden_states`.
    compile : bool, default False
        Run the decoder through ``torch.compile(dynamic=True)`` (TorchInductor, which needs a C++
        compiler on CPU). The compiled graph fuses the normalisations, activations, rotary
        embeddings and residual adds between the matrix products into a few kernels, which eager
        PyTorch runs as separate passes over the activations. The first calls compile, once per
        kind of pass (whole prompts, prefixes, suffixes after cached prefixes): minutes for a 1.5B
        model on 2 cores, less when Inductor's on-disk cache has seen the model before; later batch
        sizes and lengths reuse the graphs; a pass of a single row runs eagerly, since a compiled
        graph would specialise on it. Scores equal the eager ones up to rounding. Passes that keep
        hidden states (``capture_layers``) and :meth:`early_hidden_states` use forward hooks and
        run eagerly.
    progress : bool or None, default None
        A tqdm progress bar on stderr (items done, items per second) while :meth:`score`,
        :meth:`iter_scores` and :meth:`early_hidden_states` run. ``None`` shows it only when
        stderr is a terminal, ``True`` always, ``False`` never; without tqdm there is no bar.

    Examples
    --------
    >>> model = HFChoiceModel.from_pretrained("Qwen/Qwen2.5-1.5B-Instruct")  # doctest: +SKIP
    >>> out = model.score(items)  # doctest: +SKIP
    >>> out.log_probs.shape  # doctest: +SKIP
    torch.Size([n, 4])
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        n_shots: int = 0,
        exemplars: Mapping[str, ChoiceItems] | None = None,
        batch_size: int | Literal["auto"] = 8,
        padding_side: PaddingSide = "right",
        prefix_cache: bool = True,
        max_batch_tokens: int | None = None,
        memory_budget_mb: float = 2048.0,
        min_prefix_tokens: int = 8,
        capture_layers: Sequence[int] = (),
        prefix_cache_mb: float = 0.0,
        compile: bool = False,
        progress: bool | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name if name is not None else str(getattr(model, "name_or_path", type(model).__name__))
        self.n_shots = n_shots
        self.exemplars = exemplars
        self.batch_size = batch_size
        self.padding_side = padding_side
        self.prefix_cache = prefix_cache
        self.max_batch_tokens = max_batch_tokens
        self.memory_budget_mb = memory_budget_mb
        self.min_prefix_tokens = min_prefix_tokens
        self.capture_layers = capture_layers
        self.prefix_cache_mb = prefix_cache_mb
        self.compile = compile
        self.progress = progress
        self._compiled: tuple[Any, Any] | None = None
        self._tokens_computed = 0
        self._captured: dict[int, dict[str, torch.Tensor]] = {}
        self._prefixes = PrefixStore()

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        gguf_file: str | None = None,
        dtype: str | torch.dtype = "auto",
        device: str | torch.device = "cpu",
        gguf_dequantize: bool | None = None,
        weight_layout: WeightLayout = "auto",
        **kwargs: Any,
    ) -> HFChoiceModel:
        """Load a hub id, a local folder, or a GGUF file (``path/to/x.gguf`` or folder + ``gguf_file``).

        GGUF files need ``pip install gguf accelerate``. ``gguf_dequantize=None`` unpacks the
        quantised weights into a dense model when ``dtype`` resolves to bf16/fp16 (so the CPU's
        native bf16 matmul is used) and keeps them packed for float32. ``weight_layout="column"``
        stores the linear layers' weights column-major (:func:`column_major_linears`), which
        oneDNN's bf16 GEMM runs faster for some shapes on some CPUs; ``"row"`` keeps PyTorch's
        layout. ``"auto"`` times the model's widest linear layer both ways on 256 rows and keeps
        column-major only when it is more than 5% faster on this machine. Scores are unchanged up
        to rounding. Remaining keyword arguments go to :class:`HFChoiceModel`. A missing local path
        (a ``Path``, or ``/``, ``./``, ``../``, ``~``, ``.gguf``) raises :class:`CascadeInputError`.
        """
        model, tokenizer, gguf_file = load_causal_lm(
            name_or_path,
            gguf_file=gguf_file,
            dtype=dtype,
            device=device,
            gguf_dequantize=gguf_dequantize,
            weight_layout=weight_layout,
        )
        name = kwargs.pop("name", gguf_file or str(name_or_path))
        return cls(model, tokenizer, name=name, **kwargs)

    # ------------------------------------------------------------------ helpers

    def option_token_ids(self, k: int) -> list[int]:
        """Token ids of ``" A"``, ``" B"``, ... for k options; each must be one token."""
        ids = []
        for letter in LETTERS[:k]:
            toks = self.tokenizer.encode(f" {letter}", add_special_tokens=False)
            if len(toks) != 1:
                msg = (
                    f"HFChoiceModel: the tokenizer splits option {letter!r} (with its leading space) into "
                    f"{len(toks)} tokens {toks}; scoring needs one token per option letter."
                )
                raise CascadeInputError(msg)
            ids.append(int(toks[0]))
        return ids

    def tokenize(self, items: ChoiceItems) -> list[list[int]]:
        """Token ids of every item's full prompt."""
        prefixes, suffixes = mmlu_prompts(items, self.n_shots, self.exemplars)
        enc = self.tokenizer([p + s for p, s in zip(prefixes, suffixes, strict=True)])
        return [list(map(int, ids)) for ids in enc["input_ids"]]

    def bytes_per_token(self) -> int:
        """Rough peak activation bytes per token of one forward pass: the widest layer's tensors plus the KV cache.

        ``dtype bytes * (6 * hidden + 3 * intermediate + 2 * layers * kv_heads * head_dim)``.
        """
        cfg = self.model.config
        hidden = int(cfg.hidden_size)
        inter = int(getattr(cfg, "intermediate_size", 4 * hidden))
        heads = int(getattr(cfg, "num_attention_heads", 1))
        kv_heads = int(getattr(cfg, "num_key_value_heads", heads) or heads)
        head_dim = int(getattr(cfg, "head_dim", None) or hidden // heads)
        layers = int(getattr(cfg, "num_hidden_layers", 1))
        size = next(self.model.parameters()).element_size()
        return int(size) * (6 * hidden + 3 * inter + 2 * layers * kv_heads * head_dim)

    def _limits(self) -> tuple[int, int | None]:
        """(most items, most padded tokens) per forward pass."""
        if self.batch_size == "auto":
            budget = int(self.memory_budget_mb * 2**20 / self.bytes_per_token())
            tokens = budget if self.max_batch_tokens is None else min(budget, self.max_batch_tokens)
            return 64, max(tokens, 1)
        return int(self.batch_size), self.max_batch_tokens

    def _validate(self) -> None:
        if self.batch_size != "auto" and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            msg = f"HFChoiceModel: `batch_size` must be an int >= 1 or 'auto', got {self.batch_size!r}."
            raise CascadeInputError(msg)
        if self.max_batch_tokens is not None and (
            not isinstance(self.max_batch_tokens, int) or self.max_batch_tokens < 1
        ):
            msg = f"HFChoiceModel: `max_batch_tokens` must be None or an int >= 1, got {self.max_batch_tokens!r}."
            raise CascadeInputError(msg)
        if (
            isinstance(self.min_prefix_tokens, bool)
            or not isinstance(self.min_prefix_tokens, int)
            or self.min_prefix_tokens < 1
        ):
            msg = f"HFChoiceModel: `min_prefix_tokens` must be an int >= 1, got {self.min_prefix_tokens!r}."
            raise CascadeInputError(msg)
        if self.padding_side not in ("left", "right"):
            msg = f"HFChoiceModel: `padding_side` must be 'left' or 'right', got {self.padding_side!r}."
            raise CascadeInputError(msg)
        if (
            isinstance(self.prefix_cache_mb, bool)
            or not isinstance(self.prefix_cache_mb, int | float)
            or not (self.prefix_cache_mb >= 0)
        ):
            msg = f"HFChoiceModel: `prefix_cache_mb` must be a number >= 0, got {self.prefix_cache_mb!r}."
            raise CascadeInputError(msg)
        self._prefixes.budget_mb = float(self.prefix_cache_mb)
        if not isinstance(self.compile, bool):
            msg = f"HFChoiceModel: `compile` must be True or False, got {self.compile!r}."
            raise CascadeInputError(msg)
        check_progress(self.progress, "HFChoiceModel")
        bad = [x for x in self.capture_layers if isinstance(x, bool) or not isinstance(x, int)]
        if bad or any(not 1 <= x <= self.n_layers for x in self.capture_layers):
            msg = (
                f"HFChoiceModel: `capture_layers` must hold ints in [1, {self.n_layers}], "
                f"got {list(self.capture_layers)!r}."
            )
            raise CascadeInputError(msg)

    def _batches(self, lengths: list[int], per_pass: int | None = None) -> Iterator[list[int]]:
        """Positions grouped into batches in increasing length, within the item and token limits.

        Batches are contiguous runs of the length-sorted positions. Their boundaries minimise
        padded tokens plus a charge of one median-length row per forward pass (dynamic
        programming over the sorted lengths), so a batch is cut where lengths jump instead of
        after every ``batch_size`` items: on MMLU prompts this pads about a third as much as
        fixed-size runs. A prompt longer than the token limit still gets a batch of its own.
        ``per_pass`` replaces the median-length charge (see :func:`partition_sorted`).
        """
        most_items, most_tokens = self._limits()
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        cuts = partition_sorted([lengths[i] for i in order], most_items, most_tokens, per_pass)
        for start, stop in itertools.pairwise(cuts):
            yield order[start:stop]

    def _pad(
        self, seqs: list[list[int]], device: torch.device, side: PaddingSide | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        return pad_batch(seqs, int(pad_id), device, self.padding_side if side is None else side)

    @torch.inference_mode()
    def _forward_last(
        self, seqs: list[list[int]], option_ids: list[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Option logits (b, k) of full prompts, and the captured last-token states per layer."""
        device = next(self.model.parameters()).device
        ids, mask, positions = self._pad(seqs, device)
        self._tokens_computed += ids.numel()
        with capturing(self.model.get_decoder().layers, self.capture_layers) as captured:
            # use_cache=True as in prefix passes, so a compiled decoder serves both with one graph
            out = self._decode(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        hidden = out.last_hidden_state
        if self.padding_side == "right":
            last = mask.sum(1) - 1
        else:
            last = torch.full((len(seqs),), ids.shape[1] - 1, device=device)
        h_last = hidden[torch.arange(len(seqs), device=device), last]
        return option_logits(self.model, h_last, option_ids), at_last(captured, last)

    @torch.inference_mode()
    def _prefix_kvs(self, prefixes: list[list[int]]) -> list[LayerKV]:
        """Key/value tensors of every layer for each prefix (batch dimension 1), in batched passes.

        Prefixes are right-padded into length-sorted batches: under a causal mask a prefix's own
        positions never see the padding after it, so each row's first ``len`` keys and values are
        those of the prefix alone. Many short prefixes cost a few forward passes, not one each.
        A pass is charged a fixed ``PREFIX_PASS_TOKENS``, not the median length: with few-shot
        prefixes of several hundred tokens the median made padding look cheap, and prefixes of
        unequal lengths were padded to each other instead of getting passes of their own.
        """
        device = next(self.model.parameters()).device
        out: list[LayerKV] = [[] for _ in prefixes]
        for batch in self._batches([len(x) for x in prefixes], per_pass=PREFIX_PASS_TOKENS):
            ids, mask, positions = self._pad([prefixes[i] for i in batch], device, "right")
            self._tokens_computed += ids.numel()
            result = self._decode(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
            layers = cache_layers(result)
            for r, i in enumerate(batch):
                n = len(prefixes[i])
                out[i] = [(k[r : r + 1, :, :n].clone(), v[r : r + 1, :, :n].clone()) for k, v in layers]
        return out

    @torch.inference_mode()
    def _forward_suffix(
        self,
        kvs: list[LayerKV],
        seqs: list[list[int]],
        option_ids: list[int],
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Option logits for suffixes, row r continuing the cached prefix ``kvs[r]``, and captured states.

        Caches of different lengths are left-padded to the longest and the padding is masked;
        suffixes are right-padded. Keys were rotated at their own positions when cached, so
        moving them to later slots changes nothing; each suffix continues at its prefix's length.
        """
        from transformers import DynamicCache  # noqa: PLC0415

        device = next(self.model.parameters()).device
        b = len(seqs)
        layers, lens = left_padded_caches(kvs)
        width, longest = max(len(x) for x in seqs), max(lens)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((b, width), int(pad_id), dtype=torch.int64)
        mask = torch.zeros((b, longest + width), dtype=torch.int64)
        for r, (x, n) in enumerate(zip(seqs, lens, strict=True)):
            ids[r, : len(x)] = torch.tensor(x)
            mask[r, longest - n : longest] = 1
            mask[r, longest : longest + len(x)] = 1
        positions = torch.tensor(lens).unsqueeze(1) + torch.arange(width).unsqueeze(0)
        self._tokens_computed += ids.numel()
        cache = DynamicCache()
        for layer, (keys, values) in enumerate(layers):
            cache.update(keys, values, layer)
        decoder = self.model.get_decoder()
        # `cache` in transformers 5.x, where `past_key_values` is deprecated; `past_key_values` in 4.x
        with capturing(decoder.layers, self.capture_layers) as captured:
            out = self._decode(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=True,
                **{cache_keyword(decoder): cache},
            )
        last = torch.tensor([len(x) - 1 for x in seqs], device=device)
        logits = option_logits(self.model, out.last_hidden_state[torch.arange(b, device=device), last], option_ids)
        return logits, at_last(captured, last)

    def _split_prefixes(self, items: ChoiceItems) -> tuple[list[str], list[list[int]], list[int], dict[str, list[int]]]:
        """Prefix text and token ids per item, shared prefix length per item (0: none), shared ids per prefix."""
        prefixes, suffixes = mmlu_prompts(items, self.n_shots, self.exemplars)
        full = [
            list(map(int, x))
            for x in self.tokenizer([p + s for p, s in zip(prefixes, suffixes, strict=True)])["input_ids"]
        ]
        if not self.prefix_cache:
            return prefixes, full, [0] * len(items), {}
        shared = shared_prefix_ids(self.tokenizer, prefixes, full)
        return prefixes, full, [len(shared[p]) for p in prefixes], shared

    @property
    def _compiling(self) -> bool:
        """Whether scoring passes run the compiled decoder (``compile``, and no layer is hooked)."""
        return bool(self.compile) and not self.capture_layers

    def _decode(self, **inputs: Any) -> Any:
        """Run the decoder on ``inputs``: compiled when :attr:`_compiling`, except for a lone row.

        A compiled graph specialises on a batch of one row (another graph, minutes to compile), so
        a one-row pass runs eagerly instead.
        """
        decoder = self.model.get_decoder()
        if not self._compiling or inputs["input_ids"].shape[0] == 1:
            return decoder(**inputs)
        # the whole decoder, not layer by layer: the key/value cache object guards on each layer's
        # index, so a compiled layer would recompile for every layer it stands in for
        if self._compiled is None or self._compiled[0] is not decoder:
            self._compiled = (decoder, torch.compile(decoder, dynamic=True))
        return self._compiled[1](**inputs)

    @property
    def tokens_computed(self) -> int:
        """Token positions run through the decoder by scoring passes so far, padding included.

        Prefix caches count once when computed and not when reused, so this is the work actually
        done; throughput figures (``benchmarks/bench_scoring.py``) divide it by time.
        """
        return self._tokens_computed

    @property
    def n_layers(self) -> int:
        """Number of decoder layers of the model."""
        return len(self.model.get_decoder().layers)

    @torch.inference_mode()
    def early_hidden_states(self, items: ChoiceItems, layers: list[int]) -> dict[int, torch.Tensor]:
        """Last-prompt-token residual stream after the first ``l`` decoder layers, for each ``l`` in ``layers``.

        Runs only ``max(layers)`` of the model's layers (the rest are never computed). Returns
        ``{l: (n, d) float32}`` in the order of ``items``; ``l = 0`` is the input embedding. The
        states are captured with forward hooks on the decoder layers, before any final norm.
        """
        self._validate()
        if not layers or min(layers) < 0 or max(layers) > self.n_layers:
            msg = f"HFChoiceModel.early_hidden_states: `layers` must lie in [0, {self.n_layers}], got {layers}."
            raise CascadeInputError(msg)
        top = max(layers)
        decoder = self.model.get_decoder()
        full = decoder.layers
        out = {layer: torch.empty((len(items), self.model.config.hidden_size)) for layer in layers}
        if len(items) == 0:
            return out
        seqs = self.tokenize(items)
        device = next(self.model.parameters()).device
        bar = self._bar(len(items), "hidden states")
        try:
            decoder.layers = full[: max(top, 1)]
            with capturing(decoder.layers, layers) as captured:
                for batch in self._batches([len(x) for x in seqs]):
                    ids, mask, positions = self._pad([seqs[i] for i in batch], device)
                    decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
                    if self.padding_side == "right":
                        last = mask.sum(1) - 1
                    else:
                        last = torch.full((len(batch),), ids.shape[1] - 1, device=device)
                    for layer, state in at_last(captured, last).items():
                        out[layer][torch.tensor(batch)] = state
                    bar.update(len(batch))
        finally:
            decoder.layers = full
            bar.close()
        return out

    def _keep(self, items: ChoiceItems, batch: list[int], states: dict[int, torch.Tensor]) -> None:
        for layer, h in states.items():
            store = self._captured.setdefault(layer, {})
            for row, i in enumerate(batch):
                store[items.ids[i]] = h[row]

    def warm_prefixes(self, items: ChoiceItems) -> int:
        """Compute and keep the shared-prefix caches ``items`` would use (needs ``prefix_cache_mb > 0``).

        Returns how many prefixes were computed (already kept ones are not). Prefixes shorter than
        ``min_prefix_tokens`` are not cached, as in :meth:`score`.
        """
        self._validate()
        if self.prefix_cache_mb <= 0:
            msg = "HFChoiceModel.warm_prefixes: set `prefix_cache_mb` > 0, or the prefixes are not kept."
            raise CascadeInputError(msg)
        _, _, _, prefix_ids = self._split_prefixes(items)
        todo = sorted(
            {
                tuple(x)
                for x in prefix_ids.values()
                if len(x) >= self.min_prefix_tokens and tuple(x) not in self._prefixes
            }
        )
        for ids, kv in zip(todo, self._prefix_kvs([list(x) for x in todo]), strict=True):
            self._prefixes.put(ids, kv)
        return len(todo)

    def hidden_states(self, items: ChoiceItems, layer: int) -> torch.Tensor:
        """Last-prompt-token hidden state after ``layer`` decoder layers, ``(n, d)`` float32, in item order.

        Items this model scored with ``layer`` in ``capture_layers`` are served from what that pass
        kept (no compute); the others run the first ``layer`` layers (:meth:`early_hidden_states`).
        """
        kept = self._captured.get(layer, {})
        out = torch.empty((len(items), int(self.model.config.hidden_size)))
        todo = [i for i, key in enumerate(items.ids) if key not in kept]
        for i, key in enumerate(items.ids):
            if key in kept:
                out[i] = kept[key]
        if todo:
            out[torch.tensor(todo)] = self.early_hidden_states(items.take(todo), [layer])[layer]
        return out

    # ------------------------------------------------------------------ API

    def score(self, items: ChoiceItems) -> ModelOutput:
        """Option log-probs ``(n, k)`` (float32, on CPU) and prompt token counts ``(n,)``."""
        log_probs = torch.empty((len(items), items.n_choices), dtype=torch.float32)
        n_tokens = torch.empty((len(items),), dtype=torch.int64)
        for positions, out in self.iter_scores(items):
            rows = torch.tensor(positions)
            log_probs[rows] = out.log_probs
            n_tokens[rows] = out.n_tokens
        return ModelOutput(log_probs, n_tokens)

    def iter_scores(self, items: ChoiceItems) -> Iterator[tuple[list[int], ModelOutput]]:
        """Score batch by batch, yielding ``(positions, output)`` as each batch finishes.

        ``positions`` are the rows of ``items`` the batch covers (batches go shortest first);
        the resumable recorder writes each batch as it arrives. Shows a progress bar (``progress``).
        """
        self._validate()
        if len(items) == 0:
            return
        bar = self._bar(len(items), "score")
        try:
            for positions, out in self._scored_batches(items):
                bar.update(len(positions))
                yield positions, out
        finally:
            bar.close()

    def _bar(self, total: int, what: str) -> Any:
        return progress_bar(total, f"{short_name(self.name)} {what}", self.progress)

    def _scored_batches(self, items: ChoiceItems) -> Iterator[tuple[list[int], ModelOutput]]:
        option_ids = self.option_token_ids(items.n_choices)
        prefixes, seqs, usable, prefix_ids = self._split_prefixes(items)
        lengths = [len(s) for s in seqs]
        # a prefix is worth a cache when it is long enough and more than one item continues it
        # (or it is kept from an earlier call); the other items are scored as whole prompts
        long_enough = [i for i, n in enumerate(usable) if n >= self.min_prefix_tokens]
        uses = Counter(prefixes[i] for i in long_enough)
        cached = [i for i in long_enough if uses[prefixes[i]] > 1 or tuple(prefix_ids[prefixes[i]]) in self._prefixes]
        plain = sorted(set(range(len(items))) - set(cached))
        batches = [[cached[j] for j in chunk] for chunk in self._batches([lengths[i] - usable[i] for i in cached])]
        # prefix caches are computed in batched passes shortly before their first item comes up
        # and freed after their last one
        remaining = Counter(prefixes[i] for i in cached)
        kv_of: dict[str, LayerKV] = {}
        for n, batch in enumerate(batches):
            self._fetch_prefixes(batches[n:], prefixes, prefix_ids, kv_of)
            kvs = [kv_of[prefixes[i]] for i in batch]
            logits, states = self._forward_suffix(kvs, [seqs[i][usable[i] :] for i in batch], option_ids)
            self._keep(items, batch, states)
            for i in batch:
                remaining[prefixes[i]] -= 1
                if remaining[prefixes[i]] == 0:
                    del kv_of[prefixes[i]]
            lp = torch.log_softmax(logits, dim=-1).cpu()
            yield batch, ModelOutput(lp, torch.tensor([lengths[i] for i in batch], dtype=torch.int64))
        for chunk in self._batches([lengths[i] for i in plain]):
            batch = [plain[j] for j in chunk]
            logits, states = self._forward_last([seqs[i] for i in batch], option_ids)
            self._keep(items, batch, states)
            lp = torch.log_softmax(logits, dim=-1).cpu()
            yield batch, ModelOutput(lp, torch.tensor([lengths[i] for i in batch], dtype=torch.int64))

    def _fetch_prefixes(
        self,
        batches: list[list[int]],
        prefixes: list[str],
        prefix_ids: dict[str, list[int]],
        kv_of: dict[str, LayerKV],
    ) -> None:
        """Put the caches of ``batches[0]``'s prefixes into ``kv_of``: kept ones, else computed.

        Missing prefixes of the following batches are computed in the same passes, in the order
        their batches come, while the prefix tokens stay within one batch's token limit, so a run
        of short prefixes (a 0-shot subject header) costs a few passes instead of one per subject.
        """
        missing = plan_prefixes(batches, prefixes, prefix_ids, kv_of, self._prefixes, *self._limits())
        if not missing:
            return
        for p, kv in zip(missing, self._prefix_kvs([prefix_ids[p] for p in missing]), strict=True):
            self._prefixes.put(tuple(prefix_ids[p]), kv)
            kv_of[p] = kv
