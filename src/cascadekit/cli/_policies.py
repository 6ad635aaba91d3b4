"""Recordings, saved policies, their sidecar, and the calibration partition."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cascadekit.exceptions import CascadeInputError

if TYPE_CHECKING:
    from cascadekit.cascade import Cascade
    from cascadekit.datasets import Recording
    from cascadekit.items import ChoiceItems

from cascadekit.cli._common import _FORMAT, _MANIFEST, SIDECAR, UsageError
from cascadekit.cli._items import _ids_digest, read_items

# --------------------------------------------------------------------------- recordings and policies


def _load_recording(spec: str) -> Recording:
    from cascadekit.datasets import load_recording  # noqa: PLC0415

    try:
        return load_recording(spec)
    except CascadeInputError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        msg = f"--recording: cannot read {spec!r} as a recording ({type(err).__name__}: {err})."
        raise UsageError(msg) from None


def _recording_spec(spec: str) -> str:
    return str(Path(spec).resolve()) if spec.endswith(".npz") else spec


def _check_recorded(items: ChoiceItems, recording: Recording, spec: str) -> None:
    known = set(recording.ids)
    missing = [i for i in items.ids if i not in known]
    if missing:
        msg = (
            f"{len(missing)} of {len(items)} items are not in the recording {spec!r} (e.g. {missing[0]!r}); "
            "a recording replays only the items it recorded."
        )
        raise UsageError(msg)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        msg = f"{str(path)!r} is not valid JSON ({err}); the {what} was damaged or edited badly."
        raise UsageError(msg) from None
    except UnicodeDecodeError:
        msg = f"{str(path)!r} is not UTF-8 text."
        raise UsageError(msg) from None


def _read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.exists():
        msg = f"no policy folder {str(folder)!r}."
        raise UsageError(msg)
    manifest_file = folder if folder.is_file() else folder / _MANIFEST
    if manifest_file.name != _MANIFEST or not manifest_file.is_file():
        msg = f"{str(folder)!r} holds no {_MANIFEST}; it is not a saved cascadekit policy."
        raise UsageError(msg)
    manifest = _read_json(manifest_file, "manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        msg = f"{str(manifest_file)!r} is not a cascadekit policy manifest (no format {_FORMAT!r})."
        raise UsageError(msg)
    return manifest


def _read_sidecar(folder: Path) -> dict[str, Any]:
    path = folder / SIDECAR
    if not path.is_file():
        return {}
    data = _read_json(path, SIDECAR)
    if not isinstance(data, dict):
        msg = f"{str(path)!r} is not a JSON object."
        raise UsageError(msg)
    return data


def _load_cascade(folder: Path, recording: str | None) -> tuple[Cascade, dict[str, Any], str, Recording]:
    """The saved Cascade in ``folder`` with its RecordedModel re-attached; its sidecar, recording spec, recording."""
    manifest = _read_manifest(folder)
    kind = manifest.get("class")
    if kind != "cascadekit.cascade:Cascade":
        msg = f"{str(folder)!r} holds a {kind}, not a Cascade (write one with `cascadekit calibrate`)."
        raise UsageError(msg)
    sidecar = _read_sidecar(folder)
    spec = recording or sidecar.get("recording")
    if not isinstance(spec, str):
        msg = f"{str(folder)!r} does not name its recording (no {SIDECAR}); pass --recording NAME_OR_NPZ."
        raise UsageError(msg)
    rec = _load_recording(spec)
    wanted = manifest.get("models") or []
    if wanted and rec.model not in wanted:
        msg = f"the policy was calibrated on the model {wanted[0]!r}, but the recording {spec!r} holds {rec.model!r}."
        raise UsageError(msg)
    from cascadekit.models.recorded import RecordedModel  # noqa: PLC0415
    from cascadekit.persistence import load  # noqa: PLC0415

    cascade: Cascade = load(folder, models={rec.model: RecordedModel(rec)})
    return cascade, sidecar, spec, rec


def _with_live_model(cascade: Cascade, model: str) -> Cascade:
    """The cascade scoring with a live model (hub id, folder or ``.gguf``) in place of its recording."""
    from cascadekit.models.hf import HFChoiceModel  # noqa: PLC0415

    try:
        live = HFChoiceModel.from_pretrained(model)
    except (OSError, ValueError) as err:
        msg = f"--model: cannot load {model!r} ({type(err).__name__}: {err})."
        raise UsageError(msg) from None
    cascade.model = live
    return cascade


def _partition(n: int, holdout: float, gate_share: float | None, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Seeded split of ``n`` items: (held out, pre-gate training, calibration) positions, each sorted."""
    import numpy as np  # noqa: PLC0415

    perm = np.random.default_rng(seed).permutation(n)
    n_held = round(holdout * n)
    held, fit = perm[:n_held], perm[n_held:]
    n_gate = 0 if gate_share is None else round(gate_share * len(fit))
    gate, calib = fit[:n_gate], fit[n_gate:]
    return sorted(map(int, held)), sorted(map(int, gate)), sorted(map(int, calib))


def _calibration_source(sidecar: Mapping[str, Any]) -> tuple[ChoiceItems, list[int], set[str]] | None:
    """The items ``calibrate`` read, the held-out positions and the ids used in fitting; None if unavailable."""
    spec = sidecar.get("items")
    if not isinstance(spec, str) or "seed" not in sidecar:
        return None
    try:
        items = read_items(spec)
    except (UsageError, CascadeInputError, OSError, ValueError):
        return None
    if _ids_digest(items.ids) != sidecar.get("ids_sha256"):
        return None
    gate_share = sidecar.get("gate_share") if sidecar.get("pre_gate") == "subject" else None
    held, gate, calib = _partition(len(items), float(sidecar.get("holdout", 0.0)), gate_share, int(sidecar["seed"]))
    return items, held, {items.ids[i] for i in (*gate, *calib)}
