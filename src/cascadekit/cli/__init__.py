r"""The ``cascadekit`` command: calibrate a policy, apply it to items, evaluate it, inspect it, record models.

Usage::

    cascadekit calibrate --recording qwen2.5-1.5b --cost 1,3,6 --policy conformal:alpha=0.2,delta=0.1 \\
        --holdout 0.5 --out qwen.ckpolicy
    cascadekit apply --policy qwen.ckpolicy --items questions.jsonl --out decisions.csv
    cascadekit evaluate --policy qwen.ckpolicy
    cascadekit info qwen.ckpolicy
    cascadekit record run|pack ...

(or ``python -m cascadekit.cli ...``). ``calibrate`` fits a :class:`~cascadekit.Cascade` over a
:class:`~cascadekit.RecordedModel` of a recording and saves it with :func:`cascadekit.save`; beside
the saved ``manifest.json`` it writes ``cli.json``, naming the recording to re-attach and the
labelled items it was calibrated on (the persistence format itself is unchanged). ``apply`` writes
one decision per item; ``evaluate`` compares the policy's cost with always-run, always-skip and the
oracle (:func:`cascadekit.baselines`) on labelled items, by default those ``calibrate --holdout``
kept out of calibration. ``record`` is :mod:`cascadekit.record`.

Mistakes in the input (a missing or unreadable file, a missing column, an unknown recording, a bad
``--policy`` or ``--cost``) end the command with exit status 2 and one line on stderr,
``cascadekit <command>: error: ...``. Everything heavy (torch, numpy, the rest of cascadekit) is
imported inside the commands, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Callable, Sequence
from typing import NoReturn

from cascadekit.cli._commands import _cmd_apply, _cmd_calibrate, _cmd_evaluate, _cmd_info
from cascadekit.cli._common import _POST_GATES, _PRE_GATES, DECISION_COLUMNS, SIDECAR, UsageError
from cascadekit.cli._items import items_from_rows, read_items
from cascadekit.cli._output import decision_rows
from cascadekit.cli._parse import parse_cost, parse_policy
from cascadekit.exceptions import CascadeInputError, NotCertifiedError, NotFittedError

__all__ = [
    "DECISION_COLUMNS",
    "SIDECAR",
    "UsageError",
    "decision_rows",
    "items_from_rows",
    "main",
    "parse_cost",
    "parse_policy",
    "read_items",
]

# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser reporting a usage mistake as one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` on one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    """The ``cascadekit`` command line: stdlib only, so ``--help`` is instant."""
    from cascadekit import __version__  # noqa: PLC0415 - the package's __init__ imports nothing heavy

    parser = _Parser(
        prog="cascadekit",
        description=(
            "Calibrate a cascade policy on a model's recorded outputs, apply it to new items, evaluate it, "
            "inspect it; record models."
        ),
        epilog="Run `cascadekit COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"cascadekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "record",
        help="record a model's option log-probs over MMLU (run), pack a recording (pack)",
        add_help=False,
    )
    rec_help = "a shipped recording (qwen2.5-1.5b, smollm2-135m) or a .npz packed by `cascadekit record pack`"
    items_help = (
        "items: `shipped` (the 4,816 MMLU items shipped with cascadekit) or a .jsonl, .csv, .parquet or "
        ".json[.gz] file with id, question, A..D (or choices), answer (letter or 0-based index), subject"
    )
    json_help = "print JSON for programs instead of text"

    cal = sub.add_parser(
        "calibrate",
        help="fit a cascade's gates and thresholds on labelled items and save it",
        description=(
            "Fit a Cascade over a recorded model on labelled items, save it (ck.save, plus cli.json naming the "
            "recording and items) and print what it chose."
        ),
    )
    cal.add_argument("--recording", required=True, metavar="NAME_OR_NPZ", help=rec_help)
    cal.add_argument("--items", default=None, metavar="ITEMS", help=f"labelled {items_help} (default: shipped)")
    cal.add_argument("--cost", required=True, metavar="c,S,E", help="prices of an inference, a skip, a wrong answer")
    cal.add_argument(
        "--policy",
        required=True,
        metavar="SPEC",
        help="calibrator: NAME[:key=value,...], e.g. threshold, conformal:alpha=0.2,delta=0.1, ltt:alpha=0.2",
    )
    cal.add_argument(
        "--pre-gate",
        choices=_PRE_GATES,
        default="none",
        help="gate before the model: subject (per-subject accuracy, trained on --gate-share of items) (default: none)",
    )
    cal.add_argument(
        "--post-gate", choices=_POST_GATES, default="maxprob", help="gate on the model's output (default: maxprob)"
    )
    cal.add_argument(
        "--split",
        type=float,
        default=0.5,
        help="with both gates: share of calibration items fitting the pre-gate's calibrator (default: 0.5)",
    )
    cal.add_argument(
        "--gate-share",
        type=float,
        default=0.5,
        help="with --pre-gate subject: share of the non-held-out items training the gate (default: 0.5)",
    )
    cal.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="share of the items kept out of fitting; `cascadekit evaluate` uses them by default (default: 0)",
    )
    cal.add_argument("--seed", type=int, default=0, help="seed of the item splits (default: 0)")
    cal.add_argument("--out", required=True, metavar="POLICY_DIR", help="folder to save the policy in (*.ckpolicy)")
    cal.add_argument("--json", action="store_true", help=json_help)
    cal.set_defaults(handler=_cmd_calibrate)

    app = sub.add_parser(
        "apply",
        help="decide each item with a saved policy and write the decisions",
        description=(
            "Run a saved policy on items and write one decision per item (.csv or .jsonl): "
            f"{', '.join(DECISION_COLUMNS)} (+ correct for labelled items)."
        ),
    )
    app.add_argument("--policy", required=True, metavar="POLICY_DIR", help="a policy saved by `cascadekit calibrate`")
    app.add_argument("--items", required=True, metavar="FILE", help=items_help)
    app.add_argument("--recording", default=None, metavar="NAME_OR_NPZ", help=f"{rec_help} (default: from cli.json)")
    app.add_argument("--out", required=True, metavar="DECISIONS", help="decisions file to write, .csv or .jsonl")
    app.add_argument(
        "--model",
        default=None,
        metavar="PATH_OR_ID",
        help="score live with this model (hub id, folder or .gguf) instead of the recording",
    )
    app.add_argument(
        "--ray",
        action="store_true",
        help='decide on Ray Data (a local Ray, or the cluster of RAY_ADDRESS): pip install "cascadekit[ray]"',
    )
    app.add_argument("--ray-workers", type=int, default=1, metavar="N", help="scoring actors with --ray (default 1)")
    app.add_argument("--json", action="store_true", help=json_help)
    app.set_defaults(handler=_cmd_apply)

    ev = sub.add_parser(
        "evaluate",
        help="compare a saved policy's cost with always-run, always-skip and the oracle",
        description=(
            "Run a saved policy on labelled items; print its total cost beside always-run, always-skip and the "
            "oracle, the decisions and the accuracy among answered items."
        ),
    )
    ev.add_argument("--policy", required=True, metavar="POLICY_DIR", help="a policy saved by `cascadekit calibrate`")
    ev.add_argument(
        "--items",
        default=None,
        metavar="shipped|FILE",
        help=f"labelled {items_help} (default: the items `calibrate --holdout` kept out, else its items)",
    )
    ev.add_argument("--recording", default=None, metavar="NAME_OR_NPZ", help=f"{rec_help} (default: from cli.json)")
    ev.add_argument("--json", action="store_true", help=json_help)
    ev.add_argument("--plot", default=None, metavar="PNG", help="also plot cost against right answers (matplotlib)")
    ev.set_defaults(handler=_cmd_evaluate)

    info = sub.add_parser(
        "info",
        help="what a saved policy is: class, version, parameters, what it certifies",
        description="Describe a saved policy from its manifest (nothing is loaded or run).",
    )
    info.add_argument("policy", metavar="POLICY_DIR", help="a saved policy folder")
    info.add_argument("--json", action="store_true", help=json_help)
    info.set_defaults(handler=_cmd_info)
    return parser


_USER_ERRORS = (
    UsageError,
    CascadeInputError,
    NotCertifiedError,
    NotFittedError,
    OSError,
    ValueError,
    KeyError,
    zipfile.BadZipFile,
)


def _message(err: BaseException) -> str:
    if isinstance(err, FileNotFoundError) and err.filename:
        text = f"no such file {err.filename!r}"
    elif isinstance(err, OSError) and err.filename:
        text = f"{err.strerror or type(err).__name__}: {err.filename!r}"
    elif isinstance(err, KeyError):
        text = f"missing field {err.args[0]!r}" if err.args else "missing field"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _guarded(prog: str, run: Callable[[], int]) -> int:
    try:
        return run()
    except _USER_ERRORS as err:
        print(f"{prog}: error: {_message(err)}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cascadekit`` command (and ``python -m cascadekit.cli``).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, or 2 after a mistake in the input (reported as one line on stderr).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "record":
        from cascadekit.record import main as record_main  # noqa: PLC0415 - stdlib-only at import

        return _guarded("cascadekit record", lambda: record_main(args[1:], prog="cascadekit record"))
    parsed = _parser().parse_args(args)
    return _guarded(f"cascadekit {parsed.command}", lambda: int(parsed.handler(parsed)))
