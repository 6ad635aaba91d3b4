"""Contract checks every built-in (and any user-written) component must pass.

Like ``sklearn.utils.estimator_checks``: call ``check_calibrator(obj)``, ``check_gate(obj, items)``,
``check_model(obj, items)``, ``check_router(obj)``, ``check_policy(obj)``,
``check_tier_calibrator(obj)`` or ``check_online_router(obj)`` in your own tests; each raises
``AssertionError`` naming the broken rule, and returns nothing when all hold.
"""

from __future__ import annotations

from cascadekit.testing._online import check_online_router
from cascadekit.testing._routing import check_policy, check_router
from cascadekit.testing._single import check_calibrator, check_gate, check_model
from cascadekit.testing._tiers import check_tier_calibrator

__all__ = [
    "check_calibrator",
    "check_gate",
    "check_model",
    "check_online_router",
    "check_policy",
    "check_router",
    "check_tier_calibrator",
]
