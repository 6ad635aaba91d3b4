"""MMLU loading, the documented recording sample, and the recordings shipped with the package."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from cascadekit.exceptions import CascadeInputError
from cascadekit.items import ChoiceItems
from cascadekit.prompts import LETTERS

__all__ = [
    "MMLU_CATEGORIES",
    "SHIPPED_RECORDINGS",
    "Recording",
    "load_mmlu",
    "load_mmlu_pro_texts",
    "load_recording",
    "load_shipped_items",
    "mmlu_category",
    "mmlu_exemplars",
    "recording_sample",
    "stratified_sample",
]

MMLU_SPLITS = ("dev", "val", "test")
#: Names of the recordings shipped in ``cascadekit/_data`` (see ``docs/recordings.md``).
SHIPPED_RECORDINGS = ("qwen2.5-1.5b", "smollm2-135m")

#: The four MMLU categories and their subjects, as grouped by the dataset's authors (Hendrycks et
#: al., ``categories.py`` of the MMLU repository, MIT): subjects map to subcategories, which map to
#: STEM, humanities, social sciences and other (business, health, miscellaneous).
MMLU_CATEGORIES: dict[str, tuple[str, ...]] = {
    "stem": (
        "abstract_algebra", "astronomy", "college_biology", "college_chemistry", "college_computer_science",
        "college_mathematics", "college_physics", "computer_security", "conceptual_physics",
        "electrical_engineering", "elementary_mathematics", "high_school_biology", "high_school_chemistry",
        "high_school_computer_science", "high_school_mathematics", "high_school_physics",
        "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions",
    ),
    "social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology", "human_sexuality",
        "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    ),
    "other": (
        "anatomy", "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology",
    ),
}  # fmt: skip
_CATEGORY_OF = {subject: cat for cat, subjects in MMLU_CATEGORIES.items() for subject in subjects}


def mmlu_category(subject: str) -> str:
    """The MMLU category (``"stem"``, ``"humanities"``, ``"social_sciences"``, ``"other"``) of a subject.

    Coarse groups for per-group calibration (:class:`~cascadekit.MondrianCalibrator`), where the 57
    subjects are too small to calibrate one by one.

    Examples
    --------
    >>> mmlu_category("college_physics"), mmlu_category("professional_law")
    ('stem', 'humanities')
    """
    if subject not in _CATEGORY_OF:
        msg = f"mmlu_category: unknown MMLU subject {subject!r}; the 57 subjects are listed in MMLU_CATEGORIES."
        raise CascadeInputError(msg)
    return _CATEGORY_OF[subject]


def _read_mmlu_csv(path: Path, split: str, subject: str) -> tuple[list[str], list[str], list[list[str]], list[int]]:
    ids, questions, choices, answers = [], [], [], []
    with path.open(newline="", encoding="utf-8") as fh:
        for row_no, row in enumerate(csv.reader(fh)):
            if len(row) != 6:
                msg = f"load_mmlu: {path} row {row_no} has {len(row)} fields, expected 6 (question,A,B,C,D,answer)."
                raise CascadeInputError(msg)
            letter = row[5].strip()
            if letter not in LETTERS[:4]:
                msg = f"load_mmlu: {path} row {row_no} has answer {letter!r}, expected one of A, B, C, D."
                raise CascadeInputError(msg)
            ids.append(f"{split}/{subject}/{row_no}")
            questions.append(row[0])
            choices.append(row[1:5])
            answers.append(LETTERS.index(letter))
    return ids, questions, choices, answers


def load_mmlu(root: str | Path, split: str, subjects: Sequence[str] | None = None) -> ChoiceItems:
    """Load one MMLU split from the original headerless CSV files.

    Parameters
    ----------
    root : path
        Folder holding ``dev/``, ``val/`` and ``test/`` with ``<subject>_<split>.csv`` files.
    split : {"dev", "val", "test"}
        Which split to read.
    subjects : sequence of str, optional
        Subjects to load (default: all found), in sorted order.

    Returns
    -------
    ChoiceItems
        Items with ids ``"<split>/<subject>/<row>"`` (row is 0-based in the CSV file), sorted by
        subject then row.
    """
    if split not in MMLU_SPLITS:
        msg = f"load_mmlu: `split` must be one of {MMLU_SPLITS}, got {split!r}."
        raise CascadeInputError(msg)
    folder = Path(root) / split
    if not folder.is_dir():
        msg = f"load_mmlu: no folder {folder} (expected MMLU CSVs under `root`/{split}/)."
        raise CascadeInputError(msg)
    suffix = f"_{split}.csv"
    found = {p.name[: -len(suffix)]: p for p in folder.glob(f"*{suffix}")}
    wanted = sorted(found) if subjects is None else sorted(subjects)
    missing = [s for s in wanted if s not in found]
    if missing:
        msg = f"load_mmlu: unknown subjects {missing[:5]} for split {split!r} in {folder}."
        raise CascadeInputError(msg)
    ids: list[str] = []
    subj: list[str] = []
    questions: list[str] = []
    choices: list[list[str]] = []
    answers: list[int] = []
    for s in wanted:
        i, q, c, a = _read_mmlu_csv(found[s], split, s)
        ids += i
        subj += [s] * len(i)
        questions += q
        choices += c
        answers += a
    return ChoiceItems(ids, subj, questions, choices, torch.tensor(answers, dtype=torch.int64))


def mmlu_exemplars(dev: ChoiceItems) -> dict[str, ChoiceItems]:
    """Group labelled items (MMLU ``dev``) by subject, keeping their order: few-shot exemplars."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(dev.subjects):
        out.setdefault(s, []).append(i)
    return {s: dev.take(idx) for s, idx in out.items()}


def stratified_sample(items: ChoiceItems, n: int, seed: int) -> ChoiceItems:
    """Draw ``n`` items without replacement, stratified by subject.

    Each subject gets ``n * size / total`` items rounded down, and the remaining slots go to the
    subjects with the largest fractional remainders (ties: alphabetical). Within a subject the
    rows are drawn by ``numpy.random.default_rng(seed)``, visiting subjects in sorted order. The
    result is sorted by subject then row. Deterministic for a given ``(items, n, seed)``.
    """
    if not 0 <= n <= len(items):
        msg = f"stratified_sample: `n` must be in [0, {len(items)}], got {n}."
        raise CascadeInputError(msg)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(items.subjects):
        groups.setdefault(s, []).append(i)
    subjects = sorted(groups)
    total = len(items)
    exact = {s: n * len(groups[s]) / total for s in subjects}
    quota = {s: int(exact[s]) for s in subjects}
    left = n - sum(quota.values())
    by_remainder = sorted(subjects, key=lambda s: (-(exact[s] - quota[s]), s))
    for s in by_remainder[:left]:
        quota[s] += 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for s in subjects:
        rows = groups[s]
        pick = np.sort(rng.choice(len(rows), size=quota[s], replace=False))
        chosen += [rows[int(j)] for j in pick]
    return items.take(chosen)


#: The documented test sample of the shipped recordings: size and seed of ``stratified_sample``.
RECORDING_TEST_SAMPLE = 3000
RECORDING_SEED = 20261122


def recording_sample(root: str | Path) -> ChoiceItems:
    """The items of the shipped recordings: all of MMLU dev and val, plus a stratified test sample.

    The test sample is ``stratified_sample(load_mmlu(root, "test"), 3000, seed=20261122)``.
    """
    parts = [
        load_mmlu(root, "dev"),
        load_mmlu(root, "val"),
        stratified_sample(load_mmlu(root, "test"), RECORDING_TEST_SAMPLE, RECORDING_SEED),
    ]
    return _concat(parts)


def _concat(parts: Sequence[ChoiceItems]) -> ChoiceItems:
    answers = [p.answers for p in parts]
    has_all = all(a is not None for a in answers)
    return ChoiceItems(
        ids=[i for p in parts for i in p.ids],
        subjects=[s for p in parts for s in p.subjects],
        questions=[q for p in parts for q in p.questions],
        choices=[c for p in parts for c in p.choices],
        answers=torch.cat([a for a in answers if a is not None]) if has_all else None,
    )


# --------------------------------------------------------------------------- shipped data


@dataclass(frozen=True)
class Recording:
    """Option log-probs of one model over a set of items, recorded once and replayed.

    Attributes
    ----------
    model : str
        Which model produced it (hub id or file name) and how (dtype, shots).
    ids : tuple of str, length n
    log_probs : torch.Tensor, shape (n, k), float32
        Log-softmax over the k option letters at the answer position (stored as float16 and
        renormalised on loading).
    n_tokens : torch.Tensor, shape (n,), int64
        Prompt length in tokens.
    seconds : torch.Tensor, shape (n,), float32
        Wall time attributed to the item (its batch's time shared evenly).
    meta : dict
        Recording settings (model, dtype, shots, batch size, machine).
    """

    model: str
    ids: tuple[str, ...]
    log_probs: torch.Tensor
    n_tokens: torch.Tensor
    seconds: torch.Tensor
    meta: dict[str, object]


def _data_file(name: str) -> Path:
    return Path(str(resources.files("cascadekit") / "_data" / name))


def load_mmlu_pro_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """Item ids and texts of the MMLU-Pro questions (``questions.jsonl.gz``), in file order.

    The ids match :meth:`cascadekit.outcomes.Outcomes.from_mmlu_pro`; each text is the category,
    the question and its lettered options, for embedding routers.

    Parameters
    ----------
    path : str or path
        The MMLU-Pro folder.

    Returns
    -------
    ids, texts : list of str
    """
    file = Path(path) / "questions.jsonl.gz"
    if not file.is_file():
        msg = f"load_mmlu_pro_texts: no file {str(file)!r} (see the MMLU-Pro README)."
        raise CascadeInputError(msg)
    ids, texts = [], []
    with gzip.open(file, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            q = json.loads(line)
            options = "\n".join(f"{chr(65 + k)}. {o}" for k, o in enumerate(q["options"]))
            ids.append(str(q["question_id"]))
            texts.append(f"{q['category']}: {q['question']}\n{options}")
    return ids, texts


def load_recording(name: str = "qwen2.5-1.5b") -> Recording:
    """Load a recording shipped with the package (see :data:`SHIPPED_RECORDINGS`) or from a ``.npz`` path.

    Examples
    --------
    >>> rec = load_recording("qwen2.5-1.5b")
    >>> rec.log_probs.shape[1]
    4
    """
    path = Path(name) if name.endswith(".npz") else _data_file(f"{name}.npz")
    if not path.is_file():
        msg = f"load_recording: no recording {name!r}; shipped ones are {SHIPPED_RECORDINGS}, or pass a .npz path."
        raise CascadeInputError(msg)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return Recording(
            model=str(meta["model"]),
            ids=tuple(str(i) for i in z["ids"]),
            # stored as float16; renormalise so each row is an exact float32 log-softmax again
            log_probs=torch.log_softmax(torch.from_numpy(z["log_probs"].astype(np.float32)), dim=1),
            n_tokens=torch.from_numpy(z["n_tokens"].astype(np.int64)),
            seconds=torch.from_numpy(z["seconds"].astype(np.float32)),
            meta=meta,
        )


def load_shipped_items() -> ChoiceItems:
    """Load the MMLU items (MIT licence, Hendrycks et al.) that the shipped recordings refer to."""
    with gzip.open(_data_file("mmlu_items.json.gz"), "rt", encoding="utf-8") as fh:
        cols = json.load(fh)
    return ChoiceItems(cols["ids"], cols["subjects"], cols["questions"], cols["choices"], torch.tensor(cols["answers"]))


def save_items(items: ChoiceItems, path: str | Path) -> None:
    """Write items as gzip-compressed column-wise JSON (the format of :func:`load_shipped_items`)."""
    answers = items.require_answers("save_items")
    cols = {
        "ids": list(items.ids),
        "subjects": list(items.subjects),
        "questions": list(items.questions),
        "choices": [list(c) for c in items.choices],
        "answers": answers.tolist(),
    }
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(cols, fh, ensure_ascii=False, separators=(",", ":"))
