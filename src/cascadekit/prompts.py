"""The standard MMLU prompt (Hendrycks et al., 2021), 0-shot or k-shot."""

from __future__ import annotations

from collections.abc import Mapping

from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems

__all__ = ["LETTERS", "format_example", "mmlu_header", "mmlu_prompts"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def mmlu_header(subject: str) -> str:
    """Return the subject header, e.g. ``"... about college physics."`` followed by a blank line."""
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def format_example(question: str, choices: tuple[str, ...], answer: int | None = None) -> str:
    """Format one question with lettered options, ending in ``"Answer:"`` (plus the letter for an exemplar)."""
    lines = [question.strip()]
    lines += [f"{LETTERS[j]}. {c}" for j, c in enumerate(choices)]
    text = "\n".join(lines) + "\nAnswer:"
    if answer is not None:
        text += f" {LETTERS[answer]}\n\n"
    return text


def mmlu_prompts(
    items: ChoiceItems, n_shots: int = 0, exemplars: Mapping[str, ChoiceItems] | None = None
) -> tuple[list[str], list[str]]:
    """Build the prompt of every item, split into a shared prefix and an item-specific suffix.

    Parameters
    ----------
    items : ChoiceItems
        n questions to prompt for.
    n_shots : int, default 0
        Number of solved exemplars placed before each question.
    exemplars : mapping subject -> ChoiceItems, optional
        Labelled exemplars per subject (MMLU's ``dev`` split); required when ``n_shots > 0``.
        The first ``n_shots`` of the item's subject are used, in their stored order.

    Returns
    -------
    prefixes, suffixes : list of str, length n
        ``prefixes[i] + suffixes[i]`` is the full prompt; items of one subject share one prefix
        (header and exemplars), which a model may compute once.

    Examples
    --------
    >>> import torch
    >>> it = ChoiceItems(["a"], ["astronomy"], ["Sun?"], [["star", "moon"]], torch.tensor([0]))
    >>> p, s = mmlu_prompts(it)
    >>> print(p[0] + s[0])
    The following are multiple choice questions (with answers) about astronomy.
    <BLANKLINE>
    Sun?
    A. star
    B. moon
    Answer:
    """
    if n_shots < 0:
        msg = f"mmlu_prompts: `n_shots` must be >= 0, got {n_shots}."
        raise CascadeInputError(msg)
    if n_shots > 0 and exemplars is None:
        msg = f"mmlu_prompts: n_shots={n_shots} needs `exemplars` (subject -> labelled ChoiceItems)."
        raise CascadeInputError(msg)
    prefix_of: dict[str, str] = {}
    prefixes: list[str] = []
    suffixes: list[str] = []
    for subject, question, choices in zip(items.subjects, items.questions, items.choices, strict=True):
        if subject not in prefix_of:
            prefix = mmlu_header(subject)
            if n_shots > 0:
                assert exemplars is not None
                shots = exemplars.get(subject)
                if shots is None or len(shots) < n_shots:
                    have = 0 if shots is None else len(shots)
                    msg = f"mmlu_prompts: subject {subject!r} has {have} exemplars, n_shots={n_shots} needs more."
                    raise CascadeInputError(msg)
                answers = shots.require_answers("mmlu_prompts exemplars")
                for j in range(n_shots):
                    prefix += format_example(shots.questions[j], shots.choices[j], int(answers[j]))
            prefix_of[subject] = prefix
        prefixes.append(prefix_of[subject])
        suffixes.append(format_example(question, choices))
    return prefixes, suffixes
