"""Probability calibration of gate scores: temperature scaling, Platt scaling, isotonic regression.

Each scaler maps a score (higher = more likely correct) to a calibrated probability that the
model is right: ``fit(scores, correct) -> self`` then ``predict_proba(scores) -> (n,) float64``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cascadekit._fitting import check_fit_inputs, check_fitted
from cascadekit._validation import check_scores
from cascadekit.exceptions import CascadeInputError

__all__ = ["SCALERS", "IsotonicScaler", "PlattScaler", "TemperatureScaler", "make_scaler"]

_EPS = 1e-6


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(_EPS, 1 - _EPS)
    return torch.log(p) - torch.log1p(-p)


def _fit_affine_logistic(x: torch.Tensor, y: torch.Tensor, with_bias: bool, steps: int = 200) -> tuple[float, float]:
    """Minimise the log-loss of sigmoid(a x + b) (b = 0 unless ``with_bias``) by L-BFGS in float64."""
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=with_bias)
    params = [a, b] if with_bias else [a]
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    target = y.to(torch.float64)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * x + b, target)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        opt.step(closure)  # type: ignore[no-untyped-call]
    return float(a.detach()), float(b.detach())


class TemperatureScaler:
    """``p = sigmoid(logit(score) / T)``: one temperature, fitted by log-loss; keeps the score's ranking.

    Scores must be probabilities in [0, 1] (e.g. max-prob).

    Examples
    --------
    >>> s = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95, 0.55])
    >>> y = torch.tensor([True, False, True, False, True, False])
    >>> TemperatureScaler().fit(s, y).temperature_ > 0
    True
    """

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> TemperatureScaler:
        """Fit the temperature on calibration scores (n,) in [0, 1] and correctness (n,)."""
        check_fit_inputs("TemperatureScaler.fit", scores, correct)
        _check_unit(scores, "TemperatureScaler.fit")
        a, _ = _fit_affine_logistic(_logit(scores.double().cpu()), correct.cpu(), with_bias=False)
        self.temperature_ = 1.0 / a if a > 0 else float("inf")
        return self

    def predict_proba(self, scores: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities (n,), float64, on the scores' device."""
        check_fitted(self, "temperature_", "fit(scores, correct)", "predict_proba")
        check_scores("TemperatureScaler.predict_proba", scores)
        _check_unit(scores, "TemperatureScaler.predict_proba")
        return torch.sigmoid(_logit(scores.double()) / self.temperature_)


class PlattScaler:
    """``p = sigmoid(a * score + b)``, fitted by log-loss (Platt, 1999); any real-valued score.

    Scores outside the calibration range are clipped to it (as the isotonic scaler does): the fit
    says nothing beyond the data, and extrapolating a slope fitted on a model that was never right
    would call an infinite score certain.
    """

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> PlattScaler:
        """Fit ``a`` and ``b`` on calibration scores (n,) and correctness (n,)."""
        check_fit_inputs("PlattScaler.fit", scores, correct)
        x = scores.double().cpu()
        center, scale = float(x.mean()), float(x.std()) if x.numel() > 1 and float(x.std()) > 0 else 1.0
        a, b = _fit_affine_logistic((x - center) / scale, correct.cpu(), with_bias=True)
        self.coef_ = a / scale
        self.intercept_ = b - a * center / scale
        self.score_range_ = (float(x.min()), float(x.max()))
        return self

    def predict_proba(self, scores: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities (n,), float64, on the scores' device."""
        check_fitted(self, "coef_", "fit(scores, correct)", "predict_proba")
        check_scores("PlattScaler.predict_proba", scores)
        lo, hi = self.score_range_
        return torch.sigmoid(self.coef_ * scores.double().clamp(lo, hi) + self.intercept_)


class IsotonicScaler:
    """Monotone non-decreasing step function fitted by isotonic regression (scikit-learn), clipped at the ends."""

    def fit(self, scores: torch.Tensor, correct: torch.Tensor) -> IsotonicScaler:
        """Fit on calibration scores (n,) and correctness (n,)."""
        from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415

        check_fit_inputs("IsotonicScaler.fit", scores, correct)
        self.isotonic_: Any = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            scores.double().cpu().numpy(), correct.cpu().numpy().astype(np.float64)
        )
        return self

    def predict_proba(self, scores: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities (n,), float64, on the scores' device."""
        check_fitted(self, "isotonic_", "fit(scores, correct)", "predict_proba")
        check_scores("IsotonicScaler.predict_proba", scores)
        if scores.numel() == 0:
            return torch.empty(0, dtype=torch.float64, device=scores.device)
        x = scores.double().cpu().numpy()
        # clip to the fitted range first: the fit clips there anyway, and scikit-learn refuses +-inf
        p = self.isotonic_.predict(np.clip(x, self.isotonic_.X_min_, self.isotonic_.X_max_))
        return torch.from_numpy(np.asarray(p, dtype=np.float64)).to(scores.device)


SCALERS = ("temperature", "platt", "isotonic")


def make_scaler(name: str) -> TemperatureScaler | PlattScaler | IsotonicScaler:
    """A fresh scaler by name: one of :data:`SCALERS`."""
    if name == "temperature":
        return TemperatureScaler()
    if name == "platt":
        return PlattScaler()
    if name == "isotonic":
        return IsotonicScaler()
    msg = f"make_scaler: unknown scaler {name!r}; known names are {SCALERS}."
    raise CascadeInputError(msg)


def _check_unit(scores: torch.Tensor, owner: str) -> None:
    if scores.numel() and (float(scores.min()) < 0 or float(scores.max()) > 1):
        lo, hi = float(scores.min()), float(scores.max())
        msg = f"{owner}: temperature scaling needs scores in [0, 1], got range [{lo:.4g}, {hi:.4g}]."
        raise CascadeInputError(msg)
