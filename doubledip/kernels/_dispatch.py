"""Per-call backend choice for the fused ops: a leaf (it imports nothing of ``doubledip.kernels``).

``DOUBLEDIP_BACKEND`` (read on every call; under ``torch.compile`` at trace time):
- ``auto`` (default): CUDA tensors -> ``triton`` when triton imports, CPU tensors -> ``cpp`` when the
  compiled core is built, anything else -> ``torch``;
- ``torch``: the plain-torch references;
- ``triton``: the Triton kernels; on CPU tensors this is the interpreter, which needs
  ``TRITON_INTERPRET=1`` in the environment before triton is first imported;
- ``cpp``: the C++ core (CPU tensors only).

``resolve(device)`` answers which; each op module then runs its own reference or fused path.
Fallbacks are visible: where ``auto`` cannot use the fused backend of a device (core not built,
triton missing) or an op's fused kernels do not handle valid inputs (``fall_back``: not float32,
odd mask shapes, images too small for the pyramid), the reference serves them and the logger
``doubledip.kernels`` warns once per reason. A forced backend that cannot run, or cannot take the
inputs, raises instead.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os

import torch

BACKENDS = ("auto", "torch", "triton", "cpp")

log = logging.getLogger("doubledip.kernels")
_noted: set = set()  # the reasons already logged (each once per process)


def backend_name() -> str:
    """The ``DOUBLEDIP_BACKEND`` setting, one of ``BACKENDS``."""
    name = os.environ.get("DOUBLEDIP_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"DOUBLEDIP_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    """Whether the triton package can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def cpp_available() -> bool:
    from doubledip import bindings

    return bindings.core() is not None


def _note_once(key, message: str) -> None:
    if key not in _noted:
        _noted.add(key)
        log.warning(message)


def resolve(device) -> str:
    """The backend (``torch``, ``triton`` or ``cpp``) that serves tensors on ``device`` now."""
    return _resolve(torch.device(device).type)


def _resolve(kind: str) -> str:
    name = backend_name()
    if name == "torch":
        return "torch"
    if name == "auto":
        if kind == "cuda":
            if triton_importable():
                return "triton"
            _note_once(("auto", kind), "doubledip.kernels: triton is not installed; CUDA tensors use the "
                                       "plain-torch references (pip install 'doubledip[triton]')")
            return "torch"
        if kind == "cpu":
            if cpp_available():
                return "cpp"
            _note_once(("auto", kind), "doubledip.kernels: the C++ CPU core is not built; CPU tensors use "
                                       "the plain-torch references (reinstall: pip install -e .)")
        return "torch"
    if name == "triton":
        if not triton_importable():
            raise RuntimeError("DOUBLEDIP_BACKEND=triton but triton is not installed (pip install 'doubledip[triton]')")
        if kind == "cpu" and not triton_interpreted():
            raise RuntimeError("DOUBLEDIP_BACKEND=triton on CPU tensors needs TRITON_INTERPRET=1, "
                               "set before triton is imported")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(f"DOUBLEDIP_BACKEND=triton cannot run on {kind} tensors")
        return "triton"
    # cpp
    if kind != "cpu":
        raise RuntimeError(f"DOUBLEDIP_BACKEND=cpp runs on CPU tensors only, got {kind} tensors")
    if not cpp_available():
        raise RuntimeError("DOUBLEDIP_BACKEND=cpp but the C++ CPU core is not built (reinstall: pip install -e .)")
    return "cpp"


def fall_back(op: str, backend: str, reason: str, detail: str = "") -> str:
    """The backend for valid inputs that ``backend``'s kernels of ``op`` do not handle: ``torch``.

    Under ``auto`` it logs once per (op, backend, reason) (``detail``: the first case seen, in the
    message only); with ``DOUBLEDIP_BACKEND`` forced it raises ValueError instead.
    """
    message = f"{op}: the {backend} kernels do not handle {reason}" + (f" ({detail})" if detail else "")
    if backend_name() != "auto":
        raise ValueError(f"{message}; DOUBLEDIP_BACKEND={backend} is forced (auto would use the "
                         "plain-torch reference)")
    _note_once((op, backend, reason), f"doubledip.kernels: {message}; using the plain-torch reference")
    return "torch"


# Under torch.compile the choice is made once, at trace time (it imports modules, reads the
# environment and logs, which dynamo cannot trace): a compiled function keeps the backend it was
# traced with. This is what torch.compiler.assume_constant_result does; calling that here would
# import torch._dynamo, which imports triton, at `import doubledip.kernels` (tests guard both facts).
_resolve._dynamo_marked_constant = True
fall_back._dynamo_marked_constant = True


_cpp_layers = True


@contextlib.contextmanager
def plain_layers():
    """Within: the generator layers with a C++ path run PyTorch's own ops (for A/B benchmarks;
    the fused losses are not affected)."""
    global _cpp_layers
    previous, _cpp_layers = _cpp_layers, False
    try:
        yield
    finally:
        _cpp_layers = previous


def cpp_layer_applies(x: torch.Tensor) -> bool:
    """Whether a generator layer with a C++ path (``engine.nets.norm``, ``.padding``, ``.upsample``) runs ``x`` on
    the core: a 4-D channels-last float32 CPU tensor, outside tracing, export, ``torch.compile``
    and CPU autocast, when the CPU backend resolves to ``cpp``. Those layers have no Triton path:
    CUDA tensors and ``DOUBLEDIP_BACKEND=torch`` take PyTorch's own ops."""
    if torch.compiler.is_compiling():  # first: nothing below is traced by dynamo
        return False
    if not (_cpp_layers and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last)):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return _resolve("cpu") == "cpp"
