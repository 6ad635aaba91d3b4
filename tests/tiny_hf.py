"""A tiny randomly initialised causal LM and an in-process tokenizer: offline and fast."""

from __future__ import annotations

import re
from typing import Any

import torch

from cascadekit.items import ChoiceItems
from cascadekit.prompts import mmlu_prompts

SUBJECTS = ("astronomy", "college_physics", "world_religions")


def make_items(n: int, seed: int = 0, prefix: str = "test") -> ChoiceItems:
    """n synthetic 4-option questions of varied length over three subjects."""
    g = torch.Generator().manual_seed(seed)
    words = ["star", "planet", "orbit", "mass", "energy", "faith", "temple", "light", "wave", "field", "moon"]
    ids, subjects, questions, choices = [], [], [], []
    for i in range(n):
        length = 3 + int(torch.randint(0, 12, (1,), generator=g))
        q = " ".join(words[int(j)] for j in torch.randint(0, len(words), (length,), generator=g)) + "?"
        opts = [" ".join(words[int(j)] for j in torch.randint(0, len(words), (2,), generator=g)) for _ in range(4)]
        ids.append(f"{prefix}/{i}")
        subjects.append(SUBJECTS[i % len(SUBJECTS)])
        questions.append(q)
        choices.append(opts)
    answers = torch.randint(0, 4, (n,), generator=g)
    return ChoiceItems(ids, subjects, questions, choices, answers)


def make_tokenizer(texts: list[str]) -> Any:
    """A word-level tokenizer over the words of ``texts`` (punctuation split off), with BOS and PAD."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[BOS]": 2}
    for text in texts:
        for tok in re.findall(r"\w+|[^\w\s]", text):
            vocab.setdefault(tok, len(vocab))
    for letter in "ABCDEFGH":
        vocab.setdefault(letter, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="[BOS]", pad_token="[PAD]", unk_token="[UNK]")


def make_model(vocab_size: int, seed: int = 0) -> Any:
    """A 2-layer Qwen2-architecture model with random weights, float32, eval mode."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(config).eval()


def tiny_setup(items: ChoiceItems, exemplars: dict[str, ChoiceItems] | None = None) -> tuple[Any, Any]:
    texts = [p + s for p, s in zip(*mmlu_prompts(items), strict=True)]
    if exemplars:
        for ex in exemplars.values():
            texts += [p + s for p, s in zip(*mmlu_prompts(ex), strict=True)]
    tokenizer = make_tokenizer(texts)
    return make_model(len(tokenizer)), tokenizer


@torch.inference_mode()
def naive_log_probs(model: Any, tokenizer: Any, prompts: list[str], k: int) -> torch.Tensor:
    """Reference: one unbatched, unpadded full forward per prompt, full-vocabulary logits."""
    option_ids = [tokenizer.encode(f" {c}", add_special_tokens=False)[0] for c in "ABCDEFGH"[:k]]
    rows = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        logits = model(input_ids=ids).logits[0, -1]
        rows.append(torch.log_softmax(logits[option_ids].float(), dim=-1))
    return torch.stack(rows)


def make_embedder_folder(folder, texts: list[str]) -> None:
    """Save a tiny random BERT encoder and its word-level tokenizer to ``folder``."""
    from transformers import BertConfig, BertModel

    tokenizer = make_tokenizer(texts)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
