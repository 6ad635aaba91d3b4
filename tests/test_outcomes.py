from __future__ import annotations

import csv
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cascadekit import CascadeInputError, ChoiceItems
from cascadekit.datasets import load_recording, load_shipped_items
from cascadekit.outcomes import Outcomes

pd = pytest.importorskip("pandas")

MMLU_PRO = [
    Path("/work/shared/data/mmlu-pro"),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu-pro",
]


def random_table(seed: int, n: int = 30, m: int = 4) -> Outcomes:
    g = torch.Generator().manual_seed(seed)
    available = torch.rand(n, m, generator=g) < 0.8
    correct = (torch.rand(n, m, generator=g) < 0.6) & available
    return Outcomes(
        item_ids=tuple(f"q{i}" for i in range(n)),
        models=tuple(f"m{j}" for j in range(m)),
        correct=correct,
        available=available,
        cost=torch.where(available, torch.rand(n, m, generator=g, dtype=torch.float64), torch.nan),
        n_tokens=torch.randint(1, 100, (n, m), generator=g),
        confidence=torch.rand(n, m, generator=g),
        groups=tuple("ab"[i % 2] for i in range(n)),
    )


# ---------------------------------------------------------------- construction and validation


def test_from_arrays_nan_means_missing_and_numpy_pandas_torch_agree() -> None:
    data = [[1, 0], [1, 1], [0, float("nan")]]
    from_list = Outcomes.from_arrays(data, ["small", "large"])
    assert from_list.item_ids == ("0", "1", "2")
    assert from_list.available.tolist() == [[True, True], [True, True], [True, False]]
    assert from_list.correct.tolist() == [[True, False], [True, True], [False, False]]
    for kind in (np.array(data), pd.DataFrame(data), torch.tensor(data)):
        o = Outcomes.from_arrays(kind, ["small", "large"])
        assert torch.equal(o.correct, from_list.correct)
        assert torch.equal(o.available, from_list.available)
    ints = Outcomes.from_arrays(np.array([[1, 0]]), ["a", "b"], ["x"], available=np.array([[True, False]]))
    assert ints.correct.tolist() == [[True, False]]
    assert ints.available.tolist() == [[True, False]]
    tokens = Outcomes.from_arrays(data, ["s", "l"], n_tokens=np.array([[1.0, 2], [3, 4], [5, np.nan]]))
    assert tokens.n_tokens is not None
    assert tokens.n_tokens.dtype == torch.int64
    assert tokens.n_tokens.tolist() == [[1, 2], [3, 4], [5, 0]]
    costs = Outcomes.from_arrays(data, ["s", "l"], cost=np.array([[1, 2], [3, 4], [5, 6]]))
    assert costs.cost is not None
    assert costs.cost.dtype == torch.float64


def test_nan_cost_allowed_only_where_unavailable() -> None:
    Outcomes.from_arrays([[1, float("nan")]], ["a", "b"], cost=[[1.0, float("nan")]])
    with pytest.raises(CascadeInputError, match="`cost` must be finite and >= 0 where available"):
        Outcomes.from_arrays([[1, 0]], ["a", "b"], cost=[[1.0, float("nan")]])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"models": ("m0", "m0", "m2", "m3")}, r"`models` must be unique; \['m0'\]"),
        ({"item_ids": ("q0",) * 30}, "`item_ids` must be unique"),
        ({"models": "m0m1"}, "`models` must be a sequence of str"),
        ({"correct": torch.zeros(30, 3, dtype=torch.bool)}, r"`correct` must be a bool tensor of shape \(30, 4\)"),
        ({"correct": torch.zeros(30, 4)}, "torch.float32"),
        ({"available": np.ones((30, 4), dtype=bool)}, "got ndarray"),
        ({"correct": torch.ones(30, 4, dtype=torch.bool)}, "where `available` is False"),
        ({"cost": -torch.ones(30, 4)}, r"`cost` must be finite and >= 0 where available; \d+ value\(s\) such as"),
        ({"cost": torch.full((30, 4), math.inf)}, "`cost` must be finite"),
        ({"cost": torch.ones(30, 4, dtype=torch.int64)}, "`cost` must be a floating tensor"),
        ({"n_tokens": -torch.ones(30, 4, dtype=torch.int64)}, "`n_tokens` must be >= 0"),
        ({"n_tokens": torch.ones(30, 4)}, "`n_tokens` must be an int64 tensor"),
        ({"confidence": torch.full((30, 4), math.nan)}, "`confidence` must be not NaN"),
        ({"groups": ("a",)}, "`groups` has length 1 but there are 30 items"),
    ],
)
def test_validation_errors(change, match) -> None:
    base = random_table(0)
    fields = {f: getattr(base, f) for f in ("item_ids", "models", "correct", "available", "cost", "n_tokens")}
    fields.update(confidence=base.confidence, groups=base.groups)
    fields.update(change)
    with pytest.raises(CascadeInputError, match=match):
        Outcomes(**fields)


def test_from_arrays_bad_input() -> None:
    with pytest.raises(CascadeInputError, match="0, 1 or NaN"):
        Outcomes.from_arrays([[0.5, 1.0]], ["a", "b"])
    with pytest.raises(CascadeInputError, match="0/1"):
        Outcomes.from_arrays([[2, 1]], ["a", "b"])
    with pytest.raises(CascadeInputError, match="whole numbers"):
        Outcomes.from_arrays([[1, 1]], ["a", "b"], n_tokens=[[1.5, 2.0]])
    with pytest.raises(CascadeInputError, match=r"shape \(1, 3\)"):
        Outcomes.from_arrays([[1, 1]], ["a", "b", "c"])


# ---------------------------------------------------------------- access, against naive loops


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_complete_take_select_match_naive(seed: int) -> None:
    o = random_table(seed)
    avail, right = o.available.tolist(), o.correct.tolist()
    for j in range(o.n_models):
        answered = [right[i][j] for i in range(o.n_items) if avail[i][j]]
        assert math.isclose(float(o.accuracy()[j]), sum(answered) / len(answered))
    full = [i for i in range(o.n_items) if all(avail[i])]
    done = o.complete()
    assert done.item_ids == tuple(o.item_ids[i] for i in full)
    assert bool(done.available.all())
    assert done.groups == tuple(o.groups[i] for i in full)  # type: ignore[index]
    rows = [3, 0, -1]
    t = o.take(np.array(rows))
    assert t.item_ids == tuple(o.item_ids[i] for i in rows)
    assert t.n_tokens.tolist() == [o.n_tokens[i].tolist() for i in rows]  # type: ignore[union-attr]
    mask = o.available[:, 0]
    assert o.take(mask).item_ids == tuple(i for i, a in zip(o.item_ids, mask.tolist(), strict=True) if a)
    assert len(o.take([])) == 0
    s = o.select(["m2", "m0"])
    assert s.models == ("m2", "m0")
    torch.testing.assert_close(s.cost, o.cost[:, [2, 0]], equal_nan=True)
    assert torch.equal(s.correct, o.correct[:, [2, 0]])
    assert o.select("m1").n_models == 1
    assert o.column("m3") == 3
    assert (o.n_items, o.n_models, len(o)) == (30, 4, 30)


def test_accuracy_nan_for_a_model_without_answers() -> None:
    o = Outcomes.from_arrays([[1, float("nan")], [0, float("nan")]], ["a", "b"])
    acc = o.accuracy()
    assert acc[0] == 0.5
    assert math.isnan(float(acc[1]))
    assert len(o.complete()) == 0


def test_unknown_model_and_bad_index() -> None:
    o = random_table(1)
    with pytest.raises(CascadeInputError, match=r"unknown model 'gpt'; the models are \['m0', 'm1', 'm2', 'm3'\]"):
        o.select(["m0", "gpt"])
    with pytest.raises(CascadeInputError, match="unknown model 'gpt'"):
        o.column("gpt")
    with pytest.raises(CascadeInputError, match=r"positions must lie in \[-30, 30\)"):
        o.take([30])
    with pytest.raises(CascadeInputError, match="bool mask must have length 30"):
        o.take([True, False])
    with pytest.raises(CascadeInputError, match="integer positions or bools"):
        o.take([0.5])
    with pytest.raises(CascadeInputError, match="`item_ids` must be unique"):  # ids stay unique: no repeats
        o.take([0, 0])


# ---------------------------------------------------------------- pandas constructors


def long_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": ["q2", "q2", "q1", "q3", "q1"],
            "model": ["big", "small", "small", "big", "big"],
            "correct": [1, 0, 1, 0, float("nan")],
            "p": [0.9, 0.4, 0.8, 0.3, 0.5],
            "price": [10.0, 1.0, 1.0, 10.0, 10.0],
            "tok": [5, 6, 7, 8, 9],
            "subject": ["x", "x", "y", "z", "y"],
        }
    )


def test_from_long_orders_by_first_appearance_and_marks_missing() -> None:
    o = Outcomes.from_long(long_frame(), confidence="p", cost="price", tokens="tok", group="subject")
    assert o.item_ids == ("q2", "q1", "q3")
    assert o.models == ("big", "small")
    assert o.groups == ("x", "y", "z")
    # q1/big has correct NaN, q3/small has no row: both missing
    assert o.available.tolist() == [[True, True], [False, True], [True, False]]
    assert o.correct.tolist() == [[True, False], [False, True], [False, False]]
    assert o.n_tokens.tolist()[0] == [5, 6]  # type: ignore[union-attr]
    assert o.confidence[0].tolist() == pytest.approx([0.9, 0.4])  # type: ignore[index]
    bools = long_frame().iloc[:4].assign(correct=[True, False, True, False])
    assert Outcomes.from_long(bools).correct.tolist() == [[True, False], [False, True], [False, False]]


def test_from_long_errors() -> None:
    df = long_frame()
    with pytest.raises(CascadeInputError, match=r"no column 'answer' in the DataFrame; its columns are \['item'"):
        Outcomes.from_long(df, correct="answer")
    dup = pd.concat([df, df.iloc[[0]]])
    with pytest.raises(CascadeInputError, match="item 'q2' and model 'big' appear in more than one row"):
        Outcomes.from_long(dup)
    with pytest.raises(CascadeInputError, match="item 'q2' has more than one value in column 'subject'"):
        Outcomes.from_long(df.assign(subject=["x", "w", "y", "z", "y"]), group="subject")
    with pytest.raises(CascadeInputError, match="column 'correct' must hold numbers"):
        Outcomes.from_long(df.assign(correct=["yes", "no", "yes", "no", "no"]))
    with pytest.raises(CascadeInputError, match="must not hold missing values"):
        Outcomes.from_long(df.assign(item=["q1", None, "q2", "q3", "q4"]))


def test_from_wide_matches_from_long() -> None:
    wide = pd.DataFrame(
        {
            "id": ["q2", "q1", "q3"],
            "big": [1, np.nan, 0],
            "small": [0, 1, np.nan],
            "big_p": [10.0, np.nan, 10.0],
            "small_p": [1.0, 1.0, np.nan],
            "subject": ["x", "y", "z"],
        }
    )
    o = Outcomes.from_wide(wide, ["big", "small"], "id", cost=["big_p", "small_p"], group="subject")
    ref = Outcomes.from_long(long_frame(), cost="price", group="subject")
    assert (o.item_ids, o.models, o.groups) == (ref.item_ids, ref.models, ref.groups)
    assert torch.equal(o.available, ref.available)
    assert torch.equal(o.correct, ref.correct)
    torch.testing.assert_close(o.cost[o.available], ref.cost[ref.available])  # type: ignore[index]
    assert Outcomes.from_wide(wide.set_index("id"), ["big", "small"]).item_ids == ("q2", "q1", "q3")
    with pytest.raises(CascadeInputError, match="`cost` must name 2 columns"):
        Outcomes.from_wide(wide, ["big", "small"], "id", cost=["big_p"])
    with pytest.raises(CascadeInputError, match="no column 'huge'"):
        Outcomes.from_wide(wide, ["big", "huge"], "id")


# ---------------------------------------------------------------- recordings


def test_from_recordings_matches_per_item_loop() -> None:
    items = load_shipped_items().take(list(range(0, 4816, 97)))
    names = ["smollm2-135m", "qwen2.5-1.5b"]
    o = Outcomes.from_recordings(names, items)
    assert o.models == tuple(names)
    assert o.item_ids == items.ids
    assert o.groups == items.subjects
    assert bool(o.available.all())
    for j, name in enumerate(names):
        rec = load_recording(name)
        row_of = {item_id: r for r, item_id in enumerate(rec.ids)}
        for i, item_id in enumerate(items.ids):
            lp = rec.log_probs[row_of[item_id]].tolist()
            best = max(range(len(lp)), key=lp.__getitem__)
            assert bool(o.correct[i, j]) == (best == int(items.answers[i]))  # type: ignore[index]
            assert float(o.confidence[i, j]) == pytest.approx(math.exp(max(lp)), rel=1e-5)  # type: ignore[index]
            assert int(o.n_tokens[i, j]) == int(rec.n_tokens[row_of[item_id]])  # type: ignore[index]
            assert float(o.cost[i, j]) == float(rec.seconds[row_of[item_id]])  # type: ignore[index]
    by_object = Outcomes.from_recordings([load_recording("smollm2-135m")], items)
    assert by_object.models == (load_recording("smollm2-135m").model,)


def test_from_recordings_errors() -> None:
    foreign = ChoiceItems(["nowhere/1"], ["astronomy"], ["?"], [["a", "b", "c", "d"]], torch.tensor([0]))
    with pytest.raises(CascadeInputError, match=r"recording 'smollm2-135m' lacks 1 of 1 items, e.g. \['nowhere/1'\]"):
        Outcomes.from_recordings(["smollm2-135m"], foreign)
    unlabelled = ChoiceItems(["x"], ["astronomy"], ["?"], [["a", "b", "c", "d"]])
    with pytest.raises(CascadeInputError, match="needs labelled items"):
        Outcomes.from_recordings(["smollm2-135m"], unlabelled)
    with pytest.raises(CascadeInputError, match="non-empty sequence"):
        Outcomes.from_recordings("smollm2-135m", load_shipped_items().take([0]))  # type: ignore[arg-type]
    with pytest.raises(CascadeInputError, match="`models` must be unique"):
        Outcomes.from_recordings(["smollm2-135m", "smollm2-135m"], load_shipped_items().take([0]))


# ---------------------------------------------------------------- MMLU-Pro


def write_mmlu_pro(folder: Path, outcome_rows: list[tuple[int, str, int, int, int]]) -> None:
    folder.mkdir(exist_ok=True)
    questions = [
        {"question_id": 7, "question": "abcd", "options": ["x", "yy"], "answer_index": 0, "category": "law", "src": ""},
        {"question_id": 3, "question": "ab", "options": ["x"], "answer_index": 0, "category": "math", "src": "s"},
    ]
    with gzip.open(folder / "questions.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(q) + "\n" for q in questions)
    with gzip.open(folder / "outcomes.csv.gz", "wt", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["question_id", "model", "pred_index", "correct", "output_chars"])
        w.writerows(outcome_rows)
    (folder / "models.csv").write_text(
        "model,items,accuracy,no_answer_extracted,active_params_b\nsmall,2,0.5,0,2\nbig,2,1,0,8\nsecret,1,1,0,\n"
    )


ROWS = [(7, "small", 0, 1, 8), (3, "small", 1, 0, 4), (7, "big", 0, 1, 12), (3, "secret", 0, 1, 40)]


def test_from_mmlu_pro_synthetic(tmp_path: Path) -> None:
    write_mmlu_pro(tmp_path, ROWS)
    o = Outcomes.from_mmlu_pro(tmp_path)
    assert o.item_ids == ("7", "3")
    assert o.models == ("small", "big")  # "secret" has no parameter count: left out
    assert o.groups == ("law", "math")
    assert o.available.tolist() == [[True, True], [True, False]]
    assert o.correct.tolist() == [[True, True], [False, False]]
    prompt = {7: 4 + 1 + 2, 3: 2 + 1}
    params = {"small": 2.0, "big": 8.0}
    for qid, model, _, _, chars in ROWS[:3]:
        i, j = o.item_ids.index(str(qid)), o.column(model)
        assert float(o.cost[i, j]) == params[model] * (prompt[qid] + chars) / 4  # type: ignore[index]
    everything = Outcomes.from_mmlu_pro(tmp_path, costed_only=False)
    assert everything.models == ("small", "big", "secret")
    assert everything.cost is None
    assert everything.available[:, 2].tolist() == [False, True]


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([*ROWS, (7, "small", 0, 0, 1)], "more than one row"),
        ([*ROWS, (7, "nobody", 0, 0, 1)], r"models \['nobody'\]"),
        ([*ROWS, (99, "small", 0, 0, 1)], "1 unknown question id"),
        ([*ROWS, (3, "big", 0, "x", 1)], "not a number"),
    ],
)
def test_from_mmlu_pro_bad_files(tmp_path: Path, rows, match) -> None:
    write_mmlu_pro(tmp_path, rows)
    with pytest.raises(CascadeInputError, match=match):
        Outcomes.from_mmlu_pro(tmp_path)


def test_from_mmlu_pro_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CascadeInputError, match="missing file"):
        Outcomes.from_mmlu_pro(tmp_path)


def test_from_mmlu_pro_real_data() -> None:
    folder = next((p for p in MMLU_PRO if p.is_dir()), None)
    if folder is None:
        pytest.skip("MMLU-Pro data folder not present")
    start = time.perf_counter()
    o = Outcomes.from_mmlu_pro(folder)
    assert time.perf_counter() - start < 60  # a few seconds normally; generous for slow CI machines
    with (folder / "models.csv").open() as fh:
        table = list(csv.DictReader(fh))
    costed = [r for r in table if r["active_params_b"].strip()]
    assert o.n_items == 12032
    assert o.models == tuple(r["model"] for r in costed)
    assert o.available.sum(dim=0).tolist() == [int(r["items"]) for r in costed]
    np.testing.assert_allclose(o.accuracy().numpy(), [float(r["accuracy"]) for r in costed], atol=6e-4)
    assert o.cost is not None
    assert bool((o.cost[o.available] > 0).all())
    assert len(set(o.groups or ())) == 14
    everything = Outcomes.from_mmlu_pro(folder, costed_only=False)
    assert everything.n_models == len(table) == 29
    assert everything.cost is None
