"""Fitted generators to ONNX / TorchScript (:func:`export`); :func:`doubledip.exported.load_exported`
runs them (re-exported here).

Each generator is written as one iteration of the fit ran it (``result.fitted``, see
``ImageProblem.fitted``): the iteration whose outputs the result holds (the best-tracked one, the
chosen stage end, the last; the manifest's ``not_included`` says which, and where the result is
not one iteration's outputs: averages, medians). That is the net with that iteration's weights
(before the solver's update), the input it ran on (its fixed noise or meshgrid input, perturbed
as that iteration perturbed it), that iteration's augmentation inside the graph (``augment``, the
net, ``unaugment``: input and output in the image's orientation), batch norm as fitting used it
(batch statistics, never running ones) and the crop from the padded working size back to the
caller's size. Running the file with no input then gives that iteration's output,
``1 x C x H x W``: the result's, up to float rounding, where the result is one iteration's. The
input is also saved beside it as ``<name>.input.npy`` and, when it is a perturbed one, the
unperturbed fixed input as ``<name>.noise.npy``.

- ONNX: the input ``z`` is a graph input whose default value is stored in the file (an
  initializer of the same name), so ``onnxruntime.InferenceSession(f).run(None, {})`` runs it, and
  feeding ``{"z": ...}`` overrides it. Batch norm is written out as explicit ops (mean and biased
  variance over N, H, W, eps 1e-5): ``torch.onnx.export`` turns a training-mode ``BatchNorm2d``
  into an inference ``BatchNormalization`` that uses the running statistics, which is a
  different function here.
- TorchScript: a traced generator (batch norm stays the native op in training mode) inside a
  scripted wrapper holding the input as a buffer: ``torch.jit.load(f)()`` runs it, ``(z)``
  overrides it.

``manifest.json`` says what each file is and how layers recombine into images. This module
imports only the standard library and numpy at import time; torch, onnx and onnxruntime are
imported where needed; each task's recombination entries come from its spec in the task registry.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from doubledip.exported import FORMATS, MANIFEST, load_exported  # noqa: F401 - the loader's home

EXPORTERS = ("auto", "dynamo", "legacy")
MANIFEST_VERSION = 1
LEGACY_OPSET = 17
BN_EPS = 1e-5
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}

# how an alpha generator's scalar is read from its output (two-image separation, reference mode)
_ALPHA = "0.9 * net(z)[0, 0, Hp // 2, Wp // 2] + 0.05 (the centre pixel of the padded output)"


def _task_spec(task: str, names: list[str], result) -> dict:
    """Recombination entries, groups, constants and excluded post-processing: the task's own
    (``TaskSpec.export`` in the task registry)."""
    from doubledip.engine.tasks.registry import get

    try:
        spec = get(task)
    except (TypeError, ValueError):
        raise ValueError(f"export: unknown task {task!r}; expected a result of one of the registered tasks") from None
    if spec.export is None:
        raise ValueError(f"export: task {task!r} declares no export recombination")
    return spec.export(names, result)


# ---------------------------------------------------------------------------------------------
# export


# result.method values that run no fit: the classic answers (dark channel prior, inpainting,
# unmixing, the saliency map's threshold)
CLASSIC_METHODS = ("dcp", "inpainting", "ica", "saliency")


def _check_fitted(result) -> dict:
    fitted = getattr(result, "fitted", None)
    method = getattr(result, "method", None)
    if fitted is None and method in CLASSIC_METHODS:
        raise ValueError(f"export: this result is the classic answer (result.method {method!r}): no generators "
                         f"were fitted, nothing to export; run with method='dip' for a fit to export")
    if not isinstance(fitted, dict) or not {"nets", "inputs", "size", "padded", "offset"} <= set(fitted):
        raise ValueError(
            f"export: expected a doubledip task result carrying its fitted generators (result.fitted), "
            f"got {type(result).__name__} with fitted={type(fitted).__name__}")
    missing = [n for n in fitted["nets"].keys() if n not in fitted["inputs"]]
    if missing:
        raise ValueError(f"export: the fitted nets {missing} have no fixed input")
    return fitted


def _generator_modules(fitted: dict, names: list[str], explicit_bn: bool) -> dict:
    """name -> (CPU float32 module mapping the fixed input to the cropped output, input tensor)."""
    import torch

    from doubledip.engine.nets.norm import BatchNormAct2d
    from doubledip.engine.nets.unet import SkipUNet

    class BatchStatNorm2d(torch.nn.Module):
        """Batch norm with batch statistics, as plain ops (what training-mode BatchNorm2d computes)."""

        def __init__(self, bn: torch.nn.BatchNorm2d):
            super().__init__()
            c = bn.num_features
            self.weight = torch.nn.Parameter(bn.weight.detach().reshape(1, c, 1, 1).clone(), requires_grad=False)
            self.bias = torch.nn.Parameter(bn.bias.detach().reshape(1, c, 1, 1).clone(), requires_grad=False)
            self.eps = float(bn.eps)

        def forward(self, x):
            mean = x.mean(dim=(0, 2, 3), keepdim=True)
            d = x - mean
            var = (d * d).mean(dim=(0, 2, 3), keepdim=True)
            return d * torch.rsqrt(var + self.eps) * self.weight + self.bias

    def swap_bn(module):
        for child_name, child in module.named_children():
            if isinstance(child, BatchNormAct2d) and child.slope is not None:  # its activation too
                setattr(module, child_name, torch.nn.Sequential(BatchStatNorm2d(child), torch.nn.LeakyReLU(child.slope)))
            elif isinstance(child, torch.nn.BatchNorm2d):
                setattr(module, child_name, BatchStatNorm2d(child))
            else:
                swap_bn(child)

    class Generator(torch.nn.Module):
        def __init__(self, net, scalar: bool, padded, offset, size, augmentation: int):
            super().__init__()
            self.net = net
            self.scalar = scalar
            self.augmentation = augmentation
            self.padded, self.offset, self.size = tuple(padded), tuple(offset), tuple(size)

        def forward(self, z):
            out = unaugment(self.net(augment(z, self.augmentation)), self.augmentation)
            if self.scalar:
                h, w = self.padded[0] // 2, self.padded[1] // 2
                return out[:, :, h:h + 1, w:w + 1] * 0.9 + 0.05
            (top, left), (h, w) = self.offset, self.size
            return out[:, :, top:top + h, left:left + w]

    modules = {}
    for name in names:
        net = fitted["nets"][name]
        if not isinstance(net, SkipUNet):
            raise TypeError(f"export: fitted net {name!r} must be a SkipUNet, got {type(net).__name__}")
        net = copy.deepcopy(net).cpu().float()
        if hasattr(net, "set_memory_format"):
            net.set_memory_format(torch.contiguous_format)
        else:
            net = net.to(memory_format=torch.contiguous_format)
        for p in net.parameters():
            p.requires_grad_(False)
        if explicit_bn:
            swap_bn(net)
        z = fitted["inputs"][name].detach().cpu().float().contiguous()
        index = _augmentation(fitted, name)
        gen = Generator(net, name.startswith("alpha_"), fitted["padded"], fitted["offset"], fitted["size"], index)
        modules[name] = (gen.train(), z)
    return modules


def _augmentation(fitted: dict, name: str) -> int:
    index = fitted.get("augmentation", {}).get(name, 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 8:
        raise ValueError(f"export: the augmentation of {name!r} must be an int in [0, 8), got {index!r}")
    return index


def augment(x, index: int):
    """``engine.inputs.augment`` (rot90^(index % 4) over the last two dims, of ``x`` flipped upside
    down when index >= 4) written with flips and transposes, which every ONNX exporter writes."""
    if index >= 4:
        x = x.flip(-2)
    return _rot90(x, index % 4)


def unaugment(x, index: int):
    """The inverse of :func:`augment` (``engine.inputs.unaugment``)."""
    x = _rot90(x, -(index % 4))
    return x.flip(-2) if index >= 4 else x


def _rot90(x, k: int):
    """``torch.rot90(x, k, dims=(-2, -1))``."""
    k %= 4
    if k == 1:
        return x.flip(-1).transpose(-2, -1)
    if k == 2:
        return x.flip(-2).flip(-1)
    if k == 3:
        return x.transpose(-2, -1).flip(-1)
    return x


def reference_outputs(result) -> dict:
    """name -> what each exported file should give: the fitted net re-run (in torch, contiguous
    memory, batch statistics) on its input, in its augmentation, cropped (alpha nets: the mixing
    weight)."""
    import torch

    fitted = _check_fitted(result)
    names = list(fitted["nets"].keys())
    with torch.no_grad():
        return {n: m(z).numpy() for n, (m, z) in _generator_modules(fitted, names, False).items()}


def _export_onnx(module, z, path: Path, exporter: str) -> tuple[str, int]:
    """Write ``module`` (one input ``z``) to ``path``, with ``z``'s value as the input's default.
    Returns the exporter that worked and the opset."""
    import onnx
    import torch
    from onnx import numpy_helper

    tried = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    errors = []
    used = None
    for kind in tried:
        loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
        levels = [lg.level for lg in loggers]
        try:
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                if kind == "dynamo":
                    torch.onnx.export(module, (z,), str(path), dynamo=True, input_names=["z"],
                                      output_names=["output"], verbose=False, external_data=False)
                else:
                    torch.onnx.export(module, (z,), str(path), dynamo=False, input_names=["z"],
                                      output_names=["output"], opset_version=LEGACY_OPSET,
                                      do_constant_folding=True)
            used = kind
            break
        except Exception as exc:  # noqa: BLE001 - any exporter failure falls through to the next
            errors.append(f"{kind}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            for lg, lv in zip(loggers, levels):
                lg.setLevel(lv)
    if used is None:
        raise RuntimeError("export: torch.onnx.export failed (" + "; ".join(errors) + ")")
    model = onnx.load(str(path))
    inputs = [i.name for i in model.graph.input]
    if inputs != ["z"]:
        raise RuntimeError(f"export: the exported graph has inputs {inputs}, expected ['z']")
    model.graph.initializer.append(numpy_helper.from_array(z.numpy(), "z"))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return used, int(opset)


def _export_torchscript(module, z, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notices (torch >= 2.10)
        traced = torch.jit.trace(module, (z,), check_trace=False)

    class Baked(torch.nn.Module):
        def __init__(self, generator, z0):
            super().__init__()
            self.generator = generator
            self.register_buffer("z", z0)

        def forward(self, z: torch.Tensor | None = None) -> torch.Tensor:
            if z is None:
                return self.generator(self.z)
            return self.generator(z)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(Baked(traced, z.clone())), str(path))


def export(result, directory, format: str = "onnx", *, exporter: str = "auto") -> Path:
    """Write each fitted generator of ``result`` to ``directory`` (created if needed) with its
    fixed input, plus ``manifest.json``; returns the directory.

    format: "onnx" (one ``<name>.onnx`` per generator) or "torchscript" (``<name>.pt``).
    exporter (ONNX only): "auto" (torch.onnx's dynamo exporter, falling back to the
    TorchScript-based one if it fails), "dynamo" or "legacy".
    Each generator's fixed input is also written as ``<name>.input.npy``. Files are written to a
    temporary folder beside the target first, then moved in.
    """
    if format not in FORMATS:
        raise ValueError(f"export: format must be one of {FORMATS}, got {format!r}")
    if exporter not in EXPORTERS:
        raise ValueError(f"export: exporter must be one of {EXPORTERS}, got {exporter!r}")
    fitted = _check_fitted(result)
    task = getattr(result, "task", "")
    names = list(fitted["nets"].keys())
    spec = _task_spec(task, names, result)
    if format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ValueError("export: format 'onnx' needs the onnx package "
                             "(pip install 'doubledip[onnx]')") from None
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".doubledip-export-", dir=directory))
    size, padded, offset = (tuple(int(v) for v in fitted[k]) for k in ("size", "padded", "offset"))
    generators, used, opsets = {}, set(), set()
    try:
        modules = _generator_modules(fitted, names, explicit_bn=(format == "onnx"))
        for name, (module, z) in modules.items():
            fname = name + _SUFFIX[format]
            np.save(tmp / f"{name}.input.npy", z.numpy())
            noise = fitted.get("noise", {}).get(name)
            if noise is not None:
                np.save(tmp / f"{name}.noise.npy", noise.detach().cpu().float().numpy())
            if format == "onnx":
                kind, opset = _export_onnx(module, z, tmp / fname, exporter)
                used.add(kind)
                opsets.add(opset)
            else:
                _export_torchscript(module, z, tmp / fname)
            scalar, index = module.scalar, module.augmentation
            channels = fitted["nets"][name].config.out_channels
            net_of_z = f"unaugment(net(augment(z, {index})), {index})" if index else "net(z)"
            generators[name] = {
                "file": fname,
                "input_file": f"{name}.input.npy",
                "input_name": "z",
                "input_shape": list(z.shape),
                "input": ("the input the net ran on in the exported iteration (not_included says "
                          "which): its fixed input, perturbed as that iteration perturbed it "
                          "(noise_file: the fixed input itself)") if noise is not None else "the net's fixed input",
                "augmentation": index,
                "output_shape": [1, 1, 1, 1] if scalar else [1, channels, *size],
                "kind": "scalar" if scalar else "layer",
                "output": _ALPHA.replace("net(z)", net_of_z) if scalar else
                f"{net_of_z}[:, :, {offset[0]}:{offset[0] + size[0]}, {offset[1]}:{offset[1] + size[1]}] in (0, 1)",
            }
            if noise is not None:
                generators[name]["noise_file"] = f"{name}.noise.npy"
        manifest: dict[str, Any] = {
            "doubledip_export": MANIFEST_VERSION,
            "task": task,
            "format": format,
            "exporter": ("+".join(sorted(used)) if format == "onnx" else "torch.jit.trace + torch.jit.script"),
            "torch_version": torch.__version__,
            "size": list(size),
            "padded": list(padded),
            "offset": list(offset),
            "crop": "each net runs at the padded size and its output is cropped inside the exported "
                    "graph: rows offset[0]:offset[0]+size[0], columns offset[1]:offset[1]+size[1]",
            "augmentation": "index i (a generator's 'augmentation'): z rotated by 90 degrees i % 4 times "
                            "over (H, W) (torch.rot90 dims (-2, -1)), flipped upside down first when "
                            "i >= 4; unaugment inverts it; both are inside the graph, so z and the "
                            "output are in the image's orientation; 0: neither",
            "batch_norm": "batch statistics (training mode, as in fitting): per channel, mean and biased "
                          f"variance over N, H, W, eps {BN_EPS:g}; running statistics are never used"
                          + ("; written as explicit ReduceMean/Sub/Mul/Sqrt ops" if format == "onnx"
                             else "; the native batch_norm op in training mode"),
            "layers": [n for n in names if not generators[n]["kind"] == "scalar"],
            "values": [n for n in names if generators[n]["kind"] == "scalar"],
            "generators": generators,
            "groups": spec.get("groups", {}),
            "constants": spec.get("constants", {}),
            "recombine": spec["recombine"],
            "not_included": spec["not_included"] + _precision_note(result),
        }
        if format == "onnx":
            manifest["opset"] = max(opsets)
            manifest["run"] = ("onnxruntime.InferenceSession(file).run(None, {})[0] gives 1 x C x H x W "
                               "(the fixed input is stored in the file; feed {'z': array} to override)")
        else:
            manifest["run"] = "torch.jit.load(file)() gives 1 x C x H x W (pass a tensor to override the input)"
        result_size = _result_size(result)
        if result_size is not None and tuple(result_size) != size:
            manifest["result_size"] = list(result_size)
        with open(tmp / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=2)
        for p in _previous_files(directory):  # a previous export's files would contradict the manifest
            p.unlink(missing_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, directory / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _previous_files(directory: Path) -> list[Path]:
    """The generator and input files an earlier export's manifest in ``directory`` lists."""
    try:
        with open(directory / MANIFEST) as fh:
            gens = json.load(fh).get("generators", {})
        names = [g[k] for g in gens.values() for k in ("file", "input_file", "noise_file") if k in g]
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        return []
    return [directory / n for n in names if isinstance(n, str) and "/" not in n and "\\" not in n]


def _precision_note(result) -> list[str]:
    """A note when the fit ran its generators in bf16 (fast mode on CUDA): the files are float32."""
    config, device = getattr(result, "config", None), str(getattr(result, "device", ""))
    if getattr(config, "mode", None) == "fast" and device.startswith("cuda"):
        return ["precision: the fit ran the generators under bf16 autocast (fast mode on CUDA); the "
                "files compute in float32, so their outputs differ from the result's by bf16 rounding"]
    return []


def _result_size(result):
    for field in ("image", "reconstruction", "mask", "watermark"):
        v = getattr(result, field, None)
        if isinstance(v, np.ndarray) and v.ndim >= 2:
            return v.shape[:2]
    layers = getattr(result, "layers", None)
    if layers:
        return np.asarray(layers[0]).shape[:2]
    return None
