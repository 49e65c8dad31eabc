"""Running what :func:`doubledip.engine.export.export` wrote: :func:`load_exported`.

Imports only the standard library and numpy at import time; onnxruntime when an ONNX file is
run, torch only when a TorchScript file is. Nothing of the training code: an ONNX export runs
where torch is not installed (``import doubledip`` is light, see ``doubledip/__init__.py``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_exported", "MANIFEST", "FORMATS"]

FORMATS = ("onnx", "torchscript")
MANIFEST = "manifest.json"


def _hwc(x: np.ndarray) -> np.ndarray:
    """1 x C x H x W -> H x W x C float32 (C = 1: H x W), as the task results are."""
    x = np.asarray(x, dtype=np.float32)[0].transpose(1, 2, 0)
    return np.ascontiguousarray(x[:, :, 0] if x.shape[2] == 1 else x)


def _run_onnx(path: Path, z: np.ndarray | None) -> np.ndarray:
    """The ONNX file's output (1 x C x H x W) on ``z`` (None: the input stored in the file)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("load_exported: ONNX files need onnxruntime (pip install 'doubledip[onnx]')") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not the note that the input has a default value (by design)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {} if z is None else {"z": z})[0]


def _run_torchscript(path: Path, z: np.ndarray | None) -> np.ndarray:
    """The TorchScript file's output (1 x C x H x W) on ``z`` (None: its stored input)."""
    try:
        import torch
    except ImportError:
        raise ValueError("load_exported: TorchScript files need torch; export as ONNX to run without it") from None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        out = module() if z is None else module(torch.from_numpy(z))
    return out.numpy()


def _broadcast(weight: np.ndarray, other: np.ndarray) -> np.ndarray:
    """An H x W weight against an H x W x C layer: H x W x 1 (numpy broadcasts the rest)."""
    if weight.ndim == 2 and other.ndim == 3:
        return weight[:, :, None]
    return weight


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise ValueError(f"load_exported: expected a folder written by export() with {MANIFEST}, "
                         f"got {str(directory)!r} (no {MANIFEST} there)")
    with open(path) as fh:
        try:
            manifest = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"load_exported: {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS or "generators" not in manifest:
        raise ValueError(f"load_exported: {str(path)!r} is not a doubledip export manifest "
                         f"(expected a JSON object with 'format' in {FORMATS} and 'generators')")
    return manifest


def load_exported(directory, inputs: dict | None = None) -> dict:
    """Run the generators that :func:`doubledip.engine.export.export` wrote to ``directory``.

    Returns a dict of numpy arrays: each generator's output by name (layers H x W x C, or H x W
    for one channel; mixing weights as 0-d arrays), the groups the manifest names (``layers``,
    ``alphas``...: lists; ``alphas`` an array), the manifest's constants, and every recombined
    image the manifest says how to make (``reconstruction``, ``image``, ``mixture_0``...).
    These are the nets' outputs: post-processing the task applies after them (listed in the
    manifest's ``not_included``) is not applied here.
    ``inputs`` (name -> 1 x C x Hp x Wp array, the manifest's ``input_shape``) overrides a
    generator's stored input. Needs numpy and onnxruntime (ONNX) or torch (TorchScript).
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    inputs = dict(inputs or {})
    unknown = sorted(set(inputs) - set(manifest["generators"]))
    if unknown:
        raise ValueError(f"load_exported: inputs names {unknown}, expected generator names "
                         f"{sorted(manifest['generators'])}")
    run = _run_onnx if manifest["format"] == "onnx" else _run_torchscript
    out: dict[str, Any] = {}
    for name, gen in manifest["generators"].items():
        z = inputs.get(name)
        if z is not None:
            z = np.ascontiguousarray(z, dtype=np.float32)
            if list(z.shape) != list(gen["input_shape"]):
                raise ValueError(f"load_exported: input for {name!r} has shape {list(z.shape)}, "
                                 f"expected {gen['input_shape']}")
        y = run(directory / gen["file"], z)
        out[name] = np.float32(y.reshape(())) if gen["kind"] == "scalar" else _hwc(y)
    for name, value in manifest.get("constants", {}).items():
        out.setdefault(name, np.asarray(value, dtype=np.float32))
    for entry in manifest.get("recombine", []):
        op = entry.get("op")
        if op == "sum":
            img = sum(out[t] for t in entry["terms"])
        elif op == "blend":
            wgt, a, b = out[entry["weight"]], out[entry["a"]], out[entry["b"]]
            wgt = _broadcast(wgt, a if np.ndim(a) >= np.ndim(b) else b)
            img = wgt * a + (1 - wgt) * b
        else:  # described only (needs something that was not exported)
            continue
        if entry.get("clip"):
            img = np.clip(img, *entry["clip"])
        out[entry["name"]] = np.asarray(img, dtype=np.float32)
    for group, members in manifest.get("groups", {}).items():
        out[group] = [out[m] for m in members]
    if "alphas" in out:
        out["alphas"] = np.asarray(out["alphas"], dtype=np.float32)
    return out
