"""Save a fitted policy to a folder and load it back: a readable manifest and the tensors beside it.

A saved policy is a folder (by convention named ``*.ckpolicy``) holding two files:

- ``manifest.json``, human-readable: the format and its version, the cascadekit version that wrote
  it, the policy's class (``"module:QualName"``), its constructor parameters (read the way
  scikit-learn does: the names of ``__init__``'s parameters, each stored on the object under the
  same name), its fitted state (every public attribute ending in ``_``), a ``summary`` (the
  policy's ``explain().as_dict()``, for people; it is not read back) and the SHA-256 of the
  tensors file.
- ``tensors.npz``, every tensor and array (plain NumPy ``.npy`` entries, never pickled), keyed by
  where it sits in the manifest, e.g. ``state/threshold_`` or ``params/base/state/grid_``.

Values the manifest holds as JSON: None, bool, int, float (``inf``, ``-inf`` and NaN written as
``{"__float__": "inf"}`` and the like), str, lists, tuples (``{"__tuple__": [...]}``, read back as
tuples), dicts with str keys, NumPy scalars. Tensors are read back with their exact dtype (bool
and int64 included), on the CPU. Nested cascadekit objects (a :class:`~cascadekit.MondrianCalibrator`'s
``base``, a :class:`~cascadekit.LinearCost`, a :class:`~cascadekit.Explanation`, ...) are written
recursively with their class; an object met twice (a joint calibrator and its two stages) is
written once and referenced (``{"__ref__": "state/pre_calibrator_/params/joint"}``).

**Models are referenced, never copied.** A :class:`~cascadekit.protocols.Model` (e.g. the
:class:`~cascadekit.RecordedModel` or :class:`~cascadekit.HFChoiceModel` of a
:class:`~cascadekit.Cascade`, a :class:`~cascadekit.ProbeGate`'s probe) or an
:class:`~cascadekit.protocols.Embedder` is written as ``{"__model_ref__": its name}`` (its ``name``,
else its ``name_or_path``, else its ``repr``); :func:`load` re-attaches the objects passed as
``models={name: model}`` and raises, naming the reference, when one is missing.

**Loading runs no code from the file.** Only classes defined in the cascadekit package are rebuilt
(``cls(**params)``, then the fitted state set as attributes), and never models or embedders;
anything else named by a manifest is refused. Two kinds of foreign object are written:

- scikit-learn's ``IsotonicRegression`` (the fitted state of ``BayesCalibrator(scaler="isotonic")``),
  rebuilt from its arrays through its own ``__setstate__``;
- any other scikit-learn estimator (``sklearn.base.BaseEstimator``: the classifiers and pipelines
  the learned gates fit, :class:`~cascadekit.ProbeGate`, :class:`~cascadekit.EmbeddingGate`,
  :class:`~cascadekit.StackedGate` ...), written with skops' ``skops.io.dumps``, a secure,
  non-pickle format for scikit-learn objects (https://skops.readthedocs.io/en/stable/persistence.html).
  skops is optional: ``pip install "cascadekit[persist]"``. The blob is stored in ``tensors.npz`` as a
  uint8 array (so the SHA-256 covers it) and the manifest holds
  ``{"__sklearn__": "state/classifier_", "class": "sklearn.pipeline:Pipeline"}``. :func:`load` reads
  it with ``skops.io.loads(blob, trusted=...)``, trusting only the types
  ``skops.io.get_untrusted_types`` reports that belong to scikit-learn, NumPy or SciPy (their name and
  their ``__module__`` start with ``sklearn.``, ``numpy.`` or ``scipy.``; modules that read or write
  files, such as ``numpy.memmap`` or ``scipy.io``, excepted) or are plain builtin data types; a blob
  naming anything else (a class of yours, a builtin function, ``os``, ...) is refused, naming the
  types, and nothing is loaded. :func:`save` refuses such an estimator up front.

Objects that cannot be written -- a class from outside cascadekit, a scikit-learn estimator when
skops is not installed, a ``torch.Generator``, a function that is not cascadekit's -- make
:func:`save` raise :class:`~cascadekit.exceptions.CascadeInputError` naming the attribute path and
the type.

**Versions.** :func:`load` reads ``format_version`` 1 files written by a cascadekit of the same
major version; while cascadekit is at 0.x the minor version counts as the major one (a file of
0.1.x loads in 0.1.y but not in 0.2), since 0.x releases may change what a class stores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cascadekit import __version__
from cascadekit.exceptions import CascadeInputError
from cascadekit.persistence._common import FORMAT, FORMAT_VERSION, MANIFEST, TENSORS, _in_package, _is_model
from cascadekit.persistence._decode import _check_manifest, _Decoder
from cascadekit.persistence._encode import _Encoder, _sha256, _summary

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "save"]


def save(obj: object, path: str | os.PathLike[str]) -> Path:
    """Save a (fitted) cascadekit policy to the folder ``path``: ``manifest.json`` and ``tensors.npz``.

    Parameters
    ----------
    obj : object
        Any cascadekit calibrator, gate, router, cascade or policy (fitted or not): an object of a
        class defined in cascadekit whose constructor stores each parameter under its own name.
    path : str or path-like
        The folder to write, created with its parents (by convention named ``*.ckpolicy``). An
        existing folder is overwritten only if it holds a saved policy; a non-empty folder without
        one is refused.

    Returns
    -------
    pathlib.Path
        The folder written.

    Raises
    ------
    CascadeInputError
        If ``obj`` (or something it holds, named by its attribute path such as
        ``state/pooled_/params/cost``) cannot be written: a class from outside cascadekit, a
        scikit-learn estimator when skops is not installed (``pip install "cascadekit[persist]"``) or
        one holding types outside the allow-list, a ``torch.Generator``, a function, a dict with
        non-str keys; or if ``path`` is a file or a non-empty folder holding no policy. Nothing is
        written then.

    Notes
    -----
    Models and embedders are saved by reference, never with their weights: pass them back with
    ``load(path, models={name: model})``. See the module docstring for the format.

    Examples
    --------
    >>> import tempfile
    >>> import torch
    >>> from cascadekit import LinearCost, ThresholdCalibrator
    >>> cal = ThresholdCalibrator(LinearCost(1, 3, 6), stage="post")
    >>> cal = cal.fit(torch.tensor([0.9, 0.8, 0.4, 0.3]), torch.tensor([True, True, False, True]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = save(cal, Path(tmp) / "threshold.ckpolicy")
    ...     files = sorted(p.name for p in folder.iterdir())
    ...     again = load(folder)
    >>> files
    ['manifest.json', 'tensors.npz']
    >>> again
    ThresholdCalibrator(cost=LinearCost(c_infer=1.0, c_skip=3.0, c_error=6.0, c_token=0.0), stage='post')
    >>> again.threshold_ == cal.threshold_, again.decide(torch.tensor([0.95, 0.5])).tolist()
    (True, [True, False])
    """
    if obj is None or isinstance(obj, type) or not _in_package(type(obj).__module__):
        kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
        msg = f"save: `obj` must be an object of a cascadekit class (a calibrator, router, policy ...), got a {kind}."
        raise CascadeInputError(msg)
    if _is_model(obj):
        msg = f"save: {obj!r} is a model; models are never saved (their weights stay where they are), only policies."
        raise CascadeInputError(msg)
    encoder = _Encoder()
    root = encoder.obj(obj, "")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        msg = f"save: {str(folder)!r} exists and is not a folder; a policy is saved as a folder."
        raise CascadeInputError(msg)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        msg = f"save: the folder {str(folder)!r} is not empty and holds no saved policy; refusing to write into it."
        raise CascadeInputError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, manifest_file = folder / TENSORS, folder / MANIFEST
    partial = folder / f".{TENSORS}.partial"
    with partial.open("wb") as f:
        np.savez(f, allow_pickle=False, **encoder.arrays)
    digest = _sha256(partial)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cascadekit_version": __version__,
        "class": root["__object__"],
        "params": root["params"],
        "state": root["state"],
        **({"private": root["private"]} if "private" in root else {}),
        "models": sorted(encoder.models),
        "summary": _summary(obj),
        "tensors": {"file": TENSORS, "sha256": digest, "n_arrays": len(encoder.arrays)},
    }
    text = json.dumps(manifest, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    written = folder / f".{MANIFEST}.partial"
    written.write_text(text, encoding="utf-8")
    os.replace(partial, tensors)
    os.replace(written, manifest_file)
    return folder


def load(path: str | os.PathLike[str], *, models: Mapping[str, object] | None = None) -> Any:
    """Load a policy written by :func:`save`.

    Parameters
    ----------
    path : str or path-like
        The folder :func:`save` wrote (or its ``manifest.json``).
    models : mapping of str to model, optional
        The models (and embedders) the policy refers to, by the names in the manifest's
        ``models`` list (e.g. ``{"qwen2.5-1.5b": RecordedModel(...)}``); model weights are never
        saved, so every model a policy uses must be given here.

    Returns
    -------
    object
        The policy, of the class it was saved as, with its parameters and fitted state; tensors
        on the CPU, in their saved dtypes.

    Raises
    ------
    CascadeInputError
        When the folder holds no manifest or an unreadable one (the message names the file); the
        format or format version is unknown; the file was written by another major cascadekit
        version (another minor version while at 0.x: the message gives both versions);
        ``tensors.npz`` is not the file saved with the manifest (its SHA-256 differs); the manifest
        names a class or function outside cascadekit, or a model class; or a referenced model is
        not in ``models``; a scikit-learn estimator's skops blob names a type outside the allow-list
        (the message names the types), or skops is not installed.

    Examples
    --------
    See :func:`save`.
    """
    folder = Path(path)
    if folder.name == MANIFEST and folder.is_file():
        folder = folder.parent
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        msg = f"load: {str(folder)!r} holds no {MANIFEST}; it is not a saved cascadekit policy."
        raise CascadeInputError(msg)
    try:
        raw = json.loads(manifest_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        msg = f"load: {str(manifest_file)!r} is not valid JSON ({err}); the manifest was damaged or edited badly."
        raise CascadeInputError(msg) from err
    except UnicodeDecodeError as err:
        msg = f"load: {str(manifest_file)!r} is not UTF-8 text ({err})."
        raise CascadeInputError(msg) from err
    manifest = _check_manifest(raw, manifest_file)
    tensors = folder / TENSORS
    expected = manifest["tensors"].get("sha256") if isinstance(manifest["tensors"], dict) else None
    if not tensors.is_file():
        msg = f"load: {str(tensors)!r} is missing; a saved policy keeps its tensors beside {MANIFEST}."
        raise CascadeInputError(msg)
    digest = _sha256(tensors)
    if digest != expected:
        msg = (
            f"load: {str(tensors)!r} is not the file saved with {MANIFEST}: its SHA-256 is {digest}, the manifest "
            f"records {expected}. It was modified or replaced; save the policy again."
        )
        raise CascadeInputError(msg)
    with np.load(tensors, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    decoder = _Decoder(arrays, dict(models or {}))
    root = {
        "__object__": manifest["class"],
        "params": manifest["params"],
        "state": manifest["state"],
        "private": manifest.get("private"),
    }
    return decoder.obj(root, "")
