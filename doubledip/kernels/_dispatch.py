"""Per-call backend choice for the fused ops.

``DOUBLEDIP_BACKEND`` (read on every call; under ``torch.compile`` at trace time):
- ``auto`` (default): CUDA tensors -> ``triton`` when triton imports, CPU tensors -> ``cpp`` when the
  compiled core is built (else one warning), anything else -> ``torch``;
- ``torch``: the plain-torch references;
- ``triton``: the Triton kernels; on CPU tensors this is the interpreter, which needs
  ``TRITON_INTERPRET=1`` in the environment before triton is first imported;
- ``cpp``: the C++ core (CPU tensors only).
A forced backend that cannot run raises instead of silently falling back. Inputs a backend does not
handle (not float32, odd mask shapes, images too small for the pyramid) use the reference.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os

import torch

BACKENDS = ("auto", "torch", "triton", "cpp")


def backend_name() -> str:
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


def resolve(device) -> str:
    """The backend (``torch``, ``triton`` or ``cpp``) that serves tensors on ``device`` now."""
    return _resolve(torch.device(device).type)


def _resolve(kind: str) -> str:
    name = backend_name()
    if name == "torch":
        return "torch"
    if name == "auto":
        if kind == "cuda":
            return "triton" if triton_importable() else "torch"
        if kind == "cpu":
            return "cpp" if cpp_available() else "torch"
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


# Under torch.compile the choice is made once, at trace time (it imports modules and reads the
# environment, which dynamo cannot trace): a compiled function keeps the backend it was traced with.
# This is what torch.compiler.assume_constant_result does; calling that here would import
# torch._dynamo, which imports triton, at `import doubledip.kernels` (tests guard both facts).
_resolve._dynamo_marked_constant = True


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


def primitives(backend: str, group: str):
    """The module with the fused primitives of ``group`` (blend, exclusion, noise) for ``backend``."""
    if backend == "cpp":
        return importlib.import_module("doubledip.bindings.ops")
    if backend == "triton":
        return importlib.import_module(f"doubledip.kernels._triton_{group}")
    raise ValueError(f"no fused primitives for backend {backend!r}")


def pick(op: str, tensor):
    """The implementation of ``op`` for ``tensor``'s device under the current backend setting.

    Returns a callable with the reference's signature.
    """
    from doubledip.kernels import blend, exclusion, noise

    module = {"blend_loss": blend, "exclusion_loss": exclusion, "perturb": noise}[op]
    backend = _resolve(tensor.device.type)
    if backend == "torch":
        return getattr(module, f"{op}_ref")
    return functools.partial(getattr(module, f"_{op}_fused"), backend=backend)
