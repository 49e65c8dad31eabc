"""The compiled C++ CPU core (``_core``, built by ``pip install``) and its loader.

Importing this package imports neither torch nor the core. ``core()`` loads the core once: when it
is absent it warns once and returns None (callers fall back to the plain-torch path), unless
``DOUBLEDIP_REQUIRE_CPP=1``, under which a missing core raises. The torch-facing wrappers are in
``doubledip.bindings.ops``.
"""
from __future__ import annotations

import importlib
import os
import warnings

_MODULE = "doubledip.bindings._core"
_core = None
_error: str | None = None
_tried = False


def _required() -> bool:
    return os.environ.get("DOUBLEDIP_REQUIRE_CPP", "").strip() not in ("", "0")


def core():
    """The loaded core module, or None when it is not built (after one warning)."""
    global _core, _error, _tried
    if not _tried:
        _tried = True
        try:
            _core = importlib.import_module(_MODULE)
        except ImportError as exc:
            _error = f"{type(exc).__name__}: {exc}"
            if not _required():
                warnings.warn(
                    "doubledip: the C++ CPU core is not built (" + _error + "); CPU tensors use the "
                    "slower plain-torch path. Reinstall with a C++ compiler and OpenMP "
                    "(`pip install -e .`) to build it.",
                    RuntimeWarning,
                    stacklevel=2,
                )
    if _core is None and _required():
        raise RuntimeError(f"DOUBLEDIP_REQUIRE_CPP=1 but the C++ CPU core could not be loaded: {_error}")
    return _core


def is_available() -> bool:
    """Whether the compiled CPU core is loaded (raises under ``DOUBLEDIP_REQUIRE_CPP=1`` if not)."""
    return core() is not None


def _reset_for_tests(module: str = "doubledip.bindings._core") -> None:
    """Forget the load attempt (tests point ``module`` at a missing name to simulate no build)."""
    global _core, _error, _tried, _MODULE
    _core, _error, _tried, _MODULE = None, None, False, module
