"""Score multiple-choice items with a Hugging Face ``transformers`` causal language model."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems
from cascadekit.models._batching import partition_sorted
from cascadekit.models._device import cpu_supports_bf16, resolve_dtype
from cascadekit.models._layout import WeightLayout, column_major_linears
from cascadekit.models._prefix import PrefixStore
from cascadekit.prompts import LETTERS, mmlu_prompts
from cascadekit.protocols import ModelOutput

if TYPE_CHECKING:
    from torch import nn

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
    min_prefix_tokens : int, default 64
        Shorter shared prefixes are not cached: their items are scored as full prompts in
        batches across subjects (a 0-shot MMLU header is ~20 tokens, not worth a separate pass).
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
        min_prefix_tokens: int = 64,
        capture_layers: Sequence[int] = (),
        prefix_cache_mb: float = 0.0,
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
        oneDNN's bf16 GEMM runs faster for some shapes; ``"auto"`` does so for bf16/fp16 on CPU
        and keeps PyTorch's row-major layout otherwise (``"row"``). Scores are unchanged up to
        rounding. Remaining keyword arguments go to :class:`HFChoiceModel`.
        """
        if weight_layout not in ("auto", "row", "column"):
            msg = (
                "HFChoiceModel.from_pretrained: `weight_layout` must be one of 'auto', 'row', 'column', "
                f"got {weight_layout!r}."
            )
            raise CascadeInputError(msg)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415
        except ImportError as err:  # pragma: no cover - depends on the environment
            msg = "HFChoiceModel.from_pretrained needs transformers: pip install 'cascadekit[hf]'."
            raise ImportError(msg) from err
        source = str(name_or_path)
        if gguf_file is None and source.endswith(".gguf"):
            path = Path(source)
            if not path.is_file():
                msg = f"HFChoiceModel.from_pretrained: GGUF file {source!r} does not exist."
                raise CascadeInputError(msg)
            source, gguf_file = str(path.parent), path.name
        torch_dtype = resolve_dtype(dtype, device)
        extra: dict[str, Any] = {} if gguf_file is None else {"gguf_file": gguf_file}
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model_extra = dict(extra)
        if gguf_file is not None:
            from transformers import GgufConfig  # noqa: PLC0415

            dequantize = torch_dtype != torch.float32 if gguf_dequantize is None else gguf_dequantize
            model_extra["quantization_config"] = GgufConfig(dequantize=dequantize)
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **model_extra)
        model.to(device)
        model.eval()
        on_cpu = torch.device(device).type == "cpu"
        if weight_layout == "column" or (
            weight_layout == "auto" and on_cpu and torch_dtype in (torch.bfloat16, torch.float16)
        ):
            column_major_linears(model)
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
        bad = [x for x in self.capture_layers if isinstance(x, bool) or not isinstance(x, int)]
        if bad or any(not 1 <= x <= self.n_layers for x in self.capture_layers):
            msg = (
                f"HFChoiceModel: `capture_layers` must hold ints in [1, {self.n_layers}], "
                f"got {list(self.capture_layers)!r}."
            )
            raise CascadeInputError(msg)

    def _batches(self, lengths: list[int]) -> Iterator[list[int]]:
        """Positions grouped into batches in increasing length, within the item and token limits.

        Batches are contiguous runs of the length-sorted positions. Their boundaries minimise
        padded tokens plus a charge of one median-length row per forward pass (dynamic
        programming over the sorted lengths), so a batch is cut where lengths jump instead of
        after every ``batch_size`` items: on MMLU prompts this pads about a third as much as
        fixed-size runs. A prompt longer than the token limit still gets a batch of its own.
        """
        most_items, most_tokens = self._limits()
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        cuts = partition_sorted([lengths[i] for i in order], most_items, most_tokens)
        for start, stop in itertools.pairwise(cuts):
            yield order[start:stop]

    def _pad(self, seqs: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.int64)
        mask = torch.zeros((len(seqs), width), dtype=torch.int64)
        for r, s in enumerate(seqs):
            if self.padding_side == "right":
                ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
            else:
                ids[r, width - len(s) :] = torch.tensor(s)
                mask[r, width - len(s) :] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        return ids.to(device), mask.to(device), positions.to(device)

    def _head(self, hidden: torch.Tensor, option_ids: list[int]) -> torch.Tensor:
        """Logits of the option tokens from final hidden states ``(b, d)``, in float32."""
        head: nn.Module = self.model.get_output_embeddings()
        weight = getattr(head, "weight", None)
        if not isinstance(weight, torch.Tensor):  # pragma: no cover - exotic heads
            full: torch.Tensor = head(hidden)
            return full.float()[:, option_ids]
        rows = torch.tensor(option_ids, device=weight.device)
        logits = hidden.float() @ weight.index_select(0, rows).float().T
        bias = getattr(head, "bias", None)
        if isinstance(bias, torch.Tensor):
            logits = logits + bias.index_select(0, rows).float()
        config = self.model.config
        scale = getattr(config, "logit_scale", None)
        if isinstance(scale, int | float):
            logits = logits * float(scale)
        cap = getattr(config, "final_logit_softcapping", None)
        if isinstance(cap, int | float) and cap > 0:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @contextlib.contextmanager
    def _capturing(self, which: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
        """Hooks that keep, during forward passes, the residual stream after each layer in ``which`` (0: the input)."""
        captured: dict[int, torch.Tensor] = {}
        layers = self.model.get_decoder().layers

        def keep(layer: int) -> Any:
            def hook(_module: Any, _args: Any, _kwargs: Any, output: Any) -> None:
                captured[layer] = output[0] if isinstance(output, tuple) else output

            return hook

        def keep_input(_module: Any, args: Any, kwargs: Any) -> None:
            captured[0] = args[0] if args else kwargs["hidden_states"]

        handles = [layers[0].register_forward_pre_hook(keep_input, with_kwargs=True)] if 0 in which else []
        handles += [layers[x - 1].register_forward_hook(keep(x), with_kwargs=True) for x in set(which) if x > 0]
        try:
            yield captured
        finally:
            for h in handles:
                h.remove()

    @staticmethod
    def _at_last(captured: dict[int, torch.Tensor], last: torch.Tensor) -> dict[int, torch.Tensor]:
        rows = torch.arange(last.numel(), device=last.device)
        return {layer: h[rows, last].float().cpu() for layer, h in captured.items()}

    @torch.inference_mode()
    def _forward_last(
        self, seqs: list[list[int]], option_ids: list[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Option logits (b, k) of full prompts, and the captured last-token states per layer."""
        device = next(self.model.parameters()).device
        ids, mask, positions = self._pad(seqs, device)
        decoder = self.model.get_decoder()
        with self._capturing(self.capture_layers) as captured:
            out = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
        hidden = out.last_hidden_state
        if self.padding_side == "right":
            last = mask.sum(1) - 1
        else:
            last = torch.full((len(seqs),), ids.shape[1] - 1, device=device)
        h_last = hidden[torch.arange(len(seqs), device=device), last]
        return self._head(h_last, option_ids), self._at_last(captured, last)

    @torch.inference_mode()
    def _prefix_kv(self, prefix_ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Key/value tensors of every layer for one prefix, batch dimension 1."""
        device = next(self.model.parameters()).device
        ids = torch.tensor([prefix_ids], device=device)
        out = self.model.get_decoder()(input_ids=ids, use_cache=True)
        cache = out.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    @torch.inference_mode()
    def _forward_suffix(
        self,
        kvs: list[list[tuple[torch.Tensor, torch.Tensor]]],
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
        lens = [int(kv[0][0].shape[2]) for kv in kvs]
        width, longest = max(len(x) for x in seqs), max(lens)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((b, width), int(pad_id), dtype=torch.int64)
        mask = torch.zeros((b, longest + width), dtype=torch.int64)
        for r, (x, n) in enumerate(zip(seqs, lens, strict=True)):
            ids[r, : len(x)] = torch.tensor(x)
            mask[r, longest - n : longest] = 1
            mask[r, longest : longest + len(x)] = 1
        positions = torch.tensor(lens).unsqueeze(1) + torch.arange(width).unsqueeze(0)
        cache = DynamicCache()
        same = all(kv is kvs[0] for kv in kvs)
        for layer in range(len(kvs[0])):
            if same:  # one prefix: broadcast, no padding
                k, v = kvs[0][layer]
                keys, values = k.expand(b, *k.shape[1:]).contiguous(), v.expand(b, *v.shape[1:]).contiguous()
            else:
                k0 = kvs[0][layer][0]
                keys = k0.new_zeros((b, k0.shape[1], longest, k0.shape[3]))
                values = keys.clone()
                for r, kv in enumerate(kvs):
                    keys[r, :, longest - lens[r] :] = kv[layer][0][0]
                    values[r, :, longest - lens[r] :] = kv[layer][1][0]
            cache.update(keys, values, layer)
        with self._capturing(self.capture_layers) as captured:
            out = self.model.get_decoder()(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                past_key_values=cache,
                use_cache=True,
            )
        last = torch.tensor([len(x) - 1 for x in seqs], device=device)
        logits = self._head(out.last_hidden_state[torch.arange(b, device=device), last], option_ids)
        return logits, self._at_last(captured, last)

    def _split_prefixes(self, items: ChoiceItems) -> tuple[list[list[int]], list[int], dict[str, list[int]]]:
        """Full token ids per item, the shared prefix length per item (0: none), and each prefix's shared ids.

        The shared part of a prefix is the longest run of tokens that every prompt of that prefix
        starts with *in its own tokenization* (capped at the prefix's own tokens, and leaving at
        least one token per prompt), so a merge across the boundary -- e.g. a trailing blank line
        that is one token alone but two before text -- only shortens what is reused.
        """
        prefixes, suffixes = mmlu_prompts(items, self.n_shots, self.exemplars)
        texts = [p + s for p, s in zip(prefixes, suffixes, strict=True)]
        full = [list(map(int, x)) for x in self.tokenizer(texts)["input_ids"]]
        if not self.prefix_cache:
            return full, [0] * len(items), {}
        shared: dict[str, list[int]] = {p: list(map(int, self.tokenizer(p)["input_ids"])) for p in set(prefixes)}
        for p, ids in zip(prefixes, full, strict=True):
            pre = shared[p]
            n = 0
            limit = min(len(pre), len(ids) - 1)
            while n < limit and pre[n] == ids[n]:
                n += 1
            shared[p] = pre[:n]
        return full, [len(shared[p]) for p in prefixes], shared

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
        try:
            decoder.layers = full[: max(top, 1)]
            with self._capturing(layers) as captured:
                for batch in self._batches([len(x) for x in seqs]):
                    ids, mask, positions = self._pad([seqs[i] for i in batch], device)
                    decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
                    if self.padding_side == "right":
                        last = mask.sum(1) - 1
                    else:
                        last = torch.full((len(batch),), ids.shape[1] - 1, device=device)
                    for layer, state in self._at_last(captured, last).items():
                        out[layer][torch.tensor(batch)] = state
        finally:
            decoder.layers = full
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
        _, _, prefix_ids = self._split_prefixes(items)
        before = self._prefixes.misses
        for ids in {tuple(x) for x in prefix_ids.values() if len(x) >= self.min_prefix_tokens}:
            self._prefixes.get(ids, functools.partial(self._prefix_kv, list(ids)))
        return self._prefixes.misses - before

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
        the resumable recorder writes each batch as it arrives.
        """
        self._validate()
        if len(items) == 0:
            return
        option_ids = self.option_token_ids(items.n_choices)
        seqs, usable, prefix_ids = self._split_prefixes(items)
        lengths = [len(s) for s in seqs]
        prefixes, _ = mmlu_prompts(items, self.n_shots, self.exemplars) if prefix_ids else ([], [])
        cached = [i for i, n in enumerate(usable) if n >= self.min_prefix_tokens]
        plain = [i for i, n in enumerate(usable) if n < self.min_prefix_tokens]
        # a prefix's cache is computed when its first item comes up and freed after its last one
        remaining: dict[str, int] = {}
        for i in cached:
            remaining[prefixes[i]] = remaining.get(prefixes[i], 0) + 1
        kv_of: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for chunk in self._batches([lengths[i] - usable[i] for i in cached]):
            batch = [cached[j] for j in chunk]
            for i in batch:
                if prefixes[i] not in kv_of:
                    ids = prefix_ids[prefixes[i]]
                    kv_of[prefixes[i]] = self._prefixes.get(tuple(ids), functools.partial(self._prefix_kv, ids))
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
