"""Constants and the usage error shared by the subcommands."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

#: The file ``calibrate`` writes beside a saved policy's ``manifest.json``: recording and items used.
SIDECAR = "cli.json"
#: Columns (JSON fields) of the decisions file ``apply`` writes; ``correct`` follows for labelled items.
DECISION_COLUMNS = ("id", "action", "answer", "pre_score", "post_score", "cost")
_ACTIONS = ("skip", "abstain", "answer")  # = cascadekit.cascade.DECISIONS, by decision code
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MANIFEST = "manifest.json"
_FORMAT = "cascadekit-policy"
_SHIPPED = "shipped"
_POST_GATES = ("maxprob", "margin", "entropy", "none")
_PRE_GATES = ("subject", "none")


class UsageError(Exception):
    """A mistake in the command's input, reported as one line with exit status 2."""
