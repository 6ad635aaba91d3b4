"""The 10-line recipe of docs/routing.md runs as written on a long-form DataFrame of logged outcomes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import cascadekit as ck

pd = pytest.importorskip("pandas")
DOC = Path(__file__).resolve().parents[1] / "docs" / "routing.md"


def _logged_outcomes(seed: int = 0) -> pd.DataFrame:
    """Three models on 3,000 items in 5 subjects; the dear model is better, most of all on hard subjects."""
    rng = np.random.default_rng(seed)
    subjects = rng.choice(["law", "math", "history", "biology", "physics"], size=3000)
    hard = np.isin(subjects, ["law", "math"])
    skill = {"small": np.where(hard, 0.3, 0.75), "mid": np.where(hard, 0.5, 0.8), "large": np.where(hard, 0.8, 0.85)}
    price = {"small": 1.0, "mid": 3.0, "large": 9.0}
    rows = [
        pd.DataFrame(
            {
                "item": np.arange(3000),
                "model": m,
                "correct": (rng.random(3000) < skill[m]).astype(int),
                "cost": price[m] * rng.uniform(0.8, 1.2, 3000),
                "subject": subjects,
            }
        )
        for m in skill
    ]
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed)


def test_recipe_runs_as_documented(capsys: pytest.CaptureFixture[str]) -> None:
    block = re.search(r"## Recipe.*?```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block is not None, "docs/routing.md lost its recipe block"
    code = block.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    scope: dict[str, object] = {"df": _logged_outcomes()}
    exec(compile(code, str(DOC), "exec"), scope)
    policy = scope["policy"]
    test = scope["test"]
    assert isinstance(policy, ck.RouterPolicy)
    assert policy.certified_
    out = capsys.readouterr().out
    assert "TierBreakdown(" in out
    assert "RouterPolicy:" in out
    b = policy.evaluate(test, scope["router"].predict({"groups": test.groups}))  # type: ignore[attr-defined]
    accuracy = (b.n_answered - b.n_wrong) / b.n_items
    assert accuracy >= 0.7
    assert b.calls[0] > 0, "the small model answers the easy subjects"
    assert b.calls[2] > 0, "the large model answers the hard ones"
