"""Pre-inference routers: the contract, naive reference implementations, masking, and error messages."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from cascadekit.exceptions import CascadeInputError, NotFittedError
from cascadekit.outcomes import Outcomes
from cascadekit.protocols import Router
from cascadekit.routers import (
    ClassifierRouter,
    GroupKNNRouter,
    GroupKNNRouterCV,
    GroupPriorRouter,
    KNNRouter,
    MatrixFactorizationRouter,
    hybrid,
    knn,
)
from cascadekit.routers._base import BaseRouter
from cascadekit.testing import check_router
from cascadekit.tradeoff import aiq


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensors: one thread is faster than waking a second one (and steadier on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def problem(
    n: int = 60, m: int = 3, d: int = 4, seed: int = 0, missing: float = 0.25
) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    """Embeddings (n, d) float64, group labels, correctness (n, m) and availability (n, m)."""
    g = torch.Generator().manual_seed(seed)
    embedding = torch.randn(n, d, generator=g, dtype=torch.float64)
    groups = [f"g{int(c)}" for c in torch.randint(0, 4, (n,), generator=g)]
    correct = torch.rand(n, m, generator=g) < torch.sigmoid(2 * embedding[:, :m])
    available = torch.rand(n, m, generator=g) >= missing
    available[0] = True  # every model has outcomes
    return embedding, groups, correct, available


ALL_ROUTERS = [
    GroupPriorRouter(),
    GroupPriorRouter(prior_strength=0.0),
    KNNRouter(),
    KNNRouter(k=5, bandwidth=0.1),
    MatrixFactorizationRouter(),
    ClassifierRouter(),
    ClassifierRouter(hidden=16),
]


@pytest.mark.parametrize("router", ALL_ROUTERS, ids=repr)
def test_contract(router: Router) -> None:
    check_router(router)


class ConstantRouter(BaseRouter):
    """Ignores its context: each model's training accuracy for every item."""

    requires = frozenset({"embedding"})

    def _check_params(self) -> None:
        pass

    def _fit(self, correct: torch.Tensor, available: torch.Tensor, context: dict[str, Any]) -> None:
        pass

    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        return self.global_accuracy_.expand(n, -1).clone()


class Float32Router(ConstantRouter):
    def _predict(self, context: dict[str, Any], n: int) -> torch.Tensor:
        return super()._predict(context, n).float()


def test_check_router_fails_a_router_that_ignores_its_context() -> None:
    with pytest.raises(AssertionError, match="Brier score"):
        check_router(ConstantRouter())
    with pytest.raises(AssertionError, match="must return float64"):
        check_router(Float32Router())


# ---------------------------------------------------------------- GroupPriorRouter


def reference_group_prior(
    correct: torch.Tensor, available: torch.Tensor, groups: list[str], new: list[str], strength: float
) -> torch.Tensor:
    n, m = correct.shape
    acc = []
    for j in range(m):
        outcomes = [bool(correct[i, j]) for i in range(n) if available[i, j]]
        acc.append(sum(outcomes) / len(outcomes))
    right: dict[tuple[str, int], int] = {}
    count: dict[tuple[str, int], int] = {}
    for i, g in enumerate(groups):
        for j in range(m):
            if available[i, j]:
                right[g, j] = right.get((g, j), 0) + int(correct[i, j])
                count[g, j] = count.get((g, j), 0) + 1
    rows = []
    for g in new:
        row = []
        for j in range(m):
            c = count.get((g, j), 0)
            row.append(acc[j] if c + strength == 0 else (right.get((g, j), 0) + strength * acc[j]) / (c + strength))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("strength", [0.0, 3.0])
def test_group_prior_matches_a_dict_loop(strength: float) -> None:
    _, groups, correct, available = problem(n=80, seed=1)
    groups[:3] = ["lonely"] * 3
    available[:3, 1] = False
    available[0, 1] = True
    correct[1:3, 1] = True  # hidden: must not count
    new = ["g0", "lonely", "g3", "unseen", "g1", "lonely"]
    router = GroupPriorRouter(prior_strength=strength).fit(correct, {"groups": groups}, available)
    torch.testing.assert_close(
        router.predict({"groups": new}), reference_group_prior(correct & available, available, groups, new, strength)
    )


def test_group_prior_unseen_group_gets_global_accuracy_of_available_outcomes() -> None:
    correct = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]])
    available = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 1]], dtype=torch.bool)
    router = GroupPriorRouter(prior_strength=0.0).fit(correct, {"groups": ["a", "a", "b", "b"]}, available)
    expected = torch.tensor([[0.5, 2 / 3]], dtype=torch.float64).expand(2, 2)
    torch.testing.assert_close(router.predict({"groups": ["c", "zzz"]}), expected)
    torch.testing.assert_close(router.global_accuracy_, expected[0])
    # group "b", model 1: its only outcome is 1 right (the other is unavailable, not wrong)
    assert router.predict({"groups": ["b"]})[0, 1].item() == 1.0


def test_group_prior_accepts_numpy_and_pandas_labels() -> None:
    pd = pytest.importorskip("pandas")
    _, groups, correct, _ = problem(n=40, seed=2)
    by_list = GroupPriorRouter().fit(correct, {"groups": groups}).predict({"groups": groups})
    by_numpy = GroupPriorRouter().fit(correct.numpy(), {"groups": np.array(groups)})
    by_pandas = GroupPriorRouter().fit(correct, {"groups": pd.Series(groups)})
    torch.testing.assert_close(by_numpy.predict({"groups": np.array(groups)}), by_list)
    torch.testing.assert_close(by_pandas.predict({"groups": pd.Series(groups, dtype="string")}), by_list)
    assert by_list[:, 0].unique().numel() > 1  # the groups differ, so the check above is not trivial


# ---------------------------------------------------------------- KNNRouter


def reference_knn(
    bank: np.ndarray,
    correct: np.ndarray,
    available: np.ndarray,
    queries: np.ndarray,
    k: int,
    bandwidth: float | None,
) -> torch.Tensor:
    n, m = correct.shape
    acc = [correct[available[:, j], j].mean() for j in range(m)]
    rows = []
    for q in queries:
        sims = [float(q @ b / (np.linalg.norm(q) * np.linalg.norm(b))) for b in bank]
        nearest = sorted(range(n), key=lambda t: -sims[t])[:k]
        row = []
        for j in range(m):
            weights = {t: 1.0 if bandwidth is None else math.exp(sims[t] / bandwidth) for t in nearest}
            used = [t for t in nearest if available[t, j]]
            total = sum(weights[t] for t in used)
            row.append(acc[j] if total == 0 else sum(weights[t] * correct[t, j] for t in used) / total)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(("k", "bandwidth"), [(1, None), (5, None), (7, 0.2), (500, 0.5)])
def test_knn_matches_a_per_item_loop(k: int, bandwidth: float | None) -> None:
    embedding, _, correct, available = problem(n=50, seed=3, missing=0.4)
    queries = torch.randn(12, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    router = KNNRouter(k=k, bandwidth=bandwidth).fit(correct, {"embedding": embedding}, available)
    expected = reference_knn(
        embedding.numpy(), (correct & available).numpy(), available.numpy(), queries.numpy(), k, bandwidth
    )
    torch.testing.assert_close(router.predict({"embedding": queries}), expected)


def test_knn_falls_back_to_global_accuracy_when_no_neighbour_has_an_outcome() -> None:
    embedding = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    correct = torch.tensor([[1, 1], [1, 1], [0, 0], [0, 1]])
    available = torch.tensor([[1, 0], [1, 0], [1, 1], [1, 1]], dtype=torch.bool)
    for bandwidth in (None, 0.01):
        router = KNNRouter(k=2, bandwidth=bandwidth).fit(correct, {"embedding": embedding}, available)
        p = router.predict({"embedding": torch.tensor([[1.0, 0.0]])})
        torch.testing.assert_close(p, torch.tensor([[1.0, 0.5]], dtype=torch.float64))


def test_knn_tiny_bandwidth_uses_the_nearest_available_neighbour() -> None:
    embedding = torch.tensor([[1.0, 0.0], [0.8, 0.2], [0.6, 0.4]], dtype=torch.float64)
    correct = torch.tensor([[0], [1], [0]])
    available = torch.tensor([[False], [True], [True]])
    router = KNNRouter(k=3, bandwidth=1e-4).fit(correct, {"embedding": embedding}, available)
    # the nearest item has no outcome; exp(sim / 1e-4) would underflow without the shift by the max
    assert router.predict({"embedding": torch.tensor([[1.0, 0.0]])}).item() == pytest.approx(1.0)


def test_knn_chunks_give_the_same_predictions(monkeypatch: pytest.MonkeyPatch) -> None:
    embedding, _, correct, available = problem(n=40, seed=5)
    queries = torch.randn(23, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    router = KNNRouter(k=6, bandwidth=0.3).fit(correct, {"embedding": embedding}, available)
    whole = router.predict({"embedding": queries})
    monkeypatch.setattr(knn, "_MAX_ENTRIES", 3 * 40)  # 3 rows per chunk, the last one short
    torch.testing.assert_close(router.predict({"embedding": queries}), whole, atol=1e-12, rtol=0)


def test_knn_float32_embeddings_agree_with_float64() -> None:
    embedding, _, correct, available = problem(n=50, seed=7)
    queries = torch.randn(10, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    wide = KNNRouter(k=5, bandwidth=0.2).fit(correct, {"embedding": embedding}, available)
    narrow = KNNRouter(k=5, bandwidth=0.2).fit(correct, {"embedding": embedding.float()}, available)
    assert narrow.bank_.dtype == torch.float32
    torch.testing.assert_close(
        narrow.predict({"embedding": queries.float()}), wide.predict({"embedding": queries}), atol=1e-5, rtol=0
    )


# ---------------------------------------------------------------- MatrixFactorizationRouter


def test_matrix_factorization_predicts_its_formula_and_reports_the_masked_loss() -> None:
    embedding, _, correct, available = problem(n=60, seed=9)
    router = MatrixFactorizationRouter(dim=3, epochs=150, lr=0.05).fit(correct, {"embedding": embedding}, available)
    p = router.predict({"embedding": embedding})
    w, v, b = router.projection_.double(), router.model_vectors_.double(), router.model_bias_.double()
    mean, scale = embedding.mean(0), embedding.std(0, correction=0)
    loss, count = 0.0, 0
    for i in range(60):
        projected = w @ ((embedding[i] - mean) / scale)
        for j in range(3):
            expected = 1 / (1 + math.exp(-(float(projected @ v[j]) + float(b[j]))))
            assert p[i, j].item() == pytest.approx(expected, abs=1e-5)
            if available[i, j]:
                y = float(correct[i, j])
                loss -= y * math.log(expected) + (1 - y) * math.log(1 - expected)
                count += 1
    assert router.training_loss_ == pytest.approx(loss / count, abs=1e-5)
    # it learned something: a lower training loss than predicting each model's accuracy
    acc, y, a = router.global_accuracy_, (correct & available).double(), available.double()
    constant = -(y * acc.log() + (1 - y) * (1 - acc).log()) * a
    assert router.training_loss_ < float(constant.sum() / a.sum()) - 0.05


def test_matrix_factorization_seed_matters() -> None:
    embedding, _, correct, _ = problem(n=60, seed=10)
    a = MatrixFactorizationRouter(dim=3, epochs=20, seed=0).fit(correct, {"embedding": embedding})
    b = MatrixFactorizationRouter(dim=3, epochs=20, seed=1).fit(correct, {"embedding": embedding})
    assert not torch.equal(a.predict({"embedding": embedding}), b.predict({"embedding": embedding}))


# ---------------------------------------------------------------- ClassifierRouter


def test_logistic_classifier_reaches_the_penalised_optimum() -> None:
    embedding, _, correct, available = problem(n=120, m=2, d=3, seed=11)
    decay = 1e-2
    router = ClassifierRouter(epochs=1500, lr=0.05, weight_decay=decay).fit(
        correct, {"embedding": embedding}, available
    )
    z = ((embedding - embedding.mean(0)) / embedding.std(0, correction=0)).numpy()
    y, a = correct.double().numpy(), available.double().numpy()

    def objective(theta: np.ndarray) -> float:
        w, b = theta[:6].reshape(2, 3), theta[6:]
        logits = z @ w.T + b
        bce = np.logaddexp(0, logits) - y * logits
        return float((bce * a).sum() / a.sum() + decay / 2 * (w**2).sum())

    best = minimize(objective, np.zeros(8), method="L-BFGS-B", options={"gtol": 1e-10, "ftol": 1e-14}).x
    expected = 1 / (1 + np.exp(-(z @ best[:6].reshape(2, 3).T + best[6:])))
    torch.testing.assert_close(router.predict({"embedding": embedding}), torch.from_numpy(expected), atol=2e-3, rtol=0)
    assert router.training_loss_ == pytest.approx(objective(best) - decay / 2 * (best[:6] ** 2).sum(), abs=1e-3)


def test_mlp_classifier_predicts_its_formula() -> None:
    embedding, _, correct, available = problem(n=50, seed=12)
    router = ClassifierRouter(hidden=5, epochs=30).fit(correct, {"embedding": embedding}, available)
    w1, b1, w2, b2 = (t.double() for t in router.weights_)
    z = (embedding - embedding.mean(0)) / embedding.std(0, correction=0)
    p = router.predict({"embedding": embedding})
    for i in range(50):
        hidden = [max(0.0, float(w1[h] @ z[i] + b1[h])) for h in range(5)]
        for j in range(3):
            logit = sum(float(w2[j, h]) * hidden[h] for h in range(5)) + float(b2[j])
            assert p[i, j].item() == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize(
    "router",
    [
        GroupPriorRouter(),
        GroupPriorRouter(prior_strength=0.0),
        KNNRouter(k=5),
        KNNRouter(k=5, bandwidth=0.1),
        MatrixFactorizationRouter(epochs=50, lr=0.05),
        ClassifierRouter(epochs=50),
        ClassifierRouter(hidden=8, epochs=50),
    ],
    ids=repr,
)
def test_unavailable_entries_are_ignored(router: BaseRouter) -> None:
    embedding, groups, correct, available = problem(n=60, seed=13, missing=0.3)
    context = {"embedding": embedding, "groups": groups}
    base = copy.deepcopy(router).fit(correct, context, available).predict(context)
    flipped = copy.deepcopy(router).fit(correct ^ ~available, context, available).predict(context)
    torch.testing.assert_close(flipped, base, atol=1e-6, rtol=0)
    # ...while flipping available entries does change the predictions
    changed = copy.deepcopy(router).fit(correct ^ available, context, available).predict(context)
    assert (changed - base).abs().max() > 0.05


def test_fit_outcomes_uses_the_table() -> None:
    embedding, groups, correct, available = problem(n=40, seed=14)
    outcomes = Outcomes.from_arrays(correct, models=["s", "m", "l"], available=available, groups=groups)
    router = GroupPriorRouter().fit_outcomes(outcomes)
    assert router.models_ == ("s", "m", "l")
    direct = GroupPriorRouter().fit(correct, {"groups": groups}, available)
    assert direct.models_ == ("0", "1", "2")
    torch.testing.assert_close(router.predict({"groups": groups}), direct.predict({"groups": groups}))
    other = ["x" if i % 2 else "y" for i in range(40)]
    overridden = GroupPriorRouter().fit_outcomes(outcomes, {"groups": other})
    assert overridden.groups_ == ("x", "y")
    knn_router = KNNRouter(k=3).fit_outcomes(outcomes, {"embedding": embedding})
    torch.testing.assert_close(
        knn_router.predict({"embedding": embedding}),
        KNNRouter(k=3).fit(correct, {"embedding": embedding}, available).predict({"embedding": embedding}),
    )
    with pytest.raises(CascadeInputError, match=r"GroupPriorRouter\.fit_outcomes: `outcomes` must be an Outcomes"):
        GroupPriorRouter().fit_outcomes(correct)  # type: ignore[arg-type]


def test_explain_names_the_settings() -> None:
    embedding, groups, correct, _ = problem(n=30, seed=15)
    text = str(KNNRouter(k=4, bandwidth=0.5).fit(correct, {"embedding": embedding}).explain())
    assert "k: 4" in text
    assert "exp(similarity / 0.5)" in text
    told = GroupPriorRouter(prior_strength=2.0).fit(correct, {"groups": groups}).explain().as_dict()
    assert told["details"]["prior_strength"] == 2.0
    assert told["details"]["n_groups"] == len(set(groups))
    with pytest.raises(NotFittedError, match=r"Call `ClassifierRouter\.fit"):
        ClassifierRouter().explain()


# ---------------------------------------------------------------- errors


def test_predict_before_fit_says_to_fit() -> None:
    with pytest.raises(NotFittedError, match=r"KNNRouter instance is not fitted yet\. Call `KNNRouter\.fit\("):
        KNNRouter().predict({"embedding": torch.zeros(2, 3)})


def test_bad_outcome_matrices() -> None:
    emb = {"embedding": torch.randn(4, 2)}
    with pytest.raises(
        CascadeInputError, match=r"KNNRouter\.fit: `correct` must be .* shape \(n, m\).*got shape \(4,\)"
    ):
        KNNRouter().fit(torch.ones(4, dtype=torch.bool), emb)
    with pytest.raises(CascadeInputError, match=r"`available` must have the shape of `correct`, \(4, 2\).*\(4, 3\)"):
        KNNRouter().fit(torch.ones(4, 2, dtype=torch.bool), emb, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(
        CascadeInputError, match=r"`correct` must be bool or 0/1 integer labels, got dtype torch\.float"
    ):
        KNNRouter().fit(torch.ones(4, 2), emb)
    with pytest.raises(CascadeInputError, match=r"model column\(s\) \[1\] have no available outcome"):
        KNNRouter().fit(torch.ones(4, 2, dtype=torch.bool), emb, torch.tensor([[1, 0]] * 4))


def test_context_length_must_match() -> None:
    correct = torch.ones(4, 2, dtype=torch.bool)
    with pytest.raises(
        CascadeInputError, match=r"KNNRouter\.fit: context\['embedding'\] has 3 rows but `correct` has 4"
    ):
        KNNRouter().fit(correct, {"embedding": torch.randn(3, 2)})
    with pytest.raises(CascadeInputError, match=r"GroupPriorRouter\.fit: context\['groups'\] has 5 rows but `correct`"):
        GroupPriorRouter().fit(correct, {"groups": list("abcde")})


def test_bad_embeddings() -> None:
    correct = torch.ones(3, 2, dtype=torch.bool)
    nan = torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [1.0, 0.0]])
    with pytest.raises(
        CascadeInputError, match=r"KNNRouter\.fit: context\['embedding'\] must be finite; it contains 1 NaN"
    ):
        KNNRouter().fit(correct, {"embedding": nan})
    with pytest.raises(
        CascadeInputError, match=r"must be a 2-D floating array .* got shape \(3, 2\) dtype torch\.int64"
    ):
        MatrixFactorizationRouter().fit(correct, {"embedding": torch.ones(3, 2, dtype=torch.int64)})
    with pytest.raises(CascadeInputError, match=r"must be a 2-D floating array .* got shape \(3,\)"):
        ClassifierRouter().fit(correct, {"embedding": torch.ones(3)})
    router = ClassifierRouter(epochs=1).fit(correct, {"embedding": torch.randn(3, 2)})
    with pytest.raises(
        CascadeInputError, match=r"ClassifierRouter\.predict: context\['embedding'\] has 5 columns .* 2-dim"
    ):
        router.predict({"embedding": torch.randn(1, 5)})
    with pytest.raises(CascadeInputError, match=r"ClassifierRouter\.predict: context\['embedding'\] must be finite"):
        router.predict({"embedding": torch.tensor([[float("inf"), 0.0]])})


def test_missing_key_names_router_key_and_given_keys() -> None:
    correct = torch.ones(3, 2, dtype=torch.bool)
    with pytest.raises(
        CascadeInputError,
        match=r"GroupPriorRouter\.fit: GroupPriorRouter needs context\['groups'\].*context has keys \['embedding'\]",
    ):
        GroupPriorRouter().fit(correct, {"embedding": torch.randn(3, 2)})
    router = KNNRouter().fit(correct, {"embedding": torch.randn(3, 2)})
    with pytest.raises(CascadeInputError, match=r"KNNRouter\.predict: KNNRouter needs context\['embedding'\].*\[\]"):
        router.predict({})
    with pytest.raises(CascadeInputError, match=r"KNNRouter\.predict: `context` must be a mapping .* got Tensor"):
        router.predict(torch.randn(3, 2))  # type: ignore[arg-type]


def test_bad_group_labels() -> None:
    correct = torch.ones(3, 2, dtype=torch.bool)
    with pytest.raises(CascadeInputError, match=r"context\['groups'\] must hold str labels, got a int \(1\)"):
        GroupPriorRouter().fit(correct, {"groups": [1, 2, 3]})
    with pytest.raises(CascadeInputError, match=r"context\['groups'\] must be a sequence of str labels .* got a str"):
        GroupPriorRouter().fit(correct, {"groups": "abc"})
    with pytest.raises(CascadeInputError, match=r"context\['groups'\] must be 1-D .* shape \(3, 1\)"):
        GroupPriorRouter().fit(correct, {"groups": np.array([["a"], ["b"], ["c"]])})


@pytest.mark.parametrize(
    ("router", "message"),
    [
        (KNNRouter(k=0), r"KNNRouter: `k` must be an int >= 1, got 0\."),
        (KNNRouter(k=2.5), r"KNNRouter: `k` must be an int >= 1, got 2\.5\."),  # type: ignore[arg-type]
        (KNNRouter(k=True), r"KNNRouter: `k` must be an int >= 1, got True\."),
        (KNNRouter(bandwidth=0.0), r"KNNRouter: `bandwidth` must be a finite number > 0, got 0\.0\."),
        (GroupPriorRouter(prior_strength=-1.0), r"GroupPriorRouter: `prior_strength` must be a finite number >= 0"),
        (MatrixFactorizationRouter(dim=0), r"MatrixFactorizationRouter: `dim` must be an int >= 1, got 0\."),
        (MatrixFactorizationRouter(lr=-0.1), r"MatrixFactorizationRouter: `lr` must be a finite number > 0"),
        (ClassifierRouter(hidden=-1), r"ClassifierRouter: `hidden` must be an int >= 0, got -1\."),
        (ClassifierRouter(epochs=0), r"ClassifierRouter: `epochs` must be an int >= 1, got 0\."),
        (ClassifierRouter(weight_decay=float("nan")), r"ClassifierRouter: `weight_decay` must be a finite number >= 0"),
    ],
    ids=repr,
)
def test_bad_parameters(router: BaseRouter, message: str) -> None:
    context = {"embedding": torch.randn(3, 2), "groups": ["a", "b", "a"]}
    with pytest.raises(CascadeInputError, match=message):
        router.fit(torch.ones(3, 2, dtype=torch.bool), context)


# ---------------------------------------------------------------- GroupKNNRouter / GroupKNNRouterCV

SMALL_CV = {"ks": (3, 10, 40), "shrinkages": (0.0, 5.0, 50.0)}


@pytest.mark.parametrize(
    "router",
    [
        GroupKNNRouter(),
        GroupKNNRouter(k=5, shrinkage=0.0, prior_strength=0.0),
        GroupKNNRouterCV(**SMALL_CV),
        GroupKNNRouterCV(**SMALL_CV, scoring="brier", folds=3),
        GroupKNNRouterCV(**SMALL_CV, prices=[1.0, 2.0, 4.0]),
    ],
    ids=repr,
)
def test_group_knn_contract(router: Router) -> None:
    check_router(router)


def reference_group_knn(
    bank: np.ndarray,
    correct: np.ndarray,
    available: np.ndarray,
    groups: list[str],
    queries: np.ndarray,
    new: list[str],
    k: int,
    shrinkage: float,
    strength: float,
) -> torch.Tensor:
    prior = reference_group_prior(torch.from_numpy(correct), torch.from_numpy(available), groups, new, strength)
    n, m = correct.shape
    rows = []
    for i, q in enumerate(queries):
        sims = [float(q @ b / (np.linalg.norm(q) * np.linalg.norm(b))) for b in bank]
        nearest = sorted(range(n), key=lambda t: -sims[t])[:k]
        row = []
        for j in range(m):
            right = sum(float(correct[t, j]) for t in nearest if available[t, j])
            count = sum(1 for t in nearest if available[t, j])
            q_ij = float(prior[i, j])
            row.append(q_ij if count + shrinkage == 0 else (right + shrinkage * q_ij) / (count + shrinkage))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize(
    ("k", "shrinkage", "strength"), [(1, 0.0, 0.0), (5, 0.0, 10.0), (7, 3.0, 2.0), (500, 20.0, 0.0), (4, 1e9, 5.0)]
)
def test_group_knn_matches_a_per_item_loop(k: int, shrinkage: float, strength: float) -> None:
    embedding, groups, correct, available = problem(n=50, seed=21, missing=0.4)
    queries = torch.randn(12, 4, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    new = [*(f"g{i % 4}" for i in range(10)), "unseen", "g0"]
    router = GroupKNNRouter(k=k, shrinkage=shrinkage, prior_strength=strength)
    router.fit(correct, {"embedding": embedding, "groups": groups}, available)
    expected = reference_group_knn(
        embedding.numpy(),
        (correct & available).numpy(),
        available.numpy(),
        groups,
        queries.numpy(),
        new,
        k,
        shrinkage,
        strength,
    )
    torch.testing.assert_close(router.predict({"embedding": queries, "groups": new}), expected)


def test_group_knn_limits_are_knn_and_group_prior() -> None:
    embedding, groups, correct, _ = problem(n=60, seed=23)
    context = {"embedding": embedding, "groups": groups}
    plain = GroupKNNRouter(k=6, shrinkage=0.0).fit(correct, context).predict(context)
    torch.testing.assert_close(plain, KNNRouter(k=6).fit(correct, context).predict(context))
    prior = GroupKNNRouter(k=6, shrinkage=1e12).fit(correct, context).predict(context)
    torch.testing.assert_close(prior, GroupPriorRouter().fit(correct, context).predict(context))


def test_group_knn_chunks_give_the_same_predictions(monkeypatch: pytest.MonkeyPatch) -> None:
    embedding, groups, correct, available = problem(n=80, seed=24)
    context = {"embedding": embedding, "groups": groups}
    router = GroupKNNRouter(k=9, shrinkage=4.0).fit(correct, context, available)
    whole = router.predict(context)
    monkeypatch.setattr(hybrid, "_MAX_ENTRIES", 9 * 3 * 7)  # 7 rows per chunk
    torch.testing.assert_close(router.predict(context), whole)


def naive_routing_aiq(
    probs: torch.Tensor, scale: torch.Tensor, right: torch.Tensor, cost: torch.Tensor, cheapest: int, best: int
) -> float:
    n, m = probs.shape
    costs, accs = [], []
    for lam in hybrid._TRADE_OFFS.tolist():
        spent = gained = 0.0
        for i in range(n):
            utility = [float(probs[i, j]) - lam * float(scale[j]) for j in range(m)]
            j = max(range(m), key=lambda c: (utility[c], -c))  # the first of ties, as argmax
            spent += float(cost[i, j])
            gained += float(right[i, j])
        costs.append(spent / n)
        accs.append(gained / n)
    ends = sorted((float(cost[:, cheapest].mean()), float(cost[:, best].mean())))
    return aiq(torch.tensor(costs, dtype=torch.float64), torch.tensor(accs, dtype=torch.float64), cost_range=ends)


@pytest.mark.parametrize("scoring", ["aiq", "brier"])
def test_group_knn_cv_scores_match_refitting_per_fold(scoring: str) -> None:
    embedding, groups, correct, available = problem(n=45, seed=25, missing=0.1)
    item_cost = torch.rand(45, 3, generator=torch.Generator().manual_seed(26), dtype=torch.float64) + torch.tensor(
        [0.5, 1.0, 3.0], dtype=torch.float64
    )
    ks, shrinkages, folds = (2, 8, 100), (0.0, 3.0), 3
    context = {"embedding": embedding, "groups": groups}
    router = GroupKNNRouterCV(ks=ks, shrinkages=shrinkages, folds=folds, scoring=scoring, prior_strength=2.0, seed=7)
    router.fit(correct, context, available, cost=item_cost)

    right = (correct & available).double()
    counted = available.double()
    scale = (item_cost * counted).sum(0) / counted.sum(0)
    scale = scale / scale.max()
    assignment = torch.randperm(45, generator=torch.Generator().manual_seed(7)) % folds
    expected = torch.zeros(len(ks), len(shrinkages), dtype=torch.float64)
    for fold in range(folds):
        train = [i for i in range(45) if assignment[i] != fold]
        held = [i for i in range(45) if assignment[i] == fold and (scoring == "brier" or bool(available[i].all()))]
        accuracy = right[train].sum(0) / counted[train].sum(0)
        for a, k in enumerate(ks):
            for b, s in enumerate(shrinkages):
                fold_router = GroupKNNRouter(k=min(k, len(train)), shrinkage=s, prior_strength=2.0)
                fold_router.fit(
                    correct[train],
                    {"embedding": embedding[train], "groups": [groups[i] for i in train]},
                    available[train],
                )
                p = fold_router.predict({"embedding": embedding[held], "groups": [groups[i] for i in held]})
                if scoring == "brier":
                    seen = counted[held]
                    expected[a, b] -= float((((p - right[held]) ** 2) * seen).sum() / seen.sum())
                else:
                    expected[a, b] += naive_routing_aiq(
                        p, scale, right[held], item_cost[held], int(scale.argmin()), int(accuracy.argmax())
                    )
    expected /= folds
    torch.testing.assert_close(router.cv_scores_, expected)
    best = int(expected.argmax())
    assert (router.k_, router.shrinkage_) == (ks[best // 2], shrinkages[best % 2])
    assert router.ks_ == ks
    assert router.shrinkages_ == shrinkages
    chosen = GroupKNNRouter(k=router.k_, shrinkage=router.shrinkage_, prior_strength=2.0).fit(
        correct, context, available
    )
    torch.testing.assert_close(router.predict(context), chosen.predict(context))


def clustered_problem(n: int, seed: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Two groups of 3 embedding clusters each; in each group's clusters a different one of 3 models is right.

    Every model is right on 0.9 of one cluster and 0.2 of the two others in each group (0.43 on
    average), so the group prior carries no signal; the cluster (visible in the embedding) decides.
    """
    g = torch.Generator().manual_seed(seed)
    cluster = torch.randint(0, 6, (n,), generator=g)
    centres = torch.randn(6, 16, generator=g, dtype=torch.float64) * 3
    embedding = centres[cluster] + torch.randn(n, 16, generator=g, dtype=torch.float64)
    groups = [f"g{int(c) % 2}" for c in cluster]
    p = torch.full((n, 3), 0.2, dtype=torch.float64)
    p[torch.arange(n), cluster // 2] = 0.9
    correct = torch.rand(n, 3, generator=g, dtype=torch.float64) < p
    return embedding, groups, correct


def test_group_knn_cv_beats_the_group_prior_when_the_embedding_knows_more() -> None:
    embedding, groups, correct = clustered_problem(1200, seed=27)
    train, test = slice(0, 800), slice(800, None)
    fit_ctx = {"embedding": embedding[train], "groups": groups[train]}
    test_ctx = {"embedding": embedding[test], "groups": groups[test]}
    prices = torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64)
    router = GroupKNNRouterCV(ks=(5, 25, 100, 400), shrinkages=(0.0, 10.0, 1000.0), prices=prices.tolist())
    router.fit(correct[train], fit_ctx)
    assert router.shrinkage_ < 1000.0  # cross-validation leans on the neighbours
    right, cost = correct[test].double(), prices.expand(400, 3)
    accuracy = correct[train].double().mean(0)
    best = int(accuracy.argmax())

    def routed_aiq(p: torch.Tensor) -> float:
        return float(hybrid.routing_aiq(p.unsqueeze(1), prices / prices.max(), right, cost, 0, best)[0])

    ours = routed_aiq(router.predict(test_ctx))
    prior = routed_aiq(GroupPriorRouter().fit(correct[train], fit_ctx).predict(test_ctx))
    assert prior < 0.5  # one model per group: right on about 0.43 of the items
    assert ours > prior + 0.3  # the neighbours find each cluster's model: about 0.9


def test_group_knn_cv_prefers_the_group_prior_when_the_embedding_is_noise() -> None:
    g = torch.Generator().manual_seed(28)
    n = 900
    codes = torch.randint(0, 3, (n,), generator=g)
    groups = [f"g{int(c)}" for c in codes]
    p = torch.full((n, 3), 0.25, dtype=torch.float64)
    p[torch.arange(n), codes] = 0.85
    correct = torch.rand(n, 3, generator=g, dtype=torch.float64) < p
    embedding = torch.randn(n, 8, generator=g, dtype=torch.float64)
    router = GroupKNNRouterCV(ks=(5, 50), shrinkages=(0.0, 1000.0), scoring="brier")
    router.fit(correct, {"embedding": embedding, "groups": groups})
    assert router.shrinkage_ == 1000.0


def test_group_knn_cv_fit_outcomes_passes_the_table_cost() -> None:
    embedding, groups, correct, available = problem(n=60, seed=29)
    cost = torch.rand(60, 3, generator=torch.Generator().manual_seed(30), dtype=torch.float64) * torch.tensor(
        [1.0, 4.0, 9.0], dtype=torch.float64
    )
    outcomes = Outcomes.from_arrays(correct, models=["s", "m", "l"], available=available, cost=cost, groups=groups)
    via_table = GroupKNNRouterCV(**SMALL_CV).fit_outcomes(outcomes, {"embedding": embedding})
    direct = GroupKNNRouterCV(**SMALL_CV).fit(correct, {"embedding": embedding, "groups": groups}, available, cost=cost)
    assert via_table.models_ == ("s", "m", "l")
    torch.testing.assert_close(via_table.cv_scores_, direct.cv_scores_)
    flat = GroupKNNRouterCV(**SMALL_CV).fit(correct, {"embedding": embedding, "groups": groups}, available)
    assert not torch.equal(flat.cv_scores_, direct.cv_scores_)  # equal prices score another curve
    assert "k:" in str(direct.explain())
    assert direct.explain().as_dict()["details"]["shrinkage"] == direct.shrinkage_


@pytest.mark.parametrize(
    ("router", "message"),
    [
        (GroupKNNRouter(k=0), r"GroupKNNRouter: `k` must be an int >= 1, got 0\."),
        (GroupKNNRouter(shrinkage=-1.0), r"GroupKNNRouter: `shrinkage` must be a finite number >= 0, got -1\.0\."),
        (GroupKNNRouter(prior_strength=float("inf")), r"GroupKNNRouter: `prior_strength` must be a finite number"),
        (GroupKNNRouterCV(ks=()), r"GroupKNNRouterCV: `ks` must be a non-empty sequence of numbers, got \(\)\."),
        (GroupKNNRouterCV(ks=5), r"GroupKNNRouterCV: `ks` must be a non-empty sequence"),  # type: ignore[arg-type]
        (GroupKNNRouterCV(ks=(3, 0)), r"GroupKNNRouterCV: `ks` must be an int >= 1, got 0\."),
        (GroupKNNRouterCV(shrinkages=(1.0, -2.0)), r"GroupKNNRouterCV: `shrinkages` must be a finite number >= 0"),
        (GroupKNNRouterCV(folds=1), r"GroupKNNRouterCV: `folds` must be an int >= 2, got 1\."),
        (GroupKNNRouterCV(folds=4), r"GroupKNNRouterCV\.fit: `folds` \(4\) must be at most the number of training"),
        (GroupKNNRouterCV(scoring="auc"), r"GroupKNNRouterCV: `scoring` must be 'aiq' or 'brier', got 'auc'\."),
        (GroupKNNRouterCV(prices=[1.0]), r"GroupKNNRouterCV\.fit: `prices` must hold 2 finite numbers > 0 .*\(1,\)"),
        (GroupKNNRouterCV(prices=[1.0, 0.0]), r"GroupKNNRouterCV\.fit: `prices` must hold 2 finite numbers > 0"),
    ],
    ids=repr,
)
def test_group_knn_bad_parameters(router: BaseRouter, message: str) -> None:
    context = {"embedding": torch.randn(3, 2), "groups": ["a", "b", "a"]}
    with pytest.raises(CascadeInputError, match=message):
        router.fit(torch.ones(3, 2, dtype=torch.bool), context)


def test_group_knn_cv_bad_cost_and_unscorable_folds() -> None:
    embedding, groups, correct, _ = problem(n=20, seed=31)
    context = {"embedding": embedding, "groups": groups}
    router = GroupKNNRouterCV(**SMALL_CV, folds=2)
    with pytest.raises(CascadeInputError, match=r"`cost` must be a real array of shape \(20, 3\) .* shape \(20, 2\)"):
        router.fit(correct, context, cost=torch.ones(20, 2))
    nan = torch.ones(20, 3)
    nan[4, 1] = float("nan")
    with pytest.raises(CascadeInputError, match=r"`cost` must be finite and >= 0 where available; 1 entries"):
        router.fit(correct, context, cost=nan)
    hidden = torch.ones(20, 3, dtype=torch.bool)
    hidden[:, 2] = False
    hidden[0, 2] = True  # model 2 has one outcome: no held-out row is complete in one fold, none at all in the other
    hidden[1:, 2] = False
    with pytest.raises(CascadeInputError, match=r"no fold could be scored: scoring='aiq' needs held-out items"):
        router.fit(correct, context, hidden)
    fitted = GroupKNNRouter(k=3).fit(correct, context)
    with pytest.raises(CascadeInputError, match=r"GroupKNNRouter\.predict: context\['embedding'\] has 2 columns"):
        fitted.predict({"embedding": torch.randn(1, 2), "groups": ["g0"]})
    with pytest.raises(NotFittedError, match=r"Call `GroupKNNRouterCV\.fit"):
        GroupKNNRouterCV().predict(context)
